"""Forwarding device requests to the upstream EAS server (the hot path's I/O).

Responsibility: proxy one aiohttp request to the upstream and stream the answer back, through
ONE pooled keep-alive ``ClientSession`` per app; strip hop-by-hop headers both ways; pass the
path and query through byte for byte (unknown query parameters included) unless the caller
gives a rewritten one; hold back the upstream answers the caller asks to see first
(``Intercept``); send the gatekeeper's own buffered requests (``exchange``); report an
upstream that cannot be reached as ``UpstreamUnavailable`` so the handler answers 503 +
Retry-After. It must not decide access or interpret EAS bodies: which answers to hold back
and what they mean is the caller's rule. A later issue replaces this with a leaner httptools
lane, so everything the handlers need goes through ``Forwarder`` and nothing else.

Theory of operation:
- Request bodies up to ``buffer_limit`` bytes (``BUFFER_LIMIT``, 1 MiB) are read first, so a
  request that meets a pooled connection the upstream has just closed can be retried once on
  a fresh one (the classic keep-alive race), and so the caller can replay it after an
  intercepted answer; larger bodies (and bodies of unknown length) are streamed straight
  through and can be neither. 1 MiB holds every EAS request but big SendMail attachments.
- The response is streamed: status and end-to-end headers first, then chunks as they arrive,
  so a Ping long-poll holds one upstream connection and nothing else. The pool has no
  connection limit, so thousands of held Pings never starve other requests.
- An ``Intercept`` names statuses to hold back always (their body read up to 64 KiB) and
  statuses to hold back only when the body is small and of known length (read whole, so a
  big Sync answer is never buffered); the caller's predicate then sees status and body and
  says whether it wants the answer (``Intercepted``) or it goes to the device after all,
  starting with the bytes already read.
- A device that closes its connection before its whole body arrived (a phone losing signal
  mid-upload does this all the time) is normal, not a server error: ``forward`` counts it
  (``Forwarder.clients_gone``), logs one DEBUG line without a traceback and raises
  ``ClientGone``, an ``ActiveSyncError`` (HTTP 400, the body is incomplete) that the app's
  error middleware turns into a ``RequestRejected`` event and an answer nobody reads. Nothing
  was sent upstream. The same holds for a streamed body whose device goes away mid-stream.
- RFC 9110 7.6.1: Connection, Keep-Alive, Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade and
  every header named in Connection are hop-by-hop and never forwarded. Host is set from the
  upstream URL. Bodies are never decompressed (``auto_decompress=False``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import Final

import aiohttp
import attrs
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from activesync.errors import ActiveSyncError

log = logging.getLogger(__name__)

#: Hop-by-hop headers (RFC 9110 7.6.1, plus the non-standard Proxy-Connection).
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

#: Request bodies up to this size are buffered (and so retryable); larger ones are streamed.
BUFFER_LIMIT: Final = 1024 * 1024

#: Most body bytes read of an answer held back whatever its size (``Intercept.always``), and of
#: the gatekeeper's own exchanges; a Provision answer is well under 8 KiB.
HELD_BODY_LIMIT: Final = 64 * 1024

#: Headers aiohttp's client would add by itself; a proxy must not invent them.
_SKIP_AUTO: Final = ("User-Agent", "Accept-Encoding", "Content-Type")


class ClientGone(ActiveSyncError):
    """The device closed its connection before its request body was complete: nothing was
    forwarded and nobody is left to answer (HTTP 400 for the record: the body is short)."""


class UpstreamUnavailable(Exception):
    """The upstream could not be reached (connect refused, reset before answering, timeout)."""


def end_to_end(headers: Mapping[str, str] | CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """``headers`` without hop-by-hop ones (and without those named in Connection)."""
    named = {
        token.strip().lower()
        for value in _all(headers, "Connection")
        for token in value.split(",")
        if token.strip()
    }
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in HOP_BY_HOP or lowered in named:
            continue
        out.add(name, value)
    return out


def _all(headers: Mapping[str, str] | CIMultiDictProxy[str], name: str) -> Iterable[str]:
    if isinstance(headers, CIMultiDictProxy | CIMultiDict):
        return headers.getall(name, [])
    return [v for k, v in headers.items() if k.lower() == name.lower()]


@attrs.frozen
class Forwarded:
    """The device got the upstream's answer; ``status`` is the upstream's status code."""

    response: web.StreamResponse
    status: int


@attrs.frozen
class UpstreamAnswer:
    """A whole upstream answer, read into memory (held back, or of the gatekeeper's own
    request); ``headers`` are the end-to-end ones."""

    status: int
    reason: str | None
    headers: CIMultiDict[str] = attrs.field(eq=False)
    body: bytes

    def to_response(self) -> web.Response:
        """The answer as the device would have had it from the upstream."""
        headers = CIMultiDict(self.headers)
        # aiohttp sets Content-Length from the body; a copied one would be a duplicate.
        headers.popall("Content-Length", None)
        return web.Response(status=self.status, reason=self.reason, body=self.body, headers=headers)


@attrs.frozen
class Intercept:
    """Which upstream answers the caller wants to see before the device does."""

    #: Statuses held back whatever the body (the body is read up to ``HELD_BODY_LIMIT``).
    always: frozenset[int]
    #: Statuses held back only when the body has a known length of 1..``max_body`` bytes and
    #: no Content-Encoding, so large answers keep streaming untouched.
    small: frozenset[int]
    max_body: int
    #: The caller's final say, given the status and the body read.
    wanted: Callable[[int, bytes], bool]


@attrs.frozen
class Intercepted:
    """The upstream's answer was held back: the device has been sent nothing yet."""

    answer: UpstreamAnswer
    #: The request body as sent (for a replay), or None when it was streamed.
    request_body: bytes | None


