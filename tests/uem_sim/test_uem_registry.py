"""The registry: identity, linking, slots, re-evaluation, change log; and the limit invariant
under any sequence of operations (hypothesis stateful)."""

from __future__ import annotations

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from uem_sim.config import UemConfig
from uem_sim.contract import AccessState, ActiveSyncPolicy, Reason, ReportRequest
from uem_sim.model import DAY, AdminAction, Posture
from uem_sim.registry import Registry

NOW = 1_767_225_600.0
LAB = {
    "users": [
        {"name": "alice", "email": "alice@example.com"},
        {"name": "bob", "email": "bob@example.com"},
    ],
    "uem": {
        "max_devices_per_mailbox": 2,
        "security_policy": {"min_os_version": {"ios": "17.0"}, "max_days_out_of_contact": 7},
        "devices": [
            {"device_id": "ApplGOOD", "user": "alice", "platform": "ios", "os_version": "17.2"},
            {"device_id": "ApplOLD", "user": "alice@example.com", "os_version": "16.0"},
        ],
    },
}


def registry(**uem: object) -> Registry:
    lab = {"users": LAB["users"], "uem": {**LAB["uem"], **uem}}  # type: ignore[dict-item]
    return Registry.from_config(UemConfig.from_mapping(lab), NOW)


def report(reg: Registry, user: str, device_id: str, at: float = NOW) -> AccessState:
    request = ReportRequest(gatekeeper_id="gk1", user=user, device_id=device_id, seen_at=at)
    return reg.report(request, at).record.state


def test_every_spelling_of_a_user_reaches_one_mailbox() -> None:
    reg = registry()
    report(reg, "CORP\\Alice", "ApplGOOD")
    report(reg, "alice@EXAMPLE.com", "ApplGOOD")
    report(reg, "alice", "ApplGOOD")
    record = reg.record("alice", "ApplGOOD")
    assert list(reg.records) == [("alice", "ApplGOOD")]
    assert record.aliases == ("CORP\\Alice", "alice@EXAMPLE.com", "alice")
    assert record.registered
    assert record.state is AccessState.ALLOW


def test_third_device_of_a_mailbox_with_limit_two_is_blocked_per_mailbox_limit() -> None:
    reg = registry()
    assert report(reg, "bob", "D1") is AccessState.ALLOW
    assert report(reg, "bob", "D2") is AccessState.ALLOW
    assert report(reg, "bob", "D3") is AccessState.BLOCK
    assert reg.record("bob", "D3").reasons == Reason.PER_MAILBOX_LIMIT


def test_removing_a_record_frees_its_slot_for_the_next_blocked_one() -> None:
    reg = registry()
    for device in ("D1", "D2", "D3"):
        report(reg, "bob", device)
    changes = reg.admin_action("bob", "D1", AdminAction.REMOVE, "lost phone", NOW)
    changed = {r.device_id: r for r in changes.records}
    assert changed["D1"].removed
    assert changed["D3"].state is AccessState.ALLOW
    assert ("bob", "D1") not in reg.records


def test_wiping_a_record_frees_its_slot() -> None:
    reg = registry()
    for device in ("D1", "D2", "D3"):
        report(reg, "bob", device)
    reg.admin_action("bob", "D2", AdminAction.WIPE, "stolen", NOW)
    assert reg.record("bob", "D2").state is AccessState.WIPE
    assert reg.record("bob", "D3").state is AccessState.ALLOW


def test_a_removed_device_reporting_again_is_a_new_record_at_the_back_of_the_queue() -> None:
    reg = registry()
    report(reg, "bob", "D1")
    report(reg, "bob", "D2")
    reg.admin_action("bob", "D1", AdminAction.REMOVE, "", NOW)
    assert report(reg, "bob", "D3") is AccessState.ALLOW
    assert report(reg, "bob", "D1") is AccessState.BLOCK


def test_enrolment_links_an_unlinked_record_and_re_decides_it() -> None:
    reg = registry(auto_block_unregistered=True)
    assert report(reg, "bob", "NEW1") is AccessState.BLOCK
    assert reg.record("bob", "NEW1").reasons == Reason.AUTO_BLOCK
    posture = Posture(platform="ios", os_version="17.4")
    _, enrolled, changes = reg.check_in("bob", "NEW1", posture, NOW + 60)
    assert enrolled
    assert [(r.device_id, r.state, r.registered) for r in changes.records] == [
        ("NEW1", AccessState.ALLOW, True)
    ]


def test_posture_change_blocks_then_unblocks() -> None:
    reg = registry()
    report(reg, "alice", "ApplGOOD")
    bad = Posture(platform="ios", os_version="17.2", compromised=True)
    _, changes = reg.update_posture("alice", "ApplGOOD", bad, NOW)
    assert [(r.state, r.reasons) for r in changes.records] == [
        (AccessState.BLOCK, Reason.COMPROMISED)
    ]
    _, changes = reg.update_posture("alice", "ApplGOOD", attrs.evolve(bad, compromised=False), NOW)
    assert [r.state for r in changes.records] == [AccessState.ALLOW]


