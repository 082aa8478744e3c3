"""Fault plans: what a mock server should do wrong, as frozen values read from a mapping.

Responsibility: define the generic HTTP faults a lab can inject into a mock server (fixed and
jittered latency, an error rate with a chosen status, hang, fail after N requests, down), the
scope each applies to (a path prefix, methods, an operation name such as the EAS command), and
read them from a JSON/YAML mapping with errors that name the key, what was expected and what
arrived. It must not do I/O, read clocks or draw random numbers: ``labfaults.state`` decides
per request, and the servers' shells act.

Theory of operation: a ``FaultPlan`` is an ordered tuple of ``FaultRule``; each rule has one
``Scope`` and at least one fault. The mapping form is either one rule written at the top level
(``{"scope": {...}, "latency": {...}, "error_rate": {...}}``) or ``{"rules": [rule, ...]}``;
``seed`` (top level) makes the random draws repeatable. ``to_mapping`` writes the canonical form
back, and ``from_mapping(to_mapping(p)) == p``. Every number is bounded: no latency or hang
longer than ``MAX_FAULT_S`` seconds, so a forgotten fault cannot hold a request for ever.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

import attrs

#: Longest latency (fixed + jitter) and longest hang, in seconds.
MAX_FAULT_S: Final = 300.0
#: Default bound of a hang.
DEFAULT_HANG_S: Final = MAX_FAULT_S
#: Most rules in one plan.
MAX_RULES: Final = 32
#: Longest path prefix.
MAX_PREFIX: Final = 200
#: The largest count a fault accepts (fail after N, Nth Provision...).
MAX_COUNT: Final = 1_000_000_000
#: Methods a scope may name.
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The fault keys of a rule, in the order the state applies them.
FAULT_KEYS: Final = ("down", "hang", "fail_after", "error_rate", "latency")
#: Every key a rule may carry.
RULE_KEYS: Final = frozenset({"scope", *FAULT_KEYS})
#: Keys of a scope.
SCOPE_KEYS: Final = frozenset({"path_prefix", "methods", "command"})


class FaultError(ValueError):
    """A fault mapping that cannot be used; the message names the key path and the problem."""

    def __init__(self, source: str, path: str, problem: str) -> None:
        super().__init__(f"{source}: {path}: {problem}" if path else f"{source}: {problem}")
        self.source = source
        #: The key path of the offending value, e.g. ``rules[1].error_rate.rate``.
        self.path = path
        self.problem = problem


# --- values -----------------------------------------------------------------------------------


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= MAX_FAULT_S):
        raise ValueError(f"{attribute.name}: expected 0..{MAX_FAULT_S:g} seconds, got {value}")


def _error_status(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 400 <= value <= 599:
        raise ValueError(f"{attribute.name}: expected an HTTP error status 400..599, got {value}")


@attrs.frozen
class Latency:
    """Delay each matching request by ``fixed_s`` plus a uniform draw from ``[0, jitter_s]``."""

    fixed_s: float = attrs.field(validator=_non_negative)
    jitter_s: float = attrs.field(default=0.0, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.fixed_s + self.jitter_s > MAX_FAULT_S:
            raise ValueError(f"fixed_s + jitter_s: expected at most {MAX_FAULT_S:g} seconds")


@attrs.frozen
class ErrorRate:
    """Answer a matching request with ``status`` with probability ``rate`` (0..1)."""

    rate: float = attrs.field()
    status: int = attrs.field(default=503, validator=_error_status)

    @rate.validator
    def _rate(self, _: attrs.Attribute[float], value: float) -> None:
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"rate: expected 0..1, got {value}")


@attrs.frozen
class Hang:
    """Never answer a matching request until the plan changes, for at most ``max_s`` seconds
    (then the connection is dropped)."""

    max_s: float = attrs.field(default=DEFAULT_HANG_S, validator=_non_negative)


@attrs.frozen
class FailAfter:
    """Let the first ``n`` matching requests through, answer every later one with ``status``."""

    n: int = attrs.field()
    status: int = attrs.field(default=503, validator=_error_status)

    @n.validator
    def _n(self, _: attrs.Attribute[int], value: int) -> None:
        if not 0 <= value <= MAX_COUNT:
            raise ValueError(f"n: expected 0..{MAX_COUNT}, got {value}")


@attrs.frozen
class Down:
    """The server is down: a matching request's connection is dropped without an answer."""


