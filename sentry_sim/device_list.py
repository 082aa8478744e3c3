"""The gatekeeper's device list: one lean record per (user, device), and its state machine.

Responsibility: hold what the gatekeeper knows about each (user, device id) pair (its access
state, the UEM's reason bitmask, the ActiveSync policy version, when and by which UEM answer it
was decided, counters) with O(1) lookups, and apply the legal state transitions. It must not do
I/O, read a clock or decide anything itself: decisions come from the UEM (or from the
unreachable-UEM fallback), time comes in as ``now``.

Theory of operation. A record is keyed by ``record_key(user, device_id)``, a single string
``"<user>/<device id>"`` that doubles as the record's correlation id in events and in the admin
API. Identity rule (documented in docs and README): the user is taken as the device sends it,
stripped and lower-cased, and a ``DOMAIN\\user`` login loses its domain part (Exchange logins are
domain-qualified, the mailbox is not), so ``CONTOSO\\Alice`` and ``alice`` are one record while
``alice@contoso.com`` is another: the gatekeeper does not guess mappings, the UEM resolves
identities on its side. The device id is lower-cased, as ``activesync.query`` compares device
ids (Exchange stores them as directory names, which compare case-insensitively). A device id is
1-32 letters or digits, so the last ``/`` splits the key unambiguously.

States (``State``): UNKNOWN (seen, decision pending), ALLOWED, BLOCKED, WIPED. A record leaves
UNKNOWN by a decision and never returns to it; the UEM deleting a record removes it (the next
request is a first access again). Decisions carry the UEM's answer number (its change version):
a decision older than the one already cached is ignored, so a slow resync cannot undo a newer
push. Answer 0 marks a fallback decision taken because the UEM was unreachable; such records,
like UNKNOWN ones, are not persisted, and any UEM answer replaces them.

Lean records: ``DeviceRecord`` is a slots class without ``__weakref__`` holding only the state
(a shared enum member) and four numbers (the key lives only in the dict, never twice; reasons,
policy version and answer number share one int; ``decided_at`` is when this gatekeeper cached
the current answer, which is what "decided when / cached since" means here, the UEM keeping its
own time of the answer); per-state counts are kept as the
records change so statistics never scan the list. The set of records with a report in flight is
kept beside the records (it only ever holds UNKNOWN ones and fallback ones), not in them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator

import attrs


class State(enum.Enum):
    """Access state of a device record as the gatekeeper caches it."""

    #: Seen, reported to the UEM (or about to be), no decision yet.
    UNKNOWN = "unknown"
    #: The UEM allowed it (or the UEM was unreachable and the fallback is allow).
    ALLOWED = "allowed"
    #: The UEM blocked it; ``reasons`` says why.
    BLOCKED = "blocked"
    #: The UEM ordered a remote wipe; the device gets the RemoteWipe directive.
    WIPED = "wiped"


#: Legal transitions of ``DeviceList.apply``. No decision leads back to UNKNOWN.
_DECIDED = frozenset({State.ALLOWED, State.BLOCKED, State.WIPED})
TRANSITIONS: dict[State, frozenset[State]] = {
    State.UNKNOWN: _DECIDED,
    State.ALLOWED: _DECIDED,
    State.BLOCKED: _DECIDED,
    State.WIPED: _DECIDED,
}


class IllegalTransition(ValueError):
    """A decision asked for a transition the state table does not have."""


def normalise_user(user: str) -> str:
    """The user part of a record key: stripped, lower-cased, ``DOMAIN\\`` removed."""
    name = user.strip().lower()
    if "\\" in name:
        name = name.rsplit("\\", 1)[1]
    return name


def record_key(user: str, device_id: str) -> str:
    """The device list key (and record correlation id) of a (user, device id) pair."""
    return f"{normalise_user(user)}/{device_id.lower()}"


def split_key(key: str) -> tuple[str, str]:
    """(user, device id) of a record key."""
    user, _, device_id = key.rpartition("/")
    return user, device_id


#: Bounds of the numbers packed into ``DeviceRecord.decision``.
MAX_REASONS = 0xFFFF
MAX_POLICY_VERSION = 0xFFFF


def pack_decision(reasons: int, policy_version: int, answer: int) -> int:
    """Fold the three decision numbers into one int (one object per record instead of three)."""
    if not 0 <= reasons <= MAX_REASONS:
        raise ValueError(f"reason bitmask must be 0..0x{MAX_REASONS:X}, got {reasons!r}")
    if not 0 <= policy_version <= MAX_POLICY_VERSION:
        raise ValueError(f"policy version must be 0..{MAX_POLICY_VERSION}, got {policy_version!r}")
    if answer < 0:
        raise ValueError(f"UEM answer number must be >= 0, got {answer!r}")
    return reasons | policy_version << 16 | answer << 32


@attrs.define(eq=False, slots=True, weakref_slot=False)
class DeviceRecord:
    """What the gatekeeper caches about one (user, device) pair. Kept lean on purpose.

    Five slots and no key (the key lives in the dict): the reason bitmask, the policy version
    and the UEM answer number share one int, ``decision``; read them through the properties.
    """

    #: Current access state.
    state: State
    #: ``pack_decision(reasons, policy_version, answer)``.
    decision: int = 0
    #: When this gatekeeper cached the current decision (first seen, while UNKNOWN).
    decided_at: float = 0.0
    #: Last request from the device; 0.0 if none since the record was created or loaded.
    last_seen: float = 0.0
    #: Requests seen from the device since the record was created or loaded.
    requests: int = 0

    @property
    def reasons(self) -> int:
        """The UEM's reason bitmask (COMPROMISED 0x1 ... MANUAL 0x200); 0 when allowed."""
        return self.decision & 0xFFFF

    @property
    def policy_version(self) -> int:
        """Version of the UEM ActiveSync policy for the device; 0 = the default policy."""
        return (self.decision >> 16) & 0xFFFF

    @property
    def answer(self) -> int:
        """The UEM answer (change version) that set the state; 0 = fallback or none yet."""
        return self.decision >> 32

    @property
    def is_fallback(self) -> bool:
        """Decided by the unreachable-UEM rule, not by a UEM answer."""
        return self.state is not State.UNKNOWN and self.decision >> 32 == 0


