"""The UEM shell's glue: registry + store + events + pusher, committed together.

Responsibility: after each registry operation, persist what changed, emit events for changed
decisions and queue them for push, in that order, synchronously. Handlers call one registry
method and then ``commit``; nothing here awaits, so an operation and its commit are atomic
with respect to other requests (the single-threaded event loop is the per-mailbox lock).
Must not: decide anything (``policy.decide`` does) or build HTTP responses (``handlers``).

Persistence is batched: ``commit`` stages the registry's delta in the store and a timer
flushes everything staged within ``FLUSH_INTERVAL_S`` in one transaction (without a running
loop it flushes at once). The store's ``close`` flushes, so a clean stop loses nothing; a
crash loses at most the last interval's changes (docs/performance.md, "First-access storm").

Push: a report's own record is not pushed back to the gatekeeper that reported it (the
report's answer carried that decision); other gatekeepers get it, and every other record the
report changed goes to everyone.
"""

from __future__ import annotations

import asyncio
from typing import Final

import attrs

from simclock import Clock
from uem_sim.contract import reason_names
from uem_sim.events import DecisionChanged, EventBus
from uem_sim.push import Pusher
from uem_sim.registry import Changes, Registry
from uem_sim.store import SqliteStore

#: Longest time a committed change waits in memory before its transaction (seconds).
FLUSH_INTERVAL_S: Final = 0.05


@attrs.define(eq=False)
class Uem:
    """Everything a request handler needs."""

    registry: Registry
    store: SqliteStore
    events: EventBus
    clock: Clock
    pusher: Pusher | None = None
    _flush_timer: asyncio.TimerHandle | None = attrs.field(default=None, init=False)

    def now(self) -> float:
        return self.clock.now()

    def commit(self, changes: Changes | None = None) -> None:
        """Save the registry's delta, emit and push the changed decisions."""
        delta = self.registry.take_delta()
        if not delta.empty or changes is not None:
            self.store.stage(delta)
            self._flush_soon()
        if changes is None or not changes.records:
            return
        now = self.clock.now()
        emit = self.events.emit
        for record in changes.records:
            emit(
                DecisionChanged(
                    at=now,
                    mailbox=record.mailbox,
                    device_id=record.device_id,
                    state=record.state.value,
                    reasons=record.reasons,
                    reason_names=reason_names(record.reasons),
                    version=record.version,
                    removed=record.removed,
                )
            )
        if self.pusher is not None:
            self.pusher.publish(
                changes.since,
                changes.version,
                (self.registry.message(r) for r in changes.records),
                skip=changes.reported,
            )

    def flush(self) -> None:
        """Write what is staged now (the timer calls this; so may anyone who must not wait)."""
        timer, self._flush_timer = self._flush_timer, None
        if timer is not None:
            timer.cancel()
        self.store.flush()

    def _flush_soon(self) -> None:
        if self._flush_timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.store.flush()
            return
        self._flush_timer = loop.call_later(FLUSH_INTERVAL_S, self.flush)
