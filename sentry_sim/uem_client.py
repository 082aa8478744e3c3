"""Talking to the UEM over HTTP, through its contract (``uem_sim.contract``) only.

Responsibility: send reports, fetch changes, register the push URL, each with a timeout, and
turn every failure (refused connection, timeout, non-2xx, a body that breaks the contract)
into one ``UemUnavailable`` naming what went wrong. The ``Outbox`` keeps reports until the UEM
takes them: written to SQLite before the first attempt (the reports queued in one loop
iteration share one transaction), retried with exponential backoff on the injected clock,
deleted once the UEM has answered (the deletions of one loop iteration share one transaction
at its end: a crash in between re-sends those reports at the next start, the UEM takes a
repeated report as a refresh). It must not decide or
cache anything: answers go to the callbacks the service passes in.

Theory of operation: one ``aiohttp.ClientSession`` (opened and closed by the app's cleanup
context) serves every call but the reports to a plain-HTTP UEM, which go over a small pool of
raw keep-alive connections parsed with httptools (``_ReportLine``: a first-access storm sends
thousands a second, and the aiohttp client's per-request work was a sixth of the gatekeeper's
time in it, docs/performance.md). ``Outbox.submit`` starts one task per record key; a second submit
for a key already queued is ignored (the gate already guarantees one report in flight per
record, this is the belt to its braces). At start-up ``Outbox.resume`` restarts the tasks of
reports left in the store by a previous run, so none is lost.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Final, TypeVar, cast

import aiohttp
import attrs
import httptools
from yarl import URL

from sentry_sim.store import OutboxWrite, Store
from simclock import Clock
from uem_sim.contract import (
    CONTENT_TYPE,
    GATEKEEPERS_PATH,
    RECORDS_PATH,
    REPORTS_PATH,
    SINCE_PARAM,
    ChangesResponse,
    ContractError,
    DecisionMessage,
    ErrorMessage,
    GatekeeperRegistered,
    Message,
    RegisterGatekeeper,
    ReportRequest,
    from_json,
    to_json,
)

logger = logging.getLogger(__name__)

#: Largest UEM answer read (a full resync of a big fleet is the largest).
MAX_ANSWER_BYTES = 256 * 1024 * 1024

M = TypeVar("M", ChangesResponse, DecisionMessage, GatekeeperRegistered)


class UemUnavailable(Exception):
    """The UEM could not be asked or gave no usable answer."""


@attrs.define(eq=False)
class UemClient:
    """The UEM's gatekeeper-facing API as three calls."""

    base_url: str
    timeout_s: float = 5.0
    #: Roots trusted for an https UEM (None: the system store).
    ssl_context: ssl.SSLContext | None = None
    _session: aiohttp.ClientSession | None = None
    _reports: _ReportLine | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            connector=aiohttp.TCPConnector(
                limit=100, ssl=self.ssl_context if self.ssl_context is not None else True
            ),
        )
        url = URL(self.base_url.rstrip("/") + REPORTS_PATH)
        if url.scheme == "http" and url.host is not None and url.port is not None:
            self._reports = _ReportLine(url.host, url.port, url.raw_path, self.timeout_s)

    async def close(self) -> None:
        if self._reports is not None:
            self._reports.close()
            self._reports = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def report(self, report: ReportRequest) -> DecisionMessage:
        reports = self._reports
        if reports is None:
            return await self._call("POST", REPORTS_PATH, DecisionMessage, body=report)
        path = REPORTS_PATH
        try:
            status, text = await reports.post(to_json(report).encode())
        except (OSError, TimeoutError, _AnswerError) as exc:
            raise UemUnavailable(f"POST {path}: {type(exc).__name__}: {exc}") from exc
        if status // 100 != 2:
            raise UemUnavailable(f"POST {path}: HTTP {status}: {_error_text(text)}")
        try:
            return from_json(DecisionMessage, text)
        except ContractError as exc:
            raise UemUnavailable(f"POST {path}: answer breaks the contract: {exc}") from exc

    async def changes(self, since: int) -> ChangesResponse:
        path = str(URL(RECORDS_PATH).with_query({SINCE_PARAM: str(since)}))
        return await self._call("GET", path, ChangesResponse)

    async def register(self, message: RegisterGatekeeper) -> GatekeeperRegistered:
        return await self._call("POST", GATEKEEPERS_PATH, GatekeeperRegistered, body=message)

    async def _call(
        self, method: str, path: str, answer: type[M], *, body: Message | None = None
    ) -> M:
        session = self._session
        if session is None:
            raise UemUnavailable("the UEM client is not open")
        url = self.base_url.rstrip("/") + path
        data = None if body is None else to_json(body).encode()
        headers = {"Content-Type": CONTENT_TYPE} if data is not None else {}
        try:
            async with session.request(method, url, data=data, headers=headers) as response:
                text = await response.content.read(MAX_ANSWER_BYTES)
                if response.status // 100 != 2:
                    raise UemUnavailable(
                        f"{method} {path}: HTTP {response.status}: {_error_text(text)}"
                    )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise UemUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        try:
            return from_json(answer, text)
        except ContractError as exc:
            raise UemUnavailable(f"{method} {path}: answer breaks the contract: {exc}") from exc