@attrs.frozen
class Scope:
    """Which requests a rule applies to; an empty scope matches every (non-exempt) request."""

    #: Requests whose path starts with this.
    path_prefix: str = "/"
    #: Requests with one of these methods; empty: any method.
    methods: frozenset[str] = frozenset()
    #: The operation the server names the request by (the EAS command on the mock Exchange);
    #: None: any.
    command: str | None = None

    def to_mapping(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path_prefix": self.path_prefix}
        if self.methods:
            out["methods"] = sorted(self.methods)
        if self.command is not None:
            out["command"] = self.command
        return out


Fault = Down | Hang | FailAfter | ErrorRate | Latency


@attrs.frozen
class FaultRule:
    """One scope and the faults applied to the requests it matches."""

    scope: Scope = attrs.field(factory=Scope)
    down: Down | None = None
    hang: Hang | None = None
    fail_after: FailAfter | None = None
    error_rate: ErrorRate | None = None
    latency: Latency | None = None

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The faults present, in the order ``FAULT_KEYS`` gives."""
        found = (self.down, self.hang, self.fail_after, self.error_rate, self.latency)
        return tuple(f for f in found if f is not None)

    def to_mapping(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scope": self.scope.to_mapping()}
        if self.down is not None:
            out["down"] = True
        if self.hang is not None:
            out["hang"] = {"max_s": self.hang.max_s}
        if self.fail_after is not None:
            out["fail_after"] = {"n": self.fail_after.n, "status": self.fail_after.status}
        if self.error_rate is not None:
            out["error_rate"] = {"rate": self.error_rate.rate, "status": self.error_rate.status}
        if self.latency is not None:
            out["latency"] = {"fixed_s": self.latency.fixed_s, "jitter_s": self.latency.jitter_s}
        return out


@attrs.frozen
class FaultPlan:
    """The faults a server applies, rule by rule, and the seed of its random draws."""

    rules: tuple[FaultRule, ...]
    #: Seed of the random draws (error rate, jitter); None: a fresh seed each time it is set.
    seed: int | None = None

    @property
    def needs_command(self) -> bool:
        """True when a rule is scoped to a command (the shell then works the command out)."""
        return any(rule.scope.command is not None for rule in self.rules)

    @property
    def down(self) -> bool:
        """True when the whole server is down: a rule with ``down`` and an unrestricted scope.

        This is what a lab follows to stop its listener (``labfaults.listener``)."""
        return any(rule.down is not None and rule.scope == Scope() for rule in self.rules)

    def to_mapping(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rules": [rule.to_mapping() for rule in self.rules]}
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    @classmethod
    def from_mapping(
        cls,
        mapping: object,
        source: str = "faults",
        *,
        commands: Collection[str] | None = None,
    ) -> FaultPlan:
        """Read a plan; ``commands`` lists what ``scope.command`` may name (None: no commands).

        Raises ``FaultError`` naming the key for anything it cannot use, never anything else.
        """
        reader = _Reader(source, None if commands is None else frozenset(commands))
        return reader.plan(mapping)


# --- reading ----------------------------------------------------------------------------------


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


@attrs.frozen
class _Reader:
    source: str
    commands: frozenset[str] | None

    def fail(self, path: str, problem: str) -> FaultError:
        return FaultError(self.source, path, problem)

    def mapping(self, value: object, path: str, keys: Collection[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if not isinstance(key, str) or key not in keys:
                raise self.fail(
                    _join(path, str(key)[:40]),
                    f"unknown key; expected one of {', '.join(sorted(keys))}",
                )
        return value

    def number(self, value: object, path: str, lo: float, hi: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, f"expected a number {lo:g}..{hi:g}, got {_kind(value)}")
        number = float(value)
        if not (math.isfinite(number) and lo <= number <= hi):
            raise self.fail(path, f"expected a number {lo:g}..{hi:g}, got {_kind(value)}")
        return number

    def integer(self, value: object, path: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(path, f"expected an integer {lo}..{hi}, got {_kind(value)}")
        return value

    def status(self, value: object, path: str) -> int:
        return self.integer(value, path, 400, 599)

    def plan(self, value: object) -> FaultPlan:
        top = self.mapping(value, "", RULE_KEYS | {"rules", "seed"})
        seed = None
        if "seed" in top and top["seed"] is not None:
            seed = self.integer(top["seed"], "seed", 0, 2**63 - 1)
        if "rules" in top:
            inline = sorted(k for k in top if k in RULE_KEYS)
            if inline:
                raise self.fail(
                    inline[0], "give either rules or one rule's keys at the top level, not both"
                )
            raw = top["rules"]
            if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
                raise self.fail("rules", f"expected a list of rules, got {_kind(raw)}")
            if not 1 <= len(raw) <= MAX_RULES:
                raise self.fail("rules", f"expected 1..{MAX_RULES} rules, got {len(raw)}")
            rules = tuple(self.rule(r, f"rules[{i}]") for i, r in enumerate(raw))
        else:
            rules = (self.rule({k: v for k, v in top.items() if k != "seed"}, ""),)
        return FaultPlan(rules=rules, seed=seed)

    def rule(self, value: object, path: str) -> FaultRule:
        raw = self.mapping(value, path, RULE_KEYS)
        if not any(key in raw for key in FAULT_KEYS):
            raise self.fail(
                path, f"expected at least one fault: {', '.join(FAULT_KEYS)} (to clear, DELETE)"
            )
        return FaultRule(
            scope=self.scope(raw.get("scope"), _join(path, "scope")),
            down=self.down(raw["down"], _join(path, "down")) if "down" in raw else None,
            hang=self.hang(raw["hang"], _join(path, "hang")) if "hang" in raw else None,
            fail_after=(
                self.fail_after(raw["fail_after"], _join(path, "fail_after"))
                if "fail_after" in raw
                else None
            ),
            error_rate=(
                self.error_rate(raw["error_rate"], _join(path, "error_rate"))
                if "error_rate" in raw
                else None
            ),
            latency=self.latency(raw["latency"], _join(path, "latency"))
            if "latency" in raw
            else None,
        )

    def scope(self, value: object, path: str) -> Scope:
        if value is None:
            return Scope()
        raw = self.mapping(value, path, SCOPE_KEYS)
        prefix = raw.get("path_prefix", "/")
        where = _join(path, "path_prefix")
        if (
            not isinstance(prefix, str)
            or not prefix.startswith("/")
            or len(prefix) > MAX_PREFIX
            or not prefix.isprintable()
        ):
            raise self.fail(
                where,
                f"expected a path starting with / (at most {MAX_PREFIX} characters), "
                f"got {_kind(prefix)}",
            )
        methods = self.methods(raw.get("methods"), _join(path, "methods"))
        command = self.command(raw.get("command"), _join(path, "command"))
        return Scope(path_prefix=prefix, methods=methods, command=command)

    def methods(self, value: object, path: str) -> frozenset[str]:
        if value is None:
            return frozenset()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, Sequence) or isinstance(items, bytes) or not items:
            raise self.fail(path, f"expected a list of HTTP methods, got {_kind(value)}")
        found = set()
        for index, item in enumerate(items):
            # Only text can name a method (a list or mapping here is not even hashable).
            name = item.upper() if isinstance(item, str) else None
            if name is None or name not in METHODS:
                raise self.fail(
                    f"{path}[{index}]",
                    f"expected one of {', '.join(sorted(METHODS))}, got {_kind(item)}",
                )
            found.add(str(name))
        return frozenset(found)

    def command(self, value: object, path: str) -> str | None:
        if value is None:
            return None
        if self.commands is None:
            raise self.fail(path, "this server names no commands; scope by path_prefix instead")
        if not isinstance(value, str) or value not in self.commands:
            raise self.fail(
                path, f"expected one of {', '.join(sorted(self.commands))}, got {_kind(value)}"
            )
        return value

    def down(self, value: object, path: str) -> Down | None:
        if value is not True:
            raise self.fail(path, f"expected true (to bring it back, DELETE), got {_kind(value)}")
        return Down()

    def hang(self, value: object, path: str) -> Hang:
        if value is True:
            return Hang()
        raw = self.mapping(value, path, {"max_s"})
        max_s = self.number(
            raw.get("max_s", DEFAULT_HANG_S), _join(path, "max_s"), 0.001, MAX_FAULT_S
        )
        return Hang(max_s=max_s)

    def fail_after(self, value: object, path: str) -> FailAfter:
        if isinstance(value, int) and not isinstance(value, bool):
            return FailAfter(n=self.integer(value, path, 0, MAX_COUNT))
        raw = self.mapping(value, path, {"n", "status"})
        if "n" not in raw:
            raise self.fail(_join(path, "n"), "missing; how many requests pass before failing")
        return FailAfter(
            n=self.integer(raw["n"], _join(path, "n"), 0, MAX_COUNT),
            status=self.status(raw.get("status", 503), _join(path, "status")),
        )

    def error_rate(self, value: object, path: str) -> ErrorRate:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return ErrorRate(rate=self.number(value, path, 0.0, 1.0))
        raw = self.mapping(value, path, {"rate", "status"})
        if "rate" not in raw:
            raise self.fail(_join(path, "rate"), "missing; the share of requests to fail, 0..1")
        return ErrorRate(
            rate=self.number(raw["rate"], _join(path, "rate"), 0.0, 1.0),
            status=self.status(raw.get("status", 503), _join(path, "status")),
        )

    def latency(self, value: object, path: str) -> Latency:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return Latency(fixed_s=self.number(value, path, 0.0, MAX_FAULT_S))
        raw = self.mapping(value, path, {"fixed_s", "jitter_s"})
        fixed = self.number(raw.get("fixed_s", 0.0), _join(path, "fixed_s"), 0.0, MAX_FAULT_S)
        jitter = self.number(raw.get("jitter_s", 0.0), _join(path, "jitter_s"), 0.0, MAX_FAULT_S)
        if fixed + jitter > MAX_FAULT_S:
            raise self.fail(
                _join(path, "jitter_s"),
                f"fixed_s + jitter_s: expected at most {MAX_FAULT_S:g} seconds, "
                f"got {fixed + jitter:g}",
            )
        return Latency(fixed_s=fixed, jitter_s=jitter)
