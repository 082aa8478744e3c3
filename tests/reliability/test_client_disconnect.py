"""A phone that drops its connection mid-body is normal: counted, logged quietly, and the
gatekeeper serves the next request: on the aiohttp device path (``Forwarder``), on the fast
lane relaying to that path, and on the lane's hot path (``Lane.clients_gone``: the partial
request's upstream connection is dropped, never reused)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import AsyncIterator

import aiohttp
import pytest

from scenarios.cli_sentry import RunningSentry, serve
from scenarios.serving import start_site
from sentry_sim.config import SentryConfig
from sentry_sim.events import EventBus, RequestRejected
from simclock import SystemClock
from tests.sentry_sim.fakes import FakeUem, FakeUpstream, headers, query

Gatekeeper = tuple[RunningSentry, FakeUpstream, list[RequestRejected]]


@pytest.fixture(params=["aiohttp_path", "lane_to_full_path", "lane_hot_path"])
async def any_path(request: pytest.FixtureRequest) -> AsyncIterator[Gatekeeper]:
    """A gatekeeper whose device port is the aiohttp app, or the fast lane (relaying every
    request to that app, or taking the hot path for an allowed device)."""
    async with gatekeeper(fast_lane=request.param != "aiohttp_path") as started:
        running = started[0]
        if request.param == "lane_to_full_path":
            assert running.lane is not None
            running.lane.fast = False
        yield started


@pytest.fixture(params=["aiohttp_path", "lane_to_full_path"])
async def sentry(request: pytest.FixtureRequest) -> AsyncIterator[Gatekeeper]:
    """A gatekeeper whose requests all reach the aiohttp device app (``Forwarder``)."""
    async with gatekeeper(fast_lane=request.param != "aiohttp_path") as started:
        if started[0].lane is not None:
            started[0].lane.fast = False
        yield started


@contextlib.asynccontextmanager
async def gatekeeper(*, fast_lane: bool) -> AsyncIterator[Gatekeeper]:
    uem = FakeUem()
    uem.site = await start_site(uem.app())
    upstream = FakeUpstream()
    upstream.site = await start_site(upstream.app())
    bus = EventBus(strict=True)
    rejected: list[RequestRejected] = []
    bus.subscribe(lambda e: rejected.append(e) if isinstance(e, RequestRejected) else None)
    config = SentryConfig.from_mapping(
        {"activesync_policy_mode": "pass_through", "fast_lane": fast_lane}, "test"
    )
    running = await serve(
        config,
        upstream_url=upstream.url,
        uem_url=uem.url,
        clock=SystemClock(),
        admin_token="test-token",
        bus=bus,
    )
    try:
        yield running, upstream, rejected
    finally:
        await running.stop()
        await upstream.site.stop()
        await uem.site.stop()


def gatekeeper_errors(records: list[logging.LogRecord]) -> list[str]:
    """ERROR records raised in the gatekeeper's code (the fake Exchange, which shares
    aiohttp's logger, may log its own cut-off request: it is not under test)."""
    found = []
    for record in records:
        if record.levelno < logging.ERROR:
            continue
        frames = traceback.extract_tb(record.exc_info[2]) if record.exc_info else []
        if record.name.startswith("sentry_sim") or any(
            "/sentry_sim/" in frame.filename and "/tests/" not in frame.filename for frame in frames
        ):
            found.append(record.getMessage())
    return found


async def post(running: RunningSentry, body: bytes) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(running.url + query(), data=body, headers=headers()) as response,
    ):
        await response.read()
        return response.status


