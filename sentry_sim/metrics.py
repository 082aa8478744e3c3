"""Prometheus counters of the gatekeeper, fed by its events.

Responsibility: count what the event bus reports (requests by outcome, reports, decisions by
source, pushes, resyncs, upstream failures, provisions with the upstream, wait timeouts) and
render them, together with the gauges read from the running gatekeeper (records per state,
outbox, UEM reachability), in the Prometheus text exposition format 0.0.4. It must not change
anything it observes.

Theory of operation: ``observe`` runs for every event, two per proxied hot-path request, so it
only counts events per kind (a plain int per event class); the counters a kind always implies
(its ``sentry_events_total`` line and, for request outcomes, ``sentry_requests_total``) are
derived from those counts when the metrics are read. Only the kinds whose labels come from
their fields (denials, decisions, reports...) build labelled keys per event. Requests the fast
lane forwards without building events (``hot_path_events: false``) are not observed at all:
the lane counts them and registers the count on the bus (``EventBus.add_tally``), and the
bus's tallies, read at scrape time, are added to ``sentry_requests_total{outcome="forwarded"}``.
Events the lane defers while the metrics are the bus's only subscriber (``EventBus.defer``)
are not observed either: the bus counts them per kind and the metrics add those counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Final

import attrs

from sentry_sim.events import (
    DecisionApplied,
    Event,
    EventBus,
    ProvisionAnswered,
    ReportFailed,
    ReportSent,
    RequestDenied,
    RequestForwarded,
    ResyncCompleted,
    ResyncFailed,
    UpstreamProvisioned,
)

#: Counter families: name -> help text.
_COUNTERS: Final[dict[str, str]] = {
    "sentry_requests_total": "Device requests answered, by outcome.",
    "sentry_denied_total": "Device requests answered by the gatekeeper itself, by reason.",
    "sentry_reports_total": "Report attempts to the UEM, by result.",
    "sentry_decisions_applied_total": "Decisions cached, by where they came from.",
    "sentry_resyncs_total": "Resyncs with the UEM, by result.",
    "sentry_upstream_provisions_total": "Provisions with the upstream on a device's behalf, "
    "by result.",
    "sentry_events_total": "Events emitted, by kind.",
}


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )
    return "{" + inner + "}"


_Key = tuple[str, tuple[tuple[str, str], ...]]

#: Outcomes counted in ``sentry_requests_total`` by event kind alone.
_OUTCOMES: Final[dict[type[Event], str]] = {
    RequestForwarded: "forwarded",
    RequestDenied: "denied",
    ProvisionAnswered: "provision_answered",
}
#: Event kinds whose counters depend on their fields (``Metrics._by_fields``).
_FIELD_LABELLED: Final = frozenset(
    {
        RequestDenied,
        ReportSent,
        ReportFailed,
        DecisionApplied,
        ResyncCompleted,
        ResyncFailed,
        UpstreamProvisioned,
    }
)


def _key(name: str, **labels: str) -> _Key:
    return (name, tuple(sorted(labels.items())))


@attrs.define(eq=False)
class Metrics:
    """An event subscriber that keeps counters."""

    #: Counters whose labels come from event fields.
    _counts: Counter[_Key] = attrs.field(factory=Counter)
    #: Events seen per kind (a type hashes by identity: cheaper than a labelled key).
    _kinds: dict[type[Event], int] = attrs.field(factory=dict)
    _bus: EventBus | None = None

    def follow(self, bus: EventBus) -> Callable[[], None]:
        """Count ``bus``'s events, the deferred ones and its tallies included, as a counting
        subscriber (the bus stays ``quiet``); the returned function stops following."""
        self._bus = bus
        return bus.subscribe(self.observe, counting=True)

    def inc(self, name: str, **labels: str) -> None:
        self._counts[_key(name, **labels)] += 1

    def value(self, name: str, **labels: str) -> int:
        return self._all()[_key(name, **labels)]

    def observe(self, event: Event) -> None:
        kind = type(event)
        kinds = self._kinds
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind in _FIELD_LABELLED:
            self._by_fields(event)

    def _by_fields(self, event: Event) -> None:
        if isinstance(event, RequestDenied):
            self.inc("sentry_denied_total", why=event.why)
        elif isinstance(event, ReportSent):
            self.inc("sentry_reports_total", result="sent")
        elif isinstance(event, ReportFailed):
            self.inc("sentry_reports_total", result="failed")
        elif isinstance(event, DecisionApplied):
            self.inc("sentry_decisions_applied_total", source=event.source)
        elif isinstance(event, ResyncCompleted):
            self.inc("sentry_resyncs_total", result="ok")
        elif isinstance(event, ResyncFailed):
            self.inc("sentry_resyncs_total", result="failed")
        elif isinstance(event, UpstreamProvisioned):
            self.inc("sentry_upstream_provisions_total", result="ok" if event.ok else "failed")

    def _all(self) -> Counter[_Key]:
        """Every counter: the labelled ones, those derived from the kinds seen (observed, or
        deferred on the bus: ``EventBus.defer``), and the requests counted on the bus without
        events (``EventBus.tallies``)."""
        counts = Counter(self._counts)
        kinds = Counter(self._kinds)
        if self._bus is not None:
            kinds.update(self._bus.deferred_counts())
        for kind, seen in kinds.items():
            counts[_key("sentry_events_total", kind=kind.kind)] += seen
            outcome = _OUTCOMES.get(kind)
            if outcome is not None:
                counts[_key("sentry_requests_total", outcome=outcome)] += seen
        if self._bus is not None:
            for kind, tallied in self._bus.tallies().items():
                outcome = _OUTCOMES.get(kind)
                if outcome is not None and tallied:
                    counts[_key("sentry_requests_total", outcome=outcome)] += tallied
        return counts

    def render(self, gauges: Iterable[tuple[str, str, Mapping[str, str], float]]) -> str:
        """The exposition text: the counters, then ``gauges`` (name, help, labels, value)."""
        lines: list[str] = []
        counts = self._all()
        for name, help_text in _COUNTERS.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} counter")
            for (counted, labels), value in sorted(counts.items()):
                if counted == name:
                    lines.append(f"{name}{_labels(dict(labels))} {value}")
        seen: set[str] = set()
        for gauge, help_text, gauge_labels, reading in gauges:
            if gauge not in seen:
                seen.add(gauge)
                lines.append(f"# HELP {gauge} {help_text}")
                lines.append(f"# TYPE {gauge} gauge")
            lines.append(f"{gauge}{_labels(gauge_labels)} {reading:g}")
        return "\n".join(lines) + "\n"
