"""Soak runs: a steady mixed load for minutes, and a drift report of what crept up meanwhile.

Responsibility: the pure part of ``sentry-sim soak``. ``steady_profile`` turns a shipped
profile (``morning_rush`` by default) into one long steady phase; ``intervals`` cuts a finished
``RunResult`` into fixed intervals (a minute by default) and pairs each with the resource
reading taken at its end (RSS, open file descriptors); ``drift`` compares the first interval
with the last and fits a least-squares slope per minute; ``SoakReport`` renders the text table
and the JSON document. It must not read clocks, ``/proc`` or sockets: readings come in as
values (``loadtest.soak_probe`` takes them), so every number here can be checked in a test.

Theory of operation: a leak shows as a metric that keeps rising at a steady load. Two numbers
say whether it does: the change from the first interval to the last, and the slope of a
straight line through every interval (per minute, so runs of different lengths compare). One
noisy interval moves the first number a lot and the slope little, so the report shows both.
Some growth is by design and the report says so: every first access adds a device record to
the gatekeeper and the UEM, and the generator keeps a one-second latency window per second
of the run (a few kB each).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import attrs

from loadtest.histogram import Histogram
from loadtest.profiles import MAX_RUN_SECONDS, Op, OpenModel, Phase, Population, Profile
from loadtest.results import ERRORS, RunResult

#: First accesses are this share of the steady mix: enough to exercise the report/decide path
#: all along, few enough that the device records they add do not drown a real leak.
FIRST_ACCESS_SHARE: Final = 0.02
#: Percentiles each interval reports.
INTERVAL_PERCENTILES: Final = (50.0, 90.0, 99.0, 100.0)
#: The shortest sampling interval (the generator's windows are one second long).
MIN_INTERVAL_S: Final = 1.0


class SoakError(ValueError):
    """Soak settings that cannot work; the message names the option."""


def steady_profile(
    base: Profile,
    *,
    seconds: float,
    rate: float | None = None,
    first_access_share: float = FIRST_ACCESS_SHARE,
) -> Profile:
    """``base`` as one steady open-model phase of ``seconds`` at ``rate`` (default: its own).

    The mix is the base's own workload plus ``first_access_share`` of first accesses
    (``FIRST_ACCESS_SHARE`` by default); the population gets enough unseen devices for every
    first access of the run (two registered "new" ones for each unregistered one), so the run
    never runs dry. A share of 0 leaves first accesses out: no record is added during the run,
    so whatever memory still grows is not the device records (docs/reliability.md).
    """
    if not 0.0 <= first_access_share < 1.0:
        raise SoakError(f"first access share: expected 0 <= share < 1, got {first_access_share:g}")
    if not 0 < seconds <= MAX_RUN_SECONDS:
        raise SoakError(
            f"--minutes: expected more than 0 and at most {MAX_RUN_SECONDS / 60:g} minutes, "
            f"got {seconds / 60:g}"
        )
    if not isinstance(base.model, OpenModel):
        raise SoakError(f"{base.source}: the soak needs an open-model profile (model: open)")
    steady_rate = base.model.rate if rate is None else rate
    if not 0 < steady_rate <= 100_000:
        raise SoakError(f"--rate: expected 0 < rate <= 100000/s, got {steady_rate:g}")
    weights = dict(base.workload)
    weights.pop(Op.FIRST_ACCESS, None)
    others = sum(weights.values())
    if others <= 0:
        raise SoakError(f"{base.source}: workload: the soak needs sync or foldersync in the mix")
    if first_access_share > 0:
        share = first_access_share
        weights[Op.FIRST_ACCESS] = others * share / (1.0 - share)
    first_accesses = int(steady_rate * seconds * first_access_share * 1.2) + 10
    unregistered = max(base.population.unregistered, first_accesses // 3)
    new = max(base.population.new, first_accesses - unregistered)
    population: Population = attrs.evolve(base.population, new=new, unregistered=unregistered)
    phase = Phase(name="steady", duration=seconds)
    return attrs.evolve(
        base,
        name=f"soak ({base.name})",
        model=OpenModel(steady_rate),
        phases=(phase,),
        workload=tuple(weights.items()),
        population=population,
        events=(),
    )


@attrs.frozen(kw_only=True)
class ResourceReading:
    """What the measured process held ``at`` seconds into the measured run."""

    at: float
    #: Resident set size in bytes (None where /proc cannot tell).
    rss_bytes: int | None
    open_fds: int | None


@attrs.frozen(kw_only=True)
class Interval:
    """One interval of the run: the load it carried and the resources held at its end."""

    index: int
    start: float
    end: float
    finished: int
    errors: int
    #: Latency percentiles of the operations that finished in it (microseconds).
    p50_us: int | None
    p90_us: int | None
    p99_us: int | None
    max_us: int | None
    #: The generator process's mean CPU share (the lab's too when it runs in-process).
    cpu: float | None
    rss_bytes: int | None
    open_fds: int | None

    def to_json(self) -> dict[str, object]:
        return attrs.asdict(self)


def _reading_at(readings: Sequence[ResourceReading], moment: float) -> ResourceReading | None:
    """The first reading taken at or after ``moment`` (the one that closes the interval)."""
    after = [r for r in readings if r.at >= moment - 1e-6]
    if after:
        return min(after, key=lambda r: r.at)
    return max(readings, key=lambda r: r.at) if readings else None


def intervals(
    result: RunResult, readings: Sequence[ResourceReading], interval_s: float
) -> tuple[Interval, ...]:
    """Cut ``result`` into intervals of ``interval_s`` seconds (a last partial one is kept
    when it is at least half an interval long, else folded into the one before)."""
    if interval_s < MIN_INTERVAL_S:
        raise SoakError(f"--interval: expected at least {MIN_INTERVAL_S:g}s, got {interval_s:g}")
    length = result.planned_seconds or result.seconds
    count = max(1, int(length // interval_s))
    if length - count * interval_s >= interval_s / 2:
        count += 1
    out: list[Interval] = []
    for k in range(count):
        start = k * interval_s
        end = min(length, (k + 1) * interval_s) if k < count - 1 else length
        latency = Histogram()
        finished = errors = 0
        cpus: list[float] = []
        for window in result.windows:
            inside = start <= window.second < end or (k == count - 1 and window.second >= end)
            if not inside:
                continue
            latency.merge(window.latency)
            finished += sum(window.outcomes.values())
            errors += sum(n for o, n in window.outcomes.items() if o in ERRORS)
            if window.cpu is not None:
                cpus.append(window.cpu)
        pct = latency.percentiles(INTERVAL_PERCENTILES)
        reading = _reading_at(readings, end)
        out.append(
            Interval(
                index=k,
                start=start,
                end=end,
                finished=finished,
                errors=errors,
                p50_us=pct[50.0],
                p90_us=pct[90.0],
                p99_us=pct[99.0],
                max_us=pct[100.0],
                cpu=sum(cpus) / len(cpus) if cpus else None,
                rss_bytes=None if reading is None else reading.rss_bytes,
                open_fds=None if reading is None else reading.open_fds,
            )
        )
    return tuple(out)


@attrs.frozen(kw_only=True)
class Trend:
    """How one metric moved over the run."""

    metric: str
    unit: str
    first: float | None
    last: float | None
    #: Least-squares slope over every interval, per minute (None with fewer than 2 points).
    slope_per_min: float | None

    @property
    def change(self) -> float | None:
        if self.first is None or self.last is None:
            return None
        return self.last - self.first

    def to_json(self) -> dict[str, object]:
        return {**attrs.asdict(self), "change": self.change}


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(x, y)`` points; None with fewer than two distinct x."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def _rss_mib(i: Interval) -> float | None:
    return None if i.rss_bytes is None else i.rss_bytes / 2**20


def _fds(i: Interval) -> float | None:
    return None if i.open_fds is None else float(i.open_fds)


def _p50_ms(i: Interval) -> float | None:
    return None if i.p50_us is None else i.p50_us / 1000


def _p99_ms(i: Interval) -> float | None:
    return None if i.p99_us is None else i.p99_us / 1000


def _throughput(i: Interval) -> float | None:
    return i.finished / max(1e-9, i.end - i.start)


#: (metric, unit, how to read it off an interval); RSS in MiB, latency in milliseconds.
_METRICS: Final[tuple[tuple[str, str, Callable[[Interval], float | None]], ...]] = (
    ("rss", "MiB", _rss_mib),
    ("open_fds", "fds", _fds),
    ("p50", "ms", _p50_ms),
    ("p99", "ms", _p99_ms),
    ("throughput", "ops/s", _throughput),
)


def drift(parts: Sequence[Interval]) -> tuple[Trend, ...]:
    """First vs last interval and the slope per minute of every tracked metric."""
    trends: list[Trend] = []
    for metric, unit, read in _METRICS:
        values = [(i, read(i)) for i in parts]
        known = [(i, v) for i, v in values if v is not None]
        points = [((i.start + i.end) / 2 / 60.0, v) for i, v in known]
        trends.append(
            Trend(
                metric=metric,
                unit=unit,
                first=known[0][1] if known else None,
                last=known[-1][1] if known else None,
                slope_per_min=slope(points),
            )
        )
    return tuple(trends)


@attrs.frozen(kw_only=True)
class SoakReport:
    """Everything ``sentry-sim soak`` prints and writes."""

    profile: str
    target: str
    rate: float
    planned_seconds: float
    interval_s: float
    baseline: ResourceReading | None
    intervals: tuple[Interval, ...]
    trends: tuple[Trend, ...]
    finished: int
    errors: int
    valid: bool
    invalid_reasons: tuple[str, ...]
    notes: tuple[str, ...]

    def trend(self, metric: str) -> Trend:
        for t in self.trends:
            if t.metric == metric:
                return t
        raise KeyError(metric)

    def to_json(self) -> dict[str, object]:
        return {
            "profile": self.profile,
            "target": self.target,
            "rate_per_s": self.rate,
            "planned_seconds": self.planned_seconds,
            "interval_s": self.interval_s,
            "baseline": None if self.baseline is None else attrs.asdict(self.baseline),
            "finished": self.finished,
            "errors": self.errors,
            "valid": self.valid,
            "invalid_reasons": list(self.invalid_reasons),
            "intervals": [i.to_json() for i in self.intervals],
            "drift": {t.metric: t.to_json() for t in self.trends},
            "notes": list(self.notes),
        }

    def render(self) -> str:
        """The console table: one line per interval, then the drift summary."""
        lines = [
            f"soak: {self.profile} at {self.rate:g}/s for {_minutes(self.planned_seconds)} "
            f"against {self.target}; one line per {self.interval_s:g}s",
            "",
            f"{'interval':>9} {'ops':>8} {'err':>5} {'p50':>9} {'p90':>9} {'p99':>9} "
            f"{'max':>9} {'cpu':>5} {'RSS MiB':>9} {'fds':>5}",
        ]
        if self.baseline is not None:
            lines.append(
                f"{'start':>9} {'':>8} {'':>5} {'':>9} {'':>9} {'':>9} {'':>9} {'':>5} "
                f"{_mib(self.baseline.rss_bytes):>9} {_num(self.baseline.open_fds):>5}"
            )
        for i in self.intervals:
            lines.append(
                f"{_minutes(i.end):>9} {i.finished:>8} {i.errors:>5} {_ms(i.p50_us):>9} "
                f"{_ms(i.p90_us):>9} {_ms(i.p99_us):>9} {_ms(i.max_us):>9} "
                f"{_pct(i.cpu):>5} {_mib(i.rss_bytes):>9} {_num(i.open_fds):>5}"
            )
        lines += ["", "drift (first interval -> last interval; least-squares slope per minute):"]
        for t in self.trends:
            lines.append(
                f"  {t.metric:<10} {_val(t.first):>10} -> {_val(t.last):>10} {t.unit:<5} "
                f"change {_signed(t.change):>10}  slope {_signed(t.slope_per_min):>10}/min"
            )
        lines.append("")
        lines.append(
            f"{self.finished} operations, {self.errors} errors; run "
            + ("valid" if self.valid else "INVALID: " + "; ".join(self.invalid_reasons))
        )
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}m" if seconds >= 60 else f"{seconds:.0f}s"


def _ms(us: int | None) -> str:
    return "-" if us is None else f"{us / 1000:.1f}ms"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _val(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"