def test_out_of_contact_is_judged_against_now_at_the_compliance_check() -> None:
    reg = registry()
    report(reg, "alice", "ApplGOOD")
    assert reg.reevaluate_all(NOW + 6 * DAY).records == ()
    changes = reg.reevaluate_all(NOW + 8 * DAY)
    assert [r.reasons for r in changes.records] == [Reason.DEVICE_OUT_OF_CONTACT]


def test_lowering_the_limit_keeps_the_oldest_allowed_records() -> None:
    reg = registry(max_devices_per_mailbox=3)
    for device in ("D1", "D2", "D3"):
        assert report(reg, "bob", device) is AccessState.ALLOW
    reg.set_policy(attrs.evolve(reg.policy, max_devices_per_mailbox=1), NOW)
    states = [reg.record("bob", d).state for d in ("D1", "D2", "D3")]
    assert states == [AccessState.ALLOW, AccessState.BLOCK, AccessState.BLOCK]


def test_new_activesync_policy_gives_every_record_a_new_version() -> None:
    reg = registry()
    report(reg, "bob", "D1")
    report(reg, "alice", "ApplGOOD")
    before = reg.version
    new = ActiveSyncPolicy(2, {"DevicePasswordEnabled": False})
    changes = reg.set_policy(attrs.evolve(reg.policy, activesync=new), NOW)
    assert len(changes.records) == 2
    assert all(r.version > before for r in changes.records)
    assert all(m.activesync_policy.version == 2 for m in reg.changes_since(before).records)


def test_changes_since_is_incremental_with_tombstones_and_full_when_it_must_be() -> None:
    reg = registry()
    report(reg, "bob", "D1")
    report(reg, "bob", "D2")
    mark = reg.version
    reg.admin_action("bob", "D1", AdminAction.BLOCK, "", NOW)
    reg.admin_action("bob", "D2", AdminAction.REMOVE, "", NOW)

    incremental = reg.changes_since(mark)
    assert not incremental.full
    assert [(m.device_id, m.state, m.removed) for m in incremental.records] == [
        ("D1", AccessState.BLOCK, False),
        ("D2", AccessState.ALLOW, True),
    ]
    assert incremental.version == reg.version

    assert reg.changes_since(0).full
    assert [m.device_id for m in reg.changes_since(0).records] == ["D1"]
    ahead = reg.changes_since(reg.version + 10)  # a gatekeeper that outlived a fresh UEM
    assert ahead.full


def test_explain_text_is_kept_from_decision_time() -> None:
    reg = registry()
    report(reg, "alice", "ApplOLD")
    record = reg.record("alice", "ApplOLD")
    assert record.reasons == Reason.OS_VERSION
    assert "16.0 is below 17.0" in record.explanation
    assert record.decided_at == NOW


USERS = ("alice", "bob")
DEVICES = ("ApplGOOD", "ApplOLD", "D1", "D2", "D3", "D4")


class MailboxLimitMachine(RuleBasedStateMachine):
    """Any sequence of reports, admin actions, posture and policy changes keeps the limit."""

    @initialize(limit=st.integers(1, 3), auto=st.booleans())
    def start(self, limit: int, auto: bool) -> None:
        self.reg = registry(max_devices_per_mailbox=limit, auto_block_unregistered=auto)
        self.now = NOW
        self.last_version = self.reg.version

    @rule(user=st.sampled_from(USERS), device=st.sampled_from(DEVICES))
    def a_report(self, user: str, device: str) -> None:
        report(self.reg, user, device, self.now)

    @rule(
        user=st.sampled_from(USERS),
        device=st.sampled_from(DEVICES),
        action=st.sampled_from(list(AdminAction)),
    )
    def an_admin_action(self, user: str, device: str, action: AdminAction) -> None:
        if (user, device) in self.reg.records:
            self.reg.admin_action(user, device, action, "", self.now)

    @rule(user=st.sampled_from(USERS), device=st.sampled_from(DEVICES), bad=st.booleans())
    def a_check_in(self, user: str, device: str, bad: bool) -> None:
        posture = Posture(platform="ios", os_version="17.1", compromised=bad)
        self.reg.check_in(user, device, posture, self.now)

    @rule(limit=st.integers(1, 3))
    def a_limit_change(self, limit: int) -> None:
        self.reg.set_policy(attrs.evolve(self.reg.policy, max_devices_per_mailbox=limit), self.now)

    @rule(days=st.integers(0, 10))
    def time_passes(self, days: int) -> None:
        self.now += days * DAY
        self.reg.reevaluate_all(self.now)

    @invariant()
    def the_limit_is_never_exceeded(self) -> None:
        limit = self.reg.policy.max_devices_per_mailbox
        assert limit is not None
        for user in USERS:
            assert self.reg.allowed_count(user) <= limit

    @invariant()
    def versions_only_grow_and_are_unique(self) -> None:
        assert self.reg.version >= self.last_version
        self.last_version = self.reg.version
        versions = [r.version for r in (*self.reg.records.values(), *self.reg.tombstones.values())]
        assert len(versions) == len(set(versions))
        assert all(0 < v <= self.reg.version for v in versions)


TestMailboxLimit = MailboxLimitMachine.TestCase
