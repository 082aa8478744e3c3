"""A device's ladder as a Mermaid sequence diagram or as a Jaeger trace (JSON).

Responsibility: render the arrows of one record (``model.Arrow``) for tools outside the lab:
Mermaid text for documents and slides, and the JSON the Jaeger UI reads ("JSON File" upload,
the shape of its ``/api/traces`` answer). It must not read events or do I/O; same arrows in,
same text out (ids are derived from the record, not random).

Theory of operation: Mermaid gets one participant per lane and one message per arrow, numbered
with its step; text is escaped with Mermaid's entity codes so a label cannot end a message early.
Jaeger gets one trace per record: a root span for the whole flow, a span per device request
(its ``request_id``) and a span per arrow under its request (or under the root when no request
caused it), each arrow's span belonging to the process of its source lane. Times are the clock
readings in microseconds, as Jaeger expects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final

from scenarios.dashboard.model import LANE_TITLES, LANES, Arrow
from scenarios.flow import STEP_TITLES

#: Mermaid participant ids per lane.
_MERMAID_IDS: Final = {"device": "D", "sentry": "S", "uem": "U", "exchange": "X"}
#: Jaeger process ids per lane.
_PROCESS_IDS: Final = {lane: f"p{i}" for i, lane in enumerate(LANES, start=1)}
#: Jaeger service names per lane.
_SERVICES: Final = {
    "device": "device",
    "sentry": "sentry-gatekeeper",
    "uem": "uem",
    "exchange": "exchange",
}


_MERMAID_ESCAPES: Final = str.maketrans(
    {
        "#": "#35;",
        ";": "#59;",
        "%": "#37;",
        "<": "#lt;",
        ">": "#gt;",
        # Every character str.splitlines() breaks on: a message is one line.
        **dict.fromkeys("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029", " "),
    }
)


def mermaid_text(text: str) -> str:
    """``text`` safe inside a Mermaid message: entity codes for what Mermaid reads as syntax."""
    # One pass, character by character: an entity code written for one character must not be
    # escaped again for the next ('#' and ';' are both in the table). '%%' starts a comment;
    # '<' '>' can read as HTML in labels.
    return text.translate(_MERMAID_ESCAPES)


def to_mermaid(record: str, arrows: Sequence[Arrow]) -> str:
    """A ``sequenceDiagram`` of the record's ladder."""
    lines = ["sequenceDiagram", f"    title {mermaid_text('Flow of ' + record)}"]
    for lane in LANES:
        lines.append(f"    participant {_MERMAID_IDS[lane]} as {mermaid_text(LANE_TITLES[lane])}")
    for arrow in arrows:
        text = arrow.label
        if arrow.step is not None:
            text = f"{arrow.step}. {text}"
        if arrow.decision and arrow.decision.lower() not in arrow.label.lower():
            text += f" [{arrow.decision}]"
        src, dst = _MERMAID_IDS[arrow.source], _MERMAID_IDS[arrow.target]
        if src == dst:
            lines.append(f"    Note over {src}: {mermaid_text(text)}")
            continue
        # Solid arrows carry requests, dashed ones answers; a cross ends a refused exchange.
        if arrow.outcome in ("denied", "failed") and arrow.target == "device":
            kind = "-x"
        elif LANES.index(arrow.source) > LANES.index(arrow.target):
            kind = "-->>"
        else:
            kind = "->>"
        lines.append(f"    {src}{kind}{dst}: {mermaid_text(text)}")
    return "\n".join(lines) + "\n"


def _hex_id(seed: str, digits: int) -> str:
    return hashlib.sha256(seed.encode("utf-8")).hexdigest()[:digits]


def _micros(at: float) -> int:
    return round(at * 1_000_000)


def _tag(key: str, value: str | int | bool) -> dict[str, Any]:
    if isinstance(value, bool):
        kind = "bool"
    elif isinstance(value, int):
        kind = "int64"
    else:
        kind = "string"
    return {"key": key, "type": kind, "value": value}


