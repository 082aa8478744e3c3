"""The dashboard's picture of a lab: per-device ladders and the event log, folded from events.

Responsibility: turn the gatekeeper's events (``sentry_sim.events``, JSON form), the UEM's
events (``uem_sim.events``, ``to_dict`` form) and the simulated phones' results into
(a) a ladder per device record: arrows between the four lanes (device, gatekeeper, UEM,
Exchange), each numbered with its step of the flow (DESIGN.md section 2, ``scenarios.flow``)
and carrying the decision and its reasons, and (b) a bounded event log with one-line summaries.
It must not do I/O, read a clock or know about aiohttp: the app feeds it and ships what it
returns; everything is bounded so a long session cannot grow it without limit.

Theory of operation: every ``take_*`` call adds one ``LogEntry`` and zero or more ``Arrow``s and
returns them as an ``Update`` (what the live stream sends). The mapping from an event to its
arrows is a table of small functions keyed by the event's kind. The model remembers, per
record, the UEM's last decision and the gatekeeper's last cached decision, so an arrow that
answers (the UEM's answer, a denial) can carry the reasons, and a push that repeats what is
already cached adds no arrow. The UEM's events about its own TLS (outgoing settings applied,
an outgoing handshake failed, a certificate replaced) concern no record: they become log lines
in plain words (the Outgoing TLS panel, ``tls_panel``, shows their effect).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from scenarios.flow import STEP_TITLES, answer_text, reasons_text
from sentry_sim.device_list import record_key

#: The lanes of a ladder, left to right.
LANES: Final = ("device", "sentry", "uem", "exchange")
#: How each lane is titled on the page and in exports.
LANE_TITLES: Final[Mapping[str, str]] = {
    "device": "Device",
    "sentry": "Sentry (gatekeeper)",
    "uem": "UEM",
    "exchange": "Exchange",
}
#: What an arrow's outcome can be (the page styles each with a colour and a word).
OUTCOMES: Final = ("ok", "denied", "failed", "note")
#: Where a log entry came from.
SOURCES: Final = ("sentry", "uem", "device", "dashboard")
#: Denials that are step 8 (the device is told it is blocked); others are not one of the steps.
BLOCKING_DENIALS: Final = frozenset(
    {"blocked", "mailbox_limit", "unreachable_block", "wipe_pending"}
)
#: Longest summary kept in a log entry.
MAX_SUMMARY: Final = 300


@attrs.frozen(kw_only=True)
class Arrow:
    """One message on a device's ladder (``source`` to ``target``; equal lanes: a note)."""

    #: Position in the whole model (grows by one per arrow): orders arrows across devices.
    n: int
    #: The step of the flow (1-8), or None when the arrow is not one of the 8 steps.
    step: int | None
    source: str = attrs.field(validator=attrs.validators.in_(LANES))
    target: str = attrs.field(validator=attrs.validators.in_(LANES))
    label: str
    at: float
    #: The kind of the event that drew it (``request_denied``, ``DecisionChanged``...).
    event: str
    request_id: str = ""
    #: ALLOW/BLOCK/WIPE (the UEM's words) or allowed/blocked/wiped (the cache's), or "".
    decision: str = ""
    reasons: tuple[str, ...] = ()
    outcome: str = attrs.field(default="ok", validator=attrs.validators.in_(OUTCOMES))

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "step": self.step,
            "title": STEP_TITLES.get(self.step, "") if self.step is not None else "",
            "source": self.source,
            "target": self.target,
            "label": self.label,
            "at": self.at,
            "event": self.event,
            "request_id": self.request_id,
            "decision": self.decision,
            "reasons": list(self.reasons),
            "outcome": self.outcome,
        }


@attrs.frozen(kw_only=True)
class LogEntry:
    """One line of the event log."""

    n: int
    source: str = attrs.field(validator=attrs.validators.in_(SOURCES))
    kind: str
    at: float
    #: The device record it concerns (``user/device_id``), or "".
    record: str
    summary: str
    #: The event's own fields, JSON-ready.
    fields: Mapping[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "source": self.source,
            "kind": self.kind,
            "at": self.at,
            "record": self.record,
            "summary": self.summary,
            "fields": dict(self.fields),
        }


@attrs.frozen(kw_only=True)
class Update:
    """What one event changed: its log entry and the arrows it added to ``entry.record``."""

    entry: LogEntry
    arrows: tuple[Arrow, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "event",
            "entry": self.entry.to_json(),
            "record": self.entry.record,
            "arrows": [a.to_json() for a in self.arrows],
        }


