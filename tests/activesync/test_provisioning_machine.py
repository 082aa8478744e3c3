"""The policy-key state machine: unit cases and a model-based stateful test."""

from __future__ import annotations

import random

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from activesync.commands.provision import DeviceInformation, ProvisionDoc, ProvisionRequest
from activesync.provisioning import (
    TRANSITIONS,
    PolicyEvent,
    PolicyKeyMachine,
    PolicyState,
    PolicyTransitionError,
    answer_provision,
)
from activesync.status import Status
from activesync.versions import ProtocolVersion

V = ProtocolVersion


def scripted(*values: int) -> PolicyKeyMachine:
    """A machine whose key source yields ``values`` in turn."""
    it = iter(values)
    return PolicyKeyMachine(source=lambda bits: next(it))


def state_of(m: PolicyKeyMachine) -> PolicyState:
    return m.state


def provisioned() -> tuple[PolicyKeyMachine, int]:
    m = PolicyKeyMachine(source=random.Random(7).getrandbits)
    temp = m.issue_temporary()
    outcome = m.acknowledge(temp)
    assert outcome.final_key is not None
    return m, outcome.final_key


def test_first_provision_without_key_gets_temporary_key() -> None:
    m = scripted(1234)
    assert m.issue_temporary() == 1234
    assert m.state is PolicyState.TEMPORARY_ISSUED


def test_keys_are_never_zero_and_never_repeat_the_previous_key() -> None:
    m = scripted(0, 55, 55, 0, 66)
    assert m.issue_temporary() == 55
    assert m.acknowledge(55).final_key == 66


def test_right_acknowledgement_gives_final_key() -> None:
    m = scripted(10, 20)
    m.issue_temporary()
    outcome = m.acknowledge(10)
    assert (outcome.accepted, outcome.final_key, outcome.policy_status) == (True, 20, 1)
    assert m.state is PolicyState.PROVISIONED
    assert m.check(20, V.V14_0, "Sync").ok


def test_wrong_acknowledgement_gets_status_5_and_keeps_waiting() -> None:
    m = scripted(10)
    m.issue_temporary()
    outcome = m.acknowledge(11)
    assert (outcome.accepted, outcome.policy_status) == (False, 5)
    assert m.state is PolicyState.TEMPORARY_ISSUED


def test_never_provisioned_device_gets_142_and_449_below_14_0() -> None:
    m = PolicyKeyMachine()
    check = m.check(None, V.V14_0, "FolderSync")
    assert (check.ok, check.status) == (False, Status.DeviceNotProvisioned)
    assert check.answer is not None
    assert check.answer.http_status == 200
    old = m.check(None, V.V12_1, "FolderSync")
    assert old.answer is not None
    assert old.answer.http_status == 449


def test_temporary_key_used_on_another_command_is_142() -> None:
    m = scripted(10)
    m.issue_temporary()
    assert m.check(10, V.V14_1, "Sync").status is Status.DeviceNotProvisioned


def test_policy_change_makes_the_final_key_stale_144() -> None:
    m, final = provisioned()
    m.policy_changed(2)
    check = m.check(final, V.V14_1, "Sync")
    assert check.status is Status.InvalidPolicyKey
    assert "policy version" in check.explanation
    assert m.state is PolicyState.STALE


def test_same_policy_version_changes_nothing() -> None:
    m, final = provisioned()
    m.policy_changed(0)
    assert m.check(final, V.V14_1, "Sync").ok


def test_wrong_key_on_a_provisioned_device_is_144_and_no_key_is_142() -> None:
    m, final = provisioned()
    assert m.check(final + 1, V.V16_1, "Sync").status is Status.InvalidPolicyKey
    assert m.check(None, V.V16_1, "Sync").status is Status.DeviceNotProvisioned
    assert m.check(0, V.V16_1, "Sync").status is Status.DeviceNotProvisioned


def test_keyless_commands_are_never_refused() -> None:
    m = PolicyKeyMachine()
    for command in ("Provision", "Ping", "Options", "Autodiscover"):
        assert m.check(None, V.V14_0, command).ok


def test_wipe_flow() -> None:
    m, final = provisioned()
    m.request_wipe()
    check = m.check(final, V.V12_1, "Sync")
    assert check.status is Status.RemoteWipeRequested
    assert check.answer is not None
    assert check.answer.http_status == 449
    no_key = m.check(None, V.V12_1, "Sync")
    assert no_key.answer is not None
    assert no_key.answer.http_status == 403
    assert m.wipe_pending
    assert m.deliver_wipe() is False
    m.wipe_reported(succeeded=False)
    assert state_of(m) is PolicyState.WIPE_SENT
    m.wipe_reported(succeeded=True)
    assert state_of(m) is PolicyState.WIPED
    assert m.check(final, V.V16_1, "Sync").status is Status.RemoteWipeRequested
    m.reset()
    assert m.state is PolicyState.NEVER_PROVISIONED


