"""What a load run measured: samples in, histograms, time series and a verdict on validity out.

Responsibility: the pure book-keeping of a run. ``Recorder`` takes one ``Sample`` per finished
operation (and the generator's own CPU and schedule-lag readings), files it into per-operation
HDR histograms, per-second windows, outcome counts and per-device decision tallies, and
``finish`` freezes everything into a ``RunResult`` that reports, thresholds and JSON read. It
must not await, read clocks or print: times come in as numbers (seconds on the generator's
monotonic clock), the shell decides when.

Theory of operation:
- Latency is ``ended - intended``: in the open model ``intended`` is the scheduled start, so a
  stalled target is charged for the whole time a request waited to be sent (the open model's
  answer to coordinated omission). ``service`` (``ended - started``) is kept beside it, so the
  report shows how much the correction matters. A closed-model worker with an expected
  interval records through ``Histogram.record_corrected``.
- Values are microseconds in histograms with 3 significant digits.
- Held Pings are an operation of their own: their latency is the heartbeat, so they never mix
  into the ``all`` figures that latency thresholds read by default.
- A run is **invalid** when the generator, not the target, set the pace: its process used at
  least ``max_cpu`` of one core in more than a quarter of the measured seconds, arrivals were
  dispatched late (p99 schedule lag above ``max_lag``), or arrivals were dropped at the
  in-flight cap.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import attrs

from device_sim import Outcome as StepOutcome
from device_sim import StepResult
from loadtest.histogram import Histogram
from loadtest.units import format_duration, format_micros

#: Percentiles every report shows.
REPORTED_PERCENTILES: Final = (50.0, 75.0, 90.0, 95.0, 99.0, 99.9)
#: The operation name of the aggregate over every operation except held Pings.
ALL: Final = "all"
#: Held Pings: recorded apart from everything else.
PING: Final = "ping"
#: At most this many device ids are kept per decision violation list.
MAX_LISTED_DEVICES: Final = 20


class Outcome(enum.Enum):
    """What one operation came to."""

    #: The target served it.
    OK = "ok"
    #: The target made the device provision (again) first; the operation then succeeded.
    PROVISIONING = "provisioning"
    #: The gatekeeper refused the device (HTTP 403, Status 129 or 177).
    BLOCKED = "blocked"
    #: Any other HTTP or EAS failure.
    HTTP_ERROR = "http_error"
    #: No answer within the operation's timeout.
    TIMEOUT = "timeout"
    #: Connection refused or reset, or another transport failure.
    CONNECTION_ERROR = "connection_error"
    #: The generator could not start it (in-flight cap reached): the run is invalid.
    DROPPED = "dropped"
    #: No unseen device was left for a first access.
    SKIPPED = "skipped"


#: Outcomes that count as errors in ``error_rate``.
ERRORS: Final = frozenset(
    {Outcome.HTTP_ERROR, Outcome.TIMEOUT, Outcome.CONNECTION_ERROR, Outcome.DROPPED}
)
#: Outcomes that mean the gatekeeper let the device through.
ALLOWED: Final = frozenset({Outcome.OK, Outcome.PROVISIONING})


class DeviceClass(enum.Enum):
    """Whether the UEM knows the device (decision expectations are per class)."""

    #: MDM-registered and compliant: should be allowed.
    REGISTERED = "registered"
    #: Never enrolled: auto-block should block it.
    UNREGISTERED = "unregistered"


def classify(results: Sequence[StepResult], succeeded: bool) -> tuple[Outcome, int | None]:
    """What a finished step came to, and the code behind a refusal or failure."""
    for result in results:
        if result.outcome is StepOutcome.BLOCKED:
            return Outcome.BLOCKED, result.eas_status or result.http_status
    if succeeded:
        if any(r.outcome is StepOutcome.REPROVISION for r in results):
            return Outcome.PROVISIONING, None
        return Outcome.OK, None
    if not results:
        return Outcome.HTTP_ERROR, None
    last = results[-1]
    if last.http_status == 0:
        return Outcome.CONNECTION_ERROR, None
    return Outcome.HTTP_ERROR, last.eas_status or last.http_status


@attrs.frozen(kw_only=True)
class Sample:
    """One finished operation, with its times on the generator's monotonic clock."""

    op: str
    device_id: str
    device_class: DeviceClass
    outcome: Outcome
    #: The EAS or HTTP code behind a BLOCKED or HTTP_ERROR outcome (129, 177, 403, 500...).
    code: int | None = None
    #: When the operation should have started (the schedule; the actual start when closed).
    intended: float
    #: When its first request was handed to the connection pool.
    started: float
    #: When its last response arrived (or it failed).
    ended: float
    #: Closed model with an expected interval: the interval, for coordinated-omission correction.
    expected_interval: float | None = None


