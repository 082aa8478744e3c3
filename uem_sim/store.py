"""SQLite persistence of the UEM registry: in memory by default, a file in a state directory.

Responsibility: save what ``Registry.take_delta()`` reports changed, and load a ``Snapshot``
at start-up, so users, devices, records (with their decisions and overrides), tombstones,
gatekeeper registrations, the policy and the change version survive a restart. Must not:
decide anything or know about HTTP.

Theory of operation: each entity is one row holding its JSON form (the codec below), keyed by
its identity; ``meta`` holds the counters and the policy. The shell ``stage``s each
operation's delta (merged in memory: the latest value of a key wins) and ``flush``es what is
staged in one transaction shortly after (``uem_sim.service``: one flush per
``FLUSH_INTERVAL_S`` at most), so a storm of reports costs one transaction per flush instead
of one per report. ``close`` flushes first: a clean stop loses nothing. A crash (SIGKILL,
power loss) loses the deltas staged since the last flush; docs/performance.md says so.
``save`` stages and flushes at once. A fresh database (no ``version`` row) loads as ``None``
and the UEM seeds from its config.

Admin settings (``admin_settings``, one row per setting, today only ``outgoing_tls``: the
outgoing TLS selection applied through the admin API) are rare writes that must be durable
when the API answers: ``save_outgoing_tls`` writes its row at once in its own transaction,
with ``synchronous=FULL`` for that commit (the WAL is synced before it returns), never
through the staged batch. ``load_outgoing_tls`` validates the row against this version's
suite catalogue and raises ``OutgoingTlsError`` naming the database and the entry when it
no longer fits; the caller falls back to its config.

Schema changes are additive: every table is ``CREATE TABLE IF NOT EXISTS``, so opening an
older database adds the tables it lacks.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Final

import attrs

from uem_sim.contract import AccessState, ActiveSyncPolicy
from uem_sim.model import (
    EasRecord,
    Override,
    OverrideAction,
    Posture,
    RecordKey,
    RegisteredDevice,
    RuleResult,
    SecurityPolicy,
    UemPolicy,
    User,
)
from uem_sim.outgoing_tls import OutgoingTlsError, OutgoingTlsSettings
from uem_sim.registry import Delta, Snapshot

#: File name of the database inside the state directory.
DB_NAME: Final = "uem.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (mailbox TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    mailbox TEXT NOT NULL, device_id TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (mailbox, device_id));
CREATE TABLE IF NOT EXISTS records (
    mailbox TEXT NOT NULL, device_id TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (mailbox, device_id));
CREATE TABLE IF NOT EXISTS gatekeepers (gatekeeper_id TEXT PRIMARY KEY, push_url TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS admin_settings (name TEXT PRIMARY KEY, data TEXT NOT NULL);
"""
#: ``admin_settings.name`` of the outgoing TLS selection.
OUTGOING_TLS_ROW: Final = "outgoing_tls"


# --- codec: model values <-> JSON-able dicts ---


def user_to_dict(user: User) -> dict[str, Any]:
    return {"name": user.name, "email": user.email, "password": user.password}


def user_from_dict(d: dict[str, Any]) -> User:
    return User(name=d["name"], email=d["email"], password=d["password"])


def posture_to_dict(p: Posture) -> dict[str, Any]:
    return {
        "platform": p.platform,
        "os_version": p.os_version,
        "model": p.model,
        "compromised": p.compromised,
        "data_protection": p.data_protection,
        "apps": sorted(p.apps),
    }


def posture_from_dict(d: dict[str, Any]) -> Posture:
    return Posture(
        platform=d["platform"],
        os_version=d["os_version"],
        model=d["model"],
        compromised=d["compromised"],
        data_protection=d["data_protection"],
        apps=frozenset(d["apps"]),
    )


def device_to_dict(dev: RegisteredDevice) -> dict[str, Any]:
    return {
        "device_id": dev.device_id,
        "mailbox": dev.mailbox,
        "posture": posture_to_dict(dev.posture),
        "last_check_in": dev.last_check_in,
        "applied_policy_version": dev.applied_policy_version,
        "enrolled_at": dev.enrolled_at,
    }


def device_from_dict(d: dict[str, Any]) -> RegisteredDevice:
    return RegisteredDevice(
        device_id=d["device_id"],
        mailbox=d["mailbox"],
        posture=posture_from_dict(d["posture"]),
        last_check_in=d["last_check_in"],
        applied_policy_version=d["applied_policy_version"],
        enrolled_at=d["enrolled_at"],
    )


