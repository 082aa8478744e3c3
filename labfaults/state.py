"""Per-request fault decisions: which rules match a request and what the server must do.

Responsibility: hold the counters of one active ``FaultPlan`` and turn the facts of a request
(method, path, command) into one ``FaultAction``: how long to wait first, then proceed,
answer with a status, hang or drop the connection. It must not sleep, touch sockets or read
clocks; the random draws come from the ``random.Random`` it is given, so a seeded plan yields
the same actions for the same sequence of requests.

Theory of operation: ``decide`` walks the rules in order. Every matching rule counts the
request; its latency (fixed plus a uniform draw up to the jitter) adds to the delay. The first
matching rule with a terminal fault chooses the outcome, in the order down, hang, fail-after,
error rate. Each matching error rate draws one number per request whether or not an earlier
rule already chose the outcome, so which requests fail depends only on the seed and the order
of matching requests, not on the other rules.
"""

from __future__ import annotations

import enum
import random

import attrs

from labfaults.plan import FaultPlan, FaultRule, Scope


@attrs.frozen
class RequestFacts:
    """What a rule's scope looks at."""

    method: str
    path: str
    #: The operation the server names the request by (the EAS command), if it has one.
    command: str | None = None


class Outcome(enum.Enum):
    """What the server does after the delay."""

    #: Serve the request normally.
    PROCEED = "proceed"
    #: Answer with ``FaultAction.status`` instead of serving it.
    RESPOND = "respond"
    #: Answer nothing until the plan changes (then serve it) or ``hang_max_s`` passes (drop).
    HANG = "hang"
    #: Close the connection without an answer.
    DROP = "drop"


@attrs.frozen
class FaultAction:
    """What to do with one request."""

    #: Seconds to wait before the outcome (real time; see docs/faults.md).
    delay_s: float = 0.0
    outcome: Outcome = Outcome.PROCEED
    #: The status of a RESPOND.
    status: int | None = None
    #: The bound of a HANG.
    hang_max_s: float | None = None
    #: Which fault chose the outcome, for the response header and the stats ("" if none).
    reason: str = ""

    @property
    def is_noop(self) -> bool:
        return self.delay_s == 0.0 and self.outcome is Outcome.PROCEED


#: The action for a request no rule touches.
NO_FAULT = FaultAction()


def matches(scope: Scope, facts: RequestFacts) -> bool:
    """Whether ``facts`` fall inside ``scope``."""
    if not facts.path.startswith(scope.path_prefix):
        return False
    if scope.methods and facts.method.upper() not in scope.methods:
        return False
    return scope.command is None or facts.command == scope.command


@attrs.define(eq=False)
class FaultState:
    """The counters of one active plan and its random source."""

    plan: FaultPlan
    rng: random.Random
    #: Per rule, how many requests it matched.
    matched: list[int] = attrs.field(init=False)
    #: How many requests got each outcome other than PROCEED, and how many were delayed.
    injected: dict[str, int] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        self.matched = [0] * len(self.plan.rules)

    @classmethod
    def start(cls, plan: FaultPlan, rng: random.Random | None = None) -> FaultState:
        """A fresh state; without ``rng``, one seeded from the plan (unseeded if it has none)."""
        return cls(plan, rng if rng is not None else random.Random(plan.seed))

    def decide(self, facts: RequestFacts) -> FaultAction:
        delay = 0.0
        chosen: FaultAction | None = None
        for index, rule in enumerate(self.plan.rules):
            if not matches(rule.scope, facts):
                continue
            self.matched[index] += 1
            verdict = self._terminal(index, rule)
            if chosen is None and verdict is not None:
                chosen = verdict
            if rule.latency is not None:
                delay += rule.latency.fixed_s
                if rule.latency.jitter_s > 0:
                    delay += self.rng.uniform(0.0, rule.latency.jitter_s)
        if chosen is None and delay == 0.0:
            return NO_FAULT
        action = attrs.evolve(chosen or FaultAction(reason="latency"), delay_s=delay)
        if delay > 0:
            self.injected["latency"] = self.injected.get("latency", 0) + 1
        if action.outcome is not Outcome.PROCEED:
            self.injected[action.outcome.value] = self.injected.get(action.outcome.value, 0) + 1
        return action

    def _terminal(self, index: int, rule: FaultRule) -> FaultAction | None:
        where = f"rule {index}"
        outcome: FaultAction | None = None
        if rule.down is not None:
            outcome = FaultAction(outcome=Outcome.DROP, reason=f"down ({where})")
        elif rule.hang is not None:
            outcome = FaultAction(
                outcome=Outcome.HANG, hang_max_s=rule.hang.max_s, reason=f"hang ({where})"
            )
        elif rule.fail_after is not None and self.matched[index] > rule.fail_after.n:
            outcome = FaultAction(
                outcome=Outcome.RESPOND,
                status=rule.fail_after.status,
                reason=f"fail_after {rule.fail_after.n} ({where})",
            )
        if rule.error_rate is not None:
            # One draw per matching request, always: the sequence of failures depends only on
            # the seed and the matching requests (see the module docstring).
            draw = self.rng.random()
            if outcome is None and draw < rule.error_rate.rate:
                outcome = FaultAction(
                    outcome=Outcome.RESPOND,
                    status=rule.error_rate.status,
                    reason=f"error_rate {rule.error_rate.rate:g} ({where})",
                )
        return outcome