@attrs.frozen(kw_only=True)
class Limits:
    """When a run is invalid because the generator was the bottleneck."""

    #: Share of one core at or above which a second counts as CPU-bound.
    max_cpu: float = 0.9
    #: p99 schedule lag (seconds) above which the schedule was not kept.
    max_lag: float = 0.05


def _us(seconds: float) -> int:
    return max(0, round(seconds * 1e6))


@attrs.define(eq=False)
class OpStats:
    """Everything recorded about one operation kind."""

    latency: Histogram = attrs.field(factory=Histogram)
    service: Histogram = attrs.field(factory=Histogram)
    outcomes: Counter[Outcome] = attrs.field(factory=Counter)
    #: "blocked 129", "http_error 500" ... -> count.
    codes: Counter[str] = attrs.field(factory=Counter)

    @property
    def finished(self) -> int:
        return sum(n for o, n in self.outcomes.items() if o is not Outcome.SKIPPED)

    @property
    def errors(self) -> int:
        return sum(self.outcomes[o] for o in ERRORS)

    def merge(self, other: OpStats) -> None:
        self.latency.merge(other.latency)
        self.service.merge(other.service)
        self.outcomes.update(other.outcomes)
        self.codes.update(other.codes)


@attrs.define(eq=False)
class Window:
    """One second of the run (second 0 starts at the measured start)."""

    second: int
    #: Latency of everything but held Pings that finished in this second.
    latency: Histogram = attrs.field(factory=Histogram)
    outcomes: Counter[Outcome] = attrs.field(factory=Counter)
    #: Held Pings that returned in this second.
    pings: int = 0
    #: Share of one core the generator's process used (None until measured).
    cpu: float | None = None
    #: Largest schedule lag of an arrival dispatched in this second (seconds).
    max_lag: float = 0.0
    #: Arrivals dispatched in this second.
    dispatched: int = 0


@attrs.define(eq=False)
class DecisionTally:
    """Which devices of one class were allowed, blocked, or never got an answer."""

    allowed: set[str] = attrs.field(factory=set)
    blocked: set[str] = attrs.field(factory=set)
    undecided: set[str] = attrs.field(factory=set)

    def add(self, device_id: str, outcome: Outcome) -> None:
        if outcome in ALLOWED:
            self.allowed.add(device_id)
        elif outcome is Outcome.BLOCKED:
            self.blocked.add(device_id)
        elif outcome is not Outcome.SKIPPED:
            self.undecided.add(device_id)

    def to_json(self) -> dict[str, object]:
        decided = self.allowed | self.blocked
        return {
            "devices": len(decided | self.undecided),
            "allowed": len(self.allowed),
            "blocked": len(self.blocked),
            "allowed_and_blocked": len(self.allowed & self.blocked),
            "never_answered": len(self.undecided - decided),
        }


@attrs.frozen(kw_only=True)
class Validity:
    """Whether the numbers describe the target; the reasons when they do not."""

    valid: bool
    reasons: tuple[str, ...] = ()
    #: The generator process's CPU over the run, as a share of one core.
    cpu_mean: float | None = None
    cpu_max: float | None = None
    #: p99 and max schedule lag in seconds (open model).
    lag_p99: float | None = None
    lag_max: float | None = None


