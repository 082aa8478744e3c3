"""HTTP/1.1 framing of the fast lane: heads, chunks, hop-by-hop headers, its own short answers.

Responsibility: name the header fields the lane reads or drops, and build the bytes it writes
besides relayed bodies: status lines, chunk frames, the few answers the lane gives itself. It
must not parse (httptools does) nor decide routes (``hot_path``) nor touch sockets.

Theory of operation: while a head is parsed, each end-to-end field is appended to a list of
pieces (``name, ": ", value, CRLF``) in the order it came, so the next hop's head is one
``join`` with the new first line and framing. RFC 9110 7.6.1: Connection, Keep-Alive, Proxy-*,
TE, Trailer, Transfer-Encoding and Upgrade, and every header named in Connection, are hop-by-hop
and never passed on; the lane sets the framing of each hop itself (Content-Length passes through
unchanged, a chunked body is re-chunked, a body without framing is chunked for an HTTP/1.1
device). ``Expect`` is answered by the lane (RFC 9110 10.1.1: it sends ``100 Continue`` itself)
and not passed on. Status lines carry the upstream's reason phrase.
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import Final

#: Lower-cased hop-by-hop header names (RFC 9110 7.6.1, plus Proxy-Connection), and Expect
#: (answered by the lane itself).
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
    }
)

#: RFC 9110 10.1.1: the interim answer to ``Expect: 100-continue``.
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"

#: The last chunk of a chunked body (no trailers: they are hop-by-hop here).
LAST_CHUNK: Final = b"0\r\n\r\n"

CRLF: Final = b"\r\n"

#: Codes of the request header fields the lane reads while parsing (by lower-cased name).
#: Everything else is passed on as it came.
REQ_VERSION: Final = 1
REQ_LENGTH: Final = 2
REQ_POLICY_KEY: Final = 3
REQ_AUTHORIZATION: Final = 4
REQ_HOST: Final = 5
REQ_CHUNKED: Final = 6
REQ_CONNECTION: Final = 7
REQ_EXPECT: Final = 8
REQ_HOP: Final = 9
REQUEST_FIELDS: Final[dict[bytes, int]] = {
    b"ms-asprotocolversion": REQ_VERSION,
    b"content-length": REQ_LENGTH,
    b"x-ms-policykey": REQ_POLICY_KEY,
    b"authorization": REQ_AUTHORIZATION,
    b"host": REQ_HOST,
    b"transfer-encoding": REQ_CHUNKED,
    b"connection": REQ_CONNECTION,
    b"expect": REQ_EXPECT,
    **dict.fromkeys(HOP_BY_HOP - {b"transfer-encoding", b"connection", b"expect"}, REQ_HOP),
}

#: Codes of the answer header fields the lane reads (by lower-cased name).
RESP_LENGTH: Final = 1
RESP_ENCODING: Final = 2
RESP_CHUNKED: Final = 3
RESP_CONNECTION: Final = 4
RESP_HOP: Final = 5
RESPONSE_FIELDS: Final[dict[bytes, int]] = {
    b"content-length": RESP_LENGTH,
    b"content-encoding": RESP_ENCODING,
    b"transfer-encoding": RESP_CHUNKED,
    b"connection": RESP_CONNECTION,
    **dict.fromkeys(HOP_BY_HOP - {b"transfer-encoding", b"connection"}, RESP_HOP),
}

#: (status, reason) -> status line; bounded, since reasons come from the upstream.
_STATUS_LINES: dict[tuple[int, bytes], bytes] = {}
_STATUS_LINES_LIMIT: Final = 256


def names_only_hop_by_hop(value: bytes) -> bool:
    """Whether a Connection header names nothing but hop-by-hop headers and ``close`` (so
    dropping the hop-by-hop set drops everything it names)."""
    lowered = value.lower()
    if lowered == b"keep-alive" or lowered == b"close":
        return True
    for token in lowered.split(b","):
        token = token.strip()
        if token and token != b"close" and token not in HOP_BY_HOP:
            return False
    return True


def status_line(status: int, reason: bytes) -> bytes:
    """``HTTP/1.1 <status> <reason>\r\n``."""
    key = (status, reason)
    line = _STATUS_LINES.get(key)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        if len(_STATUS_LINES) < _STATUS_LINES_LIMIT:
            _STATUS_LINES[key] = line
    return line


def connection_named(values: list[bytes]) -> frozenset[bytes]:
    """Lower-cased field names listed in Connection field ``values``."""
    named: set[bytes] = set()
    for value in values:
        for token in value.split(b","):
            token = token.strip().lower()
            if token:
                named.add(token)
    return frozenset(named)


def without_named(pieces: list[bytes], connection: list[bytes]) -> list[bytes]:
    """Head ``pieces`` (``name, ": ", value, CRLF`` per field) without the fields the
    Connection field ``connection`` values name (RFC 9110 7.6.1: they are hop-by-hop too)."""
    named = connection_named(connection)
    kept: list[bytes] = []
    for i in range(0, len(pieces), 4):
        if pieces[i].lower() not in named:
            kept += pieces[i : i + 4]
    return kept


def chunk(data: bytes) -> tuple[bytes, bytes, bytes]:
    """One chunk frame of ``data`` (non-empty), as three pieces to write together."""
    return b"%x\r\n" % len(data), data, CRLF


def answer(
    status: int,
    text: str = "",
    *,
    close: bool,
    headers: Iterable[tuple[str, str]] = (),
) -> bytes:
    """A whole short answer the lane gives itself (errors, 503)."""
    body = text.encode()
    phrase = HTTPStatus(status).phrase.encode()
    parts = [b"HTTP/1.1 ", str(status).encode(), b" ", phrase, CRLF]
    for name, value in headers:
        parts += (name.encode(), b": ", value.encode(), CRLF)
    if body:
        parts.append(b"Content-Type: text/plain; charset=utf-8\r\n")
    parts += (b"Content-Length: ", str(len(body)).encode(), CRLF)
    if close:
        parts.append(b"Connection: close\r\n")
    parts += (CRLF, body)
    return b"".join(parts)