def to_jaeger(record: str, arrows: Sequence[Arrow]) -> dict[str, Any]:
    """``{"data": [trace]}``: the record's ladder as one Jaeger trace."""
    trace_id = _hex_id("trace:" + record, 32)
    root_id = _hex_id(f"root:{record}", 16)
    spans: list[dict[str, Any]] = []
    start = _micros(arrows[0].at) if arrows else 0
    end = _micros(arrows[-1].at) if arrows else 0
    spans.append(
        _span(
            trace_id,
            root_id,
            f"device flow {record}",
            parent=None,
            start=start,
            duration=max(1, end - start),
            process="device",
            tags=[_tag("record", record), _tag("arrows", len(arrows))],
        )
    )
    by_request: dict[str, list[Arrow]] = {}
    for arrow in arrows:
        if arrow.request_id:
            by_request.setdefault(arrow.request_id, []).append(arrow)
    request_spans: dict[str, str] = {}
    for request_id, members in by_request.items():
        span_id = _hex_id(f"request:{record}:{request_id}", 16)
        request_spans[request_id] = span_id
        first, last = _micros(members[0].at), _micros(members[-1].at)
        command = next((a.label.split(" ")[0] for a in members if a.step == 1), "request")
        spans.append(
            _span(
                trace_id,
                span_id,
                f"EAS {command} ({request_id})",
                parent=root_id,
                start=first,
                duration=max(1, last - first),
                process="device",
                tags=[_tag("request_id", request_id), _tag("record", record)],
            )
        )
    for index, arrow in enumerate(arrows):
        later = arrows[index + 1] if index + 1 < len(arrows) else None
        same_request = later is not None and later.request_id == arrow.request_id
        duration = _micros(later.at) - _micros(arrow.at) if later and same_request else 0
        name = arrow.label if arrow.step is None else f"{arrow.step}. {STEP_TITLES[arrow.step]}"
        tags = [
            _tag("label", arrow.label),
            _tag("event", arrow.event),
            _tag("from", arrow.source),
            _tag("to", arrow.target),
            _tag("outcome", arrow.outcome),
            _tag("error", arrow.outcome == "failed"),
        ]
        if arrow.step is not None:
            tags.append(_tag("step", arrow.step))
        if arrow.decision:
            tags.append(_tag("decision", arrow.decision))
        if arrow.reasons:
            tags.append(_tag("reasons", ",".join(arrow.reasons)))
        if arrow.request_id:
            tags.append(_tag("request_id", arrow.request_id))
        span = _span(
            trace_id,
            _hex_id(f"arrow:{record}:{arrow.n}", 16),
            name,
            parent=request_spans.get(arrow.request_id, root_id),
            start=_micros(arrow.at),
            duration=max(1, duration),
            process=arrow.source,
            tags=tags,
        )
        span["logs"] = [
            {
                "timestamp": _micros(arrow.at),
                "fields": [_tag("event", arrow.event), _tag("message", arrow.label)],
            }
        ]
        spans.append(span)
    processes = {
        _PROCESS_IDS[lane]: {
            "serviceName": _SERVICES[lane],
            "tags": [_tag("lane", LANE_TITLES[lane])],
        }
        for lane in LANES
    }
    return {
        "data": [{"traceID": trace_id, "spans": spans, "processes": processes, "warnings": None}]
    }


def _span(
    trace_id: str,
    span_id: str,
    name: str,
    *,
    parent: str | None,
    start: int,
    duration: int,
    process: str,
    tags: list[dict[str, Any]],
) -> dict[str, Any]:
    references = (
        [] if parent is None else [{"refType": "CHILD_OF", "traceID": trace_id, "spanID": parent}]
    )
    return {
        "traceID": trace_id,
        "spanID": span_id,
        "operationName": name,
        "references": references,
        "startTime": start,
        "duration": duration,
        "tags": tags,
        "logs": [],
        "processID": _PROCESS_IDS[process],
        "warnings": None,
    }
