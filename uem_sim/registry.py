"""The UEM's state: users, MDM-registered devices, ActiveSync records, policy, change log.

Responsibility: every state transition of the UEM, as synchronous methods over attrs values
with ``now`` passed in. Each mutating method returns the records whose decision changed (with
the version range they cover) so the shell can push them; the registry itself never awaits,
sends or stores anything. Must not: do I/O, read a clock, import aiohttp/asyncio.

Theory of operation:

* Versions. ``version`` is one counter for the whole UEM. Each time a record's decision
  changes (state, reasons or registration), or the ActiveSync policy it carries changes, the
  record gets ``version + 1``. ``changes_since(n)`` is then "records whose version is above n",
  plus tombstones of removed records; tombstones beyond ``MAX_TOMBSTONES`` are dropped and
  raise ``tombstone_floor``, below which only a full answer is correct.
* Serialization. Decisions for one mailbox are made by ``_reevaluate``, which walks the
  mailbox's records in slot order (records already allowed first, then by arrival) and hands
  each one the devices already holding a slot. Methods never await, so in the single-threaded
  shell a report runs start to finish before the next begins: no race can exceed the limit.
* Re-evaluation. Anything that can change a decision re-evaluates the mailboxes concerned:
  a report (only the reported record, unless the others can change: ``_decide_reported``
  says exactly when), a check-in or posture change, an enrolment that links an unlinked
  record, a slot freed by a removal, a wipe or a block, an admin action, a policy change
  (all mailboxes), and the periodic compliance check (all mailboxes, against ``now``: out of
  contact).
* Persistence. Mutated keys are remembered; ``take_delta()`` hands them to the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import attrs

from uem_sim.config import UemConfig
from uem_sim.contract import (
    AccessState,
    ChangesResponse,
    DecisionMessage,
    Reason,
    ReportRequest,
)
from uem_sim.errors import Conflict, NotFound
from uem_sim.model import (
    DAY,
    AdminAction,
    EasRecord,
    Override,
    OverrideAction,
    Posture,
    RecordKey,
    RegisteredDevice,
    UemPolicy,
    User,
    mailbox_identity,
)
from uem_sim.policy import Decision, MailboxSlots, decide

#: Removed records remembered for incremental resyncs.
MAX_TOMBSTONES: Final = 10_000
#: Aliases kept per record (spellings of the user seen in reports).
MAX_ALIASES: Final = 8


@attrs.frozen
class Changes:
    """Records whose decision changed in one operation: versions ``since`` < v <= ``version``."""

    since: int
    version: int
    records: tuple[EasRecord, ...]
    #: A report's changes: (the reporting gatekeeper, the reported record). That gatekeeper
    #: has the record's decision in the report's answer and needs no push of it.
    reported: tuple[str, RecordKey] | None = None

    def then(self, later: Changes) -> Changes:
        """This and a later operation's changes as one (a record's later decision wins)."""
        latest = {r.key: r for r in (*self.records, *later.records)}
        return Changes(self.since, later.version, tuple(latest.values()))


@attrs.frozen
class ReportOutcome:
    """The record after a report, whether it was new, and what changed."""

    record: EasRecord
    first_report: bool
    changes: Changes


@attrs.frozen(kw_only=True)
class Snapshot:
    """The whole registry, as the store loads it."""

    policy: UemPolicy
    users: tuple[User, ...]
    devices: tuple[RegisteredDevice, ...]
    records: tuple[EasRecord, ...]  #: live records and tombstones (``removed`` true)
    gatekeepers: Mapping[str, str]
    version: int
    seq: int
    tombstone_floor: int


@attrs.frozen(kw_only=True)
class Delta:
    """What changed since the last ``take_delta()``; ``None`` values are deletions."""

    users: Mapping[str, User | None]
    devices: Mapping[RecordKey, RegisteredDevice | None]
    records: Mapping[RecordKey, EasRecord | None]
    gatekeepers: Mapping[str, str | None]
    policy: UemPolicy | None
    version: int
    seq: int
    tombstone_floor: int

    @property
    def empty(self) -> bool:
        return not (self.users or self.devices or self.records or self.gatekeepers or self.policy)


#: The five groups of the ActiveSync devices view, in display order.
GROUPS: Final = (
    "registered_allowed",
    "registered_blocked",
    "unregistered_allowed",
    "unregistered_blocked",
    "wiped",
)


def group_of(record: EasRecord) -> str:
    if record.state is AccessState.WIPE:
        return "wiped"
    prefix = "registered" if record.registered else "unregistered"
    return f"{prefix}_{'allowed' if record.state is AccessState.ALLOW else 'blocked'}"


@attrs.define(eq=False)
class Registry:
    """The UEM's state and its transitions (see the module docstring)."""

    policy: UemPolicy
    users: dict[str, User] = attrs.field(factory=dict)
    devices: dict[RecordKey, RegisteredDevice] = attrs.field(factory=dict)
    records: dict[RecordKey, EasRecord] = attrs.field(factory=dict)
    tombstones: dict[RecordKey, EasRecord] = attrs.field(factory=dict)
    gatekeepers: dict[str, str] = attrs.field(factory=dict)
    version: int = 0
    seq: int = 0
    tombstone_floor: int = 0
    _by_mailbox: dict[str, set[str]] = attrs.field(factory=dict)
    _emails: dict[str, str] = attrs.field(factory=dict)
    _dirty_users: set[str] = attrs.field(factory=set)
    _dirty_devices: set[RecordKey] = attrs.field(factory=set)
    _dirty_records: set[RecordKey] = attrs.field(factory=set)
    _dirty_gatekeepers: set[str] = attrs.field(factory=set)
    _dirty_policy: bool = False

    # --- construction and persistence ---

    @classmethod
    def from_config(cls, config: UemConfig, now: float) -> Registry:
        registry = cls(policy=config.policy)
        registry._dirty_policy = True
        for user in config.users:
            registry.add_user(user)
        for spec in config.devices:
            mailbox = registry.mailbox_of(spec.user)
            checked_in = now - spec.last_check_in_days_ago * DAY
            registry.devices[(mailbox, spec.device_id)] = RegisteredDevice(
                device_id=spec.device_id,
                mailbox=mailbox,
                posture=spec.posture,
                last_check_in=checked_in,
                applied_policy_version=config.policy.security.version,
                enrolled_at=now,
            )
            registry._dirty_devices.add((mailbox, spec.device_id))
        return registry

    @classmethod
    def from_snapshot(cls, snap: Snapshot) -> Registry:
        registry = cls(
            policy=snap.policy,
            users={u.mailbox: u for u in snap.users},
            devices={d.key: d for d in snap.devices},
            gatekeepers=dict(snap.gatekeepers),
            version=snap.version,
            seq=snap.seq,
            tombstone_floor=snap.tombstone_floor,
        )
        registry._emails = {u.email.lower(): u.mailbox for u in snap.users if u.email}
        for record in snap.records:
            if record.removed:
                registry.tombstones[record.key] = record
            else:
                registry._put(record, dirty=False)
        return registry

    def take_delta(self) -> Delta:
        """What changed since the last call, for the store; clears the dirty marks."""

        def live_or_tomb(key: RecordKey) -> EasRecord | None:
            return self.records.get(key) or self.tombstones.get(key)

        delta = Delta(
            users={k: self.users.get(k) for k in self._dirty_users},
            devices={k: self.devices.get(k) for k in self._dirty_devices},
            records={k: live_or_tomb(k) for k in self._dirty_records},
            gatekeepers={k: self.gatekeepers.get(k) for k in self._dirty_gatekeepers},
            policy=self.policy if self._dirty_policy else None,
            version=self.version,
            seq=self.seq,
            tombstone_floor=self.tombstone_floor,
        )
        self._dirty_users.clear()
        self._dirty_devices.clear()
        self._dirty_records.clear()
        self._dirty_gatekeepers.clear()
        self._dirty_policy = False
        return delta

    # --- lookups ---

    def mailbox_of(self, raw_user: str) -> str:
        """The mailbox identity for any spelling of a user (login, DOMAIN\\login, email)."""
        return mailbox_identity(raw_user, self.users, self._emails)

    def record(self, raw_user: str, device_id: str) -> EasRecord:
        key = (self.mailbox_of(raw_user), device_id)
        found = self.records.get(key)
        if found is None:
            raise NotFound(
                f"no ActiveSync record for user {key[0]!r} and device {device_id!r}",
                hint="GET /api/v1/eas/devices lists the records; a device appears once a "
                "gatekeeper reports it",
            )
        return found

    def user(self, raw_user: str) -> User:
        found = self.users.get(self.mailbox_of(raw_user))
        if found is None:
            raise NotFound(f"no user {raw_user!r}", hint="GET /api/v1/admin/users lists the users")
        return found

    def device(self, raw_user: str, device_id: str) -> RegisteredDevice:
        found = self.devices.get((self.mailbox_of(raw_user), device_id))
        if found is None:
            raise NotFound(
                f"no registered device {device_id!r} for user {raw_user!r}",
                hint="GET /api/v1/admin/devices lists the registered devices",
            )
        return found

    def mailbox_records(self, mailbox: str) -> list[EasRecord]:
        ids = self._by_mailbox.get(mailbox, set())
        return sorted((self.records[(mailbox, i)] for i in ids), key=lambda r: r.seq)

    def allowed_count(self, mailbox: str) -> int:
        return sum(1 for r in self.mailbox_records(mailbox) if r.state is AccessState.ALLOW)

    def message(self, record: EasRecord) -> DecisionMessage:
        """The contract form of a record's decision."""
        return DecisionMessage(
            user=record.mailbox,
            device_id=record.device_id,
            state=record.state,
            reasons=record.reasons,
            explanation=record.explanation,
            activesync_policy=self.policy.activesync,
            record_version=max(1, record.version),
            decided_at=record.decided_at,
            registered=record.registered,
            removed=record.removed,
            aliases=record.aliases,
        )

    def changes_since(self, since: int) -> ChangesResponse:
        """Records changed after ``since``; the full set when that cannot be answered exactly."""
        if since <= 0 or since > self.version or since < self.tombstone_floor:
            records = sorted(self.records.values(), key=lambda r: r.version)
            return ChangesResponse(
                version=self.version, records=tuple(self.message(r) for r in records), full=True
            )
        changed = [r for r in self.records.values() if r.version > since]
        changed += [r for r in self.tombstones.values() if r.version > since]
        changed.sort(key=lambda r: r.version)
        return ChangesResponse(
            version=self.version, records=tuple(self.message(r) for r in changed), full=False
        )

    def groups(self) -> dict[str, list[EasRecord]]:
        """The ActiveSync devices view: records in the five groups of ``GROUPS``."""
        grouped: dict[str, list[EasRecord]] = {g: [] for g in GROUPS}
        for record in sorted(self.records.values(), key=lambda r: (r.mailbox, r.seq)):
            grouped[group_of(record)].append(record)
        return grouped

    # --- gatekeeper-facing operations ---

    def report(self, request: ReportRequest, now: float) -> ReportOutcome:
        """A gatekeeper reports (user, device): create or refresh the record, decide."""
        since = self.version
        mailbox = self.mailbox_of(request.user)
        key = (mailbox, request.device_id)
        existing = self.records.get(key)
        if existing is None:
            if self.tombstones.pop(key, None) is not None:
                self._dirty_records.add(key)
            self.seq += 1
            record = EasRecord(
                mailbox=mailbox,
                device_id=request.device_id,
                aliases=(request.user,),
                device_type=request.device_type,
                protocol_version=request.protocol_version,
                user_agent=request.user_agent,
                model=request.model,
                gatekeeper_ids=(request.gatekeeper_id,),
                first_seen=now,
                last_seen=now,
                seq=self.seq,
            )
        else:
            aliases = existing.aliases
            if request.user not in aliases and len(aliases) < MAX_ALIASES:
                aliases = (*aliases, request.user)
            gatekeepers = existing.gatekeeper_ids
            if request.gatekeeper_id not in gatekeepers and len(gatekeepers) < MAX_ALIASES:
                gatekeepers = (*gatekeepers, request.gatekeeper_id)
            record = attrs.evolve(
                existing,
                aliases=aliases,
                gatekeeper_ids=gatekeepers,
                device_type=request.device_type or existing.device_type,
                protocol_version=request.protocol_version or existing.protocol_version,
                user_agent=request.user_agent or existing.user_agent,
                model=request.model or existing.model,
                last_seen=now,
            )
        self._put(record)
        changed = self._decide_reported(record, now)
        return ReportOutcome(
            record=self.records[key],
            first_report=existing is None,
            changes=Changes(
                since, self.version, tuple(changed), reported=(request.gatekeeper_id, key)
            ),
        )

    def register_gatekeeper(self, gatekeeper_id: str, push_url: str) -> None:
        self.gatekeepers[gatekeeper_id] = push_url
        self._dirty_gatekeepers.add(gatekeeper_id)

    def unregister_gatekeeper(self, gatekeeper_id: str) -> None:
        if self.gatekeepers.pop(gatekeeper_id, None) is None:
            raise NotFound(f"no gatekeeper {gatekeeper_id!r} is registered")
        self._dirty_gatekeepers.add(gatekeeper_id)

    # --- MDM operations ---

    def check_in(
        self,
        raw_user: str,
        device_id: str,
        posture: Posture,
        now: float,
        applied_policy_version: int | None = None,
    ) -> tuple[RegisteredDevice, bool, Changes]:
        """The device agent checks in: enrol on first contact, update posture and time.

        Checking in applies the current security policy unless the agent says otherwise.
        Returns the device, whether this was its enrolment, and the changed decisions.
        """
        since = self.version
        mailbox = self._known_mailbox(raw_user)
        key = (mailbox, device_id)
        existing = self.devices.get(key)
        applied = (
            self.policy.security.version
            if applied_policy_version is None
            else applied_policy_version
        )
        device = RegisteredDevice(
            device_id=device_id,
            mailbox=mailbox,
            posture=posture,
            last_check_in=now,
            applied_policy_version=applied,
            enrolled_at=now if existing is None else existing.enrolled_at,
        )
        self.devices[key] = device
        self._dirty_devices.add(key)
        changed = self._reevaluate(mailbox, now)
        return device, existing is None, Changes(since, self.version, tuple(changed))

    # --- admin operations ---

    def add_user(self, user: User) -> None:
        if user.mailbox in self.users:
            raise Conflict(f"user {user.name!r} already exists", hint="PATCH it instead")
        email = user.email.lower()
        if email and email in self._emails:
            owner = self._emails[email]
            raise Conflict(f"email {user.email!r} already belongs to user {owner!r}")
        self.users[user.mailbox] = user
        if email:
            self._emails[email] = user.mailbox
        self._dirty_users.add(user.mailbox)

    def update_user(self, raw_user: str, *, email: str | None, password: str | None) -> User:
        user = self.user(raw_user)
        new_email = "" if email is None else email.lower()
        if new_email and self._emails.get(new_email, user.mailbox) != user.mailbox:
            raise Conflict(f"email {email!r} already belongs to user {self._emails[new_email]!r}")
        changed = attrs.evolve(
            user,
            email=user.email if email is None else email,
            password=user.password if password is None else password,
        )
        self._emails.pop(user.email.lower(), None)
        if changed.email:
            self._emails[changed.email.lower()] = user.mailbox
        self.users[user.mailbox] = changed
        self._dirty_users.add(user.mailbox)
        return changed

    def delete_user(self, raw_user: str, now: float) -> Changes:
        """Delete a user and retire their registered devices; their records stay, unregistered."""
        since = self.version
        user = self.user(raw_user)
        del self.users[user.mailbox]
        self._emails.pop(user.email.lower(), None)
        self._dirty_users.add(user.mailbox)
        for key in [k for k in self.devices if k[0] == user.mailbox]:
            del self.devices[key]
            self._dirty_devices.add(key)
        changed = self._reevaluate(user.mailbox, now)
        return Changes(since, self.version, tuple(changed))

    def enrol(
        self, raw_user: str, device_id: str, posture: Posture, now: float
    ) -> tuple[RegisteredDevice, Changes]:
        if (self.mailbox_of(raw_user), device_id) in self.devices:
            raise Conflict(
                f"device {device_id!r} is already registered for {raw_user!r}",
                hint="PATCH /api/v1/admin/devices/{user}/{device_id} changes its posture",
            )
        device, _, changes = self.check_in(raw_user, device_id, posture, now)
        return device, changes

    def update_posture(
        self, raw_user: str, device_id: str, posture: Posture, now: float
    ) -> tuple[RegisteredDevice, Changes]:
        """The MDM learns a new posture (an admin or scenario changes it); check-in time stays."""
        since = self.version
        device = attrs.evolve(self.device(raw_user, device_id), posture=posture)
        self.devices[device.key] = device
        self._dirty_devices.add(device.key)
        changed = self._reevaluate(device.mailbox, now)
        return device, Changes(since, self.version, tuple(changed))

    def set_check_in(
        self, raw_user: str, device_id: str, last_check_in: float, now: float
    ) -> Changes:
        since = self.version
        device = attrs.evolve(self.device(raw_user, device_id), last_check_in=last_check_in)
        self.devices[device.key] = device
        self._dirty_devices.add(device.key)
        return Changes(since, self.version, tuple(self._reevaluate(device.mailbox, now)))

    def retire(self, raw_user: str, device_id: str, now: float) -> Changes:
        """Unregister a device: its record (if any) becomes unregistered."""
        since = self.version
        device = self.device(raw_user, device_id)
        del self.devices[device.key]
        self._dirty_devices.add(device.key)
        return Changes(since, self.version, tuple(self._reevaluate(device.mailbox, now)))

    def set_policy(self, policy: UemPolicy, now: float) -> Changes:
        """Replace the policy and re-evaluate everything.

        A new ActiveSync policy version changes what every record carries, so every record
        gets a new version and is pushed (gatekeepers make devices re-provision).
        """
        since = self.version
        force = policy.activesync != self.policy.activesync
        self.policy = policy
        self._dirty_policy = True
        changed: list[EasRecord] = []
        for mailbox in sorted(self._by_mailbox):
            changed.extend(self._reevaluate(mailbox, now, force=force))
        return Changes(since, self.version, tuple(changed))

    def reevaluate_all(self, now: float) -> Changes:
        """The periodic compliance check: re-decide every record against ``now``."""
        since = self.version
        changed: list[EasRecord] = []
        for mailbox in sorted(self._by_mailbox):
            changed.extend(self._reevaluate(mailbox, now))
        return Changes(since, self.version, tuple(changed))

    def admin_action(
        self, raw_user: str, device_id: str, action: AdminAction, note: str, now: float
    ) -> Changes:
        """allow / block / wipe set an override; clear drops it; remove forgets the record."""
        since = self.version
        record = self.record(raw_user, device_id)
        if action is AdminAction.REMOVE:
            self._remove(record, now)
            changed = [self.tombstones[record.key]]
            changed += self._reevaluate(record.mailbox, now)
            return Changes(since, self.version, tuple(changed))
        if action is AdminAction.CLEAR:
            override = None
        else:
            override = Override(OverrideAction(action.value), note, now)
        self._put(attrs.evolve(record, override=override))
        changed = self._reevaluate(record.mailbox, now, force_keys={record.key})
        return Changes(since, self.version, tuple(changed))

    # --- internals ---

    def _known_mailbox(self, raw_user: str) -> str:
        mailbox = self.mailbox_of(raw_user)
        if mailbox not in self.users:
            raise NotFound(
                f"no user {raw_user!r}: devices enrol for known users only",
                hint="create the user first (POST /api/v1/admin/users) or fix the name",
            )
        return mailbox

    def _put(self, record: EasRecord, *, dirty: bool = True) -> None:
        self.records[record.key] = record
        self._by_mailbox.setdefault(record.mailbox, set()).add(record.device_id)
        if dirty:
            self._dirty_records.add(record.key)

    def _remove(self, record: EasRecord, now: float) -> None:
        del self.records[record.key]
        ids = self._by_mailbox[record.mailbox]
        ids.discard(record.device_id)
        if not ids:
            del self._by_mailbox[record.mailbox]
        self.version += 1
        self.tombstones[record.key] = attrs.evolve(
            record,
            removed=True,
            version=self.version,
            decided_at=now,
            explanation=f"REMOVED {record.mailbox} / {record.device_id}: an administrator "
            "removed the record; the next request from the device is a first access.",
        )
        self._dirty_records.add(record.key)
        while len(self.tombstones) > MAX_TOMBSTONES:
            oldest = min(self.tombstones.values(), key=lambda r: r.version)
            del self.tombstones[oldest.key]
            self.tombstone_floor = max(self.tombstone_floor, oldest.version)
            self._dirty_records.add(oldest.key)

    def _decide_reported(self, record: EasRecord, now: float) -> list[EasRecord]:
        """Decide a reported record; the mailbox's other records only when they can change.

        Gives exactly what ``_reevaluate(record.mailbox, now)`` gives (the property test in
        tests/uem_sim/test_registry_incremental.py compares the two), without re-deciding
        every record of the mailbox on every report. Why that is exact: after any
        ``_reevaluate`` the mailbox's stored decisions are its fixed point (allowed records
        never exceed the limit, so a second pass hands every record the same verdict), and a
        report changes none of a decision's inputs (device, override, policy) but ``now`` and
        the reported record's presence. So the other records keep their decisions unless

        * time moved one of them across the out-of-contact line (checked per record below:
          the stored DEVICE_OUT_OF_CONTACT bit against ``now``), or
        * the reported record, already known, changes its own decision: the records after it
          in slot order then see different slot holders.

        A new record sorts last in slot order (it is not allowed yet and has the highest
        ``seq``), so it takes the slots the allowed records leave and changes nobody else. In
        the two cases above the whole mailbox is re-evaluated as before.
        """
        mailbox = record.mailbox
        others = [
            self.records[(mailbox, i)] for i in self._by_mailbox[mailbox] if i != record.device_id
        ]
        if any(self._crossed_out_of_contact(other, now) for other in others):
            return self._reevaluate(mailbox, now)
        # Slot order, as ``_reevaluate`` walks it: the allowed records (oldest first) hold
        # slots before any record that is not allowed; an allowed record sees only older ones.
        mine_allowed = record.version != 0 and record.state is AccessState.ALLOW
        holders = tuple(
            other.device_id
            for other in sorted(others, key=lambda r: r.seq)
            if other.state is AccessState.ALLOW and (not mine_allowed or other.seq < record.seq)
        )
        device = self.devices.get(record.key)
        slots = MailboxSlots(self.policy.max_devices_per_mailbox, holders)
        decision = decide(record, device, self.policy, slots, now)
        registered = device is not None
        if record.version != 0:
            if (
                decision.state is record.state
                and decision.reasons == record.reasons
                and registered == record.registered
            ):
                return []
            # Its slot changes hands: the records after it may change too.
            return self._reevaluate(mailbox, now)
        return [self._record_decision(record, decision, registered, now)]

    def _record_decision(
        self, record: EasRecord, decision: Decision, registered: bool, now: float
    ) -> EasRecord:
        """Store ``decision`` on ``record`` under the next version; return the new record."""
        self.version += 1
        record = attrs.evolve(
            record,
            state=decision.state,
            reasons=decision.reasons,
            explanation=decision.explanation,
            trace=decision.trace,
            registered=registered,
            decided_at=now,
            version=self.version,
        )
        self._put(record)
        return record

    def _crossed_out_of_contact(self, record: EasRecord, now: float) -> bool:
        """Whether deciding ``record`` at ``now`` would flip its out-of-contact verdict (the
        one rule that reads the clock; ``policy.compliance`` computes it the same way)."""
        maximum = self.policy.security.max_days_out_of_contact
        if maximum is None:
            return False
        override = record.override
        if override is not None and override.action is OverrideAction.ALLOW:
            # An admin allow clears every compliance reason: lateness cannot show.
            return False
        device = self.devices.get(record.key)
        if device is None:
            return False
        late = max(0.0, now - device.last_check_in) / DAY > maximum
        return late != bool(record.reasons & Reason.DEVICE_OUT_OF_CONTACT)

    def _reevaluate(
        self,
        mailbox: str,
        now: float,
        *,
        force: bool = False,
        force_keys: Iterable[RecordKey] = (),
    ) -> list[EasRecord]:
        """Re-decide every record of ``mailbox`` in slot order; return those that changed.

        Slot order: records that are allowed now keep their slots first (oldest first), then
        the rest by arrival. Each record sees only the slots taken before it, so the number of
        allowed records never exceeds the limit.
        """
        forced = set(force_keys)
        limit = self.policy.max_devices_per_mailbox
        ordered = sorted(
            self.mailbox_records(mailbox),
            key=lambda r: (r.version == 0 or r.state is not AccessState.ALLOW, r.seq),
        )
        holders: list[str] = []
        changed: list[EasRecord] = []
        for record in ordered:
            device = self.devices.get(record.key)
            decision = decide(record, device, self.policy, MailboxSlots(limit, tuple(holders)), now)
            registered = device is not None
            if (
                force
                or record.key in forced
                or record.version == 0
                or decision.state is not record.state
                or decision.reasons != record.reasons
                or registered != record.registered
            ):
                record = self._record_decision(record, decision, registered, now)
                changed.append(record)
            if record.state is AccessState.ALLOW:
                holders.append(record.device_id)
        return changed