@attrs.frozen(kw_only=True)
class _Draft:
    """An arrow before the model numbers it."""

    step: int | None
    source: str
    target: str
    label: str
    decision: str = ""
    reasons: tuple[str, ...] = ()
    outcome: str = "ok"


def plain(value: object) -> Any:
    """``value`` as JSON-ready data (tuples to lists, int flags to ints, the rest to str)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    return str(value)


def _text(event: Mapping[str, Any], key: str) -> str:
    value = event.get(key)
    return "" if value is None else str(value)


def _number(event: Mapping[str, Any], key: str) -> float:
    value = event.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


def _names(event: Mapping[str, Any]) -> tuple[str, ...]:
    raw = event.get("reason_names")
    if not isinstance(raw, list | tuple):
        return ()
    return tuple(str(name) for name in raw)


def _g(n: float) -> str:
    return f"{n:g}"


@attrs.define(eq=False)
class FlowModel:
    """Per-device ladders and the event log, bounded."""

    #: Log entries kept (oldest dropped first).
    max_log: int = 1000
    #: Arrows kept per device (oldest dropped first).
    max_arrows: int = 400
    #: Device ladders kept (the least recently touched dropped first).
    max_flows: int = 500
    _n: int = 0
    _log: deque[LogEntry] = attrs.field(init=False)
    _flows: OrderedDict[str, deque[Arrow]] = attrs.field(init=False, factory=OrderedDict)
    #: Per record: the UEM's last decision (state, reason names).
    _uem_decision: dict[str, tuple[str, tuple[str, ...]]] = attrs.field(init=False, factory=dict)
    #: Per record: the gatekeeper's last cached decision (state, reason names).
    _cached: dict[str, tuple[str, tuple[str, ...]]] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        self._log = deque(maxlen=self.max_log)

    # -- reading --------------------------------------------------------------------------
    def flow(self, record: str) -> tuple[Arrow, ...]:
        """The ladder of ``record`` (``user/device_id`` as the gatekeeper keys it), in order."""
        return tuple(self._flows.get(record, ()))

    @property
    def last_n(self) -> int:
        """The number of the latest log entry or arrow (0: nothing yet)."""
        return self._n

    @property
    def records(self) -> tuple[str, ...]:
        """Records that have a ladder, oldest first."""
        return tuple(self._flows)

    def log(self, limit: int | None = None) -> tuple[LogEntry, ...]:
        """The latest ``limit`` log entries (all kept ones when None), oldest first."""
        entries = tuple(self._log)
        return entries if limit is None else entries[-limit:] if limit > 0 else ()

    def to_json(self, log_limit: int = 300) -> dict[str, Any]:
        return {
            "flows": {key: [a.to_json() for a in arrows] for key, arrows in self._flows.items()},
            "log": [e.to_json() for e in self.log(log_limit)],
        }

    # -- feeding --------------------------------------------------------------------------
    def take_sentry(self, event: Mapping[str, Any]) -> Update:
        """A gatekeeper event in its ``to_json`` form."""
        kind = _text(event, "event") or "event"
        record = _text(event, "record")
        drafts: tuple[_Draft, ...] = ()
        teller = _SENTRY_TELLERS.get(kind)
        if teller is not None and record:
            drafts = teller(self, record, event)
        summary = "; ".join(d.label for d in drafts) or _generic_summary(kind, event)
        return self._add("sentry", kind, event, record, summary, drafts)

    def take_uem(self, event: Mapping[str, Any]) -> Update:
        """A UEM event in its ``to_dict`` form (records named by mailbox and device id)."""
        kind = _text(event, "event") or "event"
        record = ""
        mailbox, device_id = _text(event, "mailbox"), _text(event, "device_id")
        if mailbox and device_id:
            record = record_key(mailbox, device_id)
        elif kind == "AdminChanged" and "/" in _text(event, "target"):
            user, _, device = _text(event, "target").partition("/")
            if user and device and "/" not in device:
                record = record_key(user, device)
        drafts: tuple[_Draft, ...] = ()
        teller = _UEM_TELLERS.get(kind)
        if teller is not None and record:
            drafts = teller(self, record, event)
        told = _UEM_SUMMARIES.get(kind)
        summary = "; ".join(d.label for d in drafts) or (
            told(event) if told is not None else _generic_summary(kind, event)
        )
        return self._add("uem", kind, event, record, summary, drafts)

    def take_device(self, record: str, result: Mapping[str, Any], at: float) -> Update:
        """A simulated phone's exchange (``StepResult.to_json``): a log line, no arrow (the
        gatekeeper's events already draw the path)."""
        label, summary = _text(result, "label"), _text(result, "summary")
        outcome = _text(result, "outcome")
        text = f"phone: {label}: {summary}" + (f" ({outcome})" if outcome else "")
        return self._add("device", "device_exchange", {**result, "at": at}, record, text, ())

    def note(self, record: str, kind: str, text: str, at: float) -> Update:
        """Something the trainer did from the page (a control), for the log."""
        return self._add("dashboard", kind, {"at": at, "text": text}, record, text, ())

    def _add(
        self,
        source: str,
        kind: str,
        event: Mapping[str, Any],
        record: str,
        summary: str,
        drafts: tuple[_Draft, ...],
    ) -> Update:
        at = _number(event, "at")
        self._n += 1
        fields = {k: plain(v) for k, v in event.items() if k not in ("event", "at")}
        if len(summary) > MAX_SUMMARY:
            summary = summary[: MAX_SUMMARY - 3] + "..."
        entry = LogEntry(
            n=self._n,
            source=source,
            kind=kind,
            at=at,
            record=record,
            summary=summary,
            fields=fields,
        )
        self._log.append(entry)
        arrows: list[Arrow] = []
        if drafts:
            flow = self._flow(record)
            request_id = _text(event, "request_id") or _text(event, "correlation_id")
            for draft in drafts:
                self._n += 1
                arrow = Arrow(
                    n=self._n,
                    step=draft.step,
                    source=draft.source,
                    target=draft.target,
                    label=draft.label,
                    at=at,
                    event=kind,
                    request_id=request_id,
                    decision=draft.decision,
                    reasons=draft.reasons,
                    outcome=draft.outcome,
                )
                flow.append(arrow)
                arrows.append(arrow)
        return Update(entry=entry, arrows=tuple(arrows))

    def _flow(self, record: str) -> deque[Arrow]:
        flow = self._flows.get(record)
        if flow is None:
            flow = self._flows[record] = deque(maxlen=self.max_arrows)
            while len(self._flows) > self.max_flows:
                self._flows.popitem(last=False)
        else:
            self._flows.move_to_end(record)
        return flow