def test_account_only_wipe_is_remembered_until_delivery() -> None:
    m = PolicyKeyMachine()
    m.request_wipe(account_only=True)
    assert m.deliver_wipe() is True


@pytest.mark.parametrize(
    ("prepare", "action", "event"),
    [
        (lambda m: m.request_wipe(), lambda m: m.issue_temporary(), "issue-temporary"),
        (lambda m: None, lambda m: m.deliver_wipe(), "deliver-wipe"),
        (lambda m: None, lambda m: m.wipe_reported(True), "wipe-succeeded"),
        (lambda m: m.request_wipe(), lambda m: m.acknowledge(1), "ack-wrong-key"),
    ],
)
def test_illegal_pairs_raise_naming_state_and_event(prepare, action, event) -> None:  # type: ignore[no-untyped-def]
    m = PolicyKeyMachine()
    prepare(m)
    before = m.state
    with pytest.raises(PolicyTransitionError) as info:
        action(m)
    assert info.value.state is before
    assert event in str(info.value)
    assert before.value in str(info.value)
    assert m.state is before


def test_every_state_can_be_reset_and_reaches_a_wipe() -> None:
    for state in PolicyState:
        assert (state, PolicyEvent.RESET) in TRANSITIONS
        assert (state, PolicyEvent.REQUEST_WIPE) in TRANSITIONS


class PolicyKeyModel(RuleBasedStateMachine):
    """The machine against a tiny dict model of what each request should get."""

    @initialize(seed=st.integers(0, 2**32))
    def start(self, seed: int) -> None:
        self.machine = PolicyKeyMachine(source=random.Random(seed).getrandbits)
        # The model: the key a device may use, the key it last held, whether it is stale,
        # the pending temporary key, and the wipe phase.
        self.model: dict[str, object] = {
            "temp": None,
            "final": None,
            "old_final": None,
            "wipe": None,
            "policy": 0,
        }
        self.issued: list[int] = []

    def wiping(self) -> bool:
        return self.model["wipe"] is not None

    @precondition(lambda self: not self.wiping())
    @rule()
    def initial_provision(self) -> None:
        key = self.machine.issue_temporary()
        assert 1 <= key <= 0xFFFF_FFFF
        assert key != self.model["temp"]
        assert key != self.model["final"]
        self.model.update(temp=key, final=None, old_final=None)
        self.issued.append(key)

    @precondition(lambda self: not self.wiping() and self.model["temp"] is not None)
    @rule()
    def acknowledge_right_key(self) -> None:
        outcome = self.machine.acknowledge(self.model["temp"])  # type: ignore[arg-type]
        assert outcome.accepted
        assert outcome.policy_status == 1
        assert outcome.final_key not in (None, 0, self.model["temp"])
        self.model.update(temp=None, final=outcome.final_key, old_final=None)

    @precondition(lambda self: not self.wiping())
    @rule(key=st.none() | st.integers(0, 0xFFFF_FFFF))
    def acknowledge_some_key(self, key: int | None) -> None:
        outcome = self.machine.acknowledge(key)
        if self.model["temp"] is not None and key == self.model["temp"]:
            assert outcome.accepted
            self.model.update(temp=None, final=outcome.final_key, old_final=None)
        else:
            assert not outcome.accepted
            assert outcome.policy_status == 5

    @rule()
    def policy_changes(self) -> None:
        new = int(self.model["policy"]) + 1  # type: ignore[call-overload]
        self.machine.policy_changed(new)
        self.model["policy"] = new
        if not self.wiping():
            if self.model["final"] is not None:
                self.model.update(old_final=self.model["final"], final=None)
            self.model["temp"] = None

    @rule()
    def wipe_requested(self) -> None:
        self.machine.request_wipe()
        if self.model["wipe"] is None:
            self.model.update(wipe="pending", temp=None)

    @precondition(lambda self: self.wiping())
    @rule()
    def wipe_delivered(self) -> None:
        self.machine.deliver_wipe()
        if self.model["wipe"] == "pending":
            self.model["wipe"] = "sent"

    @precondition(lambda self: self.model["wipe"] in ("sent", "done"))
    @rule(ok=st.booleans())
    def wipe_reported(self, ok: bool) -> None:
        self.machine.wipe_reported(ok)
        if ok:
            self.model["wipe"] = "done"

    @rule()
    def partnership_reset(self) -> None:
        self.machine.reset()
        self.model.update(temp=None, final=None, old_final=None, wipe=None)

    @rule(
        choice=st.sampled_from(["final", "old", "temp", "none", "random"]),
        other=st.integers(1, 0xFFFF_FFFF),
        version=st.sampled_from(list(ProtocolVersion)),
        command=st.sampled_from(["Sync", "FolderSync", "Settings", "SendMail"]),
    )
    def command_arrives(
        self, choice: str, other: int, version: ProtocolVersion, command: str
    ) -> None:
        key = {
            "final": self.model["final"],
            "old": self.model["old_final"],
            "temp": self.model["temp"],
            "none": None,
            "random": other,
        }[choice]
        assert key is None or isinstance(key, int)
        check = self.machine.check(key, version, command)
        if self.wiping():
            expected: Status | None = Status.RemoteWipeRequested
        elif self.model["final"] is not None and key == self.model["final"]:
            expected = None
        elif key in (None, 0) or self.model["final"] == self.model["old_final"] is None:
            # No key, or the device never held a final key: never provisioned.
            expected = Status.DeviceNotProvisioned
        else:
            expected = Status.InvalidPolicyKey
        assert check.status == expected, (self.machine.state, self.model, key)
        assert check.ok is (expected is None)
        assert (check.answer is None) is check.ok

    @invariant()
    def wipe_state_never_forwards(self) -> None:
        if hasattr(self, "machine") and self.machine.wipe_pending:
            assert not self.machine.check(self.machine.final_key, V.V16_1, "Sync").ok

    @invariant()
    def temporary_and_final_keys_never_coexist(self) -> None:
        if hasattr(self, "machine"):
            assert self.machine.temporary_key is None or self.machine.final_key is None