def judge_validity(
    windows: Iterable[Window], lag: Histogram, dropped: int, limits: Limits
) -> Validity:
    """Was the generator the bottleneck? (See the module docstring for the rules.)"""
    cpus = [w.cpu for w in windows if w.cpu is not None]
    reasons: list[str] = []
    hot = [c for c in cpus if c >= limits.max_cpu]
    if cpus and len(hot) * 4 > len(cpus):
        reasons.append(
            f"the generator's process used >= {limits.max_cpu:.0%} of a core in {len(hot)} of "
            f"{len(cpus)} seconds: it, not the target, limited the rate"
        )
    lag_p99 = lag.percentile(99.0)
    if lag_p99 is not None and lag_p99 / 1e6 > limits.max_lag:
        reasons.append(
            f"arrivals were dispatched late (p99 schedule lag {format_micros(lag_p99)} > "
            f"{format_duration(limits.max_lag)}): the generator could not keep the schedule"
        )
    if dropped:
        reasons.append(
            f"{dropped} arrivals were dropped at the in-flight cap: raise max_in_flight or "
            "lower the rate"
        )
    return Validity(
        valid=not reasons,
        reasons=tuple(reasons),
        cpu_mean=sum(cpus) / len(cpus) if cpus else None,
        cpu_max=max(cpus) if cpus else None,
        lag_p99=None if lag_p99 is None else lag_p99 / 1e6,
        lag_max=None if lag.max is None else lag.max / 1e6,
    )


@attrs.frozen(kw_only=True)
class Marker:
    """Something that happened at a moment of the run (an event, a phase boundary)."""

    at: float
    label: str


@attrs.frozen(kw_only=True)
class WarmUp:
    """How the warm-up went: devices provisioned and synced before measuring."""

    devices: int
    ready: int
    seconds: float
    first_error: str | None = None


@attrs.define(eq=False)
class Recorder:
    """Collects a run's samples; ``finish`` freezes them into a ``RunResult``."""

    #: The measured start on the generator's clock: second 0 of the windows.
    start: float
    ops: dict[str, OpStats] = attrs.field(factory=dict)
    windows: dict[int, Window] = attrs.field(factory=dict)
    decisions: dict[DeviceClass, DecisionTally] = attrs.field(
        factory=lambda: {c: DecisionTally() for c in DeviceClass}
    )
    lag: Histogram = attrs.field(factory=Histogram)
    markers: list[Marker] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)
    #: Arrivals that found no idle device and waited for one (charged to their latency).
    waited_for_device: int = 0
    dispatched: int = 0

    def window(self, at: float) -> Window:
        second = max(0, int(at - self.start))
        found = self.windows.get(second)
        if found is None:
            found = self.windows[second] = Window(second)
        return found

    def record(self, sample: Sample) -> None:
        stats = self.ops.get(sample.op)
        if stats is None:
            stats = self.ops[sample.op] = OpStats()
        stats.outcomes[sample.outcome] += 1
        if sample.code is not None:
            stats.codes[f"{sample.outcome.value} {sample.code}"] += 1
        self.decisions[sample.device_class].add(sample.device_id, sample.outcome)
        if sample.outcome in (Outcome.SKIPPED, Outcome.DROPPED):
            self.window(sample.ended).outcomes[sample.outcome] += 1
            return
        latency = _us(sample.ended - sample.intended)
        if sample.expected_interval:
            stats.latency.record_corrected(latency, _us(sample.expected_interval))
        else:
            stats.latency.record(latency)
        stats.service.record(_us(sample.ended - sample.started))
        window = self.window(sample.ended)
        if sample.op == PING:
            window.pings += 1
            return
        window.outcomes[sample.outcome] += 1
        window.latency.record(latency)

    def record_dispatch(self, now: float, intended: float) -> None:
        """An arrival left the scheduler at ``now``; it was due at ``intended``."""
        lag = max(0.0, now - intended)
        self.lag.record(_us(lag))
        window = self.window(now)
        window.dispatched += 1
        window.max_lag = max(window.max_lag, lag)
        self.dispatched += 1

    def record_cpu(self, at: float, share: float) -> None:
        """The generator's process used ``share`` of one core in the second ending at ``at``."""
        self.window(at - 1e-9).cpu = share

    def mark(self, at: float, label: str) -> None:
        self.markers.append(Marker(at=max(0.0, at - self.start), label=label))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def finish(
        self,
        end: float,
        *,
        limits: Limits,
        profile: str,
        model: str,
        warmup: WarmUp | None = None,
        planned_seconds: float | None = None,
    ) -> RunResult:
        dropped = sum(s.outcomes[Outcome.DROPPED] for s in self.ops.values())
        ordered = [self.windows[k] for k in sorted(self.windows)]
        validity = judge_validity(ordered, self.lag, dropped, limits)
        notes = list(self.notes)
        if self.waited_for_device:
            notes.append(
                f"{self.waited_for_device} arrivals waited for an idle device (the population is "
                "small for this rate; the wait is part of their latency)"
            )
        everything = OpStats()
        for name, stats in self.ops.items():
            if name != PING:
                everything.merge(stats)
        return RunResult(
            profile=profile,
            model=model,
            seconds=max(1e-9, end - self.start),
            planned_seconds=planned_seconds,
            ops=dict(self.ops),
            overall=everything,
            windows=tuple(ordered),
            decisions=dict(self.decisions),
            validity=validity,
            markers=tuple(self.markers),
            notes=tuple(notes),
            warmup=warmup,
            dispatched=self.dispatched,
            lag=self.lag,
            limits=limits,
        )


