"""Failed admin logins: count them per client and lock a client out after too many.

Responsibility: the pure bookkeeping behind the admin APIs' lockout. ``Lockout`` counts failed
attempts per client (its remote address), locks a client that reaches ``max_failures`` within
``window_s`` for ``lock_s`` seconds, forgets a client on success, and keeps at most
``max_clients`` entries. It must not read a clock, touch a request or log: ``now`` comes in,
decisions go out, the middleware (``labauth.middleware``) does the I/O.

Theory of operation (the DISA STIG for the real admin portal, Ivanti MobileIron Core MDM
Server STIG V1R1: V-251402 "enforce the limit of three consecutive invalid logon attempts by a
user during a 15-minute time period", V-251774 "lock administrator accounts after three
unsuccessful login attempts", V-251777 "lock ... for at least 15 minutes"): the defaults are 3
failures within 15 minutes, then 15 minutes locked. The lab has no admin accounts, only one
token, so the "account" is the client address; a lab is reached from 127.0.0.1, so a lockout
there locks the operator out of that one app, which is the point.

- A failure older than ``window_s`` no longer counts (the STIG's "during a 15-minute period").
- While locked, every attempt is refused, even with the right token (otherwise the lock would
  not slow a guesser down: the right guess would still get in). Attempts during the lock do
  not extend it: a guesser cannot keep the operator out for ever, only for ``lock_s``.
- A success resets the client's count ("consecutive" failures).
- Memory is bounded: the table is ordered by last change; past ``max_clients`` the oldest
  entry is dropped (expired entries first). A flood of addresses could push a locked entry
  out; on a loopback-only lab that cannot happen, and the cap keeps a flood from eating memory.
"""

from __future__ import annotations

import collections
import math
from typing import Any, Final

import attrs

#: STIG V-251774 / V-251402: three unsuccessful attempts.
DEFAULT_MAX_FAILURES: Final = 3
#: STIG V-251777 (at least 15 minutes locked) and V-251402 (within a 15-minute period).
DEFAULT_LOCK_S: Final = 15 * 60.0
DEFAULT_WINDOW_S: Final = 15 * 60.0
DEFAULT_MAX_CLIENTS: Final = 10_000


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"lockout {attribute.name}: expected more than 0, got {value!r}")


@attrs.frozen(kw_only=True)
class LockoutPolicy:
    """How many failures, within how long, lock a client out for how long."""

    max_failures: int = attrs.field(default=DEFAULT_MAX_FAILURES, validator=_positive)
    window_s: float = attrs.field(default=DEFAULT_WINDOW_S, validator=_positive)
    lock_s: float = attrs.field(default=DEFAULT_LOCK_S, validator=_positive)
    max_clients: int = attrs.field(default=DEFAULT_MAX_CLIENTS, validator=_positive)


@attrs.frozen(kw_only=True)
class Locked:
    """The client is locked out; it may try again in ``retry_after_s`` seconds."""

    until: float
    retry_after_s: int


@attrs.frozen(kw_only=True)
class Failure:
    """A failed attempt was counted; ``locked`` is set when this one locked the client."""

    failures: int
    max_failures: int
    locked: Locked | None


@attrs.define(eq=False)
class _Entry:
    #: Times of the failures still inside the window (oldest first).
    failures: list[float] = attrs.field(factory=list)
    locked_until: float | None = None


@attrs.define(eq=False)
class Lockout:
    """Per-client failed-attempt counters and locks (see the module docstring)."""

    policy: LockoutPolicy = attrs.field(factory=LockoutPolicy)
    _table: collections.OrderedDict[str, _Entry] = attrs.field(
        factory=collections.OrderedDict, init=False
    )

    def __len__(self) -> int:
        return len(self._table)

    def locked(self, client: str, now: float) -> Locked | None:
        """The lock on ``client`` at ``now``, or None when it may try."""
        entry = self._table.get(client)
        if entry is None or entry.locked_until is None:
            return None
        if now >= entry.locked_until:
            # The lock ran out: the client starts over with a clean count.
            del self._table[client]
            return None
        return Locked(until=entry.locked_until, retry_after_s=math.ceil(entry.locked_until - now))

    def failed(self, client: str, now: float) -> Failure:
        """Count a failed attempt by ``client`` at ``now``; lock it when it reaches the limit."""
        policy = self.policy
        current = self.locked(client, now)
        if current is not None:
            return Failure(
                failures=policy.max_failures, max_failures=policy.max_failures, locked=current
            )
        entry = self._table.pop(client, None) or _Entry()
        entry.failures = [t for t in entry.failures if now - t < policy.window_s]
        entry.failures.append(now)
        lock: Locked | None = None
        if len(entry.failures) >= policy.max_failures:
            entry.locked_until = now + policy.lock_s
            lock = Locked(until=entry.locked_until, retry_after_s=math.ceil(policy.lock_s))
        self._table[client] = entry
        self._evict(now)
        return Failure(failures=len(entry.failures), max_failures=policy.max_failures, locked=lock)

    def succeeded(self, client: str) -> None:
        """``client`` presented the right token while not locked: its count starts over."""
        self._table.pop(client, None)

    def _evict(self, now: float) -> None:
        excess = len(self._table) - self.policy.max_clients
        if excess <= 0:
            return
        # Entries that no longer matter go first: lock over, or every failure out of the window.
        stale = [
            key
            for key, entry in self._table.items()
            if (entry.locked_until is not None and now >= entry.locked_until)
            or (
                entry.locked_until is None
                and all(now - t >= self.policy.window_s for t in entry.failures)
            )
        ]
        for key in stale[:excess]:
            del self._table[key]
        while len(self._table) > self.policy.max_clients:
            self._table.popitem(last=False)
