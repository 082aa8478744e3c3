"""The device list and the first-access gate against a small dict model (hypothesis stateful).

Invariants: a BLOCKED or WIPED record is never forwarded; an unknown record has at most one
report in flight however many requests arrive; stale UEM answers never undo newer ones; the
per-state counts match the records; a restart keeps exactly the UEM-decided records.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from activesync.versions import ProtocolVersion
from sentry_sim.device_list import DeviceList, State, record_key
from sentry_sim.gate import (
    Access,
    AnswerProvision,
    Deny,
    Forward,
    Gate,
    PolicyMode,
    Unreachable,
    Wait,
)
from uem_sim.contract import AccessState, ActiveSyncPolicy, DecisionMessage

USERS = ("alice", "CORP\\Alice", "bob@example.com", "Bob@Example.com")
DEVICES = ("DEV1", "dev1", "PHONE2")
COMMANDS = ("Sync", "FolderSync", "Ping", "Provision", "Settings")
STATES = {AccessState.ALLOW: State.ALLOWED, AccessState.BLOCK: State.BLOCKED}
STATES[AccessState.WIPE] = State.WIPED
POLICY = ActiveSyncPolicy(version=1, settings={"DevicePasswordEnabled": 1})


def decision(user: str, device_id: str, state: AccessState, version: int) -> DecisionMessage:
    return DecisionMessage(
        user=user,
        device_id=device_id,
        state=state,
        reasons=0x80 if state is AccessState.BLOCK else 0,
        explanation="test",
        activesync_policy=POLICY,
        record_version=version,
        decided_at=1.0,
        registered=True,
    )


class GateMachine(RuleBasedStateMachine):
    reports = Bundle("reports")

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        self.version = 0
        self.gate = Gate(
            DeviceList(), policy_mode=PolicyMode.PASS_THROUGH, unreachable=Unreachable.ALLOW
        )
        #: key -> (state, is_fallback)
        self.model: dict[str, tuple[State, bool]] = {}
        #: keys with a report in flight (the outbox)
        self.in_flight: set[str] = set()
        #: answer number of the newest decision per key
        self.answers: dict[str, int] = {}

    def tick(self) -> float:
        self.now += 1.0
        return self.now

    @rule(
        target=reports,
        user=st.sampled_from(USERS),
        device=st.sampled_from(DEVICES),
        command=st.sampled_from(COMMANDS),
    )
    def request(self, user: str, device: str, command: str) -> str:
        access = Access.create(
            user=user,
            device_id=device,
            device_type="iPhone",
            command=command,
            version=ProtocolVersion.V16_1,
        )
        key = access.key
        admission = self.gate.admit(access, self.tick())
        known = self.model.get(key)
        if known is None or known[0] is State.UNKNOWN:
            assert isinstance(admission.outcome, Wait)
            if key in self.in_flight:
                assert admission.report is None, "a second report for the same record"
            else:
                assert admission.report is not None
                self.in_flight.add(key)
            self.model[key] = (State.UNKNOWN, False)
        else:
            state = known[0]
            outcome = admission.outcome
            if state in (State.BLOCKED, State.WIPED):
                assert not isinstance(outcome, Forward), f"{state} record forwarded"
                if state is State.WIPED and command == "Provision":
                    assert isinstance(outcome, AnswerProvision)
                    assert outcome.wipe
                else:
                    assert isinstance(outcome, Deny)
            else:
                assert isinstance(outcome, Forward)
            assert admission.report is None
        return key

    @precondition(lambda self: bool(self.in_flight))
    @rule(data=st.data(), state=st.sampled_from(list(STATES)))
    def uem_answers_report(self, data: st.DataObject, state: AccessState) -> None:
        key = data.draw(st.sampled_from(sorted(self.in_flight)))
        user, _, device = key.rpartition("/")
        self.version += 1
        self.gate.report_answered(key, decision(user, device, state, self.version), self.tick())
        self.in_flight.discard(key)
        self.model[key] = (STATES[state], False)
        self.answers[key] = self.version

    @precondition(lambda self: bool(self.in_flight))
    @rule(data=st.data())
    def report_fails(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.in_flight)))
        applied = self.gate.report_failed(key, self.tick())
        current = self.model.get(key)
        if current is not None and current[0] is State.UNKNOWN:
            assert applied is not None
            self.model[key] = (State.ALLOWED, True)
        else:
            assert applied is None

    @rule(
        user=st.sampled_from(USERS),
        device=st.sampled_from(DEVICES),
        state=st.sampled_from(list(STATES)),
    )
    def uem_pushes(self, user: str, device: str, state: AccessState) -> None:
        self.version += 1
        self.gate.apply_decision(decision(user, device, state, self.version), self.tick())
        key = record_key(user, device)
        if key not in self.model and state is not AccessState.ALLOW:
            return  # only allowed records are added by a push; denied ones when they ask
        self.model[key] = (STATES[state], False)
        self.answers[key] = self.version

    @precondition(lambda self: bool(self.answers))
    @rule(data=st.data(), state=st.sampled_from(list(STATES)))
    def stale_answer_changes_nothing(self, data: st.DataObject, state: AccessState) -> None:
        key = data.draw(st.sampled_from(sorted(self.answers)))
        user, _, device = key.rpartition("/")
        old = self.answers[key] - 1
        if old < 1:
            return
        self.gate.apply_decision(decision(user, device, state, old), self.tick())

    @rule(key=consumes(reports))
    def uem_removes(self, key: str) -> None:
        user, _, device = key.rpartition("/")
        self.version += 1
        gone = DecisionMessage(
            user=user,
            device_id=device,
            state=AccessState.ALLOW,
            reasons=0,
            explanation="removed",
            activesync_policy=POLICY,
            record_version=self.version,
            decided_at=1.0,
            registered=False,
            removed=True,
        )
        self.gate.apply_decision(gone, self.tick())
        # A report in flight stays in flight: its answer will arrive and apply.
        self.model.pop(key, None)
        self.answers.pop(key, None)

    @rule()
    def restart(self) -> None:
        rows = list(self.gate.devices.rows())
        fresh = DeviceList()
        fresh.load(rows)
        for key in self.in_flight:  # the outbox survives a restart
            fresh.start_report(key)
        self.gate = Gate(fresh, policy_mode=PolicyMode.PASS_THROUGH, unreachable=Unreachable.ALLOW)
        self.model = {k: v for k, v in self.model.items() if v[0] is not State.UNKNOWN and not v[1]}

    @invariant()
    def counts_match_model(self) -> None:
        devices = self.gate.devices
        for state in State:
            expected = sum(1 for s, _ in self.model.values() if s is state)
            assert devices.count(state) == expected, state
        assert len(devices) == len(self.model)

    @invariant()
    def states_match_model(self) -> None:
        for key, (state, fallback) in self.model.items():
            record = self.gate.devices.get(key)
            assert record is not None
            assert record.state is state
            assert record.is_fallback is fallback

    @invariant()
    def at_most_one_report_per_record(self) -> None:
        assert self.gate.devices.reporting == frozenset(self.in_flight)


TestGateMachine = GateMachine.TestCase