# --- the gatekeeper's events ----------------------------------------------------------------

_Teller = Callable[[FlowModel, str, Mapping[str, Any]], tuple[_Draft, ...]]


def _request_received(model: FlowModel, record: str, ev: Mapping[str, Any]) -> tuple[_Draft, ...]:
    label = f"{_text(ev, 'command')} (EAS {_text(ev, 'protocol_version')})"
    return (_Draft(step=1, source="device", target="sentry", label=label),)


def _first_seen(model: FlowModel, record: str, ev: Mapping[str, Any]) -> tuple[_Draft, ...]:
    label = "unknown (user, device): added to the device list as UNKNOWN"
    return (_Draft(step=2, source="sentry", target="sentry", label=label, decision="unknown"),)


def _report_queued(model: FlowModel, record: str, ev: Mapping[str, Any]) -> tuple[_Draft, ...]:
    return (_Draft(step=3, source="sentry", target="uem", label="report the new device"),)


def _request_waiting(model: FlowModel, record: str, ev: Mapping[str, Any]) -> tuple[_Draft, ...]:
    wait = _number(ev, "until") - _number(ev, "at")
    label = f"request held until the UEM decides (at most {wait:.0f} s)"
    return (_Draft(step=3, source="sentry", target="sentry", label=label, outcome="note"),)


def _report_failed(model: FlowModel, record: str, ev: Mapping[str, Any]) -> tuple[_Draft, ...]:
    label = (
        f"report attempt {_text(ev, 'attempt')} failed ({_text(ev, 'error')}); "
        f"retried in {_g(_number(ev, 'retry_in_s'))} s"
    )
    return (_Draft(step=3, source="sentry", target="uem", label=label, outcome="failed"),)


def _report_sent(model: FlowModel, record: str, ev: Mapping[str, Any]) -> tuple[_Draft, ...]:
    state = _text(ev, "state")
    known = model._uem_decision.get(record)
    reasons = known[1] if known is not None and known[0] == state else ()
    label = f"answer: {state} ({reasons_text(reasons)})"
    outcome = "ok" if state == "ALLOW" else "denied"
    return (
        _Draft(
            step=5,
            source="uem",
            target="sentry",
            label=label,
            decision=state,
            reasons=reasons,
            outcome=outcome,
        ),
    )


