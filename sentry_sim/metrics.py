"""Prometheus counters of the gatekeeper, fed by its events.

Responsibility: count what the event bus reports (requests by outcome, reports, decisions by
source, pushes, resyncs, upstream failures, provisions with the upstream, wait timeouts) and
render them, together with the gauges read from the running gatekeeper (records per state,
outbox, UEM reachability), in the Prometheus text exposition format 0.0.4. It must not change
anything it observes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Final

import attrs

from sentry_sim.events import (
    DecisionApplied,
    Event,
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


@attrs.define(eq=False)
class Metrics:
    """An event subscriber that keeps counters."""

    _counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = attrs.field(factory=Counter)

    def inc(self, name: str, **labels: str) -> None:
        self._counts[(name, tuple(sorted(labels.items())))] += 1

    def value(self, name: str, **labels: str) -> int:
        return self._counts[(name, tuple(sorted(labels.items())))]

    def observe(self, event: Event) -> None:
        self.inc("sentry_events_total", kind=event.kind)
        if isinstance(event, RequestForwarded):
            self.inc("sentry_requests_total", outcome="forwarded")
        elif isinstance(event, RequestDenied):
            self.inc("sentry_requests_total", outcome="denied")
            self.inc("sentry_denied_total", why=event.why)
        elif isinstance(event, ProvisionAnswered):
            self.inc("sentry_requests_total", outcome="provision_answered")
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

    def render(self, gauges: Iterable[tuple[str, str, Mapping[str, str], float]]) -> str:
        """The exposition text: the counters, then ``gauges`` (name, help, labels, value)."""
        lines: list[str] = []
        for name, help_text in _COUNTERS.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} counter")
            for (counted, labels), value in sorted(self._counts.items()):
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
