"""The ``stack`` fixture: Exchange and the UEM as real processes (see processes.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.reliability.processes import DEFAULT_LAB, TOKEN, Actor, Stack, start_actor


@pytest.fixture(params=["fast_lane", "aiohttp_path"])
async def stack(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """Both device ports drain on SIGTERM: the fast lane (the default, ``Lane.stop``) and the
    aiohttp device app (``fast_lane: false``, its runner's shutdown)."""
    config = tmp_path / "sentry.yaml"
    fast_lane = "true" if request.param == "fast_lane" else "false"
    config.write_text(
        f"sentry:\n  fast_lane: {fast_lane}\n  persist_interval_s: 0.5\n  report_retry_max_s: 1\n",
        encoding="utf-8",
    )
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    actors: list[Actor] = []
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        exchange = await start_actor(
            tmp_path, "exchange", "exchange", "--config", str(DEFAULT_LAB), "--port", "0",
            "--admin-token", TOKEN,
        )  # fmt: skip
        actors.append(exchange)
        uem = await start_actor(
            tmp_path, "uem", "uem", "--config", str(DEFAULT_LAB), "--port", "0",
            "--admin-port", "0", "--admin-token", TOKEN,
        )  # fmt: skip
        actors.append(uem)
        built = Stack(tmp_path, exchange, uem, session, state_dir, config)
        yield built
        actors += built.actors
    finally:
        await session.close()
        for actor in actors:
            actor.kill()
        for actor in actors:
            with contextlib.suppress(TimeoutError):
                await actor.wait_exit(10)