def _error_text(body: bytes) -> str:
    try:
        return from_json(ErrorMessage, body).error
    except ContractError:
        return body[:200].decode("utf-8", "replace") or "(empty body)"


class _AnswerError(Exception):
    """The UEM's answer on a report connection was not a usable HTTP/1.1 answer."""


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to the UEM: one request at a time, answers parsed
    by httptools."""

    def __init__(self, max_body: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.max_body = max_body
        self.body: list[bytes] = []
        self.size = 0
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost = False
        self.reusable = False
        #: Whether any byte of the current answer arrived (then the UEM took the request).
        self.received = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.answer is None or self.answer.done():
            # Nothing was asked: the UEM has no business talking. Drop the connection.
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(_AnswerError(f"malformed HTTP answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(ConnectionResetError("the UEM closed the connection"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_body:
            self._fail(_AnswerError(f"answer larger than {self.max_body} bytes"))
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        answer = self.answer
        if answer is None or answer.done():
            return
        self.reusable = self.parser.should_keep_alive()
        answer.set_result((int(self.parser.get_status_code()), b"".join(self.body)))

    # the client's side
    def send(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.body = []
        self.size = 0
        self.reusable = False
        self.received = False
        self.parser = httptools.HttpResponseParser(self)
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.answer

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        answer = self.answer
        if answer is not None and not answer.done():
            answer.set_exception(exc)
        self.close()


class _ReportLine:
    """Pooled keep-alive connections that carry reports to a plain-HTTP UEM.

    Reports are the gatekeeper's most frequent UEM call (one per new record; a first-access
    storm sends thousands a second), so they skip the aiohttp client's per-request machinery:
    the request head is fixed but for its length, the answer is parsed by httptools, and idle
    connections are reused most recent first. At most ``MAX_CONNECTIONS`` are open, like the
    aiohttp session's connector. A request sent on a reused connection that the UEM closed
    meanwhile (its idle timeout) is sent once more on a fresh one: no byte of an answer came
    back, so the UEM never took it. An https UEM goes through the aiohttp session instead.
    """

    MAX_CONNECTIONS: Final = 100

    def __init__(self, host: str, port: int, path: str, timeout_s: float) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: {CONTENT_TYPE}\r\n"
            "Accept: application/json\r\nContent-Length: "
        ).encode("ascii")
        self.idle: list[_Connection] = []
        self.slots = asyncio.Semaphore(self.MAX_CONNECTIONS)
        self.closed = False

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """POST ``body``; the answer's status and body (bounded by ``MAX_ANSWER_BYTES``)."""
        request = b"%s%d\r\n\r\n%s" % (self.head, len(body), body)
        async with self.slots, asyncio.timeout(self.timeout_s):
            while self.idle:
                conn = self.idle.pop()
                if conn.lost:
                    continue
                try:
                    return await self._exchange(conn, request)
                except ConnectionResetError:
                    if conn.received:
                        raise
                    # The keep-alive race: the UEM closed this idle connection as we wrote.
            return await self._exchange(await self._open(), request)

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _transport, conn = await loop.create_connection(
            lambda: _Connection(MAX_ANSWER_BYTES), self.host, self.port
        )
        return conn

    async def _exchange(self, conn: _Connection, request: bytes) -> tuple[int, bytes]:
        try:
            answer = await conn.send(request)
        except BaseException:
            conn.close()
            raise
        if conn.reusable and not conn.lost and not self.closed:
            self.idle.append(conn)
        else:
            conn.close()
        return answer

    def close(self) -> None:
        self.closed = True
        for conn in self.idle:
            conn.close()
        self.idle.clear()


