"""The fast lane's hot-path requests in the metrics and the event history, with hot-path events
off (counted through the bus's tally), on with only the metrics listening (deferred events),
and on with another subscriber (built events delivered)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from scenarios.cli_sentry import RunningSentry
from sentry_sim.events import Event, RequestForwarded, RequestReceived
from tests.sentry_sim.fakes import StartSentry, decision, query
from tests.sentry_sim.test_fastlane_http import (
    Client,
    RawUpstream,
    allowed_sentry,
    lane_of,
    post,
)

FORWARDED = 'sentry_requests_total{outcome="forwarded"}'


@pytest.fixture
async def upstream() -> AsyncIterator[RawUpstream]:
    started = RawUpstream()
    await started.start()
    yield started
    await started.stop()


async def scrape(running: RunningSentry) -> dict[str, float]:
    """The admin /metrics counters, by line name with labels."""
    headers = {"Authorization": f"Bearer {running.admin_token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(running.admin_site.url + "/metrics", headers=headers) as response,
    ):
        assert response.status == 200
        text = await response.text()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


async def send(running: RunningSentry, count: int) -> None:
    client = await Client.connect(running.url)
    try:
        await client.send(post(query()) * count)
        answers = await client.answers(count)
    finally:
        await client.close()
    assert [a.status for a in answers] == [200] * count


async def test_metrics_count_hot_path_requests_with_events_off(
    start_sentry: StartSentry, upstream: RawUpstream
) -> None:
    running = await allowed_sentry(start_sentry, upstream.url, hot_path_events=False)
    async with asyncio.timeout(10):
        await send(running, 3)
        metrics = await scrape(running)
    assert lane_of(running).forwarded == 3
    assert metrics[FORWARDED] == 3
    # No event was emitted for them: the event counters do not claim any.
    assert 'sentry_events_total{kind="request_forwarded"}' not in metrics


async def test_hot_path_events_read_the_same_deferred_or_delivered(
    start_sentry: StartSentry, upstream: RawUpstream
) -> None:
    running = await allowed_sentry(start_sentry, upstream.url)
    bus = running.sentry.bus
    assert bus.quiet  # only the metrics listen: the lane defers its events
    async with asyncio.timeout(10):
        await send(running, 2)
        deferred = [e for e in bus.recent(50) if isinstance(e, RequestReceived | RequestForwarded)]
        seen: list[Event] = []
        unsubscribe = bus.subscribe(seen.append)
        assert not bus.quiet
        await send(running, 2)
        unsubscribe()
        metrics = await scrape(running)
    delivered = [e for e in seen if isinstance(e, RequestReceived | RequestForwarded)]
    assert (
        [e.kind for e in deferred]
        == [e.kind for e in delivered]
        == [
            "request_received",
            "request_forwarded",
        ]
        * 2
    )
    for old, new in zip(deferred, delivered, strict=True):
        assert old.to_json().keys() == new.to_json().keys()
        assert old.record == new.record == "alice/dev1"
    assert {e.to_json()["command"] for e in deferred + delivered} == {"FolderSync"}
    assert {e.upstream_status for e in deferred + delivered if isinstance(e, RequestForwarded)} == {
        200
    }
    # Each request's two events share its request id.
    assert len({e.request_id for e in deferred + delivered}) == 4
    assert metrics[FORWARDED] == 4
    assert metrics['sentry_events_total{kind="request_received"}'] == 4


async def test_memoised_verdicts_still_count_each_request_on_its_own_record(
    start_sentry: StartSentry, upstream: RawUpstream
) -> None:
    """One connection alternating between two devices' request lines: each request counts
    on its own record and carries its own record in its events (a connection's memo keeps
    the last line's verdict)."""
    running = await allowed_sentry(start_sentry, upstream.url)
    running.sentry.apply(decision("bob", "DEV2", version=1), "test")
    devices = running.sentry.devices

    def requests(key: str) -> int:
        record = devices.get(key)
        assert record is not None
        return record.requests

    before = {key: requests(key) for key in ("alice/dev1", "bob/dev2")}
    lines = [query(), query(), query("bob", "DEV2"), query()]
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        try:
            await client.send(b"".join(post(line) for line in lines))
            answers = await client.answers(len(lines))
        finally:
            await client.close()
    assert [a.status for a in answers] == [200] * len(lines)
    assert requests("alice/dev1") - before["alice/dev1"] == 3
    assert requests("bob/dev2") - before["bob/dev2"] == 1
    records = [e.record for e in running.sentry.bus.recent(20) if e.kind == "request_forwarded"]
    assert records[-4:] == ["alice/dev1", "alice/dev1", "bob/dev2", "alice/dev1"]
