"""The fast lane stopping: it drains (``Lane.stop``) instead of cutting requests off.

In process, over real loopback sockets: a raw device client and a scriptable upstream that
holds an answer until the test releases it (``RawUpstream`` of test_fastlane_http). Each test
starts ``stop`` while something is in flight and checks what the device gets: the whole
answer, then the connection closed; idle connections closed at once; no new connection;
held Pings answered by the lane (Ping Status 1); what the deadline cuts off.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from activesync.commands.ping import PingResponse, PingStatus
from activesync.wbxml import decode
from scenarios.cli_sentry import RunningSentry
from sentry_sim.lane import Lane
from tests.sentry_sim.fakes import StartSentry, eventually, query
from tests.sentry_sim.test_fastlane_http import (
    Client,
    Message,
    RawUpstream,
    allowed_sentry,
    lane_of,
    ok_answer,
    post,
)


@pytest.fixture
async def held_upstream() -> AsyncIterator[tuple[RawUpstream, asyncio.Event]]:
    """An upstream that holds every answer until the event is set; a Ping or a Search it
    holds until the lane closes its connection (``closed_by_peer`` is set then)."""
    release = asyncio.Event()
    upstream = RawUpstream()

    async def answer(
        request: Message, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> bool:
        if b"Cmd=Ping" in request.target or b"Cmd=Search" in request.target:
            if not await reader.read():
                upstream.closed_by_peer.set()
            return False
        await release.wait()
        if b"Cmd=Sync" in request.target:
            # Streamed: chunked, in two writes with a pause between them.
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
            return True
        return await ok_answer(request, reader, writer, n)

    upstream.answer = answer
    await upstream.start()
    yield upstream, release
    release.set()
    await upstream.stop()


async def begin_stop(lane: Lane, drain_s: float) -> asyncio.Task[None]:
    """Start ``lane.stop`` and return once the lane is draining (listener closed)."""
    task = asyncio.create_task(lane.stop(drain_s))
    await eventually(lambda: lane.draining)
    return task


async def at_eof(client: Client) -> bool:
    """Whether the lane closed the connection (reads to the end; no more bytes come)."""
    return await client.reader.read() == b""


async def test_request_in_flight_when_stop_begins_gets_its_whole_streamed_answer_then_close(
    start_sentry: StartSentry, held_upstream: tuple[RawUpstream, asyncio.Event]
) -> None:
    upstream, release = held_upstream
    running = await allowed_sentry(start_sentry, upstream.url)
    lane = lane_of(running)
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        await client.send(post(query(cmd="Sync"), b"sync"))
        await upstream.received.wait()
        stopping = await begin_stop(lane, 10.0)
        assert not stopping.done(), "stop must wait for the request in flight"
        release.set()
        (answer,) = await client.answers(1)
        assert await at_eof(client)
        await stopping
    await client.close()
    assert answer.complete
    assert answer.status == 200
    assert answer.body == b"firstsecond"
    assert answer.header("Connection") == "close"
    assert lane.forwarded == 1
    assert lane.cut_off == 0
    assert lane.connections == set()


async def test_idle_connection_closes_at_once_while_a_busy_one_is_still_answered(
    start_sentry: StartSentry, held_upstream: tuple[RawUpstream, asyncio.Event]
) -> None:
    upstream, release = held_upstream
    running = await allowed_sentry(start_sentry, upstream.url)
    lane = lane_of(running)
    idle = await Client.connect(running.url)
    busy = await Client.connect(running.url)
    async with asyncio.timeout(10):
        release.set()
        await idle.send(post(query(), b"before"))
        (first,) = await idle.answers(1)
        release.clear()
        await busy.send(post(query(), b"held"))
        await eventually(lambda: len(upstream.requests) == 2)
        stopping = await begin_stop(lane, 10.0)
        # The idle keep-alive connection ends while the busy one is still held upstream.
        assert await at_eof(idle)
        assert not stopping.done()
        assert not busy.collector.messages
        release.set()
        (held,) = await busy.answers(1)
        await stopping
    await idle.close()
    await busy.close()
    assert first.header("Connection") is None  # before the stop: kept alive
    assert held.body == b"upstream:held"
    assert held.header("Connection") == "close"
    assert lane.cut_off == 0


async def test_new_connections_are_refused_once_stop_begins(
    start_sentry: StartSentry, held_upstream: tuple[RawUpstream, asyncio.Event]
) -> None:
    upstream, release = held_upstream
    running = await allowed_sentry(start_sentry, upstream.url)
    lane = lane_of(running)
    busy = await Client.connect(running.url)
    async with asyncio.timeout(10):
        await busy.send(post(query(), b"held"))
        await upstream.received.wait()
        stopping = await begin_stop(lane, 10.0)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", lane.port)
        release.set()
        (held,) = await busy.answers(1)
        await stopping
    await busy.close()
    assert held.status == 200


async def test_pipelined_requests_received_before_stop_are_answered_in_order_last_with_close(
    start_sentry: StartSentry, held_upstream: tuple[RawUpstream, asyncio.Event]
) -> None:
    upstream, release = held_upstream
    running = await allowed_sentry(start_sentry, upstream.url)
    lane = lane_of(running)
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        await client.send(post(query(), b"one") + post(query(), b"two"))
        await upstream.received.wait()
        stopping = await begin_stop(lane, 10.0)
        release.set()
        answers = await client.answers(2)
        assert await at_eof(client)
        await stopping
    await client.close()
    assert [a.body for a in answers] == [b"upstream:one", b"upstream:two"]
    assert [a.header("Connection") for a in answers] == [None, "close"]
    assert lane.forwarded == 2


async def test_request_whose_head_is_arriving_when_stop_begins_is_answered_then_closed(
    start_sentry: StartSentry, held_upstream: tuple[RawUpstream, asyncio.Event]
) -> None:
    upstream, release = held_upstream
    running = await allowed_sentry(start_sentry, upstream.url)
    lane = lane_of(running)
    release.set()
    client = await Client.connect(running.url)
    whole = post(query(), b"late")
    async with asyncio.timeout(10):
        await client.send(whole[:20])
        await eventually(lambda: any(c.building is not None for c in lane.connections))
        stopping = await begin_stop(lane, 10.0)
        await client.send(whole[20:])
        (answer,) = await client.answers(1)
        assert await at_eof(client)
        await stopping
    await client.close()
    assert answer.body == b"upstream:late"
    assert answer.header("Connection") == "close"


async def test_held_ping_is_answered_by_the_lane_with_status_1_and_its_upstream_closed(
    start_sentry: StartSentry, held_upstream: tuple[RawUpstream, asyncio.Event]
) -> None:
    upstream, _ = held_upstream
    running = await allowed_sentry(start_sentry, upstream.url)
    lane = lane_of(running)
    pinger = await Client.connect(running.url)
    async with asyncio.timeout(10):
        await pinger.send(post(query(cmd="Ping"), b""))
        await upstream.received.wait()
        # A drain timeout far beyond the test's bound: the Ping must not wait for it.
        await lane.stop(drain_s=600.0)
        (pong,) = await pinger.answers(1)
        assert await at_eof(pinger)
        await upstream.closed_by_peer.wait()
    await pinger.close()
    assert pong.status == 200
    assert pong.header("Content-Type") == "application/vnd.ms-sync.wbxml"
    assert pong.header("Connection") == "close"
    assert PingResponse.from_element(decode(pong.body)).status == PingStatus.EXPIRED
    assert lane.pings_ended == 1
    assert lane.cut_off == 0
    assert lane.upstream.idle_count == 0


async def test_pipelined_ping_that_starts_during_the_drain_is_answered_at_once(
    start_sentry: StartSentry, held_upstream: tuple[RawUpstream, asyncio.Event]
) -> None:
    upstream, release = held_upstream
    running = await allowed_sentry(start_sentry, upstream.url)
    lane = lane_of(running)
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        await client.send(post(query(), b"first") + post(query(cmd="Ping"), b""))
        await upstream.received.wait()
        stopping = await begin_stop(lane, 600.0)
        release.set()
        first, pong = await client.answers(2)
        await stopping
    await client.close()
    assert first.body == b"upstream:first"
    assert PingResponse.from_element(decode(pong.body)).status == PingStatus.EXPIRED
    assert pong.header("Connection") == "close"
    # The Ping never reached the upstream.
    assert [r.body for r in upstream.requests] == [b"first"]
    assert lane.pings_ended == 1


async def test_drain_deadline_aborts_what_is_left_and_closes_its_upstream_connection(
    start_sentry: StartSentry, held_upstream: tuple[RawUpstream, asyncio.Event]
) -> None:
    upstream, _ = held_upstream
    running = await allowed_sentry(start_sentry, upstream.url)
    lane = lane_of(running)
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        await client.send(post(query(cmd="Search"), b"never answered"))
        await upstream.received.wait()
        await lane.stop(drain_s=0.2)
        # Aborted: a reset, or an end without any answer byte.
        try:
            rest = await client.reader.read()
        except ConnectionResetError:
            rest = b""
        await upstream.closed_by_peer.wait()
    await client.close()
    assert rest == b""
    assert lane.cut_off == 1
    assert lane.connections == set()
    assert lane.upstream.closed
    assert lane.slow.closed


async def test_running_sentry_stop_drains_a_request_relayed_to_the_full_path(
    start_sentry: StartSentry, held_upstream: tuple[RawUpstream, asyncio.Event]
) -> None:
    upstream, release = held_upstream
    running: RunningSentry = await allowed_sentry(start_sentry, upstream.url)
    lane = lane_of(running)
    lane.fast = False  # every request through the full path (the aiohttp device app)
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        await client.send(post(query(), b"relayed"))
        await upstream.received.wait()
        stopping = asyncio.create_task(running.stop())
        await eventually(lambda: lane.draining)
        release.set()
        (answer,) = await client.answers(1)
        assert await at_eof(client)
        await stopping
    await client.close()
    assert answer.status == 200
    assert answer.body == b"upstream:relayed"
    assert answer.header("Connection") == "close"
    assert lane.forwarded == 0
    assert lane.cut_off == 0
