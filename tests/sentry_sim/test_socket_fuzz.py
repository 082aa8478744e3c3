"""Bad bytes on a real socket: the gatekeeper's device port answers 4xx or hangs up, never 5xx.

The gatekeeper runs on 127.0.0.1 port 0 in front of the fakes (``conftest.start_sentry``),
once with the httptools fast lane (the default) and once on aiohttp's own request path. Raw
requests are written over a plain TCP connection (asyncio streams), and the write side is
closed when the server is still waiting after a moment, so it sees the end:

- Request smuggling (RFC 9112 section 6.1 / 6.3, RFC 9110 section 8.6): Content-Length with
  Transfer-Encoding, two different Content-Lengths, obsolete line folding (RFC 9112 section
  5.2), whitespace before the colon (section 5.1), bare CR and malformed chunk sizes: each
  must get 400.
- Hypothesis: mutations of a valid request (byte flips, inserted/deleted/duplicated slices,
  truncation, extra header lines) and generated request heads. A mutation may still be a
  valid request, so the rule for these is "never 5xx" (a 2xx is fine; so is the 501 that
  Exchange itself sends for an unknown command or method); generated heads with an
  unknown method or a broken request line must get a 4xx or a closed connection.
- After every example a normal request must still be served: the server stayed up.

Bounded: a handful of examples per property (``max_examples``), no deadline, and every socket
operation under ``asyncio.timeout``. The examples run in a worker thread and hand their bytes
to the test's event loop, where the gatekeeper runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activesync.commands.folder_sync import FolderSyncRequest
from activesync.wbxml import encode
from scenarios.cli_sentry import RunningSentry
from tests.sentry_sim.fakes import StartSentry

EAS_TARGET = (
    "/Microsoft-Server-ActiveSync?Cmd=FolderSync&User=alice&DeviceId=FUZZDEV1&DeviceType=iPhone"
)
#: A FolderSync request with SyncKey 0, as a phone sends it.
BODY = encode(FolderSyncRequest("0").to_element())
HEAD = (
    f"POST {EAS_TARGET} HTTP/1.1\r\n"
    "Host: 127.0.0.1\r\n"
    "MS-ASProtocolVersion: 14.1\r\n"
    "Content-Type: application/vnd.ms-sync.wbxml\r\n"
    "Authorization: Basic YWxpY2U6YWxpY2UtcGFzcw==\r\n"
)
VALID = (HEAD + f"Content-Length: {len(BODY)}\r\n\r\n").encode("latin-1") + BODY
#: Seconds to wait for an answer; a server that neither answers nor closes fails the test.
ANSWER_WITHIN = 5.0
#: Seconds before the client closes its write side to say "that was all".
PATIENCE = 0.3
#: The one 5xx the EAS path sends on purpose: an unknown Cmd (MS-ASCMD Status 137,
#: CommandNotSupported, is HTTP 501) or a method other than POST/OPTIONS (Exchange answers a
#: browser's GET with 501). A mutated request line can be either.
NOT_IMPLEMENTED = 501
STATUS_LINE = re.compile(rb"^HTTP/\d\.\d (\d{3})")


async def exchange(port: int, raw: bytes) -> int | None:
    """Write ``raw`` and return the answer's status (None: closed without an answer).

    A server still waiting for bytes after ``PATIENCE`` seconds (a body shorter than its
    Content-Length, a head without its blank line) is told there are no more: the write side
    is closed, and it must then answer or hang up within ``ANSWER_WITHIN``.
    """
    async with asyncio.timeout(ANSWER_WITHIN + PATIENCE):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(raw)
            await writer.drain()
            try:
                async with asyncio.timeout(PATIENCE):
                    line = await reader.readline()
            except TimeoutError:
                if writer.can_write_eof():
                    writer.write_eof()
                line = await reader.readline()
        except (ConnectionResetError, BrokenPipeError):
            return None
        finally:
            writer.close()
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                await writer.wait_closed()
    if not line:
        return None
    match = STATUS_LINE.match(line)
    assert match is not None, f"not an HTTP status line: {line!r}"
    return int(match.group(1))


async def still_serving(port: int) -> None:
    status = await exchange(port, VALID)
    assert status == 200, f"after the bad input a normal request got {status}"


@pytest.fixture(params=[True, False], ids=["fast_lane", "aiohttp_path"])
async def gatekeeper(request: pytest.FixtureRequest, start_sentry: StartSentry) -> RunningSentry:
    sentry: RunningSentry = await start_sentry(fast_lane=request.param)
    async with asyncio.timeout(10):
        await still_serving(sentry.device_site.port)
    return sentry


def _with_head(extra: str, body: bytes = b"") -> bytes:
    return (HEAD + extra + "\r\n").encode("latin-1") + body


SMUGGLING: dict[str, bytes] = {
    "content_length_and_transfer_encoding": _with_head(
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"
    ),
    "transfer_encoding_and_content_length": _with_head(
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"
    ),
    "two_different_content_lengths": _with_head(
        f"Content-Length: {len(BODY)}\r\nContent-Length: {len(BODY) + 3}\r\n", BODY + b"abc"
    ),
    "content_length_list": _with_head(f"Content-Length: {len(BODY)}, 3\r\n", BODY),
    "obsolete_line_folding": _with_head(
        f"Content-Length: {len(BODY)}\r\nX-Folded: first\r\n second\r\n", BODY
    ),
    "folded_content_length": _with_head(f"Content-Length:\r\n {len(BODY)}\r\n", BODY),
    "space_before_colon": _with_head(f"Content-Length : {len(BODY)}\r\n", BODY),
    "signed_content_length": _with_head(f"Content-Length: +{len(BODY)}\r\n", BODY),
    "hex_content_length": _with_head("Content-Length: 0x10\r\n", BODY),
    "bare_cr_in_header": _with_head(f"Content-Length: {len(BODY)}\r\nX-A: 1\r2\r\n", BODY),
    "bad_chunk_size": _with_head("Transfer-Encoding: chunked\r\n", b"zz\r\nabc\r\n0\r\n\r\n"),
    "chunk_size_overflow": _with_head(
        "Transfer-Encoding: chunked\r\n", b"fffffffffffffffffffff\r\nabc\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("case", sorted(SMUGGLING))
async def test_smuggling_attempt_gets_400_and_server_stays_up(
    gatekeeper: RunningSentry, case: str
) -> None:
    port = gatekeeper.device_site.port
    async with asyncio.timeout(15):
        status = await exchange(port, SMUGGLING[case])
        assert status == 400, f"{case}: expected 400, got {status}"
        await still_serving(port)


# --- hypothesis --------------------------------------------------------------------------------

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _mutate(data: bytes, ops: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray(data)
    for op, where, payload in ops:
        at = where % (len(out) + 1)
        if op == "flip" and out:
            i = where % len(out)
            out[i] ^= payload[0] if payload else 0xFF
        elif op == "insert":
            out[at:at] = payload
        elif op == "delete":
            del out[at : at + len(payload)]
        elif op == "duplicate":
            out[at:at] = out[at : at + max(1, len(payload))]
        elif op == "truncate":
            del out[at:]
        elif op == "header":
            head_end = out.find(b"\r\n") + 2
            out[head_end:head_end] = payload + b"\r\n"
    return bytes(out)


MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate", "header"]),
        st.integers(0, 4096),
        st.binary(min_size=1, max_size=24),
    ),
    min_size=1,
    max_size=6,
)

TOKEN_CHARS = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)
HEADER_VALUE = st.binary(max_size=60)
BAD_METHODS = st.sampled_from(["GETT", "P0ST", "BREW", "", "POST POST", "\x00", "DELETE\t"])
REQUEST_HEADS = st.tuples(
    BAD_METHODS,
    st.one_of(st.just(EAS_TARGET), TOKEN_CHARS, st.just("*"), st.just("")),
    st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.x", "HTTPS/1.1", "", "HTTP/11"]),
    st.lists(st.tuples(TOKEN_CHARS, HEADER_VALUE), max_size=6),
    st.binary(max_size=64),
)


def _run_in(loop: asyncio.AbstractEventLoop) -> Callable[[Any], Any]:
    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(ANSWER_WITHIN * 3)

    return run


async def test_mutated_requests_never_get_5xx_and_the_server_stays_up(
    gatekeeper: RunningSentry,
) -> None:
    port = gatekeeper.device_site.port
    run = _run_in(asyncio.get_running_loop())
    answers: list[int | None] = []

    @FUZZ
    @given(MUTATIONS)
    def check(ops: list[tuple[str, int, bytes]]) -> None:
        raw = _mutate(VALID, ops)
        status = run(exchange(port, raw))
        answers.append(status)
        assert status is None or status < 500 or status == NOT_IMPLEMENTED, f"{raw!r}: {status}"
        run(still_serving(port))

    async with asyncio.timeout(120):
        await asyncio.to_thread(check)
    assert answers, "hypothesis ran no example"


async def test_broken_request_lines_get_4xx_or_a_closed_connection(
    gatekeeper: RunningSentry,
) -> None:
    port = gatekeeper.device_site.port
    run = _run_in(asyncio.get_running_loop())
    answers: list[int | None] = []

    @FUZZ
    @given(REQUEST_HEADS)
    def check(head: tuple[str, str, str, list[tuple[str, bytes]], bytes]) -> None:
        method, target, version, headers, body = head
        raw = f"{method} {target} {version}\r\n".encode("latin-1")
        raw += b"".join(f"{name}: ".encode("latin-1") + value + b"\r\n" for name, value in headers)
        raw += b"\r\n" + body
        status = run(exchange(port, raw))
        answers.append(status)
        assert status is None or 400 <= status < 500, f"{raw!r} got {status}"
        run(still_serving(port))

    async with asyncio.timeout(120):
        await asyncio.to_thread(check)
    assert answers, "hypothesis ran no example"
