"""Exports of a device's ladder: Mermaid text and Jaeger trace JSON."""

from __future__ import annotations

import json
import re

from hypothesis import given
from hypothesis import strategies as st

from scenarios.dashboard.export import mermaid_text, to_jaeger, to_mermaid
from scenarios.dashboard.model import LANES, OUTCOMES, Arrow

KEY = "alice/aliceiphone01"
T0 = 1_767_225_600.0


def ladder() -> list[Arrow]:
    return [
        Arrow(n=1, step=1, source="device", target="sentry", label="Sync (EAS 16.1)",
              at=T0, event="request_received", request_id="r1"),
        Arrow(n=2, step=6, source="uem", target="sentry", label="push: cached BLOCKED (MANUAL)",
              at=T0 + 0.001, event="decision_applied", decision="blocked", reasons=("MANUAL",),
              outcome="denied"),
        Arrow(n=3, step=8, source="sentry", target="device",
              label="Sync refused (blocked): HTTP 200 + Status 129 (DeviceIsBlockedForThisUser)",
              at=T0 + 0.002, event="request_denied", request_id="r1", decision="blocked",
              reasons=("MANUAL",), outcome="denied"),
        Arrow(n=4, step=2, source="sentry", target="sentry", label="new pair; added #1",
              at=T0 + 0.003, event="device_first_seen", request_id="r1"),
    ]  # fmt: skip


def test_mermaid_has_the_four_lanes_and_one_numbered_message_per_arrow() -> None:
    text = to_mermaid(KEY, ladder())
    lines = text.splitlines()
    assert lines[0] == "sequenceDiagram"
    assert [line.split(" as ")[1] for line in lines if "participant" in line] == [
        "Device",
        "Sentry (gatekeeper)",
        "UEM",
        "Exchange",
    ]
    body = lines[6:]
    assert body[0] == "    D->>S: 1. Sync (EAS 16.1)"
    assert body[1] == "    U-->>S: 6. push: cached BLOCKED (MANUAL)"
    assert body[2].startswith("    S-xD: 8. Sync refused (blocked): HTTP 200 + Status 129")
    assert body[3] == "    Note over S: 2. new pair#59; added #35;1"


def test_mermaid_text_cannot_break_out_of_a_message() -> None:
    escaped = mermaid_text("a;b#c%%d\ne<f>")
    assert escaped == "a#59;b#35;c#37;#37;d e#lt;f#gt;"
    assert "\n" not in escaped
    assert "%%" not in escaped
    assert "<" not in escaped


@given(st.text(max_size=40))
def test_any_label_stays_on_one_mermaid_line(label: str) -> None:
    arrow = Arrow(n=1, step=None, source="device", target="uem", label=label, at=T0, event="e")
    lines = to_mermaid(KEY, [arrow]).splitlines()
    assert len(lines) == 7
    assert lines[-1].startswith("    D->>U: ")


def test_jaeger_trace_has_a_root_request_spans_and_a_span_per_arrow() -> None:
    trace_json = to_jaeger(KEY, ladder())
    (trace,) = trace_json["data"]
    spans = trace["spans"]
    ids = {s["spanID"] for s in spans}
    assert len(ids) == len(spans) == 1 + 1 + len(ladder())  # root, request r1, 4 arrows
    assert re.fullmatch(r"[0-9a-f]{32}", trace["traceID"])
    for span in spans:
        assert span["traceID"] == trace["traceID"]
        assert re.fullmatch(r"[0-9a-f]{16}", span["spanID"])
        assert span["processID"] in trace["processes"]
        assert isinstance(span["startTime"], int)
        assert span["duration"] >= 1
        for ref in span["references"]:
            assert ref["refType"] == "CHILD_OF"
            assert ref["spanID"] in ids
    roots = [s for s in spans if not s["references"]]
    assert [r["operationName"] for r in roots] == [f"device flow {KEY}"]
    assert roots[0]["startTime"] == round(T0 * 1_000_000)
    denial = next(s for s in spans if s["operationName"] == "8. blocked -> device told")
    tags = {t["key"]: t["value"] for t in denial["tags"]}
    assert tags["decision"] == "blocked"
    assert tags["reasons"] == "MANUAL"
    assert tags["step"] == 8
    request = next(s for s in spans if s["operationName"] == "EAS Sync (r1)")
    assert denial["references"][0]["spanID"] == request["spanID"]
    services = {p["serviceName"] for p in trace["processes"].values()}
    assert services == {"device", "sentry-gatekeeper", "uem", "exchange"}
    json.dumps(trace_json)  # JSON-ready as it is


def test_the_same_ladder_exports_the_same_ids() -> None:
    assert to_jaeger(KEY, ladder()) == to_jaeger(KEY, ladder())
    assert (
        to_jaeger(KEY, ladder())["data"][0]["traceID"]
        != to_jaeger("bob/x", ladder())["data"][0]["traceID"]
    )


arrows = st.lists(
    st.builds(
        Arrow,
        n=st.integers(1, 10**6),
        step=st.none() | st.integers(1, 8),
        source=st.sampled_from(LANES),
        target=st.sampled_from(LANES),
        label=st.text(max_size=20),
        at=st.floats(0, 2e9),
        event=st.text(max_size=10),
        request_id=st.sampled_from(["", "r1", "r2"]),
        outcome=st.sampled_from(OUTCOMES),
    ),
    max_size=8,
)


@given(arrows)
def test_any_ladder_gives_a_well_formed_trace(ladder_arrows: list[Arrow]) -> None:
    (trace,) = to_jaeger(KEY, ladder_arrows)["data"]
    ids = {s["spanID"] for s in trace["spans"]}
    for span in trace["spans"]:
        assert all(ref["spanID"] in ids for ref in span["references"])
        assert span["duration"] >= 1
