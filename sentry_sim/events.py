"""The gatekeeper's structured events and the bus that delivers them.

Responsibility: name every step of the flow (DESIGN.md section 2) as a frozen, past-tense fact
carrying correlation ids, and hand each one to whoever subscribed: the admin event stream, the
metrics, the narrated trace, scenario assertions, the log. It must not decide anything and must
not do I/O itself; subscribers do.

Theory of operation: cores return events (or the shell builds them) and the shell calls
``EventBus.emit``. Every event has ``at`` (the clock reading), ``request_id`` (one per device
request; empty when no request caused it) and ``record`` (the device record's correlation id,
``user/device_id``; empty when no record is involved). ``to_json`` gives the flat JSON form
the event stream and the logs use. A subscriber that raises is logged and skipped, so a broken
dashboard never takes the proxy down; ``strict=True`` (tests) re-raises instead.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import attrs

logger = logging.getLogger(__name__)

#: Correlation id of a device request, ``r`` followed by a counter.
_request_ids = itertools.count(1)


def next_request_id() -> str:
    """A new request correlation id, unique within this process."""
    return f"r{next(_request_ids)}"


@attrs.frozen(kw_only=True)
class Event:
    """Base of every event: when, and which request and record it belongs to."""

    kind: ClassVar[str] = "event"
    at: float
    request_id: str = ""
    record: str = ""

    def to_json(self) -> dict[str, Any]:
        """The flat JSON form: ``{"event": kind, "at": ..., fields...}``."""
        body: dict[str, Any] = {"event": self.kind}
        body.update(attrs.asdict(self, recurse=False))
        return body


@attrs.frozen(kw_only=True)
class RequestReceived(Event):
    """A device request arrived and its identity was read (step 1)."""

    kind: ClassVar[str] = "request_received"
    command: str
    protocol_version: str
    method: str = "POST"


@attrs.frozen(kw_only=True)
class RequestRejected(Event):
    """A device request could not be parsed; it was answered with the error's status."""

    kind: ClassVar[str] = "request_rejected"
    http_status: int
    message: str


@attrs.frozen(kw_only=True)
class DeviceFirstSeen(Event):
    """An unknown (user, device) pair was added to the device list as UNKNOWN (step 2)."""

    kind: ClassVar[str] = "device_first_seen"
    device_type: str


@attrs.frozen(kw_only=True)
class ReportQueued(Event):
    """A report of the record to the UEM was put in the outbox (step 3)."""

    kind: ClassVar[str] = "report_queued"


@attrs.frozen(kw_only=True)
class ReportSent(Event):
    """The UEM took a report and answered with its decision (steps 3 to 5)."""

    kind: ClassVar[str] = "report_sent"
    attempt: int
    state: str


@attrs.frozen(kw_only=True)
class ReportFailed(Event):
    """Sending a report failed; it stays in the outbox and is retried after ``retry_in_s``."""

    kind: ClassVar[str] = "report_failed"
    attempt: int
    error: str
    retry_in_s: float


@attrs.frozen(kw_only=True)
class DecisionApplied(Event):
    """A decision was cached for the record (step 6). ``source`` says where it came from."""

    kind: ClassVar[str] = "decision_applied"
    state: str
    previous_state: str
    reasons: int
    reason_names: tuple[str, ...]
    #: "report", "push", "resync", "startup_pull", "fallback" or "store".
    source: str
    answer: int


@attrs.frozen(kw_only=True)
class RecordForgotten(Event):
    """The UEM deleted the record; the device's next request is a first access again."""

    kind: ClassVar[str] = "record_forgotten"
    source: str


@attrs.frozen(kw_only=True)
class RequestWaiting(Event):
    """A request of an UNKNOWN record is held until the decision arrives or ``until``."""

    kind: ClassVar[str] = "request_waiting"
    until: float


@attrs.frozen(kw_only=True)
class WaitTimedOut(Event):
    """No decision arrived within ``first_access_wait_s``; the unreachable-UEM rule applies."""

    kind: ClassVar[str] = "wait_timed_out"
    waited_s: float


@attrs.frozen(kw_only=True)
class RequestForwarded(Event):
    """The request was proxied to the upstream EAS server (step 7) and answered."""

    kind: ClassVar[str] = "request_forwarded"
    command: str
    upstream_status: int


