"""The two-phase policy key of one (user, device), as a pure state machine.

Responsibility: remember which policy key a device holds and what that means for its next
request, for both the mock Exchange (which issues keys) and the gatekeeper (which enforces the
UEM's policy in front of any server). It issues temporary keys, turns an acknowledged temporary
key into a final key, invalidates the final key when the policy changes, and tracks a remote
wipe from request to acknowledgement. It must not parse bodies, build responses itself (it
hands out ``EasAnswer`` values built by ``answers.py``) or read the clock or a global random
source: the key source is injected.

Theory of operation (MS-ASPROV 3.1.1, 3.2.5.1; notes 2.1-2.3):
- ``PolicyState`` is an enum; ``TRANSITIONS`` maps (state, event) to the next state. An event
  that is not in the table for the current state raises ``PolicyTransitionError`` naming both;
  callers ask ``state``/``wipe_pending`` first where the protocol gives them a choice.
- Keys are decimal uint32 values, never 0 (0 means "no key" to clients, MS-ASPROV 3.1.5.1.1),
  and a new key never repeats the one it replaces.
- ``check`` answers for every non-Provision command: OK, or the status to send (142 never
  provisioned, 144 stale or wrong key, 140 wipe pending) with the version-correct answer.
- ``answer_provision`` is the one Provision decision both servers share: request + machine +
  policy in, response out, the machine advanced.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from typing import Final

import attrs

from activesync.answers import EasAnswer, status_answer
from activesync.commands.provision import (
    ProvisionDoc,
    ProvisionRequest,
    ProvisionResponse,
    RequestKind,
    precheck,
)
from activesync.status import ProvisionStatus, Status
from activesync.versions import ProtocolVersion

#: A source of 32-bit random integers (``random.Random(seed).getrandbits``-like).
KeySource = Callable[[int], int]

_UINT32_MAX: Final = 0xFFFF_FFFF

#: Commands that carry no policy key and are never refused for one (MS-ASPROV 3.1.5.1,
#: R61103: every command except Autodiscover, Ping and OPTIONS sends it). Provision itself is
#: the way out of every refusal.
KEYLESS_COMMANDS: Final = frozenset({"options", "autodiscover", "ping", "provision"})


class PolicyState(enum.Enum):
    """Where one (user, device) stands in the Provision exchange."""

    #: No key was ever issued (or the partnership was reset); every command gets 142.
    NEVER_PROVISIONED = "never-provisioned"
    #: Phase 1 done: a temporary key was issued and awaits the acknowledgement.
    TEMPORARY_ISSUED = "temporary-issued"
    #: Phase 2 done: the device holds the final key for the current policy.
    PROVISIONED = "provisioned"
    #: The policy changed after the final key was issued; the old key now gets 144.
    STALE = "stale"
    #: A remote wipe is requested; the next command gets 140.
    WIPE_PENDING = "wipe-pending"
    #: The wipe directive was delivered in a Provision response; awaiting the device's report.
    WIPE_SENT = "wipe-sent"
    #: The device reported a successful wipe; if it comes back it is told to wipe again.
    WIPED = "wiped"


class PolicyEvent(enum.Enum):
    """What can happen to the policy key of one (user, device)."""

    #: An initial Provision request was answered with a temporary key.
    ISSUE_TEMPORARY = "issue-temporary"
    #: An acknowledgement carried the temporary key.
    ACK_RIGHT_KEY = "ack-right-key"
    #: An acknowledgement carried some other key (Policy Status 5).
    ACK_WRONG_KEY = "ack-wrong-key"
    #: The policy this device must hold changed.
    POLICY_CHANGED = "policy-changed"
    #: An administrator (or the UEM) asked for a remote wipe.
    REQUEST_WIPE = "request-wipe"
    #: The wipe directive went out in a Provision response.
    DELIVER_WIPE = "deliver-wipe"
    #: The device reported that the wipe succeeded.
    WIPE_SUCCEEDED = "wipe-succeeded"
    #: The device reported that the wipe failed (the directive is sent again).
    WIPE_FAILED = "wipe-failed"
    #: The partnership was removed; the device starts over.
    RESET = "reset"


_S = PolicyState
_E = PolicyEvent

#: (state, event) -> next state. Anything else is illegal.
TRANSITIONS: Final[dict[tuple[PolicyState, PolicyEvent], PolicyState]] = {
    (_S.NEVER_PROVISIONED, _E.ISSUE_TEMPORARY): _S.TEMPORARY_ISSUED,
    (_S.NEVER_PROVISIONED, _E.ACK_WRONG_KEY): _S.NEVER_PROVISIONED,
    (_S.NEVER_PROVISIONED, _E.POLICY_CHANGED): _S.NEVER_PROVISIONED,
    (_S.NEVER_PROVISIONED, _E.REQUEST_WIPE): _S.WIPE_PENDING,
    (_S.NEVER_PROVISIONED, _E.RESET): _S.NEVER_PROVISIONED,
    (_S.TEMPORARY_ISSUED, _E.ISSUE_TEMPORARY): _S.TEMPORARY_ISSUED,
    (_S.TEMPORARY_ISSUED, _E.ACK_RIGHT_KEY): _S.PROVISIONED,
    (_S.TEMPORARY_ISSUED, _E.ACK_WRONG_KEY): _S.TEMPORARY_ISSUED,
    # The temporary key was for the old policy: acknowledging it must not yield a final key.
    (_S.TEMPORARY_ISSUED, _E.POLICY_CHANGED): _S.NEVER_PROVISIONED,
    (_S.TEMPORARY_ISSUED, _E.REQUEST_WIPE): _S.WIPE_PENDING,
    (_S.TEMPORARY_ISSUED, _E.RESET): _S.NEVER_PROVISIONED,
    # Re-provisioning (143 refresh, or a client that simply starts over) replaces the key.
    (_S.PROVISIONED, _E.ISSUE_TEMPORARY): _S.TEMPORARY_ISSUED,
    # A stray acknowledgement is refused with Status 5 but does not revoke the final key.
    (_S.PROVISIONED, _E.ACK_WRONG_KEY): _S.PROVISIONED,
    (_S.PROVISIONED, _E.POLICY_CHANGED): _S.STALE,
    (_S.PROVISIONED, _E.REQUEST_WIPE): _S.WIPE_PENDING,
    (_S.PROVISIONED, _E.RESET): _S.NEVER_PROVISIONED,
    (_S.STALE, _E.ISSUE_TEMPORARY): _S.TEMPORARY_ISSUED,
    (_S.STALE, _E.ACK_WRONG_KEY): _S.STALE,
    (_S.STALE, _E.POLICY_CHANGED): _S.STALE,
    (_S.STALE, _E.REQUEST_WIPE): _S.WIPE_PENDING,
    (_S.STALE, _E.RESET): _S.NEVER_PROVISIONED,
    (_S.WIPE_PENDING, _E.DELIVER_WIPE): _S.WIPE_SENT,
    (_S.WIPE_PENDING, _E.POLICY_CHANGED): _S.WIPE_PENDING,
    (_S.WIPE_PENDING, _E.REQUEST_WIPE): _S.WIPE_PENDING,
    (_S.WIPE_PENDING, _E.RESET): _S.NEVER_PROVISIONED,
    (_S.WIPE_SENT, _E.DELIVER_WIPE): _S.WIPE_SENT,
    (_S.WIPE_SENT, _E.WIPE_SUCCEEDED): _S.WIPED,
    (_S.WIPE_SENT, _E.WIPE_FAILED): _S.WIPE_SENT,
    (_S.WIPE_SENT, _E.POLICY_CHANGED): _S.WIPE_SENT,
    (_S.WIPE_SENT, _E.REQUEST_WIPE): _S.WIPE_SENT,
    (_S.WIPE_SENT, _E.RESET): _S.NEVER_PROVISIONED,
    (_S.WIPED, _E.DELIVER_WIPE): _S.WIPED,
    # A repeated report (the device retried after a lost reply) changes nothing.
    (_S.WIPED, _E.WIPE_SUCCEEDED): _S.WIPED,
    (_S.WIPED, _E.WIPE_FAILED): _S.WIPED,
    (_S.WIPED, _E.POLICY_CHANGED): _S.WIPED,
    (_S.WIPED, _E.REQUEST_WIPE): _S.WIPED,
    (_S.WIPED, _E.RESET): _S.NEVER_PROVISIONED,
}

#: States in which every command (except Provision and OPTIONS) is answered with 140.
WIPE_STATES: Final = frozenset({_S.WIPE_PENDING, _S.WIPE_SENT, _S.WIPED})


class PolicyTransitionError(Exception):
    """An event that cannot happen in the current state (a caller's logic error)."""

    def __init__(self, state: PolicyState, event: PolicyEvent) -> None:
        allowed = sorted(e.value for (s, e) in TRANSITIONS if s is state)
        super().__init__(
            f"policy key: event {event.value} is not allowed in state {state.value}; "
            f"allowed there: {', '.join(allowed)}"
        )
        self.state = state
        self.event = event


@attrs.frozen
class KeyCheck:
    """The outcome of ``PolicyKeyMachine.check`` for one request."""

    #: True when the request may proceed.
    ok: bool
    #: The status to refuse with (142, 144, 140), or None when ``ok``.
    status: Status | None
    #: Why, in words, for the narrated trace and ``explain``.
    explanation: str
    #: The version-correct answer to send, or None when ``ok``.
    answer: EasAnswer | None = None


@attrs.frozen
class AckOutcome:
    """The outcome of an acknowledgement."""

    #: True when the acknowledged key was the temporary key.
    accepted: bool
    #: The final key, when accepted.
    final_key: int | None
    #: Policy/Status for the response: 1 accepted, 5 wrong key.
    policy_status: int


def _default_source(bits: int) -> int:
    return secrets.randbits(bits)


@attrs.define(eq=False)
class PolicyKeyMachine:
    """The policy-key state of one (user, device)."""

    #: Where the device stands.
    state: PolicyState = PolicyState.NEVER_PROVISIONED
    #: The temporary key awaiting acknowledgement, if any.
    temporary_key: int | None = None
    #: The final key the device holds (also kept while STALE, to tell 144 from 142).
    final_key: int | None = None
    #: Version of the policy the device must hold (any value that changes with the policy).
    policy_version: int = 0
    #: Version of the policy the final key was issued for.
    final_policy_version: int | None = None
    #: Whether the requested wipe is account-only (16.1 AccountOnlyRemoteWipe).
    account_only_wipe: bool = False
    #: Random source: ``source(32)`` returns 32 random bits.
    source: KeySource = _default_source

    def _apply(self, event: PolicyEvent) -> PolicyState:
        next_state = TRANSITIONS.get((self.state, event))
        if next_state is None:
            raise PolicyTransitionError(self.state, event)
        self.state = next_state
        return next_state

    def _new_key(self, avoid: set[int | None]) -> int:
        while True:
            key = self.source(32) & _UINT32_MAX
            if key != 0 and key not in avoid:
                return key

    @property
    def wipe_pending(self) -> bool:
        """True when Provision must answer with the wipe directive."""
        return self.state in WIPE_STATES

    def issue_temporary(self) -> int:
        """Phase 1: a new temporary key (the previous final key stops working)."""
        self._apply(PolicyEvent.ISSUE_TEMPORARY)
        key = self._new_key({self.temporary_key, self.final_key})
        self.temporary_key = key
        self.final_key = None
        self.final_policy_version = None
        return key

    def acknowledge(self, presented_key: int | None) -> AckOutcome:
        """Phase 2: the device acknowledges ``presented_key`` (from the body's PolicyKey)."""
        right = (
            self.state is PolicyState.TEMPORARY_ISSUED
            and presented_key is not None
            and presented_key == self.temporary_key
        )
        if not right:
            self._apply(PolicyEvent.ACK_WRONG_KEY)
            return AckOutcome(accepted=False, final_key=None, policy_status=5)
        self._apply(PolicyEvent.ACK_RIGHT_KEY)
        final = self._new_key({self.temporary_key})
        self.final_key = final
        self.final_policy_version = self.policy_version
        self.temporary_key = None
        return AckOutcome(accepted=True, final_key=final, policy_status=1)

    def policy_changed(self, new_version: int) -> None:
        """The policy the device must hold is now ``new_version``; a final key for an older
        one becomes stale (144 until the device provisions again)."""
        if new_version == self.policy_version:
            return
        self.policy_version = new_version
        self._apply(PolicyEvent.POLICY_CHANGED)
        if self.state is PolicyState.NEVER_PROVISIONED:
            self.temporary_key = None

    def request_wipe(self, *, account_only: bool = False) -> None:
        """Ask for a remote wipe; from now on commands get 140 until the device wipes."""
        self._apply(PolicyEvent.REQUEST_WIPE)
        if self.state is PolicyState.WIPE_PENDING:
            self.account_only_wipe = account_only
        self.temporary_key = None

    def deliver_wipe(self) -> bool:
        """The wipe directive goes out; returns whether it is account-only."""
        self._apply(PolicyEvent.DELIVER_WIPE)
        return self.account_only_wipe

    def wipe_reported(self, succeeded: bool) -> None:
        """The device's wipe report (RemoteWipe/Status 1 or 2)."""
        self._apply(PolicyEvent.WIPE_SUCCEEDED if succeeded else PolicyEvent.WIPE_FAILED)

    def reset(self) -> None:
        """The partnership was removed: forget keys and wipe."""
        self._apply(PolicyEvent.RESET)
        self.temporary_key = None
        self.final_key = None
        self.final_policy_version = None
        self.account_only_wipe = False

    def check(self, presented_key: int | None, version: ProtocolVersion, command: str) -> KeyCheck:
        """May a ``command`` request presenting ``presented_key`` proceed?

        Provision, Ping, OPTIONS and Autodiscover always may (they carry no key, or are the way
        to get one). Otherwise: a wipe pending -> 140; the final key -> OK; no key ever
        acknowledged, or no key presented -> 142; any other key -> 144 (stale or wrong).
        """
        if command.lower() in KEYLESS_COMMANDS:
            return KeyCheck(True, None, f"{command} is not subject to the policy key")
        sent = presented_key is not None and presented_key != 0
        if self.state in WIPE_STATES:
            return self._refuse(
                Status.RemoteWipeRequested,
                "a remote wipe is pending; the device must provision to receive it",
                version,
                command,
                policy_key_sent=presented_key is not None,
            )
        if self.state is PolicyState.PROVISIONED and sent and presented_key == self.final_key:
            return KeyCheck(True, None, f"policy key {presented_key} is the current final key")
        if not sent:
            return self._refuse(
                Status.DeviceNotProvisioned,
                "no policy key presented; the device must provision",
                version,
                command,
            )
        if self.state is PolicyState.STALE and presented_key == self.final_key:
            why = (
                f"policy key {presented_key} was issued for policy version "
                f"{self.final_policy_version}; the policy is now version {self.policy_version}"
            )
            return self._refuse(Status.InvalidPolicyKey, why, version, command)
        if self.state in (PolicyState.NEVER_PROVISIONED, PolicyState.TEMPORARY_ISSUED):
            return self._refuse(
                Status.DeviceNotProvisioned,
                f"policy key {presented_key} was never acknowledged; the device must provision",
                version,
                command,
            )
        return self._refuse(
            Status.InvalidPolicyKey,
            f"policy key {presented_key} is not the current key",
            version,
            command,
        )

    def _refuse(
        self,
        status: Status,
        why: str,
        version: ProtocolVersion,
        command: str,
        *,
        policy_key_sent: bool = False,
    ) -> KeyCheck:
        answer = status_answer(command, status, version, policy_key_sent=policy_key_sent)
        return KeyCheck(False, status, why, answer)


def answer_provision(
    machine: PolicyKeyMachine,
    request: ProvisionRequest,
    version: ProtocolVersion,
    doc: ProvisionDoc,
    *,
    require_device_information: bool = True,
) -> ProvisionResponse:
    """Answer one Provision request for the device ``machine`` tracks, advancing it.

    Order (MS-ASPROV 3.2.5.1): a pending wipe wins over everything (any Provision gets the
    directive, a wipe report gets its reply); then the request rules of ``precheck`` (Status 2,
    Policy Status 3, 165); then phase 1 issues a temporary key with ``doc`` and phase 2 turns
    the right temporary key into the final key (Policy Status 5 otherwise). A wipe report or an
    empty ``<Provision/>`` with no wipe requested is a protocol error (Status 2). The client's
    acknowledgement status (applied, partial, not applied, third party) is accepted as is.

    An account-only wipe requested for a device below 16.1 goes out as a full RemoteWipe:
    those versions have no other way to carry a wipe, and a directive the device cannot read
    would leave it refused with 140 forever.
    """
    wipe_report = request.kind in (RequestKind.WIPE_ACK, RequestKind.ACCOUNT_WIPE_ACK)
    if machine.wipe_pending:
        if wipe_report and machine.state is not PolicyState.WIPE_PENDING:
            succeeded = request.status == 1
            machine.wipe_reported(succeeded)
            return ProvisionResponse.wipe_acknowledged(
                version=version,
                succeeded=succeeded,
                account_only=machine.account_only_wipe and version >= ProtocolVersion.V16_1,
            )
        account_only = machine.deliver_wipe() and version >= ProtocolVersion.V16_1
        return ProvisionResponse.wipe_directive(version=version, account_only=account_only)
    if wipe_report or request.kind is RequestKind.WIPE_FETCH:
        return ProvisionResponse.failure(ProvisionStatus.ProtocolError)
    refusal = precheck(request, version, require_device_information=require_device_information)
    if refusal is not None:
        return refusal
    if request.kind is RequestKind.INITIAL:
        key = machine.issue_temporary()
        return ProvisionResponse.initial(
            version=version,
            policy_key=key,
            doc=doc,
            device_information_sent=request.device_information is not None,
        )
    outcome = machine.acknowledge(request.policy_key_value)
    if outcome.accepted and outcome.final_key is not None:
        return ProvisionResponse.acknowledged(version=version, policy_key=outcome.final_key)
    return ProvisionResponse.wrong_key(version=version)
