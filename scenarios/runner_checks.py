"""Expectations against what was observed: the scenario runner's pure core.

Responsibility: compare one expectation of a scenario (``scenarios.spec_steps``) with what the
runner observed (a phone's last step, the gatekeeper's record as its admin API shows it, the
UEM's record, the events since a mark, a counter) and return the mismatches, each with the
field's path, the expected and the actual value in words; and render a mismatch as the readable
diff ``sentry-sim run`` prints. It must not do I/O or know how the observations were made
(``scenarios.runner`` does).

Theory of operation: every ``check_*`` function takes an expectation and plain observations
(JSON-like mappings as the admin APIs return them, or small frozen values) and returns a tuple
of ``Mismatch``; an empty tuple means the expectation held. Absent records are ``None`` and
compare equal to the expected state ``absent``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from scenarios.spec_steps import (
    CounterExpectation,
    DeviceExpectation,
    EventExpectation,
    GatekeeperExpectation,
    RecordRef,
    UemExpectation,
)
from uem_sim.contract import Reason
from uem_sim.model import strip_domain

#: Events shown in a failed event expectation's diff (the rest are counted).
MAX_EVENTS_SHOWN: Final = 6


@attrs.frozen
class Mismatch:
    """One field of an expectation that did not hold."""

    #: The field's path in the file: ``steps[4].expect.gatekeeper[0].state``.
    path: str
    #: What the file expected, in words.
    expected: str
    #: What was observed, in words.
    actual: str
    #: The record or phone it is about (``dave-pixel``), empty when none.
    subject: str = ""
    #: More context (a record's explanation, the events that were seen).
    detail: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "subject": self.subject,
            "expected": self.expected,
            "actual": self.actual,
            "detail": list(self.detail),
        }


@attrs.frozen(kw_only=True)
class DeviceSeen:
    """What a phone's last step came to."""

    saw: str  #: allowed | blocked | wiped | error
    http: int | None  #: HTTP status of its last response (None: no response at all)
    eas_status: int | None
    state: str  #: the phone's DeviceState value
    summary: str = ""  #: the last exchange in words


@attrs.frozen(kw_only=True)
class ObservedEvent:
    """An event of the gatekeeper or the UEM, in its JSON form, numbered in arrival order."""

    seq: int
    actor: str  #: "gatekeeper" or "uem"
    name: str  #: the class name, e.g. ``ReportSent``
    fields: Mapping[str, Any]

    def line(self) -> str:
        """One short line for diffs: ``DecisionApplied record=alice/X state=blocked ...``."""
        skip = {"event", "at", "request_id"}
        shown = " ".join(f"{k}={_short(v)}" for k, v in self.fields.items() if k not in skip)
        return f"{self.name} {shown}".strip()


