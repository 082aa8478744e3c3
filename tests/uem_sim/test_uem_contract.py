"""The gatekeeper contract: JSON round trips, clear errors, fuzzing raises ContractError only."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uem_sim import contract
from uem_sim.contract import (
    ALL_REASONS,
    AccessState,
    ActiveSyncPolicy,
    ChangesResponse,
    ContractError,
    DecisionMessage,
    ErrorMessage,
    GatekeeperRegistered,
    PushMessage,
    Reason,
    RegisterGatekeeper,
    ReportRequest,
    from_json,
    reason_names,
    to_json,
)

names = st.text(st.characters(blacklist_categories=["Cc", "Cs"]), min_size=1, max_size=40)
device_ids = st.from_regex(r"[A-Za-z0-9]{1,32}", fullmatch=True)
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
setting_values = st.one_of(st.booleans(), st.integers(-(2**31), 2**31), names)
policies = st.builds(
    ActiveSyncPolicy,
    version=st.integers(1, 10**6),
    settings=st.dictionaries(
        st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,20}", fullmatch=True), setting_values, max_size=8
    ),
)
decisions = st.builds(
    DecisionMessage,
    user=names,
    device_id=device_ids,
    state=st.sampled_from(AccessState),
    reasons=st.integers(0, int(ALL_REASONS)),
    explanation=st.text(max_size=200),
    activesync_policy=policies,
    record_version=st.integers(1, 10**9),
    decided_at=times,
    registered=st.booleans(),
    removed=st.booleans(),
    aliases=st.lists(names, max_size=3).map(tuple),
)
reports = st.builds(
    ReportRequest,
    gatekeeper_id=names,
    user=names,
    device_id=device_ids,
    device_type=st.text(max_size=20).filter(lambda s: s.isprintable()),
    protocol_version=st.sampled_from(["", "12.1", "14.1", "16.1"]),
    user_agent=st.text(max_size=40).filter(lambda s: s.isprintable()),
    model=st.text(max_size=20).filter(lambda s: s.isprintable()),
    seen_at=times,
    correlation_id=st.text(max_size=20).filter(lambda s: s.isprintable()),
)
messages = st.one_of(
    reports,
    decisions,
    policies,
    st.builds(
        ChangesResponse,
        version=st.integers(0, 10**9),
        records=st.lists(decisions, max_size=3),
        full=st.booleans(),
    ),
    st.builds(
        RegisterGatekeeper,
        gatekeeper_id=names,
        push_url=st.sampled_from(["http://127.0.0.1:9090/push", "https://gk.example/uem"]),
    ),
    st.builds(GatekeeperRegistered, gatekeeper_id=names, version=st.integers(0, 10**9)),
    st.builds(ErrorMessage, error=st.text(max_size=50), hint=st.text(max_size=50)),
    st.integers(0, 10**6).flatmap(
        lambda since: st.builds(
            PushMessage,
            gatekeeper_id=names,
            since=st.just(since),
            version=st.integers(since, since + 1000),
            records=st.lists(decisions, max_size=3),
        )
    ),
)


@given(messages)
def test_every_message_survives_a_json_round_trip(message: Any) -> None:
    assert from_json(type(message), to_json(message)) == message


def test_decision_json_carries_reason_names_beside_the_bitmask() -> None:
    message = DecisionMessage(
        user="alice",
        device_id="ApplX",
        state=AccessState.BLOCK,
        reasons=Reason.COMPROMISED | Reason.PER_MAILBOX_LIMIT,
        explanation="because",
        activesync_policy=ActiveSyncPolicy(3, {"DevicePasswordEnabled": True}),
        record_version=7,
        decided_at=1.5,
        registered=True,
    )
    data = json.loads(to_json(message))
    assert data["reasons"] == 0x81
    assert data["reason_names"] == ["COMPROMISED", "PER_MAILBOX_LIMIT"]
    assert data["activesync_policy"] == {"version": 3, "settings": {"DevicePasswordEnabled": True}}
    assert message.key == ("alice", "ApplX")


def test_reason_values_are_ivantis() -> None:
    assert {r.name: r.value for r in Reason} == {
        "COMPROMISED": 0x1,
        "OS_VERSION": 0x2,
        "HW_VERSION": 0x4,
        "DATA_PROTECTION": 0x8,
        "POLICY_OUT_OF_DATE": 0x10,
        "DEVICE_OUT_OF_CONTACT": 0x20,
        "APP_CONTROL": 0x40,
        "PER_MAILBOX_LIMIT": 0x80,
        "AUTO_BLOCK": 0x100,
        "MANUAL": 0x200,
    }
    assert reason_names(0x300) == ("AUTO_BLOCK", "MANUAL")


GOOD_DECISION = {
    "user": "alice",
    "device_id": "ApplX",
    "state": "ALLOW",
    "reasons": 0,
    "explanation": "",
    "activesync_policy": {"version": 1, "settings": {}},
    "record_version": 1,
    "decided_at": 0,
    "registered": False,
}


@pytest.mark.parametrize(
    ("cls", "body", "message"),
    [
        (ReportRequest, "{", "$: not valid JSON"),
        (ReportRequest, "[]", "$: expected a JSON object, got list"),
        (
            ReportRequest,
            '{"gatekeeper_id": "g", "user": "a", "seen_at": 1}',
            "$.device_id: missing (required field)",
        ),
        (
            ReportRequest,
            '{"gatekeeper_id": "g", "user": "a", "device_id": "", "seen_at": 1}',
            "$.device_id: expected 1 to 128 characters, got 0",
        ),
        (
            ReportRequest,
            '{"gatekeeper_id": "g", "user": "a", "device_id": "d", "seen_at": "now"}',
            "$.seen_at: expected a finite number",
        ),
        (
            ReportRequest,
            '{"gatekeeper_id": "g", "user": 5, "device_id": "d", "seen_at": 1}',
            "$.user: expected a string, got 5",
        ),
        (
            DecisionMessage,
            json.dumps({**GOOD_DECISION, "state": "OK"}),
            "$.state: expected one of ALLOW, BLOCK, WIPE, got 'OK'",
        ),
        (
            DecisionMessage,
            json.dumps({**GOOD_DECISION, "reasons": 0x400}),
            "$.reasons: unknown reason bits 0x400",
        ),
        (
            DecisionMessage,
            json.dumps({**GOOD_DECISION, "reasons": True}),
            "$.reasons: expected an integer, got True",
        ),
        (
            DecisionMessage,
            json.dumps({**GOOD_DECISION, "reasons": 1, "reason_names": ["MANUAL"]}),
            "$.reason_names: expected ['COMPROMISED'] for reasons 0x1",
        ),
        (
            DecisionMessage,
            json.dumps({**GOOD_DECISION, "activesync_policy": {"version": 0, "settings": {}}}),
            "$.activesync_policy.version: expected an integer >= 1, got 0",
        ),
        (
            DecisionMessage,
            json.dumps(
                {**GOOD_DECISION, "activesync_policy": {"version": 1, "settings": {"X": 1.5}}}
            ),
            "$.activesync_policy.settings.X: expected a string, integer or boolean, got 1.5",
        ),
        (
            ChangesResponse,
            json.dumps(
                {
                    "version": 1,
                    "full": True,
                    "records": [GOOD_DECISION, {**GOOD_DECISION, "user": ""}],
                }
            ),
            "$.records[1].user: expected 1 to 256 characters, got 0",
        ),
        (
            RegisterGatekeeper,
            '{"gatekeeper_id": "g", "push_url": "ftp://x"}',
            "$.push_url: expected an http:// or https:// URL",
        ),
        (
            PushMessage,
            '{"gatekeeper_id": "g", "since": 5, "version": 4, "records": []}',
            "$.version: expected >= since (5), got 4",
        ),
    ],
)
def test_bad_messages_are_refused_naming_the_field(cls: Any, body: str, message: str) -> None:
    with pytest.raises(ContractError) as caught:
        from_json(cls, body)
    assert str(caught.value).startswith(message)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(
    cls=st.sampled_from(
        [ReportRequest, DecisionMessage, ChangesResponse, PushMessage, RegisterGatekeeper]
    ),
    base=decisions,
    key=st.sampled_from(sorted(GOOD_DECISION)),
    value=json_values,
)
def test_mutated_messages_only_ever_raise_contract_error(
    cls: Any, base: DecisionMessage, key: str, value: Any
) -> None:
    data = base.to_dict()
    data[key] = value
    wrapped = {"version": 1, "since": 0, "full": False, "records": [data], "gatekeeper_id": "g"}
    for body in (data, wrapped):
        with contextlib.suppress(ContractError):
            from_json(cls, json.dumps(body))


def test_contract_module_exports_the_paths() -> None:
    assert contract.REPORTS_PATH == "/api/v1/sentry/reports"
    assert contract.RECORDS_PATH == "/api/v1/sentry/records"
    assert contract.GATEKEEPERS_PATH == "/api/v1/sentry/gatekeepers"