#: Called with (record key, attempt, error text, retry delay) when an attempt failed.
OnFailure = Callable[[str, int, str, float], None]


@attrs.define(eq=False)
class Outbox:
    """Reports waiting for the UEM: persisted, retried with backoff, one task per record."""

    client: UemClient
    store: Store
    clock: Clock
    on_answer: Callable[[str, DecisionMessage], None]
    on_failure: OnFailure
    initial_delay_s: float = 0.5
    max_delay_s: float = 30.0
    _tasks: dict[str, asyncio.Task[None]] = attrs.field(factory=dict)
    _attempts: dict[str, int] = attrs.field(factory=dict)
    #: Outbox rows to write, in order: (key, payload, queued_at), payload None deletes.
    _writes: list[OutboxWrite] = attrs.field(factory=list)
    _write_scheduled: bool = False

    def submit(self, key: str, report: ReportRequest) -> bool:
        """Queue ``report`` for ``key`` (persisted first); False if one is already queued."""
        if key in self._tasks:
            return False
        # Written by the first delivery task to run, before its first attempt, together with
        # every other report queued in the same loop iteration (one transaction for a storm).
        self._writes.append((key, to_json(report), report.seen_at))
        self._start(key, report, attempts=0)
        return True

    def resume(self) -> list[str]:
        """Restart the reports a previous run left in the store; returns their keys."""
        resumed = []
        for entry in self.store.outbox():
            if entry.key in self._tasks:
                continue
            try:
                report = from_json(ReportRequest, entry.payload)
            except ContractError:
                logger.error("dropping unreadable outbox entry for %s", entry.key)
                self.store.outbox_delete(entry.key)
                continue
            self._start(entry.key, report, attempts=entry.attempts)
            resumed.append(entry.key)
        return resumed

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def attempts(self, key: str) -> int:
        return self._attempts.get(key, 0)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self.write()

    def write(self) -> None:
        """Write the queued outbox rows and deletions, in order, in one transaction."""
        self._write_scheduled = False
        writes, self._writes = self._writes, []
        if not writes:
            return
        try:
            self.store.outbox_apply(writes)
        except Exception:
            # Kept for the next write; delivery goes on (the reports are in memory).
            self._writes = writes + self._writes
            logger.exception("writing %d outbox rows failed; retrying later", len(writes))

    def _start(self, key: str, report: ReportRequest, *, attempts: int) -> None:
        self._attempts[key] = attempts
        task = asyncio.get_running_loop().create_task(
            self._deliver(key, report), name=f"report {key}"
        )
        self._tasks[key] = task

    async def _deliver(self, key: str, report: ReportRequest) -> None:
        delay = self.initial_delay_s
        # The report is in the store before its first attempt (so are the others queued
        # with it): no await comes before this write.
        self.write()
        try:
            while True:
                self._attempts[key] += 1
                try:
                    decision = await self.client.report(report)
                except UemUnavailable as exc:
                    self.write()
                    self.store.outbox_attempted(key)
                    self.on_failure(key, self._attempts[key], str(exc), delay)
                    await self.clock.sleep(delay)
                    delay = min(delay * 2, self.max_delay_s)
                    continue
                self._delete_soon(key)
                self.on_answer(key, decision)
                return
        finally:
            self._tasks.pop(key, None)
            self._attempts.pop(key, None)

    def _delete_soon(self, key: str) -> None:
        """Drop the answered report's row at the end of this loop iteration, with the other
        answers of the iteration (a crash before that re-sends it at the next start)."""
        self._writes.append((key, None, 0.0))
        if not self._write_scheduled:
            self._write_scheduled = True
            asyncio.get_running_loop().call_soon(self.write)
