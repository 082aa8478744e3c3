"""Pass/fail rules of a load run: ``p99 < 5ms``, ``error_rate < 0.001``, decision expectations.

Responsibility: parse threshold text into ``Threshold`` values (at the profile boundary, with
messages naming the file and key) and check them against a ``RunResult``, one ``Check`` per
rule with the measured value in words. It must not decide validity (``results`` does) nor the
exit code (the report does: invalid beats failed beats passed).

Grammar: ``[operation.]metric comparator value``.
- operation: ``all`` (default: every operation except held Pings), ``sync``, ``foldersync``,
  ``first_access``, ``ping``.
- metric: ``p50 p75 p90 p95 p99 p999 max mean`` (value is a duration: ``5ms``, ``1.5s``,
  ``200us``), ``error_rate`` (a fraction), ``throughput`` (``100/s``).
- comparator: ``<  <=  >  >=``.
Decision expectations: ``{decisions: {unregistered: blocked, registered: allowed}}``: every
device of the class that got an answer got that decision, and at least one device was seen.
"""

from __future__ import annotations

import enum
import operator
import re
from collections.abc import Callable, Mapping
from typing import Final

import attrs

from loadtest.results import ALL, DeviceClass, RunResult
from loadtest.units import UnitError, format_duration, parse_duration, parse_rate

#: Operations a threshold may name.
OPERATIONS: Final = (ALL, "sync", "foldersync", "first_access", "ping")
LATENCY_METRICS: Final[Mapping[str, float | None]] = {
    "p50": 50.0,
    "p75": 75.0,
    "p90": 90.0,
    "p95": 95.0,
    "p99": 99.0,
    "p999": 99.9,
    "max": 100.0,
    "mean": None,
}
_COMPARATORS: Final[Mapping[str, Callable[[float, float], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_RULE: Final = re.compile(r"\s*(?:([a-z_]+)\.)?([a-z_0-9]+)\s*(<=|>=|<|>)\s*(\S+)\s*")


class ThresholdError(ValueError):
    """Threshold text that cannot be read; the message shows the grammar."""


class Decision(enum.Enum):
    """The decision a device class is expected to get."""

    ALLOWED = "allowed"
    BLOCKED = "blocked"


@attrs.frozen(kw_only=True)
class Threshold:
    """One numeric rule, e.g. ``sync.p99 < 5ms``."""

    text: str
    op: str
    metric: str
    comparator: str
    #: Seconds for latency metrics, a fraction for error_rate, per second for throughput.
    value: float

    @classmethod
    def parse(cls, text: str) -> Threshold:
        match = _RULE.fullmatch(text)
        if match is None:
            raise ThresholdError(
                f"expected '[operation.]metric < value' such as 'p99 < 5ms' or "
                f"'error_rate < 0.001', got {text!r}"
            )
        op, metric, comparator, raw = match.groups()
        op = op or ALL
        if op not in OPERATIONS:
            raise ThresholdError(
                f"unknown operation {op!r}; expected one of {', '.join(OPERATIONS)}"
            )
        try:
            if metric in LATENCY_METRICS:
                value = parse_duration(raw)
            elif metric == "error_rate":
                value = float(raw)
                if not 0.0 <= value <= 1.0:
                    raise ThresholdError(f"error_rate: expected a fraction 0..1, got {raw}")
            elif metric == "throughput":
                value = parse_rate(raw)
            else:
                known = [*LATENCY_METRICS, "error_rate", "throughput"]
                raise ThresholdError(
                    f"unknown metric {metric!r}; expected one of {', '.join(known)}"
                )
        except (UnitError, ValueError) as exc:
            if isinstance(exc, ThresholdError):
                raise
            raise ThresholdError(f"{metric}: {exc}") from None
        return cls(text=text.strip(), op=op, metric=metric, comparator=comparator, value=value)


@attrs.frozen(kw_only=True)
class DecisionExpectation:
    """Every device of ``device_class`` that got an answer got ``decision``."""

    device_class: DeviceClass
    decision: Decision

    @property
    def text(self) -> str:
        return f"every {self.device_class.value} device {self.decision.value}"


Rule = Threshold | DecisionExpectation


def parse_decisions(value: object) -> tuple[DecisionExpectation, ...]:
    """``{unregistered: blocked, registered: allowed}`` -> expectations."""
    if not isinstance(value, Mapping) or not value:
        raise ThresholdError(
            "decisions: expected a mapping such as {unregistered: blocked, registered: allowed}"
        )
    out = []
    for key, wanted in value.items():
        try:
            device_class = DeviceClass(key)
        except ValueError:
            classes = ", ".join(c.value for c in DeviceClass)
            raise ThresholdError(
                f"decisions.{key}: unknown device class; expected {classes}"
            ) from None
        try:
            decision = Decision(wanted)
        except ValueError:
            raise ThresholdError(
                f"decisions.{key}: expected allowed or blocked, got {wanted!r}"
            ) from None
        out.append(DecisionExpectation(device_class=device_class, decision=decision))
    return tuple(out)


@attrs.frozen(kw_only=True)
class Check:
    """One rule checked against a run."""

    rule: str
    passed: bool
    #: The measured value in words ("p99 3.2ms", "12 of 40 allowed").
    measured: str


def evaluate(rules: tuple[Rule, ...], result: RunResult) -> tuple[Check, ...]:
    """Every rule, checked."""
    return tuple(_check(rule, result) for rule in rules)


def _check(rule: Rule, result: RunResult) -> Check:
    if isinstance(rule, DecisionExpectation):
        return _check_decision(rule, result)
    stats = result.stats(rule.op)
    compare = _COMPARATORS[rule.comparator]
    if stats is None or stats.finished == 0:
        return Check(rule=rule.text, passed=False, measured=f"no {rule.op} operation finished")
    if rule.metric == "error_rate":
        rate = result.error_rate(rule.op)
        return Check(
            rule=rule.text,
            passed=compare(rate, rule.value),
            measured=f"{rate:.4g} ({stats.errors} of {stats.finished})",
        )
    if rule.metric == "throughput":
        per_s = result.throughput(rule.op)
        return Check(rule=rule.text, passed=compare(per_s, rule.value), measured=f"{per_s:.1f}/s")
    p = LATENCY_METRICS[rule.metric]
    micros = stats.latency.mean if p is None else stats.latency.percentile(p)
    if micros is None:  # pragma: no cover - finished > 0 means something was recorded
        return Check(rule=rule.text, passed=False, measured="nothing recorded")
    seconds = micros / 1e6
    return Check(
        rule=rule.text,
        passed=compare(seconds, rule.value),
        measured=f"{rule.metric} {format_duration(seconds)}",
    )


def _check_decision(rule: DecisionExpectation, result: RunResult) -> Check:
    tally = result.decisions[rule.device_class]
    seen = tally.allowed | tally.blocked
    if not seen:
        return Check(
            rule=rule.text,
            passed=False,
            measured=f"no {rule.device_class.value} device got an answer",
        )
    wrong = tally.blocked if rule.decision is Decision.ALLOWED else tally.allowed
    other = "blocked" if rule.decision is Decision.ALLOWED else "allowed"
    if not wrong:
        return Check(
            rule=rule.text,
            passed=True,
            measured=f"{len(seen)} of {len(seen)} {rule.decision.value}",
        )
    listed = ", ".join(sorted(wrong)[:5]) + (" ..." if len(wrong) > 5 else "")
    return Check(
        rule=rule.text,
        passed=False,
        measured=f"{len(wrong)} of {len(seen)} {other} ({listed})",
    )
