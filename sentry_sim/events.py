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

#: An event not built yet: its kind, then its field values in ``attrs.fields`` order (a
#: prefix: the fields left out take their defaults).
Deferred = tuple[Any, ...]

#: Field names per event kind, in ``attrs.fields`` order (``Deferred`` values follow it).
_FIELD_NAMES: dict[type[Event], tuple[str, ...]] = {}


def build(item: Event | Deferred) -> Event:
    """The event ``item`` stands for (a ``Deferred`` is built; an event is itself)."""
    if isinstance(item, Event):
        return item
    kind: type[Event] = item[0]
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = _FIELD_NAMES[kind] = tuple(a.name for a in attrs.fields(kind))
    if len(item) - 1 > len(names):
        raise ValueError(f"deferred {kind.__name__}: at most {len(names)} values, got {item!r}")
    # Fields past the values given keep their defaults.
    return kind(**dict(zip(names, item[1:], strict=False)))


@attrs.define(eq=False)
class EventBus:
    """Delivers each event to every subscriber, and keeps the latest ones for late readers.

    Counting subscribers: one subscribed with ``counting=True`` (``metrics.Metrics.follow``)
    only counts events by kind and reads ``deferred_counts()`` and ``tallies()`` when it
    renders.
    While no other subscriber listens (``quiet``), a producer on the hot path may hand the
    bus a ``Deferred`` tuple instead of an event (``defer``): it is counted, numbered and kept
    in the history like an emitted event, and built only if someone reads the history
    (``recent``), so the admin API, the event stream numbers and the metrics see exactly what
    they would have seen, at a fraction of the cost (a tuple instead of a frozen attrs
    instance, no delivery).

    Tallies: a producer that, by configuration, does not emit some events at all (the fast
    lane with ``hot_path_events: false``) still says how many happened: ``add_tally(kind,
    read)`` registers a function that returns that count, read by ``tallies()``.
    """

    strict: bool = False
    history_size: int = 2000
    _subscribers: list[Subscriber] = attrs.field(factory=list)
    _history: deque[Event | Deferred] = attrs.field(init=False)
    _emitted: int = 0
    #: The subscribers as a tuple, rebuilt on (un)subscribe: ``emit`` walks a snapshot, so a
    #: subscriber may unsubscribe during delivery, without copying the list per event.
    _delivery: tuple[Subscriber, ...] = attrs.field(init=False, default=())
    _counting: list[Subscriber] = attrs.field(init=False, factory=list)
    #: No subscriber but counting ones: ``defer`` may be used instead of ``emit``.
    quiet: bool = attrs.field(init=False, default=True)
    _deferred: dict[type[Event], int] = attrs.field(init=False, factory=dict)
    _tallies: list[tuple[type[Event], Callable[[], int]]] = attrs.field(init=False, factory=list)

    def __attrs_post_init__(self) -> None:
        self._history = deque(maxlen=self.history_size)
        self._changed()

    def _changed(self) -> None:
        self._delivery = tuple(self._subscribers)
        self.quiet = all(s in self._counting for s in self._subscribers)

    def subscribe(self, subscriber: Subscriber, *, counting: bool = False) -> Callable[[], None]:
        """Add ``subscriber``; the returned function removes it again. A ``counting`` one
        (it reads ``deferred_counts()``) keeps the bus ``quiet``."""
        self._subscribers.append(subscriber)
        if counting:
            self._counting.append(subscriber)
        self._changed()

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)
                if subscriber in self._counting:
                    self._counting.remove(subscriber)
                self._changed()

        return unsubscribe

    def emit(self, event: Event) -> None:
        self._emitted += 1
        self._history.append(event)
        for subscriber in self._delivery:
            try:
                subscriber(event)
            except Exception:
                if self.strict:
                    raise
                # A broken observer must never break the proxy: log it and carry on.
                logger.exception("event subscriber %r failed on %s", subscriber, event.kind)

    def defer(self, item: Deferred) -> None:
        """Emit the event ``item`` stands for without building it; only while ``quiet`` (the
        caller checks: with another subscriber listening it must ``emit`` a built event), and
        only for kinds counting subscribers count by kind alone (the hot path's requests)."""
        self._emitted += 1
        self._history.append(item)
        deferred = self._deferred
        kind = item[0]
        deferred[kind] = deferred.get(kind, 0) + 1

    @property
    def emitted(self) -> int:
        """How many events were emitted since start (the event stream's sequence number)."""
        return self._emitted

    def recent(self, limit: int = 100) -> Iterator[Event]:
        """The latest ``limit`` events, oldest first."""
        items = list(self._history)
        return iter([build(item) for item in (items[-limit:] if limit > 0 else [])])

    def deferred_counts(self) -> dict[type[Event], int]:
        """Per event kind, how many were emitted with ``defer`` (not seen by subscribers)."""
        return dict(self._deferred)

    def add_tally(self, kind: type[Event], read: Callable[[], int]) -> Callable[[], None]:
        """Register ``read``: how many events of ``kind`` happened without being emitted at
        all. The returned function removes it again (its count then stops being read)."""
        entry = (kind, read)
        self._tallies.append(entry)

        def remove() -> None:
            if entry in self._tallies:
                self._tallies.remove(entry)

        return remove

    def tallies(self) -> dict[type[Event], int]:
        """Per event kind, how many happened without being emitted (``add_tally``)."""
        counts: dict[type[Event], int] = {}
        for kind, read in self._tallies:
            counts[kind] = counts.get(kind, 0) + read()
        return counts