@attrs.frozen(kw_only=True)
class RunResult:
    """A finished run: everything reports and thresholds read."""

    profile: str
    #: "open 200/s" or "closed 50".
    model: str
    #: Measured seconds (from the measured start to the last finished operation).
    seconds: float
    planned_seconds: float | None
    ops: Mapping[str, OpStats]
    #: Every operation but held Pings, merged.
    overall: OpStats
    windows: tuple[Window, ...]
    decisions: Mapping[DeviceClass, DecisionTally]
    validity: Validity
    markers: tuple[Marker, ...]
    notes: tuple[str, ...]
    warmup: WarmUp | None
    dispatched: int
    lag: Histogram
    limits: Limits

    def stats(self, op: str) -> OpStats | None:
        return self.overall if op == ALL else self.ops.get(op)

    def throughput(self, op: str = ALL) -> float:
        stats = self.stats(op)
        return 0.0 if stats is None else stats.finished / self.seconds

    def error_rate(self, op: str = ALL) -> float:
        stats = self.stats(op)
        if stats is None or stats.finished == 0:
            return 0.0
        return stats.errors / stats.finished

    def to_json(self) -> dict[str, object]:
        def op_json(stats: OpStats) -> dict[str, object]:
            pct = stats.latency.percentiles(REPORTED_PERCENTILES)
            service = stats.service.percentiles(REPORTED_PERCENTILES)
            return {
                "finished": stats.finished,
                "errors": stats.errors,
                "outcomes": {o.value: stats.outcomes[o] for o in Outcome if stats.outcomes[o]},
                "codes": dict(sorted(stats.codes.items())),
                "latency_us": {
                    "min": stats.latency.min,
                    "mean": stats.latency.mean,
                    "max": stats.latency.max,
                    **{_pname(p): v for p, v in pct.items()},
                },
                "service_time_us": {
                    "mean": stats.service.mean,
                    "max": stats.service.max,
                    **{_pname(p): v for p, v in service.items()},
                },
                "histogram": stats.latency.to_json(),
            }

        ops = {name: op_json(s) for name, s in sorted(self.ops.items())}
        ops[ALL] = op_json(self.overall)
        return {
            "profile": self.profile,
            "model": self.model,
            "seconds": self.seconds,
            "planned_seconds": self.planned_seconds,
            "dispatched": self.dispatched,
            "throughput_per_s": self.throughput(),
            "error_rate": self.error_rate(),
            "valid": self.validity.valid,
            "invalid_reasons": list(self.validity.reasons),
            "generator": {
                "cpu_mean": self.validity.cpu_mean,
                "cpu_max": self.validity.cpu_max,
                "schedule_lag_p99_s": self.validity.lag_p99,
                "schedule_lag_max_s": self.validity.lag_max,
            },
            "warmup": None if self.warmup is None else attrs.asdict(self.warmup),
            "operations": ops,
            "decisions": {c.value: t.to_json() for c, t in self.decisions.items()},
            "timeline": [
                {
                    "second": w.second,
                    "finished": sum(w.outcomes.values()),
                    "outcomes": {o.value: n for o, n in w.outcomes.items() if n},
                    "pings": w.pings,
                    "cpu": w.cpu,
                    "max_lag_s": w.max_lag,
                    "dispatched": w.dispatched,
                    **{
                        f"latency_{_pname(p)}_us": v
                        for p, v in w.latency.percentiles((50.0, 90.0, 99.0, 100.0)).items()
                    },
                }
                for w in self.windows
            ],
            "markers": [{"at": m.at, "label": m.label} for m in self.markers],
            "notes": list(self.notes),
        }


def _pname(p: float) -> str:
    """50.0 -> "p50", 99.9 -> "p999", 100.0 -> "max"."""
    if p == 100.0:
        return "max"
    text = f"{p:g}".replace(".", "")
    return f"p{text}"