def rule_to_dict(r: RuleResult) -> dict[str, Any]:
    return {
        "rule": r.rule,
        "outcome": r.outcome,
        "reason": r.reason,
        "inputs": dict(r.inputs),
        "detail": r.detail,
    }


def rule_from_dict(d: dict[str, Any]) -> RuleResult:
    return RuleResult(
        rule=d["rule"],
        outcome=d["outcome"],
        reason=d["reason"],
        inputs=tuple(d["inputs"].items()),
        detail=d["detail"],
    )


def override_to_dict(o: Override) -> dict[str, Any]:
    return {"action": o.action.value, "note": o.note, "at": o.at}


def record_to_dict(r: EasRecord) -> dict[str, Any]:
    return {
        "mailbox": r.mailbox,
        "device_id": r.device_id,
        "aliases": list(r.aliases),
        "device_type": r.device_type,
        "protocol_version": r.protocol_version,
        "user_agent": r.user_agent,
        "model": r.model,
        "gatekeeper_ids": list(r.gatekeeper_ids),
        "first_seen": r.first_seen,
        "last_seen": r.last_seen,
        "seq": r.seq,
        "registered": r.registered,
        "state": r.state.value,
        "reasons": r.reasons,
        "explanation": r.explanation,
        "trace": [rule_to_dict(t) for t in r.trace],
        "decided_at": r.decided_at,
        "version": r.version,
        "override": None if r.override is None else override_to_dict(r.override),
        "removed": r.removed,
    }


def record_from_dict(d: dict[str, Any]) -> EasRecord:
    o = d["override"]
    return EasRecord(
        mailbox=d["mailbox"],
        device_id=d["device_id"],
        aliases=tuple(d["aliases"]),
        device_type=d["device_type"],
        protocol_version=d["protocol_version"],
        user_agent=d["user_agent"],
        model=d["model"],
        gatekeeper_ids=tuple(d["gatekeeper_ids"]),
        first_seen=d["first_seen"],
        last_seen=d["last_seen"],
        seq=d["seq"],
        registered=d["registered"],
        state=AccessState(d["state"]),
        reasons=d["reasons"],
        explanation=d["explanation"],
        trace=tuple(rule_from_dict(t) for t in d["trace"]),
        decided_at=d["decided_at"],
        version=d["version"],
        override=None if o is None else Override(OverrideAction(o["action"]), o["note"], o["at"]),
        removed=d["removed"],
    )


def security_to_dict(s: SecurityPolicy) -> dict[str, Any]:
    return {
        "block_compromised": s.block_compromised,
        "min_os_version": dict(s.min_os_version),
        "require_data_protection": s.require_data_protection,
        "max_days_out_of_contact": s.max_days_out_of_contact,
        "allowed_platforms": None if s.allowed_platforms is None else sorted(s.allowed_platforms),
        "allowed_models": None if s.allowed_models is None else sorted(s.allowed_models),
        "blocked_apps": sorted(s.blocked_apps),
        "block_policy_out_of_date": s.block_policy_out_of_date,
        "version": s.version,
    }


def security_from_dict(d: dict[str, Any]) -> SecurityPolicy:
    return SecurityPolicy(
        block_compromised=d["block_compromised"],
        min_os_version=d["min_os_version"],
        require_data_protection=d["require_data_protection"],
        max_days_out_of_contact=d["max_days_out_of_contact"],
        allowed_platforms=d["allowed_platforms"],
        allowed_models=d["allowed_models"],
        blocked_apps=d["blocked_apps"],
        block_policy_out_of_date=d["block_policy_out_of_date"],
        version=d["version"],
    )


def policy_to_dict(p: UemPolicy) -> dict[str, Any]:
    return {
        "security_policy": security_to_dict(p.security),
        "max_devices_per_mailbox": p.max_devices_per_mailbox,
        "auto_block_unregistered": p.auto_block_unregistered,
        "activesync_policy": p.activesync.to_dict(),
    }


def policy_from_dict(d: dict[str, Any]) -> UemPolicy:
    return UemPolicy(
        security=security_from_dict(d["security_policy"]),
        max_devices_per_mailbox=d["max_devices_per_mailbox"],
        auto_block_unregistered=d["auto_block_unregistered"],
        activesync=ActiveSyncPolicy.from_dict(d["activesync_policy"], "activesync_policy"),
    )


