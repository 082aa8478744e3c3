"""The fast lane's HTTP/1.1 over real loopback sockets: framing, keep-alive, faults, smuggling.

A raw client writes exact bytes and reads answers with httptools; ``RawUpstream`` is a
scriptable upstream that answers each request with the bytes a test gives it, so chunked,
close-delimited, interim and vanishing answers can all be produced. Devices are made ALLOWED
by a decision applied directly, so their requests take the hot path, which each test checks
through ``Lane.forwarded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import httptools
import pytest

from scenarios.cli_sentry import RunningSentry
from sentry_sim.lane import Lane, start_lane
from tests.sentry_sim.fakes import EAS, FakeUem, FakeUpstream, StartSentry, decision, query
from uem_sim.contract import AccessState, Reason

HEAD_14 = b"MS-ASProtocolVersion: 14.1\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n"


# -- a raw HTTP/1.1 client ---------------------------------------------------------------------
@attrs.define
class Message:
    """One parsed HTTP message (request or answer)."""

    status: int = 0
    method: bytes = b""
    target: bytes = b""
    headers: list[tuple[bytes, bytes]] = attrs.field(factory=list)
    body: bytes = b""
    complete: bool = False

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.decode().lower() == name.lower():
                return value.decode()
        return None

    def names(self) -> set[str]:
        return {k.decode().lower() for k, _ in self.headers}


class Collector:
    """httptools callbacks collecting whole messages."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.parser: Any = None

    def on_message_begin(self) -> None:
        self.messages.append(Message())

    def on_url(self, url: bytes) -> None:
        self.messages[-1].target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.messages[-1].headers.append((name, value))

    def on_headers_complete(self) -> None:
        message = self.messages[-1]
        if isinstance(self.parser, httptools.HttpResponseParser):
            message.status = self.parser.get_status_code()
        else:
            message.method = self.parser.get_method()

    def on_body(self, data: bytes) -> None:
        self.messages[-1].body += data

    def on_message_complete(self) -> None:
        self.messages[-1].complete = True


