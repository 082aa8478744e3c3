"""The fast lane: the gatekeeper's device port as an ``asyncio.Protocol`` server over httptools.

Responsibility: accept device connections, parse requests with httptools, and send each one
either straight to the upstream EAS server (the hot path: a cached ALLOWED record, see
``hot_path``) or to the gatekeeper's full path, the aiohttp device app listening on an
internal loopback port, which then does exactly what it does without the lane (first access,
waits, denials, Provision, OPTIONS, errors). Answers stream back to the device; the lane keeps
HTTP/1.1 right on both hops. It must not decide access beyond ``HotPath.admit`` and must not
answer anything the full path would answer differently, except HTTP-level faults it catches
first (malformed requests 400, heads too large 414/431, unknown expectations 417, upstream
down 503 + Retry-After, an upstream answer that is not HTTP 502).

Why a proxy in front of the aiohttp app rather than handing the socket over: an aiohttp
server cannot adopt a connection whose bytes another parser has already consumed, and a
connection must stay with the lane anyway so the next keep-alive request can take the hot
path. Proxying to the full path over pooled loopback connections costs ~50 us on requests
that are rare (the first of a device, denials, Provision) and keeps the full path's code,
tests and events untouched; the internal port binds 127.0.0.1 and serves the same app with
all its checks, so reaching it directly bypasses nothing.

Theory of operation:
- Per device connection, requests are parsed as bytes arrive; pipelined requests queue and
  are answered in order (reading pauses past ``MAX_PIPELINE`` queued requests or
  ``MAX_BUFFERED`` unsent body bytes). The request at the head of the queue is routed when it
  becomes active: ``100 Continue`` is sent then, if asked for (the lane answers Expect itself).
- Writes are corked: everything a ``data_received`` produces for the other side goes out in
  one ``write`` at its end, so a small request is one syscall each way.
- Hop-by-hop headers are dropped both ways (``wire``); Content-Length passes through, chunked
  bodies are re-chunked, an answer without framing is chunked to an HTTP/1.1 device (or ends
  with the connection for HTTP/1.0). A device connection closes after an answer that had to
  be close-delimited, after ``Connection: close``, and when an answer came before the whole
  request body did.
- Upstream failures: no connection -> 503 with Retry-After (``upstream_retry_after_s``, as the
  full path); a pooled connection lost before any answer byte is retried once on a fresh one
  when every byte sent is still held (requests up to ``RETAIN_LIMIT``); a loss in the middle
  of an answer aborts the device connection, since the device cannot be told otherwise.
- uem policy mode: the hot path swaps the policy key (``Verdict.policy_key``) and holds back
  HTTP 449 and small HTTP 200 answers like ``handlers.DEMAND_INTERCEPT``; a demand hands the
  whole request (kept in memory) to the full path, which provisions with the upstream and
  replays it; the device sees only that answer.
- Events: with ``hot_path_events`` on (the default), a hot-path request emits
  ``RequestReceived`` and ``RequestForwarded`` (and ``UpstreamFailed``) like the full path;
  while the metrics are the bus's only subscriber they are deferred (``EventBus.defer``: kept
  unbuilt in the history, counted per kind), which every reader sees the same. Off, the hot
  path emits nothing and only counts (``Lane.forwarded``, and ``Lane.unannounced`` as a tally
  on the bus, so the metrics still count the requests). Nothing is logged on the hot path.
- An idle sweep closes device connections idle for ``KEEPALIVE_S`` and pooled upstream ones
  idle for 30 s.
- Stopping drains (``Lane.stop``): the listener closes first; idle keep-alive connections close
  at once; a connection with a request in flight gets it answered in full (the answer's last
  byte, chunked or streamed bodies too), its last request received marked to close after its
  answer (``Connection: close`` when its head is not written yet, RFC 9112 9.6: a device that
  pipelined more learns they were not processed); held hot-path Pings are answered at once by
  the lane with Ping Status 1 (``end_held_ping``); whatever is left at the drain deadline is
  aborted, then the pools close. Not stopping, this costs the hot path one attribute check
  per request (``Lane.draining``, read in ``Exchange.start``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections import deque
from typing import Final, cast
from urllib.parse import urlsplit

import httptools

from activesync.commands.ping import PingResponse
from activesync.wbxml.encoder import encode
from sentry_sim.events import (
    RequestForwarded,
    RequestReceived,
    UpstreamFailed,
    next_request_id,
)
from sentry_sim.gate import PolicyMode
from sentry_sim.lane.hot_path import KEEP, UEM_BODY_LIMIT, ConnectionMemo, HotPath, Verdict
from sentry_sim.lane.pool import Pool, UpstreamConnection
from sentry_sim.lane.wire import (
    CONTINUE,
    CRLF,
    LAST_CHUNK,
    REQ_AUTHORIZATION,
    REQ_CHUNKED,
    REQ_CONNECTION,
    REQ_EXPECT,
    REQ_HOST,
    REQ_LENGTH,
    REQ_POLICY_KEY,
    REQ_VERSION,
    REQUEST_FIELDS,
    answer,
    chunk,
    names_only_hop_by_hop,
    status_line,
    without_named,
)
from sentry_sim.service import Sentry
from sentry_sim.tls import REASON_HEADER, ClientCheck, Peer
from sentry_sim.upstream_policy import HTTP_RETRY_WITH_PROVISION, MAX_DEMAND_BODY, is_demand

#: Longest request target (aiohttp's and nginx's default line limit is about 8 KiB).
MAX_TARGET: Final = 8190
#: Longest header field value, and the whole request head.
MAX_FIELD: Final = 8190
MAX_HEAD: Final = 32 * 1024
#: Requests queued on one connection before reading pauses.
MAX_PIPELINE: Final = 16
#: Body bytes held for requests not yet sent upstream before reading pauses.
MAX_BUFFERED: Final = 256 * 1024
#: Request bytes kept after sending, for a retry or a replay (a uem-mode body plus its head).
RETAIN_LIMIT: Final = UEM_BODY_LIMIT + MAX_HEAD
#: Largest answer body held back to look for a provisioning demand (as the forwarder's).
HELD_LIMIT: Final = 64 * 1024
#: Seconds an idle device connection is kept (aiohttp's default keep-alive timeout).
KEEPALIVE_S: Final = 75.0
#: Seconds between idle sweeps.
SWEEP_S: Final = 5.0
#: Seconds ``Lane.stop`` waits for requests in flight (the aiohttp path's shutdown timeout).
DRAIN_S: Final = 5.0

#: The canonical command name of a Ping (``request_line.Line.command``).
_PING: Final = "Ping"
_PING_EXPIRED_BODY: Final = encode(PingResponse.expired().to_element())
#: MS-ASCMD 2.2.3.177.11, Ping Status 1: "the heartbeat interval expired before any changes
#: occurred"; the device sends its next Ping (here on a new connection: this one closes).
PING_EXPIRED: Final = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(_PING_EXPIRED_BODY)
) + _PING_EXPIRED_BODY

logger = logging.getLogger(__name__)

_NO_BODY_STATUSES: Final = frozenset({204, 304})
_UNAVAILABLE: Final = "upstream EAS server unavailable"

# Bits of DeviceConnection.pauses: why reading the device is paused.
_PAUSE_UPSTREAM: Final = 1
_PAUSE_QUEUE: Final = 2


class _HeadTooLarge(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Exchange:
    """One device request and its answer, from parsing to the last byte written back."""

    __slots__ = (
        "authorization",
        "chunk_out",
        "chunked",
        "close_after",
        "conn",
        "connection",
        "content_length",
        "dead",
        "device",
        "done",
        "expect",
        "head_len",
        "head_sent",
        "held",
        "held_size",
        "host",
        "http11",
        "interim",
        "keep_alive",
        "method",
        "named",
        "no_body",
        "pieces",
        "policy_key",
        "pool",
        "queued",
        "req_done",
        "request_id",
        "retried",
        "reused",
        "sent",
        "sent_size",
        "status",
        "target",
        "until_close",
        "up_keep_alive",
        "up_out",
        "up_out_size",
        "verdict",
        "version",
    )

    def __init__(self, device: DeviceConnection) -> None:
        self.device = device
        self.target = b""
        #: The request's end-to-end fields but Host and X-MS-PolicyKey, as head pieces for the
        #: next hop (``wire.REQUEST_FIELDS``).
        self.pieces: list[bytes] = []
        self.host: bytes | None = None
        #: A Connection field names end-to-end fields (they must go too): its values.
        self.named = False
        self.connection: list[bytes] = []
        self.method = b""
        self.http11 = True
        self.keep_alive = True
        self.content_length = 0
        self.chunked = False
        self.expect: bytes | None = None
        self.version: bytes | None = None
        self.authorization: bytes | None = None
        self.policy_key: bytes | None = None
        self.queued = False
        self.req_done = False
        #: Bytes for the upstream not written yet (head, body, chunk frames).
        self.up_out: list[bytes] = []
        self.up_out_size = 0
        #: What was written upstream, while it fits ``RETAIN_LIMIT`` (None once it does not).
        self.sent: list[bytes] | None = []
        self.sent_size = 0
        self.head_len = 0
        self.verdict: Verdict | None = None
        self.pool: Pool | None = None
        self.conn: UpstreamConnection | None = None
        self.reused = False
        self.retried = False
        self.request_id = ""
        self.head_sent = False
        self.status = 0
        self.up_keep_alive = False
        self.chunk_out = False
        self.until_close = False
        self.close_after = False
        self.no_body = False
        self.interim = False
        self.held: list[bytes] | None = None
        self.held_size = 0
        self.done = False
        self.dead = False

    # -- the request -----------------------------------------------------------------------
    def start(self) -> None:
        """Route the request (it is now at the head of its connection's queue)."""
        device = self.device
        lane = device.lane
        if self.expect is not None:
            if self.expect.strip().lower() != b"100-continue":
                # RFC 9110 10.1.1: an expectation the server cannot meet gets 417.
                self.answer_here(417, "only Expect: 100-continue is supported")
                return
            if self.http11 and not self.req_done:
                device.out.append(CONTINUE)
        peer = device.peer
        if peer is not None:
            # Mutual TLS: a certificate for another user or device is refused before any
            # verdict; requests whose identity the lane cannot read go to the full path with
            # the connection's identity (``_full_path_head``), which checks them there.
            line = device.memo.read(self.target, self.version, self.authorization)
            refusal = None if line is None else peer.refuse(line.key, line.command)
            if refusal is not None:
                self.answer_here(403, refusal, ((REASON_HEADER, refusal),))
                return
        verdict = None
        now = lane.clock.now()
        if lane.fast:
            memo = device.memo
            verdict = lane.hot.admit(
                self.method,
                memo.read(self.target, self.version, self.authorization),
                self.policy_key,
                None if self.chunked else self.content_length,
                memo,
                now,
            )
        if verdict is not None:
            self.verdict = verdict
            pool = lane.upstream
            head = self._head(
                pool.prefix + self.target if pool.prefix else self.target,
                pool.host_header,
                verdict.policy_key,
            )
            if lane.events:
                self.request_id = request_id = next_request_id()
                version = (self.version or b"").decode("latin-1")
                bus = lane.bus
                if bus.quiet:
                    # Only the metrics listen: the event is kept unbuilt (EventBus.defer).
                    bus.defer(
                        (RequestReceived, now, request_id, verdict.key, verdict.command, version)
                    )
                else:
                    bus.emit(
                        RequestReceived(
                            at=now,
                            request_id=request_id,
                            record=verdict.key,
                            command=verdict.command,
                            protocol_version=version,
                        )
                    )
            if lane.draining and verdict.command == _PING:
                # Stopping: a Ping would be held for its heartbeat (up to ~59 minutes).
                self.end_held_ping()
                return
        else:
            pool = lane.slow
            head = self._full_path_head()
        self.pool = pool
        self.head_len = len(head)
        self.up_out.insert(0, head)
        self.up_out_size += len(head)
        pool.acquire(self)

    def _head(self, target: bytes, host: bytes | None, policy_key: bytes) -> bytes:
        """The request head for the next hop (``policy_key`` as in ``Verdict``)."""
        pieces = without_named(self.pieces, self.connection) if self.named else self.pieces
        key = self.policy_key if policy_key is KEEP else policy_key
        if host is None:
            first: tuple[bytes, ...] = (self.method, b" ", target, b" HTTP/1.1\r\n")
        else:
            first = (self.method, b" ", target, b" HTTP/1.1\r\nHost: ", host, CRLF)
        last: tuple[bytes, ...] = ((b"X-MS-PolicyKey: ", key, CRLF) if key else ()) + (
            (b"Transfer-Encoding: chunked\r\n", CRLF) if self.chunked else (CRLF,)
        )
        # One join over the pieces with the first line and the framing put around them, then
        # the pieces as they were (a hand-over builds a second head from them).
        pieces[0:0] = first
        pieces += last
        head = b"".join(pieces)
        del pieces[: len(first)]
        del pieces[len(pieces) - len(last) :]
        return head

    def _full_path_head(self) -> bytes:
        """The head for the full path: as the device sent it, plus the connection's client
        identity when mutual TLS is on (``sentry_sim.tls``: the full path checks it)."""
        head = self._head(self.target, self.host, KEEP)
        peer = self.device.peer
        return head if peer is None else head[:-2] + peer.handoff + CRLF

    def request_body(self, data: bytes) -> None:
        if self.done:
            return  # answered early; the connection closes after the answer
        if self.chunked:
            self.up_out += chunk(data)
        else:
            self.up_out.append(data)
        self.up_out_size += len(data)
        if self.conn is None and self.up_out_size > MAX_BUFFERED:
            self.device.set_pause(_PAUSE_QUEUE, True)

    def request_complete(self) -> None:
        self.req_done = True
        if self.chunked and not self.done:
            self.up_out.append(LAST_CHUNK)

    def flush_up(self) -> None:
        """Write what is pending for the upstream in one go."""
        conn = self.conn
        out = self.up_out
        if conn is None or not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self.up_out_size = 0
        sent = self.sent
        if sent is not None:
            self.sent_size += len(data)
            if self.sent_size > RETAIN_LIMIT:
                self.sent = None
            else:
                sent.append(data)
        conn.write(data)
        if self.device.pauses & _PAUSE_QUEUE:
            self.device.unpause_queue()

    def answer_here(
        self, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        """Answer the device without the upstream, and end the exchange."""
        self.close_after = self.close_after or not self.req_done or not self.keep_alive
        self.device.out.append(answer(status, text, close=self.close_after, headers=headers))
        self.done = True
        self.device.exchange_finished(self)

    def is_held_ping(self) -> bool:
        """A hot-path Ping waiting for the upstream's answer (none of it has come back)."""
        verdict = self.verdict
        return (
            verdict is not None
            and verdict.command == _PING
            and not self.done
            and not self.head_sent
            and self.held is None
        )

    def end_held_ping(self) -> None:
        """The lane is stopping: answer this hot-path Ping now, as the upstream answers a
        heartbeat that expired with no changes (Ping Status 1), and close the connection.

        The Ping stays in flight upstream for its whole heartbeat (up to ~59 minutes), which
        no drain can wait for, and cutting it off makes the device count a network failure
        (and, on many phones, shorten its heartbeat). Status 1 is an answer the device
        expects at any time: it sends its next Ping, to a gatekeeper that is up. It tells the
        device nothing about its mailbox (a change it has not seen shows on that next Ping),
        and only requests of an ALLOWED record (the hot path) get it. Requests a device
        pipelined behind its Ping are not processed, as the answer's close option says."""
        # Dead: a connection still being opened for it goes back to the pool (Pool._opened).
        self.dead = True
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.close()  # the upstream's Ping ends with its connection
        self.up_out.clear()
        self.up_out_size = 0
        self.close_after = True
        self.device.out.append(PING_EXPIRED)
        self.done = True
        self.device.lane.pings_ended += 1
        self.device.exchange_finished(self)

    # -- Receiver: the upstream's side -----------------------------------------------------
    def attached(self, conn: UpstreamConnection, reused: bool) -> None:
        self.conn = conn
        self.reused = reused
        device = self.device
        if device.write_paused and conn.transport is not None:
            conn.transport.pause_reading()
        if not device.feeding:
            self.flush_up()

    def connect_failed(self, error: str) -> None:
        if self.dead:
            return
        self.upstream_failed(error)
        self.device.flush()

    def upstream_head(self, conn: UpstreamConnection) -> None:
        status = conn.status
        if status < 200:
            # Interim answers (the lane answered Expect itself) are not passed on.
            self.interim = True
            return
        self.interim = False
        self.status = status
        self.up_keep_alive = conn.keep_alive
        head_request = self.method == b"HEAD"
        self.no_body = head_request or status in _NO_BODY_STATUSES
        if self.verdict is not None and self.device.lane.uem and _maybe_demand(conn):
            self.held = []
            return
        self._write_head(conn)
        if head_request:
            # httptools cannot know the request was HEAD and would wait for a body.
            self._finish(conn, reusable=False)

    def _write_head(self, conn: UpstreamConnection) -> None:
        if not self.no_body and conn.length < 0:
            # No Content-Length: chunked, or delimited by the upstream closing.
            if self.http11:
                self.chunk_out = True
            else:
                self.close_after = True
            self.until_close = not conn.chunked
        if not self.req_done or not self.keep_alive:
            self.close_after = True
        close = self.close_after
        pieces = without_named(conn.pieces, conn.connection) if conn.named else conn.pieces
        if self.chunk_out:
            pieces.append(b"Transfer-Encoding: chunked\r\n")
        if close:
            pieces.append(b"Connection: close\r\n")
        elif not self.http11:
            pieces.append(b"Connection: keep-alive\r\n")
        pieces.append(CRLF)
        pieces.insert(0, status_line(self.status, conn.reason))
        head = b"".join(pieces)
        self.device.out.append(head)
        self.head_sent = True
        verdict = self.verdict
        if verdict is not None:
            lane = self.device.lane
            lane.forwarded += 1
            if lane.events:
                bus = lane.bus
                if bus.quiet:
                    bus.defer(
                        (
                            RequestForwarded,
                            lane.clock.now(),
                            self.request_id,
                            verdict.key,
                            verdict.command,
                            self.status,
                        )
                    )
                else:
                    bus.emit(
                        RequestForwarded(
                            at=lane.clock.now(),
                            request_id=self.request_id,
                            record=verdict.key,
                            command=verdict.command,
                            upstream_status=self.status,
                        )
                    )
            else:
                lane.unannounced += 1

    def upstream_body(self, data: bytes) -> None:
        if self.interim or self.done:
            return
        held = self.held
        if held is not None:
            held.append(data)
            self.held_size += len(data)
            if self.held_size > HELD_LIMIT and self.conn is not None:
                # Too big to be a demand: let it stream after all, from the bytes read.
                self.held = None
                self._write_head(self.conn)
                self._relay(b"".join(held))
            return
        if self.chunk_out:
            self.device.out += chunk(data)
        else:
            self.device.out.append(data)

    def _relay(self, data: bytes) -> None:
        if not data:
            return
        if self.chunk_out:
            self.device.out += chunk(data)
        else:
            self.device.out.append(data)

    def upstream_done(self, conn: UpstreamConnection) -> None:
        if self.interim:
            self.interim = False
            return
        if self.done:
            return
        held = self.held
        if held is not None:
            self.held = None
            body = b"".join(held)
            if is_demand(self.status, body):
                self._hand_over(conn)
                return
            self._write_head(conn)
            self._relay(body)
        if self.chunk_out:
            self.device.out.append(LAST_CHUNK)
        self._finish(conn, reusable=self.up_keep_alive and self.req_done and not self.up_out)

    def upstream_lost(self, conn: UpstreamConnection, error: str) -> None:
        if self.conn is not conn or self.done:
            return
        self.conn = None
        if self.head_sent:
            if self.until_close:
                # The answer was delimited by the upstream closing: it is complete.
                if self.chunk_out:
                    self.device.out.append(LAST_CHUNK)
                self._finish(None, reusable=False)
            else:
                self.done = True
                self.device.abort()
            return
        if self.held is None and self.reused and not self.retried and self.sent is not None:
            # The keep-alive race: the upstream closed a pooled connection as we used it. Send
            # everything again on a fresh one (only when no answer byte came back).
            self.retried = True
            self.up_out[:0] = self.sent
            self.up_out_size += self.sent_size
            self.sent = []
            self.sent_size = 0
            assert self.pool is not None
            self.pool.open(self)
            return
        self.upstream_failed(error)

    def upstream_write_paused(self, paused: bool) -> None:
        self.device.set_pause(_PAUSE_UPSTREAM, paused)

    def flush_device(self) -> None:
        self.device.flush()

    def upstream_failed(self, error: str) -> None:
        """No answer could be had: 503 with Retry-After, as the full path answers."""
        if self.head_sent:
            self.done = True
            self.device.abort()
            return
        lane = self.device.lane
        verdict = self.verdict
        if verdict is not None and lane.events:
            lane.emit(
                UpstreamFailed(
                    at=lane.clock.now(),
                    request_id=self.request_id,
                    record=verdict.key,
                    command=verdict.command,
                    error=error,
                )
            )
        self.conn = None
        self.answer_here(503, _UNAVAILABLE, (("Retry-After", lane.retry_after),))

    def _finish(self, conn: UpstreamConnection | None, *, reusable: bool) -> None:
        self.done = True
        self.conn = None
        if conn is not None:
            if reusable and self.pool is not None:
                if self.device.write_paused and conn.transport is not None:
                    conn.transport.resume_reading()
                self.pool.release(conn)
            else:
                conn.close()
        self.device.exchange_finished(self)

    def _hand_over(self, conn: UpstreamConnection) -> None:
        """uem mode: the upstream demanded provisioning. The full path gets the request as the
        device sent it, provisions with the upstream on its behalf and replays it."""
        lane = self.device.lane
        if self.up_keep_alive and self.req_done and not self.up_out and self.pool is not None:
            self.pool.release(conn)
        else:
            conn.close()
        self.conn = None
        sent = self.sent
        if sent is None:
            self.upstream_failed("the request is too large to hand to the full path")
            return
        body = b"".join(sent)[self.head_len :]
        self.verdict = None
        self.status = 0
        self.no_body = False
        head = self._full_path_head()
        self.sent = []
        self.sent_size = 0
        self.head_len = len(head)
        self.up_out[:0] = [head, body]
        self.up_out_size += len(head) + len(body)
        self.reused = False
        self.retried = False
        self.pool = lane.slow
        lane.slow.acquire(self)

    def abandon(self) -> None:
        """The device went away: drop the upstream connection (an answer is in flight)."""
        self.dead = True
        self.done = True
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.abort()


def _maybe_demand(conn: UpstreamConnection) -> bool:
    """handlers.DEMAND_INTERCEPT: 449 always; 200 only with a small body of known length and
    no Content-Encoding (``upstream_policy.MAX_DEMAND_BODY``)."""
    status = conn.status
    if status == HTTP_RETRY_WITH_PROVISION:
        return True
    return status == 200 and not conn.encoded and 0 < conn.length <= MAX_DEMAND_BODY


class DeviceConnection(asyncio.Protocol):
    """One device's connection: parses its requests and answers them in order."""

    __slots__ = (
        "building",
        "closing",
        "failed",
        "feeding",
        "head_size",
        "lane",
        "last_active",
        "memo",
        "out",
        "parser",
        "pauses",
        "peer",
        "queue",
        "transport",
        "write_paused",
    )

    def __init__(self, lane: Lane) -> None:
        self.lane = lane
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Exchange] = deque()
        self.building: Exchange | None = None
        self.head_size = 0
        self.out: list[bytes] = []
        self.feeding = False
        self.pauses = 0
        self.write_paused = False
        self.closing = False
        #: An answer to send once the queue drains, after which the connection closes.
        self.failed: bytes | None = None
        self.last_active = 0.0
        self.memo = ConnectionMemo()
        #: Mutual TLS on: the client identity of this connection (``sentry_sim.tls``).
        self.peer: Peer | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.lane.connections.add(self)
        if self.lane.draining:
            # Accepted (or its TLS handshake finished) after the lane began to stop.
            self.closing = True
            self.transport.close()
            return
        if self.lane.peers is not None:
            # Called once the TLS handshake is done: the verified certificate is known.
            self.peer = self.lane.peers.peer(transport)
        self.last_active = self.lane.loop.time()

    def data_received(self, data: bytes) -> None:
        if self.failed is not None or self.closing:
            return
        self.last_active = self.lane.loop.time()
        self.feeding = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgrade_refused(data, exc)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if not isinstance(cause, _HeadTooLarge):
                raise
            self.fail(cause.status, cause.message)
        except httptools.HttpParserError as exc:
            self.fail(400, f"malformed HTTP request: {exc}")
        finally:
            self.feeding = False
        self.flush()

    def _upgrade_refused(self, data: bytes, exc: httptools.HttpParserUpgrade) -> None:
        # A request offering to switch protocols (h2c...): the lane speaks HTTP/1.1 only, so
        # it ignores the offer (RFC 9110 7.8) and goes on parsing with a fresh parser.
        self.parser = httptools.HttpRequestParser(self)
        offset = exc.args[0] if exc.args and isinstance(exc.args[0], int) else len(data)
        if offset < len(data):
            self.data_received(data[offset:])

    def connection_lost(self, exc: Exception | None) -> None:
        lane = self.lane
        lane.connections.discard(self)
        queue = self.queue
        if queue and not self.closing:
            self._left_mid_request(queue[-1])
        for exchange in queue:
            exchange.abandon()
        queue.clear()
        self.transport = None
        if lane.draining and not lane.connections:
            lane.drained.set()

    def _left_mid_request(self, last: Exchange) -> None:
        """The device closed the connection by itself with requests in flight: normal
        traffic (a phone losing its network), counted and logged at DEBUG, no traceback. A
        request whose body was still arriving has had its head and the body bytes received so
        far sent on; ``abandon`` aborts that upstream connection, so the upstream sees a
        short body and a reset, never a complete request."""
        if last.req_done or last.done:
            return  # every body was whole: the device gave up waiting for an answer
        lane = self.lane
        lane.clients_gone += 1
        if logger.isEnabledFor(logging.DEBUG):
            peer = None if self.transport is None else self.transport.get_extra_info("peername")
            size = "chunked" if last.chunked else f"Content-Length {last.content_length}"
            logger.debug(
                "device %s left while its request body was being received (%s): its "
                "upstream connection was dropped",
                peer[0] if isinstance(peer, tuple) else "?",
                size,
            )

    def pause_writing(self) -> None:
        self.write_paused = True
        conn = self.queue[0].conn if self.queue else None
        if conn is not None and conn.transport is not None:
            conn.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        conn = self.queue[0].conn if self.queue else None
        if conn is not None and conn.transport is not None:
            conn.transport.resume_reading()

    # -- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.building = Exchange(self)
        self.head_size = 0

    def on_url(self, url: bytes) -> None:
        building = self.building
        assert building is not None
        building.target += url
        if len(building.target) > MAX_TARGET:
            raise _HeadTooLarge(414, f"request target longer than {MAX_TARGET} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        if self.head_size > MAX_HEAD or len(value) > MAX_FIELD:
            raise _HeadTooLarge(
                431,
                f"request header fields too large (at most {MAX_FIELD} bytes a field, "
                f"{MAX_HEAD} in all)",
            )
        building = self.building
        assert building is not None
        code = REQUEST_FIELDS.get(name.lower())
        if code is None:
            building.pieces += (name, b": ", value, CRLF)
        elif code == REQ_VERSION:
            building.version = value
            building.pieces += (name, b": ", value, CRLF)
        elif code == REQ_LENGTH:
            building.content_length = int(value)
            building.pieces += (name, b": ", value, CRLF)
        elif code == REQ_POLICY_KEY:
            building.policy_key = value
        elif code == REQ_AUTHORIZATION:
            building.authorization = value
            building.pieces += (name, b": ", value, CRLF)
        elif code == REQ_HOST:
            building.host = value
        elif code == REQ_CHUNKED:
            # httptools refuses any Transfer-Encoding that does not end in chunked.
            building.chunked = True
        elif code == REQ_CONNECTION:
            if not names_only_hop_by_hop(value):
                building.named = True
                building.connection.append(value)
        elif code == REQ_EXPECT:
            building.expect = value

    def on_headers_complete(self) -> None:
        building = self.building
        assert building is not None
        parser = self.parser
        building.method = parser.get_method()
        building.http11 = parser.get_http_version() == "1.1"
        building.keep_alive = bool(parser.should_keep_alive())
        if building.method == b"CONNECT":
            self.fail(400, "CONNECT is not supported")
            return
        building.queued = True
        queue = self.queue
        queue.append(building)
        if len(queue) == 1:
            building.start()
        elif self.queue_heavy():
            self.set_pause(_PAUSE_QUEUE, True)

    def on_body(self, data: bytes) -> None:
        building = self.building
        if building is not None and building.queued:
            building.request_body(data)

    def on_message_complete(self) -> None:
        building = self.building
        if building is not None and building.queued:
            building.request_complete()

    # -- use -------------------------------------------------------------------------------
    def queue_heavy(self) -> bool:
        if len(self.queue) > MAX_PIPELINE:
            return True
        return sum(e.up_out_size for e in self.queue if e.conn is None) > MAX_BUFFERED

    def unpause_queue(self) -> None:
        if not self.queue_heavy():
            self.set_pause(_PAUSE_QUEUE, False)

    def set_pause(self, bit: int, on: bool) -> None:
        before = self.pauses
        after = before | bit if on else before & ~bit
        self.pauses = after
        transport = self.transport
        if transport is None or bool(before) == bool(after):
            return
        if after:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def flush(self) -> None:
        out = self.out
        transport = self.transport
        if out:
            if transport is not None:
                transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
        if self.queue:
            self.queue[0].flush_up()
        if self.closing and transport is not None:
            transport.close()

    def fail(self, status: int, message: str) -> None:
        """A request that cannot be parsed: answer ``status`` once earlier requests are
        answered, then close (nothing more on this connection can be trusted)."""
        building = self.building
        if building is not None and building.queued and not building.req_done:
            # Its body was malformed: it cannot be completed upstream.
            if building.head_sent or building.conn is not None:
                self.abort()
                return
            self.queue.remove(building)
            building.abandon()
        self.failed = answer(status, message, close=True)
        if self.transport is not None:
            self.set_pause(_PAUSE_QUEUE, True)
        if not self.queue:
            self.out.append(self.failed)
            self.closing = True

    def exchange_finished(self, exchange: Exchange) -> None:
        queue = self.queue
        if queue and queue[0] is exchange:
            queue.popleft()
        if exchange.close_after:
            self.closing = True
            return
        if self.failed is not None:
            if not queue:
                self.out.append(self.failed)
                self.closing = True
            return
        if self.pauses:
            self.set_pause(_PAUSE_UPSTREAM, False)
            self.unpause_queue()
        if queue:
            queue[0].start()

    def abort(self) -> None:
        """End the connection at once (an answer cannot be completed)."""
        self.closing = True
        self.out.clear()
        if self.transport is not None:
            self.transport.abort()

    def drain(self) -> None:
        """The lane is stopping: close now when idle; otherwise answer every request
        received (or being received) and close after the last one's answer."""
        transport = self.transport
        if transport is None or self.closing:
            return  # closing already
        building = self.building
        queue = self.queue
        if building is not None and not building.done:
            last: Exchange | None = building
        else:
            last = queue[-1] if queue else None
        if last is None:
            # Idle keep-alive: a request the device sends now finds the connection closed,
            # as with any server's idle close (RFC 9112 9.3.1); none was received.
            self.closing = True
            transport.close()
            return
        # RFC 9112 9.6: "Connection: close" on that answer (unless its head is already out:
        # then the connection just closes after it); requests the device pipelines after it
        # are not processed, which the close option tells the device.
        last.close_after = True
        if queue and queue[0].is_held_ping():
            queue[0].end_held_ping()
            self.flush()

    def idle_for(self, now: float) -> float:
        """Seconds without a byte while nothing is in flight (0 while something is)."""
        return 0.0 if self.queue else now - self.last_active


class Lane:
    """The fast lane of one gatekeeper: a listening socket, its connections and two pools."""

    def __init__(
        self,
        sentry: Sentry,
        *,
        upstream: Pool,
        slow: Pool,
        events: bool = True,
    ) -> None:
        self.sentry = sentry
        self.hot = HotPath(
            sentry.devices,
            sentry.config.activesync_policy_mode,
            sentry.policy,
            sentry.upstream_keys,
        )
        self.clock = sentry.clock
        self.uem = sentry.config.activesync_policy_mode is PolicyMode.UEM
        self.retry_after = str(sentry.config.upstream_retry_after_s)
        self.upstream = upstream
        self.slow = slow
        self.events = events
        #: False sends every request to the full path (to compare, or to debug a device).
        self.fast = True
        self.bus = sentry.bus
        #: Requests answered by the hot path (counted whether or not events are emitted).
        self.forwarded = 0
        #: Of those, forwarded while ``events`` was off: no RequestForwarded was emitted, so
        #: the bus tallies them for the metrics (``EventBus.add_tally``).
        self.unannounced = 0
        sentry.bus.add_tally(RequestForwarded, lambda: self.unannounced)
        self.connections: set[DeviceConnection] = set()
        self.loop = asyncio.get_running_loop()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.port = 0
        #: Mutual TLS on the device port: the check of each connection's certificate.
        self.peers: ClientCheck | None = None
        #: ``stop`` has begun: no new connection is kept, hot-path Pings are answered at once.
        self.draining = False
        #: Set once the last device connection is gone while draining.
        self.drained = asyncio.Event()
        #: Held Pings the lane answered itself while stopping (``Exchange.end_held_ping``).
        self.pings_ended = 0
        #: Device connections still open at the drain deadline, aborted.
        self.cut_off = 0
        #: Devices that closed their connection while a request body was still arriving
        #: (``Forwarder.clients_gone`` counts the same on the full path).
        self.clients_gone = 0

    def emit(self, event: RequestReceived | RequestForwarded | UpstreamFailed) -> None:
        self.sentry.bus.emit(event)

    async def start(
        self,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
        ssl: ssl.SSLContext | None = None,
    ) -> int:
        """Listen on ``host:port`` (0: a free port), with TLS when ``ssl`` is given (device
        connections only: the hop to the full path stays plain loopback); returns the port."""
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.upstream.clock = self.slow.clock = loop.time
        self._server = await loop.create_server(
            lambda: DeviceConnection(self),
            host,
            port,
            reuse_address=True,
            reuse_port=reuse_port or None,
            backlog=1024,
            ssl=ssl,
        )
        sockets = self._server.sockets
        self.port = int(sockets[0].getsockname()[1]) if sockets else port
        self._sweeper = loop.create_task(self._sweep(), name="fast lane idle sweep")
        return self.port

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            now = self.loop.time()
            for conn in [c for c in self.connections if c.idle_for(now) > KEEPALIVE_S]:
                if conn.transport is not None:
                    conn.transport.close()
            self.upstream.sweep(now)
            self.slow.sweep(now)

    async def stop(self, drain_s: float = DRAIN_S) -> None:
        """Stop listening, drain the device connections for up to ``drain_s`` seconds, abort
        what is left, close the pools (the module docstring says what draining does).

        Call it before stopping the full path (the aiohttp device app): requests in flight
        may be relayed to it."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        server = self._server
        self._server = None
        if server is not None:
            server.close()  # no new connections
        self.draining = True
        for conn in list(self.connections):
            conn.drain()
        if self.connections and drain_s > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_s):
                    await self.drained.wait()
        left = list(self.connections)
        if left:
            self.cut_off += len(left)
            logger.warning(
                "fast lane: aborting %d device connection(s) still busy after %g s of drain",
                len(left),
                drain_s,
            )
        for conn in left:
            conn.closing = True  # the lane's doing, not the device's
            if conn.transport is not None:
                conn.transport.abort()
            conn.connection_lost(None)
        await self.upstream.close()
        await self.slow.close()
        if server is not None:
            await server.wait_closed()


def pool_for(url: str, *, connect_timeout_s: float, tls: ssl.SSLContext | None = None) -> Pool:
    """A pool for the target at ``url`` (http or https; its path becomes the prefix)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"upstream URL: expected http://host[:port] or https://..., got {url!r}")
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    context = tls if tls is not None else (ssl.create_default_context() if secure else None)
    host_header = parts.netloc.rpartition("@")[2]
    return Pool(
        parts.hostname,
        port,
        host_header=host_header.encode("ascii", errors="strict"),
        prefix=parts.path.rstrip("/").encode(),
        tls=context if secure else None,
        connect_timeout_s=connect_timeout_s,
    )


async def start_lane(
    sentry: Sentry,
    *,
    upstream_url: str,
    full_path_url: str,
    host: str,
    port: int,
    reuse_port: bool = False,
    upstream_tls: ssl.SSLContext | None = None,
    events: bool = True,
    ssl: ssl.SSLContext | None = None,
    client_check: ClientCheck | None = None,
) -> Lane:
    """Start the fast lane of ``sentry`` on ``host:port``: the hot path to ``upstream_url``,
    everything else to the full path (the aiohttp device app) at ``full_path_url``. ``ssl``
    makes the device port TLS (``labpki.SwappableServerContext.context``); ``client_check``
    is its mutual-TLS check (``sentry_sim.tls``)."""
    timeout = sentry.config.upstream_connect_timeout_s
    lane = Lane(
        sentry,
        upstream=pool_for(upstream_url, connect_timeout_s=timeout, tls=upstream_tls),
        slow=pool_for(full_path_url, connect_timeout_s=timeout),
        events=events,
    )
    lane.peers = client_check
    await lane.start(host, port, reuse_port=reuse_port, ssl=ssl)
    return lane


def reuse_port_supported() -> bool:
    """Whether this platform can share a listening port between processes."""
    return hasattr(socket, "SO_REUSEPORT")
