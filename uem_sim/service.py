"""The UEM shell's glue: registry + store + events + pusher, committed together.

Responsibility: after each registry operation, persist what changed, emit events for changed
decisions and queue them for push, in that order, synchronously. Handlers call one registry
method and then ``commit``; nothing here awaits, so an operation and its commit are atomic
with respect to other requests (the single-threaded event loop is the per-mailbox lock).
Must not: decide anything (``policy.decide`` does) or build HTTP responses (``handlers``).
"""

from __future__ import annotations

import attrs

from simclock import Clock
from uem_sim.contract import reason_names
from uem_sim.events import DecisionChanged, EventBus
from uem_sim.push import Pusher
from uem_sim.registry import Changes, Registry
from uem_sim.store import SqliteStore


@attrs.define(eq=False)
class Uem:
    """Everything a request handler needs."""

    registry: Registry
    store: SqliteStore
    events: EventBus
    clock: Clock
    pusher: Pusher | None = None

    def now(self) -> float:
        return self.clock.now()

    def commit(self, changes: Changes | None = None) -> None:
        """Save the registry's delta, emit and push the changed decisions."""
        delta = self.registry.take_delta()
        if not delta.empty or changes is not None:
            self.store.save(delta)
        if changes is None or not changes.records:
            return
        now = self.clock.now()
        for record in changes.records:
            self.events.emit(
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
            )
