"""The report path decides only what can change: it must agree with re-deciding the whole
mailbox on every report (the registry's previous behaviour), over any sequence of operations."""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from uem_sim.config import UemConfig
from uem_sim.contract import AccessState, Reason, ReportRequest
from uem_sim.errors import UemError
from uem_sim.model import DAY, AdminAction, EasRecord, Posture
from uem_sim.registry import Changes, Registry

NOW = 1_767_225_600.0
USERS = ("alice", "bob")
#: Spellings a gatekeeper may report (one mailbox each for alice and bob, one unknown user).
SPELLINGS = ("alice", "CORP\\alice", "alice@example.com", "bob", "BOB", "carol")
DEVICES = ("D1", "D2", "D3", "ApplGOOD")
LAB: dict[str, Any] = {
    "users": [
        {"name": "alice", "email": "alice@example.com"},
        {"name": "bob", "email": "bob@example.com"},
    ],
    "uem": {
        "max_devices_per_mailbox": 2,
        "security_policy": {"min_os_version": {"ios": "17.0"}, "max_days_out_of_contact": 3},
        "devices": [
            {"device_id": "ApplGOOD", "user": "alice", "platform": "ios", "os_version": "17.2"},
            {"device_id": "D2", "user": "bob", "platform": "ios", "os_version": "16.0"},
        ],
    },
}


class FullReevaluation(Registry):
    """The straightforward reference: every report re-decides the whole mailbox."""

    def _decide_reported(self, record: EasRecord, now: float) -> list[EasRecord]:
        return self._reevaluate(record.mailbox, now)


def make(cls: type[Registry]) -> Registry:
    return cls.from_config(UemConfig.from_mapping(LAB), NOW)


POSTURES = st.builds(
    Posture,
    platform=st.sampled_from(["ios", "android"]),
    os_version=st.sampled_from(["16.0", "17.0", "17.2"]),
    compromised=st.booleans(),
)

REPORT = st.tuples(st.just("report"), st.sampled_from(SPELLINGS), st.sampled_from(DEVICES))
ADVANCE = st.tuples(st.just("advance"), st.floats(min_value=0, max_value=2 * DAY))
OTHERS = st.one_of(
    st.tuples(st.just("check_in"), st.sampled_from(USERS), st.sampled_from(DEVICES), POSTURES),
    st.tuples(
        st.just("set_check_in"),
        st.sampled_from(USERS),
        st.sampled_from(DEVICES),
        st.floats(min_value=0, max_value=6 * DAY),
    ),
    st.tuples(st.just("retire"), st.sampled_from(USERS), st.sampled_from(DEVICES)),
    st.tuples(
        st.just("admin"),
        st.sampled_from(SPELLINGS),
        st.sampled_from(DEVICES),
        st.sampled_from(list(AdminAction)),
    ),
    st.tuples(
        st.just("policy"),
        st.sampled_from([None, 1, 2, 3]),
        st.sampled_from([None, 1.0, 3.0]),
        st.booleans(),
    ),
    st.tuples(st.just("compliance_check")),
)
#: Reports and the passing of time are what the report path sees most: weigh them up.
OPERATIONS = st.integers(0, 9).flatmap(lambda n: REPORT if n < 5 else ADVANCE if n < 7 else OTHERS)


def apply(reg: Registry, op: tuple[Any, ...], now: float) -> Changes | str:
    """One operation on ``reg``; the changes it reports, or the error type it raised."""
    kind = op[0]
    try:
        if kind == "report":
            request = ReportRequest(gatekeeper_id="gk", user=op[1], device_id=op[2], seen_at=now)
            return reg.report(request, now).changes
        if kind == "check_in":
            return reg.check_in(op[1], op[2], op[3], now)[2]
        if kind == "set_check_in":
            return reg.set_check_in(op[1], op[2], now - op[3], now)
        if kind == "retire":
            return reg.retire(op[1], op[2], now)
        if kind == "admin":
            return reg.admin_action(op[1], op[2], op[3], "note", now)
        if kind == "policy":
            security = attrs.evolve(reg.policy.security, max_days_out_of_contact=op[2])
            policy = attrs.evolve(
                reg.policy,
                max_devices_per_mailbox=op[1],
                auto_block_unregistered=op[3],
                security=security,
            )
            return reg.set_policy(policy, now)
        return reg.reevaluate_all(now)
    except UemError as exc:
        return type(exc).__name__


@settings(max_examples=300, deadline=None)
@given(st.lists(OPERATIONS, min_size=10, max_size=80))
def test_report_path_decides_exactly_as_a_full_mailbox_reevaluation(
    operations: list[tuple[Any, ...]],
) -> None:
    fast, reference = make(Registry), make(FullReevaluation)
    now = NOW
    for op in operations:
        if op[0] == "advance":
            now += op[1]
            continue
        assert apply(fast, op, now) == apply(reference, op, now), op
        assert fast.records == reference.records, op
        assert fast.tombstones == reference.tombstones
        assert fast.version == reference.version
    assert fast.take_delta() == reference.take_delta()


def test_a_report_does_not_redecide_the_other_records_of_its_mailbox() -> None:
    reg = make(Registry)
    for device in ("D1", "D3"):
        reg.report(
            ReportRequest(gatekeeper_id="gk", user="bob", device_id=device, seen_at=NOW), NOW
        )
    before = reg.record("bob", "D1")
    outcome = reg.report(
        ReportRequest(gatekeeper_id="gk", user="bob", device_id="D4", seen_at=NOW), NOW + 1
    )
    assert [r.device_id for r in outcome.changes.records] == ["D4"]
    assert outcome.record.reasons == Reason.PER_MAILBOX_LIMIT
    assert reg.record("bob", "D1") is before


def test_a_report_redecides_a_record_that_fell_out_of_contact_meanwhile() -> None:
    reg = make(Registry)
    reg.report(
        ReportRequest(gatekeeper_id="gk", user="alice", device_id="ApplGOOD", seen_at=NOW), NOW
    )
    assert reg.record("alice", "ApplGOOD").state is AccessState.ALLOW
    later = NOW + 4 * DAY
    outcome = reg.report(
        ReportRequest(gatekeeper_id="gk", user="alice", device_id="D1", seen_at=later), later
    )
    changed = {r.device_id: r for r in outcome.changes.records}
    assert changed["ApplGOOD"].reasons & Reason.DEVICE_OUT_OF_CONTACT
    assert changed["D1"].state is AccessState.ALLOW
