"""SQLite persistence of the gatekeeper: the device list, the report outbox, a few settings.

Responsibility: write and read back what must survive a restart: UEM-decided device records
(UNKNOWN and fallback records are never written: their reports are in the outbox instead),
the outbox of reports the UEM has not taken yet, the ActiveSync policies records refer to, the
upstream's policy key of each record (uem policy mode), the gatekeeper id, the policy-key
secret and the last UEM change version. It must not decide
anything or know about HTTP.

Theory of operation: one SQLite file, ``<state_dir>/sentry.sqlite3``, in WAL mode (or an
in-memory database when no state_dir is configured, so the code path is the same). The device
list is written as a whole snapshot in one transaction (periodically and at shutdown; the
caller runs it in a worker thread, hence the lock). Outbox rows are written before a report's
first attempt (``outbox_apply``: the reports of one loop iteration in one transaction) and
upstream keys at once, because a report must not be lost if the process dies before the next
snapshot, and an upstream key forgotten would cost the upstream a new partnership round.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import attrs

from sentry_sim.device_list import Row

FILE_NAME: Final = "sentry.sqlite3"

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS devices (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    reasons INTEGER NOT NULL,
    answer INTEGER NOT NULL,
    policy_version INTEGER NOT NULL,
    decided_at REAL NOT NULL,
    last_seen REAL NOT NULL,
    requests INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    key TEXT PRIMARY KEY,
    payload TEXT NOT NULL,
    queued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS upstream_keys (
    key TEXT PRIMARY KEY,
    policy_key INTEGER NOT NULL,
    issued_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


#: One outbox change: (record key, report JSON or None to drop the row, queued_at).
OutboxWrite = tuple[str, str | None, float]


@attrs.frozen
class OutboxEntry:
    """A report the UEM has not taken yet: its record key and its JSON body."""

    key: str
    payload: str
    queued_at: float
    attempts: int


@attrs.define(eq=False)
class Store:
    """One SQLite database; every method is safe to call from a worker thread."""

    path: str
    _db: sqlite3.Connection = attrs.field(init=False)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    def __attrs_post_init__(self) -> None:
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def open(cls, state_dir: str | None) -> Store:
        """The store in ``state_dir`` (created if missing), or an in-memory one for None."""
        if state_dir is None:
            return cls(":memory:")
        directory = Path(state_dir)
        directory.mkdir(parents=True, exist_ok=True)
        return cls(str(directory / FILE_NAME))

    @property
    def persistent(self) -> bool:
        return self.path != ":memory:"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- device list -----------------------------------------------------------------------
    def save_devices(self, rows: Iterable[Row]) -> int:
        """Replace the stored device list with ``rows`` in one transaction; returns the count."""
        materialised = list(rows)
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute("DELETE FROM devices")
                self._db.executemany(
                    "INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?)", materialised
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return len(materialised)

    def load_devices(self) -> list[Row]:
        with self._lock:
            cursor = self._db.execute(
                "SELECT key, state, reasons, answer, policy_version, decided_at, last_seen,"
                " requests FROM devices"
            )
            return [
                (str(k), str(s), int(r), int(a), int(p), float(d), float(ls), int(n))
                for k, s, r, a, p, d, ls, n in cursor
            ]

    # -- outbox ----------------------------------------------------------------------------
    def outbox_put(self, key: str, payload: str, queued_at: float) -> None:
        """Queue a report (a report already queued for ``key`` is kept, not doubled)."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO outbox (key, payload, queued_at) VALUES (?, ?, ?)",
                (key, payload, queued_at),
            )

    def outbox_apply(self, writes: Iterable[OutboxWrite]) -> None:
        """Queue and drop reports in order, in one transaction (a None payload drops)."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                for key, payload, queued_at in writes:
                    if payload is None:
                        db.execute("DELETE FROM outbox WHERE key = ?", (key,))
                    else:
                        db.execute(
                            "INSERT OR IGNORE INTO outbox (key, payload, queued_at)"
                            " VALUES (?, ?, ?)",
                            (key, payload, queued_at),
                        )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def outbox_attempted(self, key: str) -> None:
        with self._lock:
            self._db.execute("UPDATE outbox SET attempts = attempts + 1 WHERE key = ?", (key,))

    def outbox_delete(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE key = ?", (key,))

    def outbox(self) -> list[OutboxEntry]:
        with self._lock:
            cursor = self._db.execute(
                "SELECT key, payload, queued_at, attempts FROM outbox ORDER BY queued_at"
            )
            return [OutboxEntry(str(k), str(p), float(q), int(a)) for k, p, q, a in cursor]

    # -- upstream policy keys --------------------------------------------------------------
    def put_upstream_key(self, key: str, policy_key: int, issued_at: float) -> None:
        """Remember the upstream's final policy key of record ``key`` (replacing an older one)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO upstream_keys (key, policy_key, issued_at) VALUES (?, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET policy_key = excluded.policy_key,"
                " issued_at = excluded.issued_at",
                (key, policy_key, issued_at),
            )

    def upstream_keys(self) -> list[tuple[str, int, float]]:
        with self._lock:
            cursor = self._db.execute("SELECT key, policy_key, issued_at FROM upstream_keys")
            return [(str(k), int(p), float(a)) for k, p, a in cursor]

    # -- small settings --------------------------------------------------------------------
    def get(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, name: str, value: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    def items(self, prefix: str) -> list[tuple[str, str]]:
        """Every (name, value) whose name starts with ``prefix``."""
        with self._lock:
            cursor = self._db.execute(
                "SELECT name, value FROM meta WHERE substr(name, 1, ?) = ?", (len(prefix), prefix)
            )
            return [(str(n), str(v)) for n, v in cursor]
