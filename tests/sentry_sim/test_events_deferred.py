"""The event bus's cheap paths: deferred events, counting subscribers, tallies, and the metrics
that read them (``EventBus.defer``, ``EventBus.add_tally``, ``Metrics.follow``)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentry_sim.events import (
    DecisionApplied,
    Event,
    EventBus,
    RequestDenied,
    RequestForwarded,
    RequestReceived,
    build,
)
from sentry_sim.metrics import Metrics


def forwarded(n: int, status: int = 200) -> tuple[Any, ...]:
    return (RequestForwarded, 10.0 + n, f"r{n}", "alice/dev1", "Sync", status)


def received(n: int) -> tuple[Any, ...]:
    return (RequestReceived, 10.0 + n, f"r{n}", "alice/dev1", "Sync", "14.1")


def test_deferred_event_reads_back_like_the_emitted_one() -> None:
    bus = EventBus()
    bus.defer(forwarded(1))
    bus.emit(
        RequestForwarded(
            at=11.0, request_id="r1", record="alice/dev1", command="Sync", upstream_status=200
        )
    )
    first, second = bus.recent()
    assert first == second
    assert first.to_json() == second.to_json()
    assert bus.emitted == 2


def test_deferred_event_leaves_trailing_fields_to_their_defaults() -> None:
    event = build(received(3))
    assert isinstance(event, RequestReceived)
    assert event.method == "POST"
    assert event.protocol_version == "14.1"


def test_deferred_event_with_too_many_values_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="RequestForwarded: at most 5 values"):
        build((*forwarded(1), "extra"))


def test_bus_is_quiet_only_while_nothing_but_counting_subscribers_listen() -> None:
    bus = EventBus()
    assert bus.quiet
    metrics = Metrics()
    drop_metrics = metrics.follow(bus)
    assert bus.quiet
    seen: list[Event] = []
    drop_recorder = bus.subscribe(seen.append)
    assert not bus.quiet
    drop_recorder()
    assert bus.quiet
    drop_metrics()
    assert bus.quiet


def test_metrics_count_deferred_events_and_tallied_requests() -> None:
    bus = EventBus()
    metrics = Metrics()
    metrics.follow(bus)
    for n in range(3):
        bus.defer(received(n))
        bus.defer(forwarded(n))
    bus.emit(build(forwarded(9)))
    lane_count = 5
    remove = bus.add_tally(RequestForwarded, lambda: lane_count)
    assert metrics.value("sentry_requests_total", outcome="forwarded") == 3 + 1 + 5
    assert metrics.value("sentry_events_total", kind="request_forwarded") == 4
    assert metrics.value("sentry_events_total", kind="request_received") == 3
    text = metrics.render([])
    assert 'sentry_requests_total{outcome="forwarded"} 9\n' in text
    remove()
    assert metrics.value("sentry_requests_total", outcome="forwarded") == 4


def test_metrics_keep_labels_that_come_from_event_fields() -> None:
    bus = EventBus()
    metrics = Metrics()
    metrics.follow(bus)
    denied = RequestDenied(
        at=1.0, command="Sync", why="blocked", http_status=200, eas_status=129, record="a/b"
    )
    bus.emit(denied)
    bus.emit(denied)
    bus.emit(
        DecisionApplied(
            at=1.0,
            state="ALLOWED",
            previous_state="UNKNOWN",
            reasons=0,
            reason_names=(),
            source="push",
            answer=1,
        )
    )
    assert metrics.value("sentry_requests_total", outcome="denied") == 2
    assert metrics.value("sentry_denied_total", why="blocked") == 2
    assert metrics.value("sentry_decisions_applied_total", source="push") == 1
    assert metrics.value("sentry_events_total", kind="decision_applied") == 1


_EVENTS = st.lists(
    st.tuples(st.sampled_from(["received", "forwarded"]), st.integers(0, 50), st.booleans()),
    max_size=40,
)


@given(_EVENTS)
def test_deferring_changes_nothing_the_metrics_or_history_show(
    plan: list[tuple[str, int, bool]],
) -> None:
    """Any mix of deferred and emitted hot-path events reads back, in metrics and history,
    exactly as if every one had been built and emitted."""
    mixed, built = EventBus(), EventBus()
    mixed_metrics, built_metrics = Metrics(), Metrics()
    mixed_metrics.follow(mixed)
    built_metrics.follow(built)
    for kind, n, defer in plan:
        item = received(n) if kind == "received" else forwarded(n)
        if defer:
            mixed.defer(item)
        else:
            mixed.emit(build(item))
        built.emit(build(item))
    assert mixed_metrics.render([]) == built_metrics.render([])
    assert [e.to_json() for e in mixed.recent(100)] == [e.to_json() for e in built.recent(100)]
    assert mixed.emitted == built.emitted