@attrs.define(eq=False)
class Forwarder:
    """Proxies requests to ``base_url`` over one pooled session (open it in a cleanup ctx)."""

    base_url: str
    connect_timeout_s: float = 5.0
    #: Request bodies up to this many bytes are buffered (retryable and replayable).
    buffer_limit: int = BUFFER_LIMIT
    #: Roots trusted for an https upstream (None: the system store).
    ssl_context: ssl.SSLContext | None = None
    _session: aiohttp.ClientSession | None = None
    _base: URL = attrs.field(init=False)
    #: Devices that closed their connection before their request body was complete.
    clients_gone: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        self._base = URL(self.base_url.rstrip("/"))

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=0,
            keepalive_timeout=30.0,
            ssl=self.ssl_context if self.ssl_context is not None else True,
        )
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.connect_timeout_s, sock_connect=self.connect_timeout_s
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,
            skip_auto_headers=_SKIP_AUTO,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url_for(self, raw_path: str) -> URL:
        """The upstream URL of a device request path (``/Microsoft-Server-ActiveSync?...``),
        the query kept byte for byte."""
        return URL(str(self._base) + raw_path, encoded=True)

    async def forward(
        self,
        request: web.Request,
        *,
        body: bytes | None = None,
        set_headers: Mapping[str, str] | None = None,
        drop_headers: Iterable[str] = (),
        raw_path: str | None = None,
        intercept: Intercept | None = None,
    ) -> Forwarded | Intercepted:
        """Send ``request`` upstream (``body`` if already read, else its stream) and stream the
        answer back, unless ``intercept`` wants it (then the device has been sent nothing).
        Raises ``UpstreamUnavailable`` if no answer could be had at all."""
        session = self._session
        if session is None:
            raise UpstreamUnavailable("the upstream session is not open")
        headers = end_to_end(request.headers)
        headers.pop("Host", None)
        for name in drop_headers:
            headers.popall(name, None)
        for name, value in (set_headers or {}).items():
            headers[name] = value
        url = self.url_for(raw_path if raw_path is not None else request.raw_path)
        streamed = False
        if body is None and request.can_read_body:
            length = request.content_length
            if length is not None and length <= self.buffer_limit:
                try:
                    body = await request.read()
                except ConnectionResetError:
                    # aiohttp's "Connection lost" while the body was still arriving.
                    raise self._client_gone(request, "while its body was read") from None
            else:
                streamed = True
        if body is not None:
            headers["Content-Length"] = str(len(body))
        attempts = 1 if streamed else 2
        for attempt in range(1, attempts + 1):
            data = request.content if streamed else body
            try:
                upstream = await session.request(
                    request.method, url, headers=headers, data=data, allow_redirects=False
                )
            except aiohttp.ServerDisconnectedError as exc:
                # A pooled keep-alive connection the upstream had just closed: retry once.
                if attempt < attempts:
                    continue
                raise UpstreamUnavailable(f"upstream closed the connection: {exc}") from exc
            except (TimeoutError, aiohttp.ClientConnectionError, ConnectionResetError) as exc:
                if streamed and _device_gone(request):
                    raise self._client_gone(request, "while its body streamed upstream") from None
                raise UpstreamUnavailable(f"{type(exc).__name__}: {exc}") from exc
            try:
                head = b""
                if intercept is not None and _held(intercept, upstream):
                    head = await _read_up_to(upstream.content, HELD_BODY_LIMIT)
                    complete = upstream.content.at_eof()
                    if complete and intercept.wanted(upstream.status, head):
                        answer = UpstreamAnswer(
                            upstream.status, upstream.reason, end_to_end(upstream.headers), head
                        )
                        return Intercepted(answer, None if streamed else (body or b""))
                return await self._relay(request, upstream, head)
            finally:
                upstream.release()
        raise UpstreamUnavailable("no answer from the upstream")

    def _client_gone(self, request: web.Request, when: str) -> ClientGone:
        self.clients_gone += 1
        log.debug(
            "device %s closed the connection %s (Content-Length %s): nothing forwarded",
            request.remote,
            when,
            request.content_length,
        )
        return ClientGone(f"the device closed the connection {when}; nothing was forwarded")

    async def exchange(
        self,
        method: str,
        raw_path: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        timeout_s: float,
    ) -> UpstreamAnswer:
        """The gatekeeper's own request (e.g. a Provision on a device's behalf), its answer
        read whole (at most ``HELD_BODY_LIMIT`` bytes). ``UpstreamUnavailable`` if none."""
        session = self._session
        if session is None:
            raise UpstreamUnavailable("the upstream session is not open")
        sent = CIMultiDict(headers)
        sent["Content-Length"] = str(len(body))
        try:
            async with (
                asyncio.timeout(timeout_s),
                session.request(
                    method, self.url_for(raw_path), headers=sent, data=body, allow_redirects=False
                ) as upstream,
            ):
                data = await _read_up_to(upstream.content, HELD_BODY_LIMIT + 1)
                if len(data) > HELD_BODY_LIMIT:
                    raise UpstreamUnavailable(
                        f"upstream answer to {method} {raw_path[:60]}: expected at most "
                        f"{HELD_BODY_LIMIT} bytes, got more"
                    )
                return UpstreamAnswer(
                    upstream.status, upstream.reason, end_to_end(upstream.headers), data
                )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UpstreamUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def _relay(
        self, request: web.Request, upstream: aiohttp.ClientResponse, head: bytes = b""
    ) -> Forwarded:
        headers = end_to_end(upstream.headers)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        response.headers.extend(headers)
        try:
            await response.prepare(request)
            if head:
                await response.write(head)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            # The device went away mid-answer (a phone dropping a held Ping does this all the
            # time): nothing is left to tell it, and releasing the upstream response closes
            # that connection. aiohttp's ClientConnectionResetError is a ConnectionResetError.
            pass
        return Forwarded(response, upstream.status)


def _device_gone(request: web.Request) -> bool:
    """Whether the device's side of ``request`` is closed (or closing)."""
    transport = request.transport
    return transport is None or transport.is_closing()


def _held(intercept: Intercept, upstream: aiohttp.ClientResponse) -> bool:
    """Whether ``upstream``'s answer is one ``intercept`` wants to look at first."""
    status = upstream.status
    if status in intercept.always:
        return True
    if status not in intercept.small or "Content-Encoding" in upstream.headers:
        return False
    length = upstream.content_length
    return length is not None and 0 < length <= intercept.max_body


async def _read_up_to(content: aiohttp.StreamReader, limit: int) -> bytes:
    """The body up to ``limit`` bytes (fewer at its end); the rest stays in the stream."""
    parts: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await content.read(limit - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)
