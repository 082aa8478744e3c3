"""The fast lane's upstream side: raw keep-alive HTTP/1.1 connections, pooled per target.

Responsibility: open connections to one target (the upstream EAS server, over TLS when its URL
is https, or the gatekeeper's own full path on loopback), keep the idle ones for reuse, parse
each answer with httptools and hand its pieces to whoever sent the request (a ``Receiver``).
It must not decide anything about a request nor write to devices.

Theory of operation:
- ``Pool.acquire`` gives an idle connection at once (the most recently used first: it is the
  least likely to have been closed by the upstream's idle timeout) or opens one in a task and
  calls back. The pool has no size limit: a held Ping occupies one connection and the next
  request simply gets another, as with the aiohttp forwarder (``limit=0``).
- An idle connection that receives bytes or is closed by the other side is dropped from the
  pool at once, so the classic keep-alive race (a request sent on a connection the upstream is
  closing) is rare; the sender retries such a request once on a fresh connection when it still
  holds every byte it sent (``Receiver.upstream_lost``).
- A connection is given back only after a complete answer whose framing allows reuse
  (``should_keep_alive``), with its request fully sent; anything else closes it.
- ``sweep`` closes connections idle for longer than ``idle_timeout_s`` (30 s, like the
  forwarder's keep-alive timeout).
- Flow control: when the upstream's socket buffer fills, the receiver is told to stop reading
  the device (``upstream_write_paused``); when the device's fills, the receiver pauses this
  connection's reading.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import Final, Protocol, cast

import httptools

from sentry_sim.lane.wire import (
    CRLF,
    RESP_CHUNKED,
    RESP_CONNECTION,
    RESP_ENCODING,
    RESP_LENGTH,
    RESPONSE_FIELDS,
    names_only_hop_by_hop,
)

#: Longest answer head accepted from the upstream (its header fields together).
MAX_UPSTREAM_HEAD: Final = 256 * 1024


class UpstreamProtocolError(Exception):
    """The upstream sent something that is not an HTTP/1.1 answer."""


class Receiver(Protocol):
    """Whoever sent the request on a connection: told about the answer as it arrives."""

    def attached(self, conn: UpstreamConnection, reused: bool) -> None: ...

    def connect_failed(self, error: str) -> None: ...

    def upstream_head(self, conn: UpstreamConnection) -> None: ...

    def upstream_body(self, data: bytes) -> None: ...

    def upstream_done(self, conn: UpstreamConnection) -> None: ...

    def upstream_lost(self, conn: UpstreamConnection, error: str) -> None: ...

    def upstream_write_paused(self, paused: bool) -> None: ...

    def flush_device(self) -> None: ...

    @property
    def dead(self) -> bool: ...


class UpstreamConnection(asyncio.Protocol):
    """One connection to the target; carries one request at a time.

    While an answer's head is parsed, its end-to-end fields are collected as the pieces of the
    device's head (``pieces``), and the fields that frame it are noted, in one pass."""

    __slots__ = (
        "chunked",
        "connection",
        "encoded",
        "head_size",
        "idle_since",
        "keep_alive",
        "length",
        "named",
        "parser",
        "pieces",
        "pool",
        "reason",
        "receiver",
        "status",
        "transport",
    )

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.receiver: Receiver | None = None
        self.idle_since = 0.0
        #: The answer whose head was read allows another request (``should_keep_alive``, read
        #: once per answer).
        self.keep_alive = False
        self.on_message_begin()

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        receiver = self.receiver
        if receiver is None:
            # An idle connection has nothing to say; whatever it says ends it.
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except (
            httptools.HttpParserError,
            httptools.HttpParserUpgrade,
            UpstreamProtocolError,
        ) as exc:
            self.close()
            receiver.upstream_lost(self, f"upstream sent an invalid answer: {exc}")
        receiver.flush_device()

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.forget(self)
        receiver = self.receiver
        if receiver is not None:
            self.receiver = None
            receiver.upstream_lost(self, str(exc) if exc else "upstream closed the connection")
            receiver.flush_device()

    def pause_writing(self) -> None:
        if self.receiver is not None:
            self.receiver.upstream_write_paused(True)

    def resume_writing(self) -> None:
        if self.receiver is not None:
            self.receiver.upstream_write_paused(False)

    # -- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.status = 0
        self.reason = b""
        #: The answer's end-to-end fields as head pieces for the device (``wire.RESPONSE_FIELDS``).
        self.pieces: list[bytes] = []
        #: Content-Length, or -1 when none.
        self.length = -1
        self.chunked = False
        self.encoded = False
        #: A Connection field names end-to-end fields (they must go too): its values.
        self.named = False
        self.connection: list[bytes] = []
        self.head_size = 0

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value)
        if self.head_size > MAX_UPSTREAM_HEAD:
            raise UpstreamProtocolError(f"answer head longer than {MAX_UPSTREAM_HEAD} bytes")
        code = RESPONSE_FIELDS.get(name.lower())
        if code is None:
            self.pieces += (name, b": ", value, CRLF)
        elif code == RESP_LENGTH:
            self.length = int(value)
            self.pieces += (name, b": ", value, CRLF)
        elif code == RESP_ENCODING:
            self.encoded = True
            self.pieces += (name, b": ", value, CRLF)
        elif code == RESP_CHUNKED:
            self.chunked = True
        elif code == RESP_CONNECTION and not names_only_hop_by_hop(value):
            self.named = True
            self.connection.append(value)

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = bool(self.parser.should_keep_alive())
        if self.receiver is not None:
            self.receiver.upstream_head(self)

    def on_body(self, data: bytes) -> None:
        if self.receiver is not None:
            self.receiver.upstream_body(data)

    def on_message_complete(self) -> None:
        if self.receiver is not None:
            self.receiver.upstream_done(self)

    # -- use -------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        """Close for good (a request is in flight or the framing is unknown)."""
        self.receiver = None
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.receiver = None
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.abort()