@attrs.frozen
class StoredOutgoingTls:
    """The outgoing TLS settings last applied (or reset) through the admin API."""

    settings: OutgoingTlsSettings
    #: How many times settings were applied through the admin API (the view's ``generation``).
    applied: int
    #: UEM clock time of that apply.
    at: float


def outgoing_tls_to_dict(stored: StoredOutgoingTls) -> dict[str, Any]:
    return {
        "selected_ciphers": [s.iana for s in stored.settings.selected],
        "disabled_ciphers": [s.iana for s in stored.settings.disabled],
        "applied": stored.applied,
        "at": stored.at,
    }


def outgoing_tls_from_dict(d: object, path: str) -> StoredOutgoingTls:
    """Validate a stored row (this version's catalogue; a suite added since the row was
    written is disabled). Raises ``OutgoingTlsError`` naming ``path`` and the entry."""
    if not isinstance(d, dict):
        raise OutgoingTlsError(path, f"expected a JSON object, got {type(d).__name__}")
    for key in ("selected_ciphers", "disabled_ciphers", "applied", "at"):
        if key not in d:
            raise OutgoingTlsError(path, f"missing {key!r}")
    applied, at = d["applied"], d["at"]
    if not isinstance(applied, int) or isinstance(applied, bool) or applied < 0:
        raise OutgoingTlsError(f"{path}.applied", f"expected a count, got {applied!r}")
    if not isinstance(at, int | float) or isinstance(at, bool):
        raise OutgoingTlsError(f"{path}.at", f"expected a time, got {at!r}")
    settings = OutgoingTlsSettings.from_lists(
        d["selected_ciphers"], d["disabled_ciphers"], path=path
    )
    return StoredOutgoingTls(settings=settings, applied=applied, at=float(at))


#: One encoder for every row (the codec builds its dicts in a fixed order: no sorting needed).
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _dump(value: dict[str, Any]) -> str:
    return _ENCODER.encode(value)


