"""Fixtures of the gatekeeper's integration tests: the fakes on loopback, gatekeepers on them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from scenarios.cli_sentry import RunningSentry, serve
from scenarios.serving import start_site
from sentry_sim.config import SentryConfig
from sentry_sim.events import EventBus
from simclock import Clock, SystemClock
from tests.sentry_sim.fakes import FakeUem, FakeUpstream, StartSentry


@pytest.fixture
async def fake_uem() -> AsyncIterator[FakeUem]:
    uem = FakeUem()
    uem.site = await start_site(uem.app())
    yield uem
    await uem.site.stop()


@pytest.fixture
async def fake_upstream() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream()
    upstream.site = await start_site(upstream.app())
    yield upstream
    upstream.ping_release.set()
    await upstream.site.stop()


@pytest.fixture
async def start_sentry(
    fake_uem: FakeUem, fake_upstream: FakeUpstream
) -> AsyncIterator[StartSentry]:
    """Start gatekeepers against the fakes; every one is stopped at the end."""
    running: list[RunningSentry] = []

    async def start(
        clock: Clock | None = None,
        *,
        upstream_url: str | None = None,
        uem_url: str | None = None,
        **settings: Any,
    ) -> RunningSentry:
        base: dict[str, Any] = {
            "activesync_policy_mode": "pass_through",
            "first_access_wait_s": 3,
            "report_retry_initial_s": 0.05,
            "report_retry_max_s": 0.2,
            "uem_timeout_s": 2,
        }
        base.update(settings)
        config = SentryConfig.from_mapping(base, "test")
        sentry = await serve(
            config,
            upstream_url=upstream_url or fake_upstream.url,
            uem_url=uem_url or fake_uem.url,
            clock=clock or SystemClock(),
            admin_token="test-token",
            bus=EventBus(strict=True),
        )
        running.append(sentry)
        return sentry

    yield start
    for sentry in reversed(running):
        if sentry.device_site.runner.server is not None:  # not stopped by the test itself
            await sentry.stop()
