"""The dashboard's pure model: events in, ladders (numbered with the 8 steps) and a log out."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from scenarios.dashboard.model import LANES, OUTCOMES, FlowModel

KEY = "alice/aliceiphone01"
T0 = 1_767_225_600.0


def first_contact_events() -> list[tuple[str, dict[str, Any]]]:
    """The events of a first contact as the lab emits them (shapes of sentry_sim/uem_sim)."""
    return [
        ("sentry", {"event": "request_forwarded", "at": T0, "request_id": "r1", "record": "",
                    "command": "Options", "upstream_status": 200}),
        ("sentry", {"event": "request_received", "at": T0, "request_id": "r2", "record": KEY,
                    "command": "Provision", "protocol_version": "16.1", "method": "POST"}),
        ("sentry", {"event": "device_first_seen", "at": T0, "request_id": "r2", "record": KEY,
                    "device_type": "iPhone"}),
        ("sentry", {"event": "report_queued", "at": T0, "request_id": "r2", "record": KEY}),
        ("sentry", {"event": "request_waiting", "at": T0, "request_id": "r2", "record": KEY,
                    "until": T0 + 5}),
        ("uem", {"event": "RecordReported", "at": T0, "mailbox": "alice",
                 "device_id": "ALICEIPHONE01", "gatekeeper_id": "g", "first_report": True,
                 "correlation_id": "r2"}),
        ("uem", {"event": "DecisionChanged", "at": T0, "mailbox": "alice",
                 "device_id": "ALICEIPHONE01", "state": "ALLOW", "reasons": 0,
                 "reason_names": (), "version": 1, "removed": False}),
        ("sentry", {"event": "report_sent", "at": T0, "request_id": "", "record": KEY,
                    "attempt": 1, "state": "ALLOW"}),
        ("sentry", {"event": "decision_applied", "at": T0, "request_id": "", "record": KEY,
                    "state": "allowed", "previous_state": "unknown", "reasons": 0,
                    "reason_names": (), "source": "report", "answer": 1}),
        ("sentry", {"event": "provision_answered", "at": T0, "request_id": "r2", "record": KEY,
                    "phase": "policy", "policy_version": 1}),
        ("sentry", {"event": "decision_applied", "at": T0, "request_id": "", "record": KEY,
                    "state": "allowed", "previous_state": "allowed", "reasons": 0,
                    "reason_names": (), "source": "push", "answer": 1}),
        ("sentry", {"event": "push_received", "at": T0, "request_id": "", "record": "",
                    "changes": 1}),
        ("sentry", {"event": "request_received", "at": T0 + 1, "request_id": "r4",
                    "record": KEY, "command": "FolderSync", "protocol_version": "16.1"}),
        ("sentry", {"event": "request_forwarded", "at": T0 + 1, "request_id": "r4",
                    "record": KEY, "command": "FolderSync", "upstream_status": 200}),
    ]  # fmt: skip


def feed(model: FlowModel, events: list[tuple[str, dict[str, Any]]]) -> None:
    for source, event in events:
        if source == "sentry":
            model.take_sentry(event)
        else:
            model.take_uem(event)


def test_first_contact_draws_steps_one_to_seven_in_order() -> None:
    model = FlowModel()
    feed(model, first_contact_events())
    arrows = model.flow(KEY)
    assert [a.step for a in arrows] == [1, 2, 3, 3, 4, 5, 5, 6, 7, 1, 7]
    assert [(a.source, a.target) for a in arrows][:3] == [
        ("device", "sentry"),
        ("sentry", "sentry"),
        ("sentry", "uem"),
    ]
    answer = next(a for a in arrows if a.event == "report_sent")
    assert (answer.source, answer.target, answer.decision) == ("uem", "sentry", "ALLOW")
    assert arrows[-1].label == "FolderSync proxied; Exchange answered HTTP 200"
    assert arrows[0].request_id == "r2"


def test_a_push_that_repeats_the_cached_decision_adds_no_arrow_but_a_log_line() -> None:
    model = FlowModel()
    feed(model, first_contact_events())
    pushes = [a for a in model.flow(KEY) if a.label.startswith("push")]
    assert pushes == []
    assert any(e.kind == "decision_applied" and "push" in e.summary for e in model.log())


def test_block_by_push_then_denial_is_step_eight_with_the_cached_reasons() -> None:
    model = FlowModel()
    feed(model, first_contact_events())
    model.take_uem(
        {"event": "DecisionChanged", "at": T0 + 2, "mailbox": "alice",
         "device_id": "ALICEIPHONE01", "state": "BLOCK", "reasons": 512,
         "reason_names": ("MANUAL",), "version": 2, "removed": False}
    )  # fmt: skip
    model.take_sentry(
        {"event": "decision_applied", "at": T0 + 2, "request_id": "", "record": KEY,
         "state": "blocked", "previous_state": "allowed", "reasons": 512,
         "reason_names": ("MANUAL",), "source": "push", "answer": 2}
    )  # fmt: skip
    update = model.take_sentry(
        {"event": "request_denied", "at": T0 + 3, "request_id": "r9", "record": KEY,
         "command": "Sync", "why": "blocked", "http_status": 200, "eas_status": 129}
    )  # fmt: skip
    (push,) = [a for a in model.flow(KEY) if a.event == "decision_applied" and a.step == 6][1:]
    assert (push.source, push.target, push.outcome) == ("uem", "sentry", "denied")
    (denial,) = update.arrows
    assert denial.step == 8
    assert (denial.source, denial.target) == ("sentry", "device")
    assert denial.reasons == ("MANUAL",)
    assert denial.decision == "blocked"
    assert "HTTP 200 + Status 129 (DeviceIsBlockedForThisUser)" in denial.label


def test_a_denial_that_is_not_a_block_is_not_step_eight() -> None:
    model = FlowModel()
    update = model.take_sentry(
        {"event": "request_denied", "at": T0, "request_id": "r1", "record": KEY,
         "command": "Sync", "why": "provisioning_needed", "http_status": 449,
         "eas_status": None}
    )  # fmt: skip
    assert [a.step for a in update.arrows] == [None]
    assert update.arrows[0].label.endswith("HTTP 449")


def test_uem_events_join_the_gatekeeper_record_whatever_the_case_of_the_id() -> None:
    model = FlowModel()
    update = model.take_uem(
        {"event": "AdminChanged", "at": T0, "what": "block", "target": "alice/ALICEIPHONE01",
         "note": "lost"}
    )  # fmt: skip
    assert update.entry.record == KEY
    assert update.arrows[0].label == "administrator: block (lost)"
    policy = model.take_uem({"event": "AdminChanged", "at": T0, "what": "policy", "target": "x"})
    assert policy.entry.record == ""
    assert policy.arrows == ()


def test_events_without_a_record_only_reach_the_log() -> None:
    model = FlowModel()
    update = model.take_sentry(
        {"event": "resync_completed", "at": T0, "request_id": "", "record": "", "mode": "delta",
         "changes": 2, "version": 7}
    )  # fmt: skip
    assert update.arrows == ()
    assert model.records == ()
    assert update.entry.summary == "resync completed: mode=delta, changes=2, version=7"


def test_model_keeps_only_its_bounds() -> None:
    model = FlowModel(max_log=5, max_arrows=3, max_flows=2)
    for i in range(10):
        model.take_sentry(
            {"event": "request_received", "at": T0 + i, "request_id": f"r{i}",
             "record": f"u/d{i % 3}", "command": "Sync", "protocol_version": "16.1"}
        )  # fmt: skip
    assert len(model.log()) == 5
    assert model.records == ("u/d2", "u/d0")  # the least recently touched one was dropped
    assert all(len(model.flow(k)) <= 3 for k in model.records)


def test_phone_results_and_trainer_notes_are_logged_with_their_source() -> None:
    model = FlowModel()
    phone = model.take_device(
        KEY, {"label": "Sync Inbox", "summary": "Status 1", "outcome": "ok"}, T0
    )
    note = model.note(KEY, "trainer_action", "trainer: block", T0)
    assert (phone.entry.source, phone.entry.summary) == (
        "device",
        "phone: Sync Inbox: Status 1 (ok)",
    )
    assert (note.entry.source, note.entry.kind) == ("dashboard", "trainer_action")
    assert model.to_json()["log"][-1]["summary"] == "trainer: block"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
kinds = st.sampled_from(
    [
        "request_received", "device_first_seen", "report_queued", "request_waiting",
        "report_failed", "report_sent", "decision_applied", "record_forgotten",
        "wait_timed_out", "request_forwarded", "upstream_failed", "request_denied",
        "provision_answered", "upstream_provisioned", "RecordReported", "DecisionChanged",
        "AdminChanged", "DeviceCheckedIn", "whatever",
    ]
)  # fmt: skip


@given(
    st.lists(
        st.tuples(
            st.booleans(),
            kinds,
            st.dictionaries(
                st.sampled_from(
                    [
                        "at",
                        "record",
                        "mailbox",
                        "device_id",
                        "state",
                        "reason_names",
                        "why",
                        "http_status",
                        "eas_status",
                        "phase",
                        "until",
                        "target",
                        "source",
                        "ok",
                    ]
                ),
                json_values,
                max_size=8,
            ),
        ),
        max_size=15,
    )
)
def test_any_event_shapes_fold_without_error_into_valid_arrows(
    events: list[tuple[bool, str, dict[str, Any]]],
) -> None:
    model = FlowModel()
    for from_sentry, kind, fields in events:
        event = {**fields, "event": kind}
        update = model.take_sentry(event) if from_sentry else model.take_uem(event)
        for arrow in update.arrows:
            assert arrow.source in LANES
            assert arrow.target in LANES
            assert arrow.outcome in OUTCOMES
            assert arrow.step is None or 1 <= arrow.step <= 8
        assert update.to_json()["entry"]["n"] == update.entry.n