class Client:
    """One device connection speaking raw bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.collector = Collector()
        self.parser = httptools.HttpResponseParser(self.collector)
        self.collector.parser = self.parser
        self.raw = b""

    @classmethod
    async def connect(cls, url: str) -> Client:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answers(self, count: int) -> list[Message]:
        """Read until ``count`` answers are complete (interim ones count) or the end."""
        done = self.collector.messages
        while sum(m.complete for m in done) < count:
            data = await self.reader.read(65536)
            if not data:
                break
            self.raw += data
            self.parser.feed_data(data)
        return [m for m in done if m.complete][:count]

    async def closed(self) -> bool:
        """Whether the lane ends the connection (reads to the end)."""
        rest = await self.reader.read()
        self.raw += rest
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def post(target: str, body: bytes = b"", extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return (
        b"POST "
        + target.encode()
        + b" HTTP/"
        + version
        + b"\r\nHost: device.example\r\n"
        + HEAD_14
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


# -- a scriptable upstream --------------------------------------------------------------------
#: (request, the connection's reader, its writer, request number on it) -> keep it open?
Answer = Callable[[Message, asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]


async def ok_answer(
    request: Message, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
) -> bool:
    body = b"upstream:" + request.body
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n"
        b"Connection: keep-alive, X-Hop\r\nX-Hop: must go\r\nX-Kept: yes\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    return True


@attrs.define(eq=False)
class RawUpstream:
    """Answers every request with ``answer`` (return False to close the connection)."""

    answer: Answer = ok_answer
    requests: list[Message] = attrs.field(factory=list)
    connections: int = 0
    server: asyncio.Server | None = None
    tls: ssl.SSLContext | None = None
    closed_by_peer: asyncio.Event = attrs.field(factory=asyncio.Event)
    received: asyncio.Event = attrs.field(factory=asyncio.Event)

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        collector = Collector()
        parser = httptools.HttpRequestParser(collector)
        collector.parser = parser
        served = 0
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    self.closed_by_peer.set()
                    return
                parser.feed_data(data)
                while served < sum(m.complete for m in collector.messages):
                    request = collector.messages[served]
                    served += 1
                    self.requests.append(request)
                    self.received.set()
                    if not await self.answer(request, reader, writer, served):
                        return
                    await writer.drain()
        except ConnectionError:
            self.closed_by_peer.set()
        finally:
            writer.close()


@pytest.fixture
async def raw_upstream() -> AsyncIterator[RawUpstream]:
    upstream = RawUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


async def allowed_sentry(
    start_sentry: StartSentry,
    upstream_url: str,
    *,
    user: str = "alice",
    device: str = "DEV1",
    **settings: Any,
) -> RunningSentry:
    """A gatekeeper in front of ``upstream_url`` whose record ``user/device`` is ALLOWED."""
    running: RunningSentry = await start_sentry(upstream_url=upstream_url, **settings)
    running.sentry.apply(decision(user, device, version=1), "test")
    return running


def lane_of(running: RunningSentry) -> Lane:
    assert running.lane is not None
    return running.lane


# -- the hot path -------------------------------------------------------------------------------
async def test_allowed_device_takes_the_hot_path_with_hop_by_hop_headers_dropped(
    start_sentry: StartSentry, raw_upstream: RawUpstream
) -> None:
    running = await allowed_sentry(start_sentry, raw_upstream.url)
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        extra = b"Connection: keep-alive, X-Device-Hop\r\nX-Device-Hop: 1\r\nTE: trailers\r\n"
        await client.send(post(query(), b"abc", extra))
        (answer,) = await client.answers(1)
    await client.close()
    assert answer.status == 200
    assert answer.body == b"upstream:abc"
    assert answer.header("X-Kept") == "yes"
    assert {"x-hop", "connection"}.isdisjoint(answer.names())
    seen = raw_upstream.requests[0]
    assert seen.target.decode() == query()
    assert {"x-device-hop", "te", "connection"}.isdisjoint(seen.names())
    assert seen.header("Host") == raw_upstream.url.removeprefix("http://")
    assert seen.header("MS-ASProtocolVersion") == "14.1"
    assert lane_of(running).forwarded == 1
    kinds = [e.kind for e in running.sentry.bus.recent(20)]
    assert kinds[-2:] == ["request_received", "request_forwarded"]
    record = running.sentry.devices.get("alice/dev1")
    assert record is not None
    assert record.requests == 1


async def test_chunked_request_body_is_streamed_upstream_whole(
    start_sentry: StartSentry, fake_upstream: FakeUpstream
) -> None:
    running = await allowed_sentry(start_sentry, fake_upstream.url)
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        head = (
            b"POST "
            + query(cmd="SendMail").encode()
            + b" HTTP/1.1\r\nHost: d\r\n"
            + HEAD_14
            + b"Transfer-Encoding: chunked\r\n\r\n"
        )
        await client.send(head + b"5\r\nhello\r\n")
        await asyncio.sleep(0.05)
        await client.send(b"6\r\n world\r\n0\r\n\r\n")
        (answer,) = await client.answers(1)
    await client.close()
    assert answer.status == 200
    assert answer.body == b"upstream:hello world"
    assert fake_upstream.seen[0]["body"] == b"hello world"
    assert lane_of(running).forwarded == 1


async def test_chunked_and_close_delimited_answers_reach_the_device_whole(
    start_sentry: StartSentry, raw_upstream: RawUpstream
) -> None:
    async def answer(
        request: Message, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> bool:
        if n == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"3\r\nefg\r\n0\r\n\r\n")
            return True
        # No length and no chunking: the body ends when the upstream closes.
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-close")
        return False

    raw_upstream.answer = answer
    running = await allowed_sentry(start_sentry, raw_upstream.url)
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        await client.send(post(query()))
        (first,) = await client.answers(1)
        await client.send(post(query()))
        both = await client.answers(2)
    await client.close()
    assert first.body == b"abcdefg"
    assert first.header("Transfer-Encoding") == "chunked"
    assert both[1].body == b"until-close"
    # Re-framed as chunked, so the device's connection survives the upstream's close.
    assert both[1].header("Transfer-Encoding") == "chunked"
    assert both[1].header("Connection") is None
    assert lane_of(running).forwarded == 2


async def test_pipelined_requests_are_answered_in_order_over_one_upstream_connection(
    start_sentry: StartSentry, raw_upstream: RawUpstream
) -> None:
    running = await allowed_sentry(start_sentry, raw_upstream.url)
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        await client.send(b"".join(post(query(), f"n{i}".encode()) for i in range(5)))
        answers = await client.answers(5)
        await client.send(post(query(), b"later"))
        (later,) = (await client.answers(6))[5:]
    await client.close()
    assert [a.body for a in answers] == [f"upstream:n{i}".encode() for i in range(5)]
    assert later.body == b"upstream:later"
    assert raw_upstream.connections == 1
    assert lane_of(running).forwarded == 6


async def test_expect_100_continue_is_answered_before_the_body_is_sent(
    start_sentry: StartSentry, raw_upstream: RawUpstream
) -> None:
    running = await allowed_sentry(start_sentry, raw_upstream.url)
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        head = post(query(), b"", b"Expect: 100-continue\r\n").replace(
            b"Content-Length: 0", b"Content-Length: 4"
        )
        await client.send(head)
        interim = await client.reader.readuntil(b"\r\n\r\n")
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        await client.send(b"body")
        (answer,) = await client.answers(1)
    await client.close()
    assert answer.body == b"upstream:body"
    assert "expect" not in raw_upstream.requests[0].names()
    assert lane_of(running).forwarded == 1


async def test_unknown_expectation_gets_417(
    start_sentry: StartSentry, raw_upstream: RawUpstream
) -> None:
    running = await allowed_sentry(start_sentry, raw_upstream.url)
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        await client.send(post(query(), b"", b"Expect: teapot\r\n"))
        (answer,) = await client.answers(1)
    await client.close()
    assert answer.status == 417
    assert raw_upstream.requests == []


async def test_a_held_long_poll_blocks_nothing_and_the_pool_grows(
    start_sentry: StartSentry, raw_upstream: RawUpstream
) -> None:
    release = asyncio.Event()

    async def answer(
        request: Message, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> bool:
        if b"Cmd=Ping" in request.target:
            await release.wait()
        return await ok_answer(request, reader, writer, n)

    raw_upstream.answer = answer
    running = await allowed_sentry(start_sentry, raw_upstream.url)
    pinger = await Client.connect(running.url)
    other = await Client.connect(running.url)
    async with asyncio.timeout(10):
        await pinger.send(post(query(cmd="Ping"), b"ping"))
        await asyncio.sleep(0.1)
        for i in range(3):
            await other.send(post(query(cmd="Sync"), f"s{i}".encode()))
            answers = await other.answers(i + 1)
            assert answers[i].body == f"upstream:s{i}".encode()
        release.set()
        (pong,) = await pinger.answers(1)
    await pinger.close()
    await other.close()
    assert pong.body == b"upstream:ping"
    assert raw_upstream.connections == 2
    assert lane_of(running).forwarded == 4


async def test_device_leaving_a_held_ping_closes_its_upstream_connection(
    start_sentry: StartSentry, raw_upstream: RawUpstream
) -> None:
    async def answer(
        request: Message, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> bool:
        # Hold the answer until the lane hangs up.
        if not await reader.read():
            raw_upstream.closed_by_peer.set()
        return False

    raw_upstream.answer = answer
    running = await allowed_sentry(start_sentry, raw_upstream.url)
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        await client.send(post(query(cmd="Ping")))
        await raw_upstream.received.wait()
        await client.close()
        await raw_upstream.closed_by_peer.wait()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_upstream_down_gets_503_with_retry_after_on_the_hot_path(
    start_sentry: StartSentry,
) -> None:
    running = await allowed_sentry(start_sentry, closed_port_url(), upstream_retry_after_s=17)
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        await client.send(post(query()))
        (answer,) = await client.answers(1)
        await client.send(post(query()))
        (_, again) = await client.answers(2)
    await client.close()
    assert answer.status == 503
    assert answer.header("Retry-After") == "17"
    assert again.status == 503  # the connection stays usable
    kinds = [e.kind for e in running.sentry.bus.recent(20)]
    assert "upstream_failed" in kinds


async def test_pooled_connection_closed_by_the_upstream_is_retried_once_on_a_fresh_one(
    start_sentry: StartSentry, raw_upstream: RawUpstream
) -> None:
    async def answer(
        request: Message, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
    ) -> bool:
        if n == 2:
            return False  # read the second request, then close without answering
        return await ok_answer(request, reader, writer, n)

    raw_upstream.answer = answer
    running = await allowed_sentry(start_sentry, raw_upstream.url)
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        await client.send(post(query(), b"one"))
        await client.answers(1)
        await client.send(post(query(), b"two"))
        (_, second) = await client.answers(2)
    await client.close()
    assert second.status == 200
    assert second.body == b"upstream:two"
    assert raw_upstream.connections == 2


async def test_http10_client_gets_a_closing_answer(
    start_sentry: StartSentry, raw_upstream: RawUpstream
) -> None:
    running = await allowed_sentry(start_sentry, raw_upstream.url)
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        await client.send(post(query(), b"old", version=b"1.0"))
        (answer,) = await client.answers(1)
        assert await client.closed()
    await client.close()
    assert answer.body == b"upstream:old"
    assert answer.header("Connection") == "close"


async def test_protocol_upgrade_offer_is_ignored(
    start_sentry: StartSentry, raw_upstream: RawUpstream
) -> None:
    running = await allowed_sentry(start_sentry, raw_upstream.url)
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        extra = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAA\r\n"
        await client.send(post(query(), b"", extra))
        (answer,) = await client.answers(1)
        await client.send(post(query(), b"next"))
        (_, after) = await client.answers(2)
    await client.close()
    assert answer.status == 200
    assert after.body == b"upstream:next"
    assert {"upgrade", "http2-settings"}.isdisjoint(raw_upstream.requests[0].names())


# -- malformed and hostile requests -----------------------------------------------------------
@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"POST /Microsoft-Server-ActiveSync HTTP/1.1\nHost: x\n\n", 400),
        (b"POST /x HTTP/1.1\r\nFoo : bar\r\n\r\n", 400),
        (b"POST /x HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (
            b"POST /x HTTP/1.1\r\n"
            + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 500) for i in range(80)),
            431,
        ),
        (b"POST /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n", 400),
    ],
)
async def test_malformed_requests_get_their_status_and_the_connection_closes(
    start_sentry: StartSentry, raw_upstream: RawUpstream, request_bytes: bytes, status: int
) -> None:
    running = await allowed_sentry(start_sentry, raw_upstream.url)
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        await client.send(request_bytes)
        (answer,) = await client.answers(1)
        assert await client.closed()
    await client.close()
    assert answer.status == status
    assert answer.header("Connection") == "close"
    assert raw_upstream.requests == []


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
        b"Content-Length: 4\r\nContent-Length: 5\r\n",
        b"Content-Length: 4\r\nContent-Length: 4\r\n",
        b"Transfer-Encoding: chunked, identity\r\n",
        b"Transfer-Encoding: gzip\r\n",
    ],
)
async def test_request_smuggling_framings_are_refused(
    start_sentry: StartSentry, raw_upstream: RawUpstream, framing: bytes
) -> None:
    running = await allowed_sentry(start_sentry, raw_upstream.url)
    client = await Client.connect(running.url)
    smuggled = post(query(cmd="Sync"))
    async with asyncio.timeout(10):
        head = b"POST " + query().encode() + b" HTTP/1.1\r\nHost: d\r\n" + HEAD_14 + framing
        await client.send(head + b"\r\n0\r\n\r\n" + smuggled)
        (answer,) = await client.answers(1)
        assert await client.closed()
    await client.close()
    assert answer.status == 400
    assert raw_upstream.requests == []


async def test_a_malformed_request_after_a_good_one_is_answered_in_order(
    start_sentry: StartSentry, raw_upstream: RawUpstream
) -> None:
    running = await allowed_sentry(start_sentry, raw_upstream.url)
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        await client.send(post(query(), b"fine") + b"NONSENSE\r\n\r\n")
        answers = await client.answers(2)
        assert await client.closed()
    await client.close()
    assert [a.status for a in answers] == [200, 400]
    assert answers[0].body == b"upstream:fine"


# -- the full path behind the lane ------------------------------------------------------------
def comparable(answer: Message) -> tuple[int, bytes, list[tuple[str, str]]]:
    """An answer without what differs between any two runs (date, server, framing)."""
    skip = {"date", "server", "connection", "keep-alive", "content-length", "transfer-encoding"}
    headers = sorted((k.decode().lower(), v.decode()) for k, v in answer.headers)
    return answer.status, answer.body, [h for h in headers if h[0] not in skip]


@pytest.mark.parametrize(
    ("verdict", "cmd", "version"),
    [
        ((AccessState.BLOCK, int(Reason.MANUAL)), "FolderSync", b"14.1"),
        ((AccessState.BLOCK, int(Reason.PER_MAILBOX_LIMIT)), "Sync", b"14.1"),
        ((AccessState.BLOCK, int(Reason.MANUAL)), "FolderSync", b"12.1"),
        ((AccessState.WIPE, 0), "Sync", b"16.1"),
    ],
)
async def test_blocked_and_unknown_devices_get_what_the_full_path_gives_without_the_lane(
    start_sentry: StartSentry,
    fake_uem: FakeUem,
    fake_upstream: FakeUpstream,
    verdict: tuple[AccessState, int],
    cmd: str,
    version: bytes,
) -> None:
    fake_uem.verdicts[("alice", "DEV1")] = verdict
    results = []
    for fast_lane in (True, False):
        running = await start_sentry(fast_lane=fast_lane)
        assert (running.lane is not None) is fast_lane
        client = await Client.connect(running.url)
        async with asyncio.timeout(10):
            request = post(query(cmd=cmd)).replace(b"14.1", version)
            await client.send(request)  # unknown: waits for the UEM, then its verdict
            await client.send(request)  # known: the cached verdict
            answers = await client.answers(2)
        await client.close()
        results.append([comparable(a) for a in answers])
        await running.stop()
    assert results[0] == results[1]
    assert fake_upstream.seen == []


async def test_unknown_device_goes_through_the_full_path_then_the_hot_path(
    start_sentry: StartSentry, fake_uem: FakeUem, fake_upstream: FakeUpstream
) -> None:
    running = await start_sentry()
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        for i in range(3):
            await client.send(post(query(), f"b{i}".encode()))
            answers = await client.answers(i + 1)
    await client.close()
    assert [a.body for a in answers] == [b"upstream:b0", b"upstream:b1", b"upstream:b2"]
    assert len(fake_uem.reports) == 1
    assert lane_of(running).forwarded == 2  # the first one waited for the UEM on the full path
    kinds = [e.kind for e in running.sentry.bus.recent(50)]
    assert kinds.count("device_first_seen") == 1
    assert kinds.count("request_forwarded") == 3


async def test_options_and_other_paths_take_the_full_path(
    start_sentry: StartSentry, fake_upstream: FakeUpstream
) -> None:
    running = await allowed_sentry(start_sentry, fake_upstream.url)
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        await client.send(b"OPTIONS " + EAS.encode() + b" HTTP/1.1\r\nHost: d\r\n\r\n")
        await client.send(b"GET /elsewhere HTTP/1.1\r\nHost: d\r\n\r\n")
        answers = await client.answers(2)
    await client.close()
    assert answers[0].status == 200
    assert answers[0].header("MS-ASProtocolVersions") is not None
    assert answers[1].status in (404, 501)
    assert lane_of(running).forwarded == 0


async def test_without_hot_path_events_the_lane_only_counts(
    start_sentry: StartSentry, raw_upstream: RawUpstream
) -> None:
    running = await allowed_sentry(start_sentry, raw_upstream.url, hot_path_events=False)
    before = running.sentry.bus.emitted
    client = await Client.connect(running.url)
    async with asyncio.timeout(10):
        await client.send(post(query()) * 3)
        await client.answers(3)
    await client.close()
    assert running.sentry.bus.emitted == before
    assert lane_of(running).forwarded == 3


# -- TLS to the upstream -----------------------------------------------------------------------
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_upstream_is_reached_over_tls_with_verification(
    start_sentry: StartSentry, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    upstream = RawUpstream(tls=server_tls)
    await upstream.start()
    running = await allowed_sentry(start_sentry, upstream.url)
    client_tls = ssl.create_default_context(cafile=str(cert))
    lane = await start_lane(
        running.sentry,
        upstream_url=upstream.url,
        full_path_url=running.full_path_url,
        host="127.0.0.1",
        port=0,
        upstream_tls=client_tls,
    )
    untrusted = await start_lane(
        running.sentry,
        upstream_url=upstream.url,
        full_path_url=running.full_path_url,
        host="127.0.0.1",
        port=0,
    )
    try:
        async with asyncio.timeout(10):
            client = await Client.connect(f"http://127.0.0.1:{lane.port}")
            await client.send(post(query(), b"secret"))
            (answer,) = await client.answers(1)
            await client.close()
            doubter = await Client.connect(f"http://127.0.0.1:{untrusted.port}")
            await doubter.send(post(query(), b"secret"))
            (refused,) = await doubter.answers(1)
            await doubter.close()
    finally:
        await lane.stop()
        await untrusted.stop()
        await upstream.stop()
    assert answer.body == b"upstream:secret"
    assert lane.forwarded == 1
    # The upstream's certificate is not trusted by default: no answer, so 503.
    assert refused.status == 503