def _short(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def reason_list(mask: int | None) -> str:
    """``[COMPROMISED, OS_VERSION]`` for a mask; ``[]`` for none."""
    if mask is None:
        return "(unknown)"
    return "[" + ", ".join(r.name for r in Reason if r.name and mask & r.value) + "]"


def _field(
    out: list[Mismatch],
    path: str,
    subject: str,
    expected: object,
    actual: object,
    detail: tuple[str, ...] = (),
) -> None:
    if expected is not None and expected != actual:
        out.append(Mismatch(path, _words(expected), _words(actual), subject, detail))


def _words(value: object) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- device ------------------------------------------------------------------------------------


def check_device(exp: DeviceExpectation, seen: DeviceSeen | None) -> tuple[Mismatch, ...]:
    """The phone's last step against ``expect: device:``."""
    if seen is None:
        return (
            Mismatch(
                exp.path,
                "a phone that has taken a step",
                "the phone has not taken any step yet",
                exp.device,
            ),
        )
    detail = (f"last exchange: {seen.summary}",) if seen.summary else ()
    out: list[Mismatch] = []
    _field(out, f"{exp.path}.saw", exp.device, exp.saw, seen.saw, detail)
    _field(out, f"{exp.path}.http", exp.device, exp.http, seen.http, detail)
    _field(out, f"{exp.path}.eas_status", exp.device, exp.eas_status, seen.eas_status, detail)
    _field(out, f"{exp.path}.state", exp.device, exp.state, seen.state, detail)
    return tuple(out)


# --- gatekeeper and UEM records ----------------------------------------------------------------


def _reasons(
    out: list[Mismatch],
    path: str,
    subject: str,
    exact: int | None,
    include: int,
    actual: int | None,
    detail: tuple[str, ...],
) -> None:
    if exact is not None and exact != actual:
        out.append(
            Mismatch(f"{path}.reasons", reason_list(exact), reason_list(actual), subject, detail)
        )
    if include and (actual is None or actual & include != include):
        missing = include if actual is None else include & ~actual
        out.append(
            Mismatch(
                f"{path}.reasons_include",
                f"at least {reason_list(include)}",
                f"{reason_list(actual)} (missing {reason_list(missing)})",
                subject,
                detail,
            )
        )


def check_gatekeeper(
    exp: GatekeeperExpectation, record: Mapping[str, Any] | None
) -> tuple[Mismatch, ...]:
    """The gatekeeper's record (its admin API's explain JSON; None: no record)."""
    subject = exp.record.label + (f" at gatekeeper {exp.gatekeeper}" if exp.gatekeeper > 1 else "")
    if record is None:
        if exp.state == "absent":
            return ()
        return (
            Mismatch(
                f"{exp.path}.state" if exp.state else exp.path,
                exp.state or "a record",
                "absent (the gatekeeper has no record of it)",
                subject,
            ),
        )
    state = str(record.get("state", "")).upper()
    detail = tuple(
        str(record[k]) for k in ("explanation",) if isinstance(record.get(k), str) and record[k]
    )
    out: list[Mismatch] = []
    _field(out, f"{exp.path}.state", subject, exp.state, state, detail)
    _reasons(
        out, exp.path, subject, exp.reasons, exp.reasons_include, record.get("reasons"), detail
    )
    _field(out, f"{exp.path}.fallback", subject, exp.fallback, record.get("fallback"), detail)
    _field(
        out,
        f"{exp.path}.policy_version",
        subject,
        exp.policy_version,
        record.get("policy_version"),
        detail,
    )
    return tuple(out)


def check_uem(exp: UemExpectation, view: Mapping[str, Any] | None) -> tuple[Mismatch, ...]:
    """The UEM's record in its ActiveSync devices view (None: no record)."""
    subject = exp.record.label
    if view is None:
        if "absent" in (exp.group, exp.state):
            return ()
        return (
            Mismatch(
                exp.path,
                f"group {exp.group}" if exp.group else f"state {exp.state or 'a record'}",
                "absent (the UEM has no record of it)",
                subject,
            ),
        )
    detail = (f"UEM: group {view.get('group')}, reasons {reason_list(view.get('reasons'))}",)
    out: list[Mismatch] = []
    _field(out, f"{exp.path}.group", subject, exp.group, view.get("group"), detail)
    _field(out, f"{exp.path}.state", subject, exp.state, view.get("state"), detail)
    _reasons(out, exp.path, subject, exp.reasons, exp.reasons_include, view.get("reasons"), detail)
    _field(out, f"{exp.path}.registered", subject, exp.registered, view.get("registered"), detail)
    return tuple(out)


# --- events ------------------------------------------------------------------------------------


def mailbox_of(user: str, emails: Mapping[str, str]) -> str:
    """The UEM's mailbox identity of a login (``CORP\\Alice`` and ``alice@example.com`` are
    ``alice`` when the lab knows that address)."""
    bare = strip_domain(user).lower()
    return emails.get(bare, bare)


def event_matches(exp: EventExpectation, event: ObservedEvent, emails: Mapping[str, str]) -> bool:
    """Whether ``event`` is of the expected type, record and field values."""
    if event.actor != exp.event.actor or event.name != exp.event.name:
        return False
    if exp.record is not None and not _is_record(exp.record, event, emails):
        return False
    return all(event.fields.get(key) == wanted for key, wanted in exp.where.items())


def _is_record(ref: RecordRef, event: ObservedEvent, emails: Mapping[str, str]) -> bool:
    device_id = ref.device_id.lower()
    if "record" in event.fields:
        record = str(event.fields["record"]).lower()
        return record == f"{strip_domain(ref.user).lower()}/{device_id}"
    mailbox = str(event.fields.get("mailbox", "")).lower()
    return (
        mailbox == mailbox_of(ref.user, emails)
        and str(event.fields.get("device_id", "")).lower() == device_id
    )


def _count_words(exp: EventExpectation) -> str:
    if exp.count is not None:
        return "none" if exp.count == 0 else f"exactly {exp.count}"
    if exp.at_least is not None and exp.at_most is not None:
        return f"{exp.at_least} to {exp.at_most}"
    if exp.at_most is not None:
        return f"at most {exp.at_most}"
    return f"at least {exp.at_least or 1}"


def _what(exp: EventExpectation) -> str:
    text = exp.event.name
    if exp.record is not None:
        text += f" of {exp.record.label}"
    if exp.where:
        text += " where " + ", ".join(f"{k}={_words(v)}" for k, v in exp.where.items())
    return text


def check_events(
    exp: EventExpectation,
    events: Sequence[ObservedEvent],
    emails: Mapping[str, str],
    window: str,
) -> tuple[Mismatch, ...]:
    """Count the matching events in ``events`` (the window) against the expectation."""
    found = [e for e in events if event_matches(exp, e, emails)]
    n = len(found)
    ok = (
        (exp.count is None or n == exp.count)
        and (exp.at_least is None or n >= exp.at_least)
        and (exp.at_most is None or n <= exp.at_most)
    )
    if ok:
        return ()
    shown_from = found if found else [e for e in events if e.name == exp.event.name]
    label = "matching" if found else f"other {exp.event.name}"
    detail = tuple(f"{label}: {e.line()}" for e in shown_from[:MAX_EVENTS_SHOWN])
    if len(shown_from) > MAX_EVENTS_SHOWN:
        detail += (f"... and {len(shown_from) - MAX_EVENTS_SHOWN} more",)
    return (
        Mismatch(
            exp.path,
            f"{_count_words(exp)} {_what(exp)} ({window})",
            f"{n} such event{'s' if n != 1 else ''}",
            exp.record.label if exp.record else "",
            detail,
        ),
    )


# --- counters ----------------------------------------------------------------------------------


def check_counter(exp: CounterExpectation, value: int | None) -> tuple[Mismatch, ...]:
    if value is None:
        return (Mismatch(exp.path, "a value", "could not be read", exp.name),)
    if exp.equals is not None and value != exp.equals:
        return (Mismatch(exp.path, str(exp.equals), str(value), exp.name),)
    low, high = exp.at_least, exp.at_most
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = " and ".join(
            t
            for t in (
                f"at least {low}" if low is not None else "",
                f"at most {high}" if high is not None else "",
            )
            if t
        )
        return (Mismatch(exp.path, bounds, str(value), exp.name),)
    return ()


# --- rendering ---------------------------------------------------------------------------------


def render_mismatch(mismatch: Mismatch, line: int | None, indent: str = "      ") -> list[str]:
    """A readable diff: where, then ``- expected`` / ``+ actual``, then the context."""
    where = mismatch.path + (f" (line {line})" if line else "")
    about = f"  [{mismatch.subject}]" if mismatch.subject else ""
    lines = [
        f"{indent}{where}{about}",
        f"{indent}  - expected: {mismatch.expected}",
        f"{indent}  + actual:   {mismatch.actual}",
    ]
    lines += [f"{indent}    {d}" for d in mismatch.detail]
    return lines


def render_mismatches(mismatches: Iterable[tuple[Mismatch, int | None]]) -> list[str]:
    out: list[str] = []
    for mismatch, line in mismatches:
        out += render_mismatch(mismatch, line)
    return out
