"""Talking to the UEM over HTTP, through its contract (``uem_sim.contract``) only.

Responsibility: send reports, fetch changes, register the push URL, each with a timeout, and
turn every failure (refused connection, timeout, non-2xx, a body that breaks the contract)
into one ``UemUnavailable`` naming what went wrong. The ``Outbox`` keeps reports until the UEM
takes them: written through to SQLite before the first attempt, retried with exponential
backoff on the injected clock, deleted only once the UEM has answered. It must not decide or
cache anything: answers go to the callbacks the service passes in.

Theory of operation: one ``aiohttp.ClientSession`` (opened and closed by the app's cleanup
context) serves every call. ``Outbox.submit`` starts one task per record key; a second submit
for a key already queued is ignored (the gate already guarantees one report in flight per
record, this is the belt to its braces). At start-up ``Outbox.resume`` restarts the tasks of
reports left in the store by a previous run, so none is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

import aiohttp
import attrs
from yarl import URL

from sentry_sim.store import Store
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
    _session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            connector=aiohttp.TCPConnector(limit=100),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def report(self, report: ReportRequest) -> DecisionMessage:
        return await self._call("POST", REPORTS_PATH, DecisionMessage, body=report)

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

    def submit(self, key: str, report: ReportRequest) -> bool:
        """Queue ``report`` for ``key`` (persisted first); False if one is already queued."""
        if key in self._tasks:
            return False
        self.store.outbox_put(key, to_json(report), report.seen_at)
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

    def _start(self, key: str, report: ReportRequest, *, attempts: int) -> None:
        self._attempts[key] = attempts
        task = asyncio.get_running_loop().create_task(
            self._deliver(key, report), name=f"report {key}"
        )
        self._tasks[key] = task

    async def _deliver(self, key: str, report: ReportRequest) -> None:
        delay = self.initial_delay_s
        try:
            while True:
                self._attempts[key] += 1
                try:
                    decision = await self.client.report(report)
                except UemUnavailable as exc:
                    self.store.outbox_attempted(key)
                    self.on_failure(key, self._attempts[key], str(exc), delay)
                    await self.clock.sleep(delay)
                    delay = min(delay * 2, self.max_delay_s)
                    continue
                self.store.outbox_delete(key)
                self.on_answer(key, decision)
                return
        finally:
            self._tasks.pop(key, None)
            self._attempts.pop(key, None)
