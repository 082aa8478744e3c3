"""decide(): every reason bit alone, their combinations, override precedence, the limit."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from uem_sim.contract import AccessState, Reason
from uem_sim.model import (
    DAY,
    EasRecord,
    Override,
    OverrideAction,
    Posture,
    RegisteredDevice,
    SecurityPolicy,
    UemPolicy,
)
from uem_sim.policy import MailboxSlots, decide

NOW = 1_767_225_600.0

STRICT = SecurityPolicy(
    block_compromised=True,
    min_os_version={"ios": "17.0", "android": "13"},
    require_data_protection=True,
    max_days_out_of_contact=7,
    allowed_platforms=["ios", "android"],
    allowed_models=["iPhone15", "Pixel8"],
    blocked_apps=["TorrentApp"],
    block_policy_out_of_date=True,
    version=3,
)
POLICY = UemPolicy(security=STRICT, max_devices_per_mailbox=2, auto_block_unregistered=True)

GOOD = Posture(
    platform="ios",
    os_version="17.2",
    model="iPhone15",
    compromised=False,
    data_protection=True,
    apps=["Mail"],
)


def a_device(**posture: Any) -> RegisteredDevice:
    last = posture.pop("last_check_in", NOW - DAY)
    applied = posture.pop("applied_policy_version", 3)
    return RegisteredDevice(
        device_id="ApplDEV1",
        mailbox="alice",
        posture=attrs.evolve(GOOD, **posture),
        last_check_in=float(last),
        applied_policy_version=int(applied),
        enrolled_at=NOW - 30 * DAY,
    )


def a_record(override: OverrideAction | None = None) -> EasRecord:
    return EasRecord(
        mailbox="alice",
        device_id="ApplDEV1",
        first_seen=NOW,
        last_seen=NOW,
        seq=1,
        override=None if override is None else Override(override, "ticket 42", NOW),
    )


FREE = MailboxSlots(limit=2, holders=())
FULL = MailboxSlots(limit=2, holders=("OtherA", "OtherB"))


def test_compliant_registered_device_is_allowed_with_no_reasons() -> None:
    decision = decide(a_record(), a_device(), POLICY, FREE, NOW)
    assert decision.state is AccessState.ALLOW
    assert decision.reasons == 0


# Each case violates exactly one rule and must yield exactly that bit.
SINGLE_VIOLATIONS = [
    pytest.param({"compromised": True}, Reason.COMPROMISED, id="compromised"),
    pytest.param({"os_version": "16.4"}, Reason.OS_VERSION, id="os-below-minimum"),
    pytest.param(
        {"platform": "windows", "os_version": "10"}, Reason.OS_VERSION, id="platform-not-allowed"
    ),
    pytest.param({"model": "iPhone6"}, Reason.HW_VERSION, id="model-not-allowed"),
    pytest.param({"data_protection": False}, Reason.DATA_PROTECTION, id="no-data-protection"),
    pytest.param({"applied_policy_version": 2}, Reason.POLICY_OUT_OF_DATE, id="policy-stale"),
    pytest.param(
        {"last_check_in": NOW - 8 * DAY}, Reason.DEVICE_OUT_OF_CONTACT, id="out-of-contact"
    ),
    pytest.param({"apps": ["Mail", "torrentapp"]}, Reason.APP_CONTROL, id="disallowed-app"),
]


@pytest.mark.parametrize(("change", "reason"), SINGLE_VIOLATIONS)
def test_each_compliance_violation_blocks_with_its_own_reason_bit(
    change: dict[str, object], reason: Reason
) -> None:
    decision = decide(a_record(), a_device(**change), POLICY, FREE, NOW)
    assert decision.state is AccessState.BLOCK
    assert decision.reasons == reason


def test_unregistered_device_with_auto_block_is_blocked_auto_block() -> None:
    decision = decide(a_record(), None, POLICY, FREE, NOW)
    assert (decision.state, decision.reasons) == (AccessState.BLOCK, Reason.AUTO_BLOCK)


def test_unregistered_device_without_auto_block_is_allowed() -> None:
    policy = attrs.evolve(POLICY, auto_block_unregistered=False)
    decision = decide(a_record(), None, policy, FREE, NOW)
    assert (decision.state, decision.reasons) == (AccessState.ALLOW, 0)


def test_full_mailbox_blocks_an_otherwise_allowed_record_per_mailbox_limit() -> None:
    decision = decide(a_record(), a_device(), POLICY, FULL, NOW)
    assert (decision.state, decision.reasons) == (AccessState.BLOCK, Reason.PER_MAILBOX_LIMIT)
    assert "OtherA, OtherB" in decision.explanation


def test_admin_block_gives_manual() -> None:
    decision = decide(a_record(OverrideAction.BLOCK), a_device(), POLICY, FREE, NOW)
    assert (decision.state, decision.reasons) == (AccessState.BLOCK, Reason.MANUAL)
    assert "ticket 42" in decision.explanation


def test_admin_wipe_gives_wipe_with_manual() -> None:
    decision = decide(a_record(OverrideAction.WIPE), a_device(), POLICY, FREE, NOW)
    assert (decision.state, decision.reasons) == (AccessState.WIPE, Reason.MANUAL)


def test_admin_wipe_keeps_compliance_reasons_beside_manual() -> None:
    device = a_device(compromised=True)
    decision = decide(a_record(OverrideAction.WIPE), device, POLICY, FREE, NOW)
    assert decision.state is AccessState.WIPE
    assert decision.reasons == Reason.MANUAL | Reason.COMPROMISED


def test_admin_allow_beats_every_compliance_violation() -> None:
    device = a_device(compromised=True, os_version="15.0", data_protection=False)
    decision = decide(a_record(OverrideAction.ALLOW), device, POLICY, FREE, NOW)
    assert (decision.state, decision.reasons) == (AccessState.ALLOW, 0)
    assert "overriding" in decision.explanation
    assert any(r.outcome == "overridden" for r in decision.trace)


def test_admin_allow_beats_auto_block() -> None:
    decision = decide(a_record(OverrideAction.ALLOW), None, POLICY, FREE, NOW)
    assert (decision.state, decision.reasons) == (AccessState.ALLOW, 0)


def test_admin_allow_does_not_lift_the_mailbox_limit() -> None:
    decision = decide(a_record(OverrideAction.ALLOW), a_device(), POLICY, FULL, NOW)
    assert (decision.state, decision.reasons) == (AccessState.BLOCK, Reason.PER_MAILBOX_LIMIT)
    assert "raise uem.max_devices_per_mailbox" in decision.explanation


def test_admin_block_on_a_full_mailbox_is_manual_only() -> None:
    decision = decide(a_record(OverrideAction.BLOCK), a_device(), POLICY, FULL, NOW)
    assert decision.reasons == Reason.MANUAL


def test_compliance_block_on_a_full_mailbox_does_not_add_the_limit_bit() -> None:
    decision = decide(a_record(), a_device(compromised=True), POLICY, FULL, NOW)
    assert decision.reasons == Reason.COMPROMISED


def test_out_of_contact_exactly_at_the_maximum_still_passes() -> None:
    at_limit = decide(a_record(), a_device(last_check_in=NOW - 7 * DAY), POLICY, FREE, NOW)
    past = decide(a_record(), a_device(last_check_in=NOW - 7 * DAY - 1), POLICY, FREE, NOW)
    assert at_limit.reasons == 0
    assert past.reasons == Reason.DEVICE_OUT_OF_CONTACT


def test_version_comparison_is_numeric_not_textual() -> None:
    policy = attrs.evolve(POLICY, security=attrs.evolve(STRICT, min_os_version={"ios": "17.9"}))
    assert decide(a_record(), a_device(os_version="17.10"), policy, FREE, NOW).reasons == 0
    assert decide(a_record(), a_device(os_version="17.8.9"), policy, FREE, NOW).reasons == (
        Reason.OS_VERSION
    )


def test_rules_switched_off_do_not_block() -> None:
    lax = UemPolicy(security=SecurityPolicy(block_compromised=False), max_devices_per_mailbox=None)
    device = a_device(compromised=True, data_protection=False, os_version="1.0", model="x")
    decision = decide(a_record(), device, lax, MailboxSlots(None), NOW)
    assert (decision.state, decision.reasons) == (AccessState.ALLOW, 0)
    assert all(r.outcome in {"pass", "skipped"} for r in decision.trace)


def test_explanation_names_every_rule_and_its_inputs() -> None:
    device = a_device(os_version="16.4", last_check_in=NOW - 9.5 * DAY)
    decision = decide(a_record(), device, POLICY, FREE, NOW)
    text = decision.explanation
    assert text.startswith("BLOCK alice / ApplDEV1 (registered ios 16.4)")
    for rule in decision.trace:
        assert f"- {rule.rule}: " in text
    assert "16.4 is below 17.0" in text
    assert "9.50 days ago, the maximum is 7" in text
    assert "OS_VERSION" in text
    assert "DEVICE_OUT_OF_CONTACT" in text
    violated = {r.rule for r in decision.trace if r.outcome == "violated"}
    assert violated == {"minimum OS version for ios", "maximum days out of contact"}


VIOLATION: dict[str, tuple[dict[str, Any], Reason]] = {
    "compromised": ({"compromised": True}, Reason.COMPROMISED),
    "os": ({"os_version": "12.0"}, Reason.OS_VERSION),
    "model": ({"model": "Nokia"}, Reason.HW_VERSION),
    "dp": ({"data_protection": False}, Reason.DATA_PROTECTION),
    "stale": ({"applied_policy_version": 1}, Reason.POLICY_OUT_OF_DATE),
    "contact": ({"last_check_in": NOW - 30 * DAY}, Reason.DEVICE_OUT_OF_CONTACT),
    "apps": ({"apps": ["TorrentApp"]}, Reason.APP_CONTROL),
}


@given(
    chosen=st.sets(st.sampled_from(sorted(VIOLATION))),
    override=st.sampled_from([None, *OverrideAction]),
    full=st.booleans(),
)
def test_any_combination_of_violations_forms_the_union_bitmask(
    chosen: set[str], override: OverrideAction | None, full: bool
) -> None:
    change: dict[str, Any] = {}
    expected = 0
    for name in chosen:
        fields, bit = VIOLATION[name]
        change.update(fields)
        expected |= bit
    decision = decide(a_record(override), a_device(**change), POLICY, FULL if full else FREE, NOW)

    if override is OverrideAction.WIPE:
        assert (decision.state, decision.reasons) == (AccessState.WIPE, expected | Reason.MANUAL)
    elif override is OverrideAction.BLOCK:
        assert (decision.state, decision.reasons) == (AccessState.BLOCK, expected | Reason.MANUAL)
    else:
        effective = 0 if override is OverrideAction.ALLOW else expected
        if effective:
            assert (decision.state, decision.reasons) == (AccessState.BLOCK, effective)
        elif full:
            assert (decision.state, decision.reasons) == (
                AccessState.BLOCK,
                Reason.PER_MAILBOX_LIMIT,
            )
        else:
            assert (decision.state, decision.reasons) == (AccessState.ALLOW, 0)
    for bit in Reason:
        if decision.reasons & bit:
            assert bit.name is not None
            assert bit.name in decision.explanation