class Pool:
    """Idle connections to one target and the means to open more."""

    __slots__ = (
        "_idle",
        "_opening",
        "clock",
        "closed",
        "connect_timeout_s",
        "host",
        "host_header",
        "idle_timeout_s",
        "port",
        "prefix",
        "server_hostname",
        "ssl",
    )

    def __init__(
        self,
        host: str,
        port: int,
        *,
        host_header: bytes,
        prefix: bytes = b"",
        tls: ssl.SSLContext | None = None,
        connect_timeout_s: float = 5.0,
        idle_timeout_s: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        #: The Host header of requests to this target (None-equivalent handled by callers).
        self.host_header = host_header
        #: Path prefix of the target URL, put before every request target.
        self.prefix = prefix
        self.ssl = tls
        self.server_hostname = host if tls is not None else None
        self.connect_timeout_s = connect_timeout_s
        self.idle_timeout_s = idle_timeout_s
        #: Idle connections in the order they became idle (a dict: O(1) removal, LIFO pop).
        self._idle: dict[UpstreamConnection, None] = {}
        self._opening: set[asyncio.Task[UpstreamConnection]] = set()
        self.closed = False
        #: Monotonic seconds for idle times (the lane sets its loop's clock; calling
        #: ``asyncio.get_running_loop()`` per request would cost a getpid syscall).
        self.clock: Callable[[], float] = time.monotonic

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def acquire(self, receiver: Receiver) -> None:
        """Give ``receiver`` a connection: an idle one now, or a new one when it is open."""
        idle = self._idle
        while idle:
            conn = idle.popitem()[0]
            transport = conn.transport
            if transport is None or transport.is_closing():
                continue
            conn.receiver = receiver
            receiver.attached(conn, True)
            return
        self.open(receiver)

    def open(self, receiver: Receiver) -> None:
        """Open a new connection for ``receiver`` (never an idle one: a retry uses this)."""
        if self.closed:
            receiver.connect_failed("the gatekeeper is stopping")
            return
        task = asyncio.get_running_loop().create_task(self._connect())
        self._opening.add(task)
        task.add_done_callback(lambda done: self._opened(done, receiver))

    async def _connect(self) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout_s):
            _transport, conn = await loop.create_connection(
                lambda: UpstreamConnection(self),
                self.host,
                self.port,
                ssl=self.ssl,
                server_hostname=self.server_hostname,
            )
        return conn

    def _opened(self, task: asyncio.Task[UpstreamConnection], receiver: Receiver) -> None:
        self._opening.discard(task)
        if task.cancelled():
            receiver.connect_failed("connecting was cancelled")
            return
        exc = task.exception()
        if exc is not None:
            what = "timed out" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
            receiver.connect_failed(f"cannot connect to {self.host}:{self.port}: {what}")
            return
        conn = task.result()
        if receiver.dead or self.closed:
            self.release(conn)
            return
        conn.receiver = receiver
        receiver.attached(conn, False)

    def release(self, conn: UpstreamConnection) -> None:
        """Take back a connection whose last answer is complete and allows reuse."""
        conn.receiver = None
        transport = conn.transport
        if self.closed or transport is None or transport.is_closing():
            conn.close()
            return
        conn.idle_since = self.clock()
        self._idle[conn] = None

    def forget(self, conn: UpstreamConnection) -> None:
        """Drop ``conn`` from the idle list (it is closing)."""
        self._idle.pop(conn, None)

    def sweep(self, now: float) -> None:
        """Close connections idle for longer than ``idle_timeout_s`` (``now``: loop time)."""
        stale = [c for c in self._idle if now - c.idle_since > self.idle_timeout_s]
        for conn in stale:
            conn.close()

    async def close(self) -> None:
        """Close every idle connection and stop opening new ones."""
        self.closed = True
        for task in list(self._opening):
            task.cancel()
        if self._opening:
            await asyncio.gather(*self._opening, return_exceptions=True)
        for conn in list(self._idle):
            conn.close()
        self._idle.clear()
