"""Pushing changed decisions to registered gatekeepers (as Core reaches Sentry on port 9090).

Responsibility: deliver every changed decision to every registered gatekeeper's push URL
within a second, retrying with backoff until it gets through, without ever blocking the request
handler that caused the change. Must not: decide anything or touch the registry.

Theory of operation: one ``_Outbox`` per gatekeeper holds the pending decisions keyed by
record (a newer decision for a record replaces an older one) and the version range they cover.
``publish()`` only updates outboxes and wakes their workers, so it is synchronous and instant.
Each worker task takes the whole pending batch, POSTs one ``PushMessage`` through the UEM's one
``OutgoingClient`` (``uem_sim.outgoing_client``: pooled connections, the outgoing TLS policy,
usage tracking; a push URL may be https), and on failure puts the batch back under anything
newer and sleeps on the injected clock (0.1 s doubling to 5 s). ``since`` of a retried batch
stays the oldest undelivered version, so a gatekeeper can always tell a gap from a repeat.
``publish(..., skip=(gatekeeper_id, record_key))`` leaves out one record for the gatekeeper
that already got it in the answer to its report.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import aiohttp
import attrs

from simclock import Clock
from uem_sim.contract import CONTENT_TYPE, DecisionMessage, PushMessage, to_json
from uem_sim.events import EventBus, PushDelivered, PushFailed
from uem_sim.outgoing_client import OutgoingClient, OutgoingError

FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0


@attrs.define(eq=False)
class _Outbox:
    gatekeeper_id: str
    url: str
    pending: dict[tuple[str, str], DecisionMessage] = attrs.field(factory=dict)
    since: int | None = None
    version: int = 0
    wake: asyncio.Event = attrs.field(factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def add(
        self,
        since: int,
        version: int,
        records: Iterable[DecisionMessage],
        *,
        skip: tuple[str, str] | None = None,
    ) -> None:
        for record in records:
            if record.key == skip:
                # The gatekeeper already holds this decision (it came back in the answer to its
                # report); an older one still waiting here would now be stale, so drop it too.
                self.pending.pop(record.key, None)
                continue
            self.pending[record.key] = record
        # The version range is kept even when nothing is left to send, so the next batch's
        # ``since`` covers the skipped change and the gatekeeper sees no gap.
        self.since = since if self.since is None else min(self.since, since)
        self.version = max(self.version, version)
        if self.pending:
            self.wake.set()
        else:
            self.wake.clear()

    def take(self) -> PushMessage:
        message = PushMessage(
            gatekeeper_id=self.gatekeeper_id,
            since=self.since or 0,
            version=self.version,
            records=tuple(sorted(self.pending.values(), key=lambda r: r.record_version)),
        )
        self.pending = {}
        self.since = None
        self.wake.clear()
        return message

    def put_back(self, message: PushMessage) -> None:
        newer = self.pending
        self.pending = {r.key: r for r in message.records}
        self.pending.update(newer)
        self.since = message.since if self.since is None else min(self.since, message.since)
        self.version = max(self.version, message.version)
        self.wake.set()


class Pusher:
    """Delivers ``PushMessage`` batches to gatekeepers; one worker task per gatekeeper."""

    def __init__(
        self,
        client: OutgoingClient,
        clock: Clock,
        events: EventBus,
        *,
        timeout_s: float = 2.0,
    ) -> None:
        self._client = client
        self._clock = clock
        self._events = events
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._outboxes: dict[str, _Outbox] = {}

    def register(self, gatekeeper_id: str, url: str) -> None:
        """Add a gatekeeper or change its URL (pending changes are kept)."""
        box = self._outboxes.get(gatekeeper_id)
        if box is None:
            box = _Outbox(gatekeeper_id, url)
            self._outboxes[gatekeeper_id] = box
            box.task = asyncio.get_running_loop().create_task(
                self._work(box), name=f"uem-push-{gatekeeper_id}"
            )
        box.url = url

    async def unregister(self, gatekeeper_id: str) -> None:
        box = self._outboxes.pop(gatekeeper_id, None)
        if box is not None and box.task is not None:
            box.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await box.task

    def publish(
        self,
        since: int,
        version: int,
        records: Iterable[DecisionMessage],
        *,
        skip: tuple[str, tuple[str, str]] | None = None,
    ) -> None:
        """Queue changed decisions for every gatekeeper; returns at once.

        ``skip=(gatekeeper_id, record_key)`` (``record_key`` is ``DecisionMessage.key``, i.e.
        ``(user, device_id)``) leaves that one record out of that one gatekeeper's outbox: it
        already received the decision in the answer to its report. Other gatekeepers, and the
        other records for it, are queued as usual; the batch's version range still reaches it
        with its next push, so it never mistakes the skipped change for a lost batch.
        """
        batch = tuple(records)
        if not batch:
            return
        for box in self._outboxes.values():
            record_skip = skip[1] if skip is not None and skip[0] == box.gatekeeper_id else None
            box.add(since, version, batch, skip=record_skip)

    def pending(self, gatekeeper_id: str) -> int:
        box = self._outboxes.get(gatekeeper_id)
        return 0 if box is None else len(box.pending)

    async def close(self) -> None:
        for gatekeeper_id in list(self._outboxes):
            await self.unregister(gatekeeper_id)

    async def _work(self, box: _Outbox) -> None:
        backoff = FIRST_BACKOFF_S
        attempts = 0
        while True:
            await box.wake.wait()
            message = box.take()
            attempts += 1
            error = await self._send(box.url, message)
            if error is None:
                self._events.emit(
                    PushDelivered(
                        at=self._clock.now(),
                        gatekeeper_id=box.gatekeeper_id,
                        since=message.since,
                        version=message.version,
                        records=len(message.records),
                        attempts=attempts,
                    )
                )
                backoff, attempts = FIRST_BACKOFF_S, 0
                continue
            box.put_back(message)
            self._events.emit(
                PushFailed(
                    at=self._clock.now(),
                    gatekeeper_id=box.gatekeeper_id,
                    attempt=attempts,
                    error=error,
                    retry_in=backoff,
                )
            )
            await self._clock.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _send(self, url: str, message: PushMessage) -> str | None:
        """POST one batch; ``None`` on a 2xx answer, else what went wrong."""
        try:
            answer = await self._client.post(
                url,
                data=to_json(message),
                headers={"Content-Type": CONTENT_TYPE},
                client_timeout=self._timeout,
            )
        except OutgoingError as exc:
            return str(exc)
        if 200 <= answer.status < 300:
            return None
        return f"HTTP {answer.status} from {url}"