async def half_a_body_then_close(running: RunningSentry, length: int = 1000) -> None:
    host, port = running.url.removeprefix("http://").rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST {query()} HTTP/1.1\r\nHost: {host}\r\nMS-ASProtocolVersion: 14.1\r\n"
        f"Content-Type: application/vnd.ms-sync.wbxml\r\nContent-Length: {length}\r\n\r\n"
    )
    writer.write(head.encode() + b"x" * (length // 10))
    await writer.drain()
    await asyncio.sleep(0.05)  # let the server start reading the body
    writer.close()
    await writer.wait_closed()


async def test_device_closing_mid_body_is_counted_not_logged_as_error_and_next_is_served(
    sentry: Gatekeeper,
    caplog: pytest.LogCaptureFixture,
) -> None:
    running, upstream, rejected = sentry
    caplog.set_level(logging.DEBUG)
    async with asyncio.timeout(20):
        assert await post(running, b"first") == 200  # the device is known and allowed
        forwarded_before = len(upstream.seen)
        forwarder = running.sentry.forwarder
        for _ in range(3):
            await half_a_body_then_close(running)
        while forwarder.clients_gone < 3:  # noqa: ASYNC110 - the server side runs on its own
            await asyncio.sleep(0.01)
        assert await post(running, b"next") == 200
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert not [r for r in caplog.records if r.exc_info], "no traceback for a dropped phone"
    quiet = [r for r in caplog.records if "closed the connection" in r.getMessage()]
    assert len(quiet) == 3
    assert {r.levelno for r in quiet} == {logging.DEBUG}
    # Nothing of the three half requests reached Exchange; the next request did.
    assert [s["body"] for s in upstream.seen[forwarded_before:]] == [b"next"]
    assert [r.http_status for r in rejected] == [400, 400, 400]
    assert all("closed the connection" in r.message for r in rejected)


async def test_device_closing_mid_stream_of_a_large_body_is_not_an_upstream_failure(
    sentry: Gatekeeper,
    caplog: pytest.LogCaptureFixture,
) -> None:
    running, _, rejected = sentry
    caplog.set_level(logging.DEBUG)
    big = 2 * 1024 * 1024  # past the buffered limit: streamed straight to Exchange
    async with asyncio.timeout(20):
        assert await post(running, b"first") == 200
        forwarder = running.sentry.forwarder
        await half_a_body_then_close(running, big)
        while forwarder.clients_gone < 1:  # noqa: ASYNC110 - the server side runs on its own
            await asyncio.sleep(0.01)
        assert await post(running, b"next") == 200
    assert gatekeeper_errors(caplog.records) == []
    assert [r.http_status for r in rejected] == [400]


async def test_device_closing_mid_body_is_counted_and_its_partial_request_goes_nowhere(
    any_path: Gatekeeper, caplog: pytest.LogCaptureFixture
) -> None:
    running, upstream, _ = any_path
    caplog.set_level(logging.DEBUG)
    async with asyncio.timeout(20):
        assert await post(running, b"first") == 200
        lane = running.lane
        gone_before = running.sentry.forwarder.clients_gone
        for _ in range(3):
            await half_a_body_then_close(running)
        if lane is not None and lane.fast:
            # The hot path: the partial requests went straight upstream and their connections
            # were aborted, so the upstream has only the pooled keep-alive one left.
            while lane.clients_gone < 3:  # noqa: ASYNC110 - the server side runs on its own
                await asyncio.sleep(0.01)
            assert upstream.site is not None
            server = upstream.site.runner.server
            assert server is not None
            while len(server.connections) > 1:  # noqa: ASYNC110 - closing on its own
                await asyncio.sleep(0.01)
            assert running.sentry.forwarder.clients_gone == gone_before
        else:
            forwarder = running.sentry.forwarder
            while forwarder.clients_gone < gone_before + 3:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert await post(running, b"next") == 200
        if lane is not None:
            assert lane.clients_gone == 3
            while lane.connections:  # noqa: ASYNC110 - every device connection ends
                await asyncio.sleep(0.01)
    assert gatekeeper_errors(caplog.records) == []
    ours = [r for r in caplog.records if r.name.startswith("sentry_sim")]
    assert not [r for r in ours if r.exc_info], "no traceback for a dropped phone"
    assert all(r.levelno == logging.DEBUG for r in ours if "left" in r.getMessage())
    # None of the three half requests reached the upstream's handler whole.
    assert [s["body"] for s in upstream.seen] == [b"first", b"next"]