class SqliteStore:
    """The registry's SQLite database: ``:memory:`` or ``<state_dir>/uem.sqlite3``."""

    def __init__(self, state_dir: str | Path | None = None) -> None:
        if state_dir is None:
            self.path = ":memory:"
        else:
            directory = Path(state_dir)
            directory.mkdir(parents=True, exist_ok=True)
            self.path = str(directory / DB_NAME)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._pending: _Pending | None = None
        self._closed = False
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @property
    def persistent(self) -> bool:
        """Whether what is written survives a restart (a state directory, not ``:memory:``)."""
        return self.path != ":memory:"

    def save_outgoing_tls(self, stored: StoredOutgoingTls) -> None:
        """Write the outgoing TLS row now, durably (module docstring); the staged batch is
        untouched. Raises ``sqlite3.Error`` if the write fails."""
        if self._closed:
            raise sqlite3.ProgrammingError(f"the UEM store {self.path} is closed")
        row = (OUTGOING_TLS_ROW, _dump(outgoing_tls_to_dict(stored)))
        db = self._db
        if self.persistent:
            db.execute("PRAGMA synchronous=FULL")
        try:
            db.execute("INSERT OR REPLACE INTO admin_settings VALUES (?, ?)", row)
        finally:
            if self.persistent:
                db.execute("PRAGMA synchronous=NORMAL")

    def load_outgoing_tls(self) -> StoredOutgoingTls | None:
        """The stored outgoing TLS settings, None when none were ever applied; raises
        ``OutgoingTlsError`` for a row this version cannot use."""
        found = self._db.execute(
            "SELECT data FROM admin_settings WHERE name = ?", (OUTGOING_TLS_ROW,)
        ).fetchone()
        if found is None:
            return None
        path = f"{self.path}: admin_settings.{OUTGOING_TLS_ROW}"
        try:
            data = json.loads(found[0])
        except (TypeError, ValueError) as exc:
            raise OutgoingTlsError(path, f"not valid JSON ({exc})") from None
        return outgoing_tls_from_dict(data, path)

    def close(self) -> None:
        """Write what is staged, then close: nothing staged is lost on a clean stop."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._db.close()

    def load(self) -> Snapshot | None:
        """The stored registry, or ``None`` when the database is fresh."""
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if "version" not in meta:
            return None
        return Snapshot(
            policy=policy_from_dict(json.loads(meta["policy"])),
            users=tuple(
                user_from_dict(json.loads(row[0]))
                for row in self._db.execute("SELECT data FROM users ORDER BY mailbox")
            ),
            devices=tuple(
                device_from_dict(json.loads(row[0]))
                for row in self._db.execute("SELECT data FROM devices ORDER BY mailbox, device_id")
            ),
            records=tuple(
                record_from_dict(json.loads(row[0]))
                for row in self._db.execute("SELECT data FROM records ORDER BY mailbox, device_id")
            ),
            gatekeepers=dict(self._db.execute("SELECT gatekeeper_id, push_url FROM gatekeepers")),
            version=int(meta["version"]),
            seq=int(meta["seq"]),
            tombstone_floor=int(meta["tombstone_floor"]),
        )

    def save(self, delta: Delta) -> None:
        """Write one delta (and anything staged before it) atomically, now."""
        self.stage(delta)
        self.flush()

    def stage(self, delta: Delta) -> None:
        """Add ``delta`` to what the next ``flush`` writes (a later value of a key wins)."""
        if self._closed:
            raise sqlite3.ProgrammingError(f"the UEM store {self.path} is closed")
        pending = self._pending
        if pending is None:
            self._pending = _Pending.of(delta)
        else:
            pending.add(delta)

    @property
    def staged(self) -> bool:
        """Whether a staged delta waits for ``flush``."""
        return self._pending is not None

    def flush(self) -> None:
        """Write everything staged since the last flush in one transaction."""
        pending, self._pending = self._pending, None
        if pending is None or self._closed:
            return
        db = self._db
        db.execute("BEGIN")
        try:
            _write(db, pending)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            # Kept for the next flush (nothing can stage in between: this is synchronous).
            self._pending = pending
            raise


@attrs.define(eq=False)
class _Pending:
    """Staged deltas merged: the latest value of every key, the latest counters."""

    users: dict[str, User | None]
    devices: dict[RecordKey, RegisteredDevice | None]
    records: dict[RecordKey, EasRecord | None]
    gatekeepers: dict[str, str | None]
    policy: UemPolicy | None
    version: int
    seq: int
    tombstone_floor: int

    @classmethod
    def of(cls, delta: Delta) -> _Pending:
        return cls(
            users=dict(delta.users),
            devices=dict(delta.devices),
            records=dict(delta.records),
            gatekeepers=dict(delta.gatekeepers),
            policy=delta.policy,
            version=delta.version,
            seq=delta.seq,
            tombstone_floor=delta.tombstone_floor,
        )

    def add(self, delta: Delta) -> None:
        self.users.update(delta.users)
        self.devices.update(delta.devices)
        self.records.update(delta.records)
        self.gatekeepers.update(delta.gatekeepers)
        if delta.policy is not None:
            self.policy = delta.policy
        self.version = delta.version
        self.seq = delta.seq
        self.tombstone_floor = delta.tombstone_floor


def _write(db: sqlite3.Connection, pending: _Pending) -> None:
    """The statements of one flush, inside the caller's transaction."""
    gone_users = [(k,) for k, user in pending.users.items() if user is None]
    db.executemany("DELETE FROM users WHERE mailbox = ?", gone_users)
    db.executemany(
        "INSERT OR REPLACE INTO users VALUES (?, ?)",
        [(k, _dump(user_to_dict(u))) for k, u in pending.users.items() if u is not None],
    )
    db.executemany(
        "DELETE FROM devices WHERE mailbox = ? AND device_id = ?",
        [k for k, device in pending.devices.items() if device is None],
    )
    db.executemany(
        "INSERT OR REPLACE INTO devices VALUES (?, ?, ?)",
        [(*k, _dump(device_to_dict(d))) for k, d in pending.devices.items() if d is not None],
    )
    db.executemany(
        "DELETE FROM records WHERE mailbox = ? AND device_id = ?",
        [k for k, record in pending.records.items() if record is None],
    )
    db.executemany(
        "INSERT OR REPLACE INTO records VALUES (?, ?, ?)",
        [(*k, _dump(record_to_dict(r))) for k, r in pending.records.items() if r is not None],
    )
    db.executemany(
        "DELETE FROM gatekeepers WHERE gatekeeper_id = ?",
        [(k,) for k, url in pending.gatekeepers.items() if url is None],
    )
    db.executemany(
        "INSERT OR REPLACE INTO gatekeepers VALUES (?, ?)",
        [(k, url) for k, url in pending.gatekeepers.items() if url is not None],
    )
    meta = {
        "version": str(pending.version),
        "seq": str(pending.seq),
        "tombstone_floor": str(pending.tombstone_floor),
    }
    if pending.policy is not None:
        meta["policy"] = _dump(policy_to_dict(pending.policy))
    db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(meta.items()))
