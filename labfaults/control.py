"""The fault switch of one server: the active plan, its state, and who to tell when it changes.

Responsibility: hold at most one active ``FaultPlan`` with its ``FaultState``; set it (from a
plan or a mapping), clear it, decide per request, describe it for the admin API, and call the
subscribers after every change (the aiohttp shell releases hung requests that way; a lab stops
and restarts a listener for a whole-server ``down``). It must not sleep, touch sockets or build
HTTP responses.

Theory of operation: ``set``/``clear`` replace the state (counters restart at 0, the random
source is re-seeded) and bump ``generation``. A subscriber is a plain callable taking the new
plan (None after a clear); one that raises is logged and the others still run.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs

from labfaults.plan import FaultPlan
from labfaults.state import NO_FAULT, FaultAction, FaultState, RequestFacts

log = logging.getLogger("labfaults")

#: Called with the new plan (None: cleared) after every change.
Subscriber = Callable[[FaultPlan | None], None]


class FaultSwitch(Protocol):
    """What a scenario step needs of a server's faults (``uem_sim.faults.FAULTS`` holds a
    ``FaultControl``, ``exchange_sim.faults.FAULTS`` an ``ExchangeFaults``; both fit)."""

    def set_mapping(self, mapping: Mapping[str, Any], source: str = ...) -> None:
        """Validate and activate; raises the package's ``FaultError`` naming the key."""
        ...

    def clear(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]: ...

    @property
    def active(self) -> bool: ...

    @property
    def down(self) -> bool: ...


@attrs.define(eq=False)
class FaultControl:
    """The active generic fault plan of one server."""

    #: What ``scope.command`` may name on this server; None: the server names no commands.
    commands: frozenset[str] | None = None
    #: Makes the random source of a plan from its seed (tests inject their own).
    random_factory: Callable[[int | None], random.Random] = random.Random
    _state: FaultState | None = attrs.field(default=None, init=False)
    _subscribers: list[Subscriber] = attrs.field(factory=list, init=False)
    #: Bumped by every set and clear.
    generation: int = attrs.field(default=0, init=False)
    #: Requests the active plan has been asked about.
    seen: int = attrs.field(default=0, init=False)

    @property
    def plan(self) -> FaultPlan | None:
        return None if self._state is None else self._state.plan

    @property
    def active(self) -> bool:
        return self._state is not None

    @property
    def down(self) -> bool:
        """True while the whole server is down (see ``FaultPlan.down``)."""
        return self._state is not None and self._state.plan.down

    @property
    def needs_command(self) -> bool:
        return self._state is not None and self._state.plan.needs_command

    def parse(self, mapping: object, source: str = "faults") -> FaultPlan:
        """Read a plan for this server (the commands it knows) without activating it."""
        return FaultPlan.from_mapping(mapping, source, commands=self.commands)

    def set(self, plan: FaultPlan) -> None:
        self._state = FaultState.start(plan, self.random_factory(plan.seed))
        self._changed()

    def set_mapping(self, mapping: object, source: str = "faults") -> None:
        self.set(self.parse(mapping, source))

    def clear(self) -> None:
        self._state = None
        self._changed()

    def decide(self, facts: RequestFacts) -> FaultAction:
        if self._state is None:
            return NO_FAULT
        self.seen += 1
        return self._state.decide(facts)

    def describe(self) -> dict[str, Any]:
        """The admin API's view: the plan in its canonical mapping form and the counters."""
        state = self._state
        if state is None:
            return {"active": False, "plan": None, "generation": self.generation}
        return {
            "active": True,
            "plan": state.plan.to_mapping(),
            "generation": self.generation,
            "stats": {
                "requests_seen": self.seen,
                "matched_per_rule": list(state.matched),
                "injected": dict(sorted(state.injected.items())),
            },
        }

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber`` after every change; returns the function that unsubscribes."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def _changed(self) -> None:
        self.generation += 1
        self.seen = 0
        plan = self.plan
        for subscriber in list(self._subscribers):
            try:
                subscriber(plan)
            except Exception:
                log.exception("fault subscriber %r failed", subscriber)