@attrs.frozen(kw_only=True)
class UpstreamFailed(Event):
    """The upstream EAS server could not be reached; the device got 503 with Retry-After."""

    kind: ClassVar[str] = "upstream_failed"
    command: str
    error: str


@attrs.frozen(kw_only=True)
class RequestDenied(Event):
    """The device was answered by the gatekeeper without reaching upstream (step 8 and more).

    ``why`` is "blocked", "mailbox_limit", "wipe_pending", "provisioning_needed",
    "unreachable_block" or "upstream_retry" (the upstream demanded provisioning of a request
    whose body was too large to keep for a replay: the gatekeeper provisioned with the
    upstream and told the device to retry).
    """

    kind: ClassVar[str] = "request_denied"
    command: str
    why: str
    http_status: int
    eas_status: int | None


@attrs.frozen(kw_only=True)
class ProvisionAnswered(Event):
    """The gatekeeper answered a Provision itself (uem policy mode, or a wipe).

    ``phase`` is "policy" (temporary key handed out), "acknowledged" (final key handed out),
    "wipe" (RemoteWipe directive sent), "wipe_acknowledged" or "refused".
    """

    kind: ClassVar[str] = "provision_answered"
    phase: str
    policy_version: int


@attrs.frozen(kw_only=True)
class UpstreamProvisioned(Event):
    """The upstream demanded provisioning (``demand``: HTTP 449 or body Status 141-144) and the
    gatekeeper ran the two-phase Provision with it on the device's behalf (uem policy mode).
    ``ok`` says whether it got the upstream's final key; ``detail`` says what happened;
    ``upstream_status`` is the HTTP status of the upstream's last answer (0: unreachable).
    The keys themselves are never in the event."""

    kind: ClassVar[str] = "upstream_provisioned"
    ok: bool
    detail: str
    demand: int = 0
    upstream_status: int = 0


@attrs.frozen(kw_only=True)
class PushReceived(Event):
    """The UEM pushed ``changes`` record changes to the gatekeeper."""

    kind: ClassVar[str] = "push_received"
    changes: int


@attrs.frozen(kw_only=True)
class ResyncCompleted(Event):
    """A resync with the UEM finished (``pull`` is the start-up pull of allowed devices)."""

    kind: ClassVar[str] = "resync_completed"
    mode: str
    changes: int
    version: int


@attrs.frozen(kw_only=True)
class ResyncFailed(Event):
    """A resync with the UEM failed; the cache keeps its last state."""

    kind: ClassVar[str] = "resync_failed"
    mode: str
    error: str


@attrs.frozen(kw_only=True)
class DeviceListPersisted(Event):
    """The device list was written to SQLite (UNKNOWN and fallback records left out)."""

    kind: ClassVar[str] = "device_list_persisted"
    records: int


@attrs.frozen(kw_only=True)
class DeviceListLoaded(Event):
    """The device list and the outbox were read back from SQLite at start-up."""

    kind: ClassVar[str] = "device_list_loaded"
    records: int
    pending_reports: int
    upstream_keys: int = 0


Subscriber = Callable[[Event], None]


@attrs.define(eq=False)
class EventBus:
    """Delivers each event to every subscriber, and keeps the latest ones for late readers."""

    strict: bool = False
    history_size: int = 2000
    _subscribers: list[Subscriber] = attrs.field(factory=list)
    _history: deque[Event] = attrs.field(init=False)
    _emitted: int = 0

    def __attrs_post_init__(self) -> None:
        self._history = deque(maxlen=self.history_size)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add ``subscriber``; the returned function removes it again."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def emit(self, event: Event) -> None:
        self._emitted += 1
        self._history.append(event)
        for subscriber in tuple(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                if self.strict:
                    raise
                # A broken observer must never break the proxy: log it and carry on.
                logger.exception("event subscriber %r failed on %s", subscriber, event.kind)

    @property
    def emitted(self) -> int:
        """How many events were emitted since start (the event stream's sequence number)."""
        return self._emitted

    def recent(self, limit: int = 100) -> Iterator[Event]:
        """The latest ``limit`` events, oldest first."""
        items = list(self._history)
        return iter(items[-limit:] if limit > 0 else [])
