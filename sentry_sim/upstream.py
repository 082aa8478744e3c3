"""Forwarding device requests to the upstream EAS server (the hot path's I/O).

Responsibility: proxy one aiohttp request to the upstream and stream the answer back, through
ONE pooled keep-alive ``ClientSession`` per app; strip hop-by-hop headers both ways; pass the
path and query through byte for byte (unknown query parameters included); report an upstream
that cannot be reached as ``UpstreamUnavailable`` so the handler answers 503 + Retry-After.
It must not decide access or look at EAS semantics, beyond the policy-key header rewrite the
caller asks for. A later issue replaces this with a leaner httptools lane, so everything the
handlers need goes through ``Forwarder.forward`` and nothing else.

Theory of operation:
- Request bodies up to ``BUFFER_LIMIT`` bytes are read first, so a request that meets a pooled
  connection the upstream has just closed can be retried once on a fresh one (the classic
  keep-alive race); larger bodies are streamed straight through and cannot be retried.
- The response is streamed: status and end-to-end headers first, then chunks as they arrive,
  so a Ping long-poll holds one upstream connection and nothing else. The pool has no
  connection limit, so thousands of held Pings never starve other requests.
- RFC 9110 7.6.1: Connection, Keep-Alive, Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade and
  every header named in Connection are hop-by-hop and never forwarded. Host is set from the
  upstream URL. Bodies are never decompressed (``auto_decompress=False``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import aiohttp
import attrs
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

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
BUFFER_LIMIT: Final = 64 * 1024

#: Headers aiohttp's client would add by itself; a proxy must not invent them.
_SKIP_AUTO: Final = ("User-Agent", "Accept-Encoding", "Content-Type")


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


@attrs.define(eq=False)
class Forwarder:
    """Proxies requests to ``base_url`` over one pooled session (open it in a cleanup ctx)."""

    base_url: str
    connect_timeout_s: float = 5.0
    _session: aiohttp.ClientSession | None = None
    _base: URL = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._base = URL(self.base_url.rstrip("/"))

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30.0)
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
    ) -> Forwarded:
        """Send ``request`` upstream (``body`` if already read, else its stream) and stream the
        answer back. Raises ``UpstreamUnavailable`` if no answer could be had at all."""
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
            if length is not None and length <= BUFFER_LIMIT:
                body = await request.read()
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
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                raise UpstreamUnavailable(f"{type(exc).__name__}: {exc}") from exc
            try:
                return await self._relay(request, upstream)
            finally:
                upstream.release()
        raise UpstreamUnavailable("no answer from the upstream")

    async def _relay(self, request: web.Request, upstream: aiohttp.ClientResponse) -> Forwarded:
        headers = end_to_end(upstream.headers)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        response.headers.extend(headers)
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return Forwarded(response, upstream.status)