def _decision_applied(model: FlowModel, record: str, ev: Mapping[str, Any]) -> tuple[_Draft, ...]:
    state, source, names = _text(ev, "state"), _text(ev, "source"), _names(ev)
    before = model._cached.get(record)
    model._cached[record] = (state, names)
    if source != "report" and before == (state, names):
        return ()  # a push or resync that repeats what is cached changes nothing on the ladder
    what = f"{state.upper()} ({reasons_text(names)})"
    outcome = "ok" if state == "allowed" else "denied"
    if source == "report":
        label, lanes = f"cached {what}; the waiting request resumes", ("sentry", "sentry")
    elif source in ("push", "resync"):
        label, lanes = (
            f"{source}: cached {what}, was {_text(ev, 'previous_state')}",
            ("uem", "sentry"),
        )
    elif source == "fallback":
        label = f"UEM unreachable: cached {what} by the unreachable-UEM rule"
        lanes = ("sentry", "sentry")
    else:
        label, lanes = f"{source}: cached {what}", ("sentry", "sentry")
    return (
        _Draft(
            step=6,
            source=lanes[0],
            target=lanes[1],
            label=label,
            decision=state,
            reasons=names,
            outcome=outcome,
        ),
    )


def _record_forgotten(model: FlowModel, record: str, ev: Mapping[str, Any]) -> tuple[_Draft, ...]:
    model._cached.pop(record, None)
    label = f"record removed ({_text(ev, 'source')}): the next request is a first access"
    return (_Draft(step=None, source="uem", target="sentry", label=label, outcome="note"),)


def _wait_timed_out(model: FlowModel, record: str, ev: Mapping[str, Any]) -> tuple[_Draft, ...]:
    label = f"no decision within {_g(_number(ev, 'waited_s'))} s: the unreachable-UEM rule applies"
    return (_Draft(step=None, source="sentry", target="sentry", label=label, outcome="failed"),)


def _forwarded(model: FlowModel, record: str, ev: Mapping[str, Any]) -> tuple[_Draft, ...]:
    status = _text(ev, "upstream_status")
    label = f"{_text(ev, 'command')} proxied; Exchange answered HTTP {status}"
    return (_Draft(step=7, source="sentry", target="exchange", label=label),)


def _upstream_failed(model: FlowModel, record: str, ev: Mapping[str, Any]) -> tuple[_Draft, ...]:
    label = f"{_text(ev, 'command')}: Exchange unreachable ({_text(ev, 'error')}); device told 503"
    return (_Draft(step=7, source="sentry", target="exchange", label=label, outcome="failed"),)


def _denied(model: FlowModel, record: str, ev: Mapping[str, Any]) -> tuple[_Draft, ...]:
    why = _text(ev, "why")
    eas = ev.get("eas_status")
    told = answer_text(int(_number(ev, "http_status")), eas if isinstance(eas, int) else None)
    cached = model._cached.get(record, ("", ()))
    label = f"{_text(ev, 'command')} refused ({why}): {told}"
    if why in BLOCKING_DENIALS:
        return (
            _Draft(
                step=8,
                source="sentry",
                target="device",
                label=label,
                decision=cached[0],
                reasons=cached[1],
                outcome="denied",
            ),
        )
    return (_Draft(step=None, source="sentry", target="device", label=label, outcome="note"),)


_PROVISION_WORDS: Final[Mapping[str, str]] = {
    "policy": "Provision: the UEM's ActiveSync policy v{v} with a temporary key",
    "acknowledged": "Provision acknowledged: final policy key (policy v{v})",
    "wipe": "Provision: RemoteWipe directive",
    "wipe_acknowledged": "the device confirmed the wipe",
    "refused": "Provision refused",
}


def _provision(model: FlowModel, record: str, ev: Mapping[str, Any]) -> tuple[_Draft, ...]:
    phase = _text(ev, "phase")
    words = _PROVISION_WORDS.get(phase)
    # Only the model's own wording is a format string; an unknown phase is shown as it is.
    label = words.format(v=_text(ev, "policy_version")) if words else "Provision: " + phase
    wipe = phase.startswith("wipe")
    outcome = "denied" if wipe or phase == "refused" else "ok"
    return (
        _Draft(
            step=7,
            source="sentry",
            target="device",
            label=label,
            decision="wipe" if wipe else "",
            outcome=outcome,
        ),
    )


def _upstream_provisioned(
    model: FlowModel, record: str, ev: Mapping[str, Any]
) -> tuple[_Draft, ...]:
    ok = bool(ev.get("ok"))
    label = "Provision with Exchange on the device's behalf: " + ("done" if ok else "failed")
    outcome = "ok" if ok else "failed"
    return (_Draft(step=7, source="sentry", target="exchange", label=label, outcome=outcome),)