@attrs.frozen
class Applied:
    """The result of applying a decision: the record and the state it had before."""

    key: str
    record: DeviceRecord
    previous: State


#: One persisted row: key, state value, reasons, answer, policy_version, decided_at, last_seen,
#: requests.
Row = tuple[str, str, int, int, int, float, float, int]


@attrs.define(eq=False)
class DeviceList:
    """The cache: records by key, per-state counts, and the keys with a report in flight."""

    _records: dict[str, DeviceRecord] = attrs.field(factory=dict)
    _counts: dict[State, int] = attrs.field(factory=lambda: dict.fromkeys(State, 0))
    _reporting: set[str] = attrs.field(factory=set)

    # -- reading ---------------------------------------------------------------------------
    def get(self, key: str) -> DeviceRecord | None:
        return self._records.get(key)

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def items(self) -> Iterator[tuple[str, DeviceRecord]]:
        """(key, record) pairs in insertion order."""
        return iter(self._records.items())

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def count(self, state: State) -> int:
        return self._counts[state]

    def counts(self) -> dict[State, int]:
        return dict(self._counts)

    # -- changing --------------------------------------------------------------------------
    def first_seen(self, key: str, now: float) -> DeviceRecord:
        """Add an UNKNOWN record for ``key`` (which must not be present yet)."""
        if key in self._records:
            raise ValueError(f"device record {key!r} already exists")
        record = DeviceRecord(State.UNKNOWN, decided_at=now, last_seen=now)
        self._records[key] = record
        self._counts[State.UNKNOWN] += 1
        return record

    def apply(
        self,
        key: str,
        state: State,
        *,
        reasons: int,
        answer: int,
        policy_version: int,
        now: float,
    ) -> Applied | None:
        """Cache a decision for ``key``, creating the record if needed.

        Returns None (and changes nothing) when the decision is older than the cached one:
        answers are the UEM's change versions, and a smaller one is stale. A fallback decision
        (answer 0) only ever replaces an UNKNOWN record.
        """
        decision = pack_decision(reasons, policy_version, answer)
        record = self._records.get(key)
        previous = State.UNKNOWN if record is None else record.state
        if answer == 0 and previous is not State.UNKNOWN:
            return None
        if record is not None and answer != 0 and answer < record.answer:
            return None
        if state not in TRANSITIONS[previous]:
            raise IllegalTransition(
                f"device record {key!r}: no transition from {previous.name} to {state.name}"
            )
        if record is None:
            record = DeviceRecord(state, decision, now)
            self._records[key] = record
        else:
            self._counts[previous] -= 1
            record.state = state
            record.decision = decision
            record.decided_at = now
        self._counts[state] += 1
        return Applied(key, record, previous)

    def touch(self, record: DeviceRecord, now: float) -> None:
        """Count a request from the record's device."""
        record.requests += 1
        record.last_seen = now

    def forget(self, key: str) -> DeviceRecord | None:
        """Remove a record (the UEM deleted it).

        A report in flight stays marked: it is still queued, and clearing the mark would let
        the device's next request start a second one.
        """
        record = self._records.pop(key, None)
        if record is not None:
            self._counts[record.state] -= 1
        return record

    # -- reports in flight -----------------------------------------------------------------
    def start_report(self, key: str) -> bool:
        """Mark a report in flight for ``key``; False if one already is (do not send another)."""
        if key in self._reporting:
            return False
        self._reporting.add(key)
        return True

    def report_done(self, key: str) -> None:
        self._reporting.discard(key)

    def is_reporting(self, key: str) -> bool:
        return key in self._reporting

    @property
    def reporting(self) -> frozenset[str]:
        return frozenset(self._reporting)

    # -- persistence rows ------------------------------------------------------------------
    def rows(self) -> Iterator[Row]:
        """Every record worth persisting: decided by a UEM answer (not UNKNOWN, not fallback)."""
        for key, r in self._records.items():
            if r.state is State.UNKNOWN or r.answer == 0:
                continue
            yield (
                key,
                r.state.value,
                r.reasons,
                r.answer,
                r.policy_version,
                r.decided_at,
                r.last_seen,
                r.requests,
            )

    def load(self, rows: Iterable[Row]) -> int:
        """Add persisted rows (replacing records with the same key); returns how many."""
        n = 0
        by_value = {s.value: s for s in State}
        for key, state_value, reasons, answer, policy_version, decided, seen, reqs in rows:
            state = by_value.get(state_value)
            if state is None or state is State.UNKNOWN or answer <= 0:
                raise ValueError(
                    f"device record {key!r}: cannot load state {state_value!r} with answer"
                    f" {answer!r} (only UEM-decided records are persisted)"
                )
            old = self._records.get(key)
            if old is not None:
                self._counts[old.state] -= 1
            decision = pack_decision(reasons, policy_version, answer)
            self._records[key] = DeviceRecord(state, decision, decided, seen, reqs)
            self._counts[state] += 1
            n += 1
        return n
