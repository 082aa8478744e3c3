"""Structured events of the UEM: frozen facts, past-tense names, subscribers.

Responsibility: say what happened (a record was reported, a decision changed, a push was
delivered) so the narrated trace, the dashboard, scenario assertions and the logs can follow
the UEM without hooks in its core. Must not: change state or block the caller; a failing
subscriber is logged and skipped (``strict=True``, for tests, re-raises).

Every event has ``to_dict()`` giving ``{"event": <class name>, ...fields}``. The bus keeps the
most recent events for ``GET /api/v1/admin/events``.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Any, Final

import attrs

log = logging.getLogger("uem_sim.events")

#: Events kept for the admin API.
RECENT_EVENTS: Final = 1000


@attrs.frozen(kw_only=True)
class _Event:
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {"event": type(self).__name__, **attrs.asdict(self)}


@attrs.frozen(kw_only=True)
class RecordReported(_Event):
    """A gatekeeper reported a (user, device); ``first_report`` when the record is new."""

    mailbox: str
    device_id: str
    gatekeeper_id: str
    first_report: bool
    correlation_id: str = ""


@attrs.frozen(kw_only=True)
class DecisionChanged(_Event):
    """A record got a new decision (or was removed) at ``version``."""

    mailbox: str
    device_id: str
    state: str
    reasons: int
    reason_names: tuple[str, ...]
    version: int
    removed: bool


@attrs.frozen(kw_only=True)
class DeviceCheckedIn(_Event):
    """The device agent checked in; ``enrolled`` on its first check-in."""

    mailbox: str
    device_id: str
    enrolled: bool


@attrs.frozen(kw_only=True)
class AdminChanged(_Event):
    """An administrator changed something: ``what`` names it (``posture``, ``policy``, an
    action such as ``block``), ``target`` says which thing, ``note`` is the admin's note."""

    what: str
    target: str
    note: str = ""


@attrs.frozen(kw_only=True)
class GatekeeperRegistered(_Event):
    """A gatekeeper registered (or re-registered) its push URL."""

    gatekeeper_id: str
    push_url: str


@attrs.frozen(kw_only=True)
class PushDelivered(_Event):
    """A batch of changed decisions reached a gatekeeper."""

    gatekeeper_id: str
    since: int
    version: int
    records: int
    attempts: int


@attrs.frozen(kw_only=True)
class PushFailed(_Event):
    """A push attempt failed; it is retried after ``retry_in`` seconds."""

    gatekeeper_id: str
    attempt: int
    error: str
    retry_in: float


@attrs.frozen(kw_only=True)
class OutgoingTlsApplied(_Event):
    """New outgoing TLS settings were applied: the outgoing client restarted, and outgoing
    calls fail for ``unavailable_s`` seconds (retried by their callers, e.g. the pusher)."""

    selected: tuple[str, ...]
    disabled: tuple[str, ...]
    is_default: bool
    unavailable_s: float


@attrs.frozen(kw_only=True)
class OutgoingTlsFailed(_Event):
    """An outgoing TLS handshake failed (emitted when an endpoint's error changes, not on
    every retry); ``needs_disabled`` names disabled suites the endpoint would accept."""

    endpoint: str
    error: str
    needs_disabled: tuple[str, ...]
    speaks_only: str | None


@attrs.frozen(kw_only=True)
class CertificateReplaced(_Event):
    """An admin uploaded a new certificate for a TLS port (``api`` or ``admin``)."""

    port: str
    subject: str
    serial: str
    not_after: str


Event = (
    RecordReported
    | DecisionChanged
    | DeviceCheckedIn
    | AdminChanged
    | GatekeeperRegistered
    | PushDelivered
    | PushFailed
    | OutgoingTlsApplied
    | OutgoingTlsFailed
    | CertificateReplaced
)
Subscriber = Callable[[Event], None]


class EventBus:
    """Fans events out to subscribers and keeps the recent ones."""

    def __init__(self, *, strict: bool = False, keep: int = RECENT_EVENTS) -> None:
        self._subscribers: list[Subscriber] = []
        self._recent: collections.deque[tuple[int, Event]] = collections.deque(maxlen=keep)
        self._count = 0
        self.strict = strict

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; the returned function removes it."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def emit(self, event: Event) -> None:
        self._count += 1
        self._recent.append((self._count, event))
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                if self.strict:
                    raise
                log.exception("event subscriber %r failed on %s", subscriber, type(event).__name__)

    def recent(self, after: int = 0) -> list[tuple[int, Event]]:
        """Kept events numbered above ``after`` (numbers grow by one per event)."""
        return [(n, e) for n, e in self._recent if n > after]