_SENTRY_TELLERS: Final[Mapping[str, _Teller]] = {
    "request_received": _request_received,
    "device_first_seen": _first_seen,
    "report_queued": _report_queued,
    "request_waiting": _request_waiting,
    "report_failed": _report_failed,
    "report_sent": _report_sent,
    "decision_applied": _decision_applied,
    "record_forgotten": _record_forgotten,
    "wait_timed_out": _wait_timed_out,
    "request_forwarded": _forwarded,
    "upstream_failed": _upstream_failed,
    "request_denied": _denied,
    "provision_answered": _provision,
    "upstream_provisioned": _upstream_provisioned,
}


# --- the UEM's events -----------------------------------------------------------------------


def _reported(model: FlowModel, record: str, ev: Mapping[str, Any]) -> tuple[_Draft, ...]:
    if ev.get("first_report"):
        label = "new record in the ActiveSync devices view"
    else:
        label = "report of a record it already lists"
    return (_Draft(step=4, source="uem", target="uem", label=label),)


def _decision_changed(model: FlowModel, record: str, ev: Mapping[str, Any]) -> tuple[_Draft, ...]:
    if ev.get("removed"):
        model._uem_decision.pop(record, None)
        return (
            _Draft(step=None, source="uem", target="uem", label="record removed", outcome="note"),
        )
    state, names = _text(ev, "state"), _names(ev)
    model._uem_decision[record] = (state, names)
    return (
        _Draft(
            step=5,
            source="uem",
            target="uem",
            label=f"decides {state} ({reasons_text(names)})",
            decision=state,
            reasons=names,
            outcome="ok" if state == "ALLOW" else "denied",
        ),
    )


def _admin_changed(model: FlowModel, record: str, ev: Mapping[str, Any]) -> tuple[_Draft, ...]:
    note = _text(ev, "note")
    label = f"administrator: {_text(ev, 'what')}" + (f" ({note})" if note else "")
    return (_Draft(step=None, source="uem", target="uem", label=label, outcome="note"),)


def _checked_in(model: FlowModel, record: str, ev: Mapping[str, Any]) -> tuple[_Draft, ...]:
    label = "MDM check-in" + (": enrolled" if ev.get("enrolled") else "")
    return (_Draft(step=None, source="device", target="uem", label=label, outcome="note"),)


_UEM_TELLERS: Final[Mapping[str, _Teller]] = {
    "RecordReported": _reported,
    "DecisionChanged": _decision_changed,
    "AdminChanged": _admin_changed,
    "DeviceCheckedIn": _checked_in,
}


# UEM events about its own TLS concern no device record: a log line in plain words, no arrow.


def _tls_applied(ev: Mapping[str, Any]) -> str:
    selected = ev.get("selected")
    count = len(selected) if isinstance(selected, list | tuple) else 0
    policy = (
        "the default" if ev.get("is_default") else f"{count} selected suite(s), not the default"
    )
    return (
        f"outgoing TLS settings applied ({policy}): the outgoing client restarts, calls to "
        f"gatekeepers are refused for {_g(_number(ev, 'unavailable_s'))} s and retried"
    )


def _tls_failed(ev: Mapping[str, Any]) -> str:
    error = _text(ev, "error") or f"TLS handshake with {_text(ev, 'endpoint')} failed"
    needs = ev.get("needs_disabled")
    if isinstance(needs, list | tuple) and needs and "disabled suite" not in error:
        error += "; it would need the disabled suite(s) " + ", ".join(str(n) for n in needs)
    return "outgoing " + error


def _certificate_replaced(ev: Mapping[str, Any]) -> str:
    return (
        f"the UEM's {_text(ev, 'port')} port now serves {_text(ev, 'subject')} "
        f"(serial {_text(ev, 'serial')}, valid until {_text(ev, 'not_after')})"
    )


_UEM_SUMMARIES: Final[Mapping[str, Callable[[Mapping[str, Any]], str]]] = {
    "OutgoingTlsApplied": _tls_applied,
    "OutgoingTlsFailed": _tls_failed,
    "CertificateReplaced": _certificate_replaced,
}


def _generic_summary(kind: str, event: Mapping[str, Any]) -> str:
    """A log line for an event that draws no arrow: its kind and its own fields."""
    shown = [
        f"{key}={plain(value)}"
        for key, value in event.items()
        if key not in ("event", "at", "request_id", "record") and value not in ("", None)
    ]
    return kind.replace("_", " ") + (": " + ", ".join(shown) if shown else "")
