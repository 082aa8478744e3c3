"""The first-access flow and the per-request verdict, as pure code (DESIGN.md section 2).

Responsibility: given the facts of one device request and the device list, say what happens
(forward, deny with which status, answer Provision here, or wait for the UEM) and which
command the shell must carry out (report the record to the UEM). It also folds the UEM's
decisions, a failed report and an expired wait into the device list. It must not do I/O, await,
read a clock or build HTTP responses: the shell does those with what this returns.

Theory of operation:
- ``admit`` is called once per request. An unknown (user, device) becomes an UNKNOWN record and
  yields ``ReportDevice`` exactly once: the device list's in-flight set guarantees one report per
  record however many requests arrive before the answer (steps 2-3). The request gets
  ``Wait(until)``.
- When the decision arrives (``apply_decision``), when the report fails (``report_failed``) or
  when the wait runs out (``wait_expired``), the shell asks ``evaluate`` again. A failure or an
  expired wait applies the unreachable-UEM rule (``uem_unreachable: allow|block``) to a record
  that is still UNKNOWN; the report stays queued and its answer replaces the fallback later.
- ``evaluate`` maps the cached state to an outcome: BLOCKED -> ``Deny`` 129 (177 when the
  mailbox limit is among the reasons), WIPED -> ``AnswerProvision(wipe=True)`` for Provision and
  ``Deny`` 140 otherwise, ALLOWED -> ``Forward``, except in ``uem`` policy mode where Provision
  is answered here and every other command (Ping aside: MS-ASPROV 3.1.5.1 says clients send no
  key on it) must carry the policy key this gatekeeper issued, else ``Deny`` 142 (no key) or
  144 (stale key, e.g. after the UEM's policy version changed). Exchange checks device access
  before the policy key (notes 2.1), so a blocked device sees 129, never 142.
OPTIONS never reaches the gate: the shell forwards it before identifying a device.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import Final

import attrs

from activesync.provisioning import KEYLESS_COMMANDS
from activesync.status import Status
from activesync.versions import ProtocolVersion
from sentry_sim.device_list import Applied, DeviceList, DeviceRecord, State, record_key
from uem_sim.contract import AccessState, DecisionMessage, Reason

_STATE_OF: Final = {
    AccessState.ALLOW: State.ALLOWED,
    AccessState.BLOCK: State.BLOCKED,
    AccessState.WIPE: State.WIPED,
}


class PolicyMode(enum.Enum):
    """Who provisions the device (``activesync_policy_mode``)."""

    #: The gatekeeper answers Provision with the UEM's ActiveSync policy and enforces the key.
    UEM = "uem"
    #: Provision goes to the upstream unchanged; the upstream enforces its own policy.
    PASS_THROUGH = "pass_through"


class Unreachable(enum.Enum):
    """What a new device gets when the UEM cannot be reached (``uem_unreachable``)."""

    #: The real product's default: allow, with the temporary default ActiveSync policy.
    ALLOW = "allow"
    #: Refuse new devices until the UEM answers.
    BLOCK = "block"


class DenyWhy(enum.Enum):
    """Why the gatekeeper answered the device itself instead of forwarding."""

    #: The UEM blocked the record (Status 129).
    BLOCKED = "blocked"
    #: The UEM blocked it for the per-mailbox device limit (Status 177).
    MAILBOX_LIMIT = "mailbox_limit"
    #: The UEM ordered a wipe; the device must Provision to receive it (Status 140).
    WIPE_PENDING = "wipe_pending"
    #: uem policy mode: no key or a stale key (Status 142 / 144).
    PROVISIONING_NEEDED = "provisioning_needed"
    #: The UEM was unreachable and ``uem_unreachable`` is block (answered like a block, 129).
    UNREACHABLE_BLOCK = "unreachable_block"


@attrs.frozen
class Forward:
    """Proxy the request to the upstream EAS server."""


@attrs.frozen
class Deny:
    """Answer the device here with ``status`` (shaped per version by the shell)."""

    why: DenyWhy
    status: int
    reasons: int = 0


@attrs.frozen
class AnswerProvision:
    """Answer this Provision here: with the policy (uem mode) or the RemoteWipe directive."""

    wipe: bool
    policy_version: int = 0


@attrs.frozen
class Wait:
    """Hold the request until the record is decided or ``until`` passes."""

    until: float


Outcome = Forward | Deny | AnswerProvision | Wait

#: The one ``Forward`` value (it carries nothing).
FORWARD: Final = Forward()


@attrs.frozen(kw_only=True)
class Access:
    """The facts of one device request the gate needs."""

    key: str
    user: str
    device_id: str
    device_type: str
    command: str
    version: ProtocolVersion
    policy_key: int | None = None
    user_agent: str = ""
    request_id: str = ""

    @classmethod
    def create(
        cls,
        *,
        user: str,
        device_id: str,
        device_type: str,
        command: str,
        version: ProtocolVersion,
        policy_key: int | None = None,
        user_agent: str = "",
        request_id: str = "",
    ) -> Access:
        return cls(
            key=record_key(user, device_id),
            user=user,
            device_id=device_id,
            device_type=device_type,
            command=command,
            version=version,
            policy_key=policy_key,
            user_agent=user_agent,
            request_id=request_id,
        )


@attrs.frozen(kw_only=True)
class ReportDevice:
    """Command: report this record to the UEM (queue it; retry until the UEM takes it)."""

    key: str
    user: str
    device_id: str
    device_type: str
    protocol_version: str
    user_agent: str
    seen_at: float
    request_id: str


@attrs.frozen
class Admission:
    """What ``admit`` decided for one request."""

    outcome: Outcome
    record: DeviceRecord
    report: ReportDevice | None = None
    first_seen: bool = False


@attrs.frozen
class Change:
    """One record changed by a decision: applied (``applied``) or forgotten (``applied`` None)."""

    key: str
    applied: Applied | None


#: ``(record key, sent key, policy version) -> Status or None``: the uem-mode key check.
KeyCheck = Callable[[str, int | None, int], int | None]


@attrs.define(eq=False)
class Gate:
    """The decision core of the gatekeeper, over one device list."""

    devices: DeviceList
    policy_mode: PolicyMode = PolicyMode.UEM
    unreachable: Unreachable = Unreachable.ALLOW
    first_access_wait_s: float = 5.0
    #: uem mode: checks a request's policy key; None accepts any key (tests of other rules).
    key_check: KeyCheck | None = None

    # -- requests --------------------------------------------------------------------------
    def admit(self, access: Access, now: float) -> Admission:
        """Count the request, create and report an unknown record, and give the outcome."""
        devices = self.devices
        record = devices.get(access.key)
        first = record is None
        if record is None:
            record = devices.first_seen(access.key, now)
        devices.touch(record, now)
        report = None
        if record.state is State.UNKNOWN and devices.start_report(access.key):
            report = ReportDevice(
                key=access.key,
                user=access.user,
                device_id=access.device_id,
                device_type=access.device_type,
                protocol_version=access.version.text,
                user_agent=access.user_agent,
                seen_at=now,
                request_id=access.request_id,
            )
        return Admission(self.evaluate(record, access, now), record, report, first)

    def evaluate(self, record: DeviceRecord, access: Access, now: float) -> Outcome:
        """The outcome for a request of ``record`` in its current state."""
        state = record.state
        if state is State.ALLOWED:
            if self.policy_mode is PolicyMode.PASS_THROUGH:
                return FORWARD
            if access.command == "Provision":
                return AnswerProvision(wipe=False, policy_version=record.policy_version)
            if access.command.lower() in KEYLESS_COMMANDS or self.key_check is None:
                return FORWARD
            status = self.key_check(access.key, access.policy_key, record.policy_version)
            if status is None:
                return FORWARD
            return Deny(DenyWhy.PROVISIONING_NEEDED, status)
        if state is State.BLOCKED:
            reasons = record.reasons
            if record.is_fallback:
                return Deny(DenyWhy.UNREACHABLE_BLOCK, Status.DeviceIsBlockedForThisUser)
            if reasons & Reason.PER_MAILBOX_LIMIT:
                return Deny(DenyWhy.MAILBOX_LIMIT, Status.MaximumDevicesReached, reasons)
            return Deny(DenyWhy.BLOCKED, Status.DeviceIsBlockedForThisUser, reasons)
        if state is State.WIPED:
            if access.command == "Provision":
                return AnswerProvision(wipe=True, policy_version=record.policy_version)
            return Deny(DenyWhy.WIPE_PENDING, Status.RemoteWipeRequested, record.reasons)
        return Wait(now + self.first_access_wait_s)

    def wait_expired(self, access: Access, now: float) -> tuple[Applied | None, Outcome]:
        """No decision within ``first_access_wait_s``: apply the fallback, then evaluate."""
        applied = self.fallback(access.key, now)
        record = self.devices.get(access.key)
        if record is None:
            # The UEM removed the record while the request waited: treat it as a new one.
            return applied, self.admit(access, now).outcome
        outcome = self.evaluate(record, access, now)
        if isinstance(outcome, Wait):
            raise AssertionError(f"device record {access.key!r} still UNKNOWN after the fallback")
        return applied, outcome

    # -- the UEM's side --------------------------------------------------------------------
    def fallback(self, key: str, now: float) -> Applied | None:
        """The unreachable-UEM rule for a record that is still UNKNOWN (else nothing)."""
        record = self.devices.get(key)
        if record is None or record.state is not State.UNKNOWN:
            return None
        state = State.ALLOWED if self.unreachable is Unreachable.ALLOW else State.BLOCKED
        # Policy version 0 is the temporary default ActiveSync policy.
        return self.devices.apply(key, state, reasons=0, answer=0, policy_version=0, now=now)

    def report_failed(self, key: str, now: float) -> Applied | None:
        """A report could not be delivered: new devices get the fallback right away."""
        return self.fallback(key, now)

    def report_answered(self, key: str, decision: DecisionMessage, now: float) -> list[Change]:
        """The UEM took the report of ``key`` and answered: cache it, end the in-flight mark."""
        self.devices.report_done(key)
        changes = self.apply_decision(decision, now)
        if all(c.key != key for c in changes) and not decision.removed:
            # The UEM canonicalised the user differently from how the device spelled it, and
            # listed no alias for it: the answer is still for this record.
            applied = self._apply_one(key, decision, now)
            changes.append(Change(key, applied))
        return changes

    def apply_decision(self, decision: DecisionMessage, now: float) -> list[Change]:
        """Cache a pushed or resynced UEM decision under every spelling of its user.

        A removed record is forgotten. A record the gatekeeper has never seen is added only
        when allowed: the cache holds the allowed fleet (the start-up pull) and what devices
        actually asked for; a blocked device nobody has seen here costs nothing until it asks.
        """
        changes: list[Change] = []
        for key in decision_keys(decision):
            if decision.removed:
                if self.devices.forget(key) is not None:
                    changes.append(Change(key, None))
                continue
            if decision.state is not AccessState.ALLOW and key not in self.devices:
                continue
            applied = self._apply_one(key, decision, now)
            if applied is not None:
                changes.append(Change(key, applied))
        return changes

    def drop_missing(self, present: Iterable[str], as_of: int) -> list[Change]:
        """A full resync at UEM version ``as_of`` listed ``present``: forget UEM-decided
        records it did not list, except those decided after ``as_of`` (a report answered
        while the resync was on its way is newer than the list that lacks it)."""
        keep = set(present)
        gone = [
            key
            for key, record in self.devices.items()
            if key not in keep
            and record.state is not State.UNKNOWN
            and not record.is_fallback
            and record.answer <= as_of
        ]
        for key in gone:
            self.devices.forget(key)
        return [Change(key, None) for key in gone]

    def _apply_one(self, key: str, decision: DecisionMessage, now: float) -> Applied | None:
        return self.devices.apply(
            key,
            _STATE_OF[decision.state],
            reasons=decision.reasons,
            answer=decision.record_version,
            policy_version=decision.activesync_policy.version,
            now=now,
        )


def decision_keys(decision: DecisionMessage) -> tuple[str, ...]:
    """Every device list key a decision names: its user and each alias, normalised."""
    keys = dict.fromkeys(
        record_key(user, decision.device_id) for user in (decision.user, *decision.aliases)
    )
    return tuple(keys)