TestPolicyKeyModel = PolicyKeyModel.TestCase


# --- answer_provision: the shared Provision decision ---------------------------------------------

DOC = ProvisionDoc().replace(DevicePasswordEnabled=True)
INFO = DeviceInformation(model="iPhone15,2")


def test_full_two_phase_flow_then_commands_pass() -> None:
    m = PolicyKeyMachine(source=random.Random(1).getrandbits)
    first = answer_provision(m, ProvisionRequest.initial(V.V14_1, INFO), V.V14_1, DOC)
    assert (first.status, first.policy_status, first.doc) == (1, 1, DOC)
    assert first.device_information_status == 1
    temp = first.policy_key_value
    assert temp is not None
    second = answer_provision(m, ProvisionRequest.acknowledgement(V.V14_1, temp), V.V14_1, DOC)
    assert second.doc is None
    final = second.policy_key_value
    assert final is not None
    assert final != temp
    assert m.check(final, V.V14_1, "Sync").ok
    assert m.check(temp, V.V14_1, "sync").status is Status.InvalidPolicyKey


def test_acknowledging_a_wrong_key_gets_policy_status_5() -> None:
    m = PolicyKeyMachine()
    answer_provision(m, ProvisionRequest.initial(V.V14_0), V.V14_0, DOC)
    reply = answer_provision(m, ProvisionRequest.acknowledgement(V.V14_0, "bogus"), V.V14_0, DOC)
    assert reply.policy_status == 5


def test_missing_device_information_on_14_1_is_165_and_issues_no_key() -> None:
    m = PolicyKeyMachine()
    reply = answer_provision(m, ProvisionRequest.initial(V.V14_1), V.V14_1, DOC)
    assert reply.status == 165
    assert m.state is PolicyState.NEVER_PROVISIONED
    lenient = answer_provision(
        m, ProvisionRequest.initial(V.V14_1), V.V14_1, DOC, require_device_information=False
    )
    assert lenient.status == 1


def test_wipe_through_provision() -> None:
    m, _ = provisioned()
    m.request_wipe(account_only=True)
    directive = answer_provision(m, ProvisionRequest.wipe_fetch(), V.V16_1, DOC)
    assert directive.account_only_remote_wipe
    failed = answer_provision(m, ProvisionRequest.wipe_ack(2, account_only=True), V.V16_1, DOC)
    assert (failed.status, failed.account_only_remote_wipe) == (2, True)
    done = answer_provision(m, ProvisionRequest.wipe_ack(1, account_only=True), V.V16_1, DOC)
    assert done.status == 1
    assert m.state is PolicyState.WIPED


def test_account_only_wipe_below_16_1_goes_out_as_full_wipe() -> None:
    m = PolicyKeyMachine()
    m.request_wipe(account_only=True)
    reply = answer_provision(m, ProvisionRequest.initial(V.V14_0), V.V14_0, DOC)
    assert (reply.remote_wipe, reply.account_only_remote_wipe) == (True, False)


def test_wipe_report_or_empty_provision_without_a_wipe_is_status_2() -> None:
    m = PolicyKeyMachine()
    assert answer_provision(m, ProvisionRequest.wipe_fetch(), V.V14_0, DOC).status == 2
    assert answer_provision(m, ProvisionRequest.wipe_ack(1), V.V14_0, DOC).status == 2
