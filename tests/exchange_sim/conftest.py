"""The ``lab`` fixture: a running mock Exchange on 127.0.0.1 with a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from exchange_client import Lab, start_lab


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    site, clock = await start_lab()
    session = aiohttp.ClientSession()
    try:
        yield Lab(site, clock, session)
    finally:
        await session.close()
        await site.stop()
