"""``sentry-sim bench``: the comparative benchmark of the gatekeeper's hot path, and its report.

Responsibility: decide what is measured and how it is judged (docs/performance.md, issue 5
items 5-6), independent of how the measuring is done. ``run_bench`` drives a ``BenchRunner``
(``bench_run.SystemRunner`` starts nginx, wrk, the gatekeeper, the mocks; tests give a fake)
through interleaved rounds, takes medians and ratios, checks them against the targets, and
returns a ``BenchReport`` that prints as a table and serialises as JSON. It must not start
processes or sockets itself, and must not judge anything the runner did not measure.

Theory of operation:
- Throughput: wrk against (a) the static backend directly, (b) the gatekeeper's fast lane in
  front of it, with and without hot-path events, (c) nginx ``proxy_pass`` with upstream
  keep-alive in front of the same backend; then (d) the mock Exchange directly and (e) through
  the gatekeeper. Each round runs every configuration once, in that order, so drift of the
  shared machine hits all of them alike; the medians over rounds give the ratios.
- Latency: wrk paced (``delay()`` in its script) at half the gatekeeper's median maximum, to
  the backend directly and through the gatekeeper; the added p99 is the difference.
- Device list: the lookup path (request line -> record -> verdict) with 1k and 1M records
  in memory, and the bytes each record costs (RSS delta and tracemalloc).
- First-access storm: N new devices against the UEM and the gatekeeper as deployed (each in
  its own process, pinned); decisions per second and the UEM's count of reports per device
  (each must be 1); the same storm against an in-process lab as a second, unjudged line.
- Held Pings: hot-path throughput with N Pings held open through the gatekeeper vs none.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, Final, Protocol

import attrs

#: The issue's targets (item 6).
TARGET_VS_NGINX: Final = 0.5
TARGET_VS_EXCHANGE: Final = 0.8
TARGET_ADDED_P99_MS: Final = 1.0
TARGET_1M_VS_1K: Final = 0.95
TARGET_BYTES_PER_RECORD: Final = 300.0
TARGET_STORM_RATE: Final = 2000.0
TARGET_PING_COST: Final = 0.10

#: Throughput configurations, in the order each round runs them.
STATIC: Final = ("backend", "sentry", "sentry_no_events", "nginx")
EXCHANGE: Final = ("exchange", "sentry_exchange")


@attrs.frozen(kw_only=True)
class BenchSettings:
    """How long and how much to measure."""

    rounds: int = 3
    duration_s: float = 10.0
    connections: int = 32
    storm_devices: int = 10_000
    held_pings: int = 10_000
    list_sizes: tuple[int, int] = (1_000, 1_000_000)

    @classmethod
    def quick(cls) -> BenchSettings:
        """A smoke run: every part measured, briefly and smaller."""
        return cls(
            rounds=1,
            duration_s=3.0,
            storm_devices=2_000,
            held_pings=2_000,
            list_sizes=(1_000, 100_000),
        )


@attrs.frozen(kw_only=True)
class WrkResult:
    """What one wrk run reported."""

    requests_per_s: float
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0

    @classmethod
    def from_output(cls, text: str) -> WrkResult:
        """Read wrk's text output (``--latency`` adds the percentiles)."""
        rate = re.search(r"Requests/sec:\s*([\d.]+)", text)
        if rate is None:
            raise ValueError(f"wrk output: expected 'Requests/sec:', got {text[-300:]!r}")
        percentiles = {
            p: _ms(float(v), unit)
            for p, v, unit in re.findall(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\b", text, re.M)
        }
        errors = sum(
            int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text)
        ) + sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", text))
        return cls(
            requests_per_s=float(rate.group(1)),
            p50_ms=percentiles.get("50", 0.0),
            p99_ms=percentiles.get("99", 0.0),
            errors=errors,
        )


def _ms(value: float, unit: str) -> float:
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


@attrs.frozen(kw_only=True)
class LookupResult:
    """The device list's lookup path with ``records`` records."""

    records: int
    #: The lookup path alone: request line -> record -> verdict.
    lookups_per_s: float
    #: The lane's whole request cycle in process (parse, verdict, heads, relay).
    requests_per_s: float
    bytes_per_record: float


@attrs.frozen(kw_only=True)
class StormResult:
    """A first-access storm: N new devices, each sending one first request.

    ``mode`` "deployed": ``sentry-sim uem``, ``sentry-sim sentry`` and the load generator in
    processes of their own, pinned as ``placement`` says; "lab": the UEM and the gatekeeper
    in one in-process lab. Reports are counted at the UEM, per device.
    """

    devices: int
    seconds: float
    reports: int
    reported_twice: int
    never_reported: int
    failed_requests: int
    mode: str = "lab"
    placement: str = ""
    #: CPU time each process spent per decision, in ms (deployed mode).
    cpu_ms_per_decision: dict[str, float] = attrs.field(factory=dict)

    @property
    def decisions_per_s(self) -> float:
        return self.devices / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        where = f"{self.mode}" + (f", {self.placement}" if self.placement else "")
        cpu = ", ".join(f"{k} {v:.3f}" for k, v in self.cpu_ms_per_decision.items())
        return (
            f"first-access storm {self.devices:,} devices ({where}): "
            f"{self.decisions_per_s:,.0f} decisions/s, {self.reports:,} reports "
            f"({self.reported_twice} twice, {self.never_reported} never, "
            f"{self.failed_requests} failed requests)"
            + (f"; CPU ms/decision: {cpu}" if cpu else "")
        )


class BenchRunner(Protocol):
    """Who does the measuring (processes, sockets); ``run_bench`` only asks."""

    def prepare(self) -> list[str]:
        """Install or find the tools, start what every part needs; return notes for the report."""
        ...

    def close(self) -> None: ...

    def wrk(self, target: str, *, duration_s: float, connections: int) -> WrkResult:
        """Maximum-throughput wrk run against ``target`` (a name of ``STATIC``/``EXCHANGE``)."""
        ...

    def paced(self, target: str, *, rate: float, duration_s: float) -> WrkResult:
        """wrk at about ``rate`` requests/s against ``target`` (latency, not throughput)."""
        ...

    def lookup(self, records: int) -> LookupResult: ...

    def storm(self, devices: int) -> StormResult:
        """The storm as deployed: UEM, gatekeeper and load generator in separate processes."""
        ...

    def storm_lab(self, devices: int) -> StormResult:
        """The same storm against an in-process lab (the second, for comparison, line)."""
        ...

    def held_pings(self, count: int) -> AbstractContextManager[int]:
        """Hold ``count`` Pings through the ping gatekeeper while the block runs (yields how
        many are held)."""
        ...

    def ping_gatekeeper_wrk(self, *, duration_s: float, connections: int) -> WrkResult:
        """wrk against the gatekeeper whose upstream holds Pings (non-Ping requests)."""
        ...


@attrs.frozen(kw_only=True)
class Check:
    """One target of the issue and how the measurement compares."""

    name: str
    value: float
    target: float
    #: ">=" or "<=".
    op: str
    unit: str = ""

    @property
    def ok(self) -> bool:
        return self.value >= self.target if self.op == ">=" else self.value <= self.target


@attrs.define(kw_only=True)
class BenchReport:
    """Every figure measured, the ratios, the checks, and notes on how."""

    settings: BenchSettings
    notes: list[str] = attrs.field(factory=list)
    rounds: dict[str, list[WrkResult]] = attrs.field(factory=dict)
    medians: dict[str, float] = attrs.field(factory=dict)
    latency: dict[str, WrkResult] = attrs.field(factory=dict)
    lookups: list[LookupResult] = attrs.field(factory=list)
    storm: StormResult | None = None
    storm_lab: StormResult | None = None
    pings: dict[str, Any] = attrs.field(factory=dict)
    checks: list[Check] = attrs.field(factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": attrs.asdict(self.settings),
            "notes": self.notes,
            "throughput": {
                name: {
                    "median_requests_per_s": self.medians.get(name),
                    "rounds": [attrs.asdict(r) for r in runs],
                }
                for name, runs in self.rounds.items()
            },
            "latency": {name: attrs.asdict(r) for name, r in self.latency.items()},
            "device_list": [attrs.asdict(r) for r in self.lookups],
            "storm": _storm_json(self.storm),
            "storm_lab": _storm_json(self.storm_lab),
            "held_pings": self.pings,
            "checks": [{**attrs.asdict(c), "ok": c.ok} for c in self.checks],
        }

    def table(self) -> str:
        lines = ["sentry-sim bench", ""]
        if self.medians:
            lines.append(f"{'throughput (median of rounds)':<40}{'req/s':>12}")
            for name, value in self.medians.items():
                lines.append(f"  {name:<38}{value:>12,.0f}")
            lines.append("")
        for name, result in self.latency.items():
            lines.append(
                f"  latency {name:<30}p50 {result.p50_ms:6.2f} ms   p99 {result.p99_ms:6.2f} ms"
                f"   at {result.requests_per_s:,.0f} req/s"
            )
        for lookup in self.lookups:
            lines.append(
                f"  device list {lookup.records:>9,} records: {lookup.requests_per_s:>9,.0f} "
                f"requests/s in process, {lookup.lookups_per_s:>9,.0f} lookups/s, "
                f"{lookup.bytes_per_record:4.0f} bytes/record"
            )
        for storm in (self.storm, self.storm_lab):
            if storm is not None:
                lines.append(f"  {storm.line()}")
        if self.pings:
            lines.append(
                f"  held Pings: {self.pings.get('held', 0):,} held; hot path "
                f"{self.pings.get('without', 0):,.0f} -> {self.pings.get('with', 0):,.0f} req/s"
            )
        lines += ["", f"{'target':<52}{'measured':>12}  {'goal':>10}  result"]
        for c in self.checks:
            lines.append(
                f"  {c.name:<50}{c.value:>12.3f}  {c.op}{c.target:>8.3g}  "
                f"{'ok' if c.ok else 'MISSED'}"
            )
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True)


def _storm_json(storm: StormResult | None) -> dict[str, Any] | None:
    if storm is None:
        return None
    return {**attrs.asdict(storm), "decisions_per_s": storm.decisions_per_s}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def run_bench(settings: BenchSettings, runner: BenchRunner) -> BenchReport:
    """Measure everything ``settings`` asks for through ``runner`` and judge it."""
    report = BenchReport(settings=settings)
    report.notes += runner.prepare()
    try:
        _throughput(settings, runner, report)
        _latency(settings, runner, report)
        for size in settings.list_sizes:
            report.lookups.append(runner.lookup(size))
        report.storm = runner.storm(settings.storm_devices)
        report.storm_lab = runner.storm_lab(settings.storm_devices)
        _pings(settings, runner, report)
    finally:
        runner.close()
    report.checks = list(_checks(report))
    return report


def _throughput(settings: BenchSettings, runner: BenchRunner, report: BenchReport) -> None:
    for name in (*STATIC, *EXCHANGE):
        report.rounds[name] = []
    for _ in range(settings.rounds):
        for name in (*STATIC, *EXCHANGE):
            result = runner.wrk(
                name, duration_s=settings.duration_s, connections=settings.connections
            )
            report.rounds[name].append(result)
    for name, runs in report.rounds.items():
        report.medians[name] = median([r.requests_per_s for r in runs])


def _latency(settings: BenchSettings, runner: BenchRunner, report: BenchReport) -> None:
    half = report.medians.get("sentry", 0.0) / 2
    if half <= 0:
        return
    for name in ("backend", "sentry"):
        report.latency[name] = runner.paced(name, rate=half, duration_s=settings.duration_s)


def _pings(settings: BenchSettings, runner: BenchRunner, report: BenchReport) -> None:
    without: list[float] = []
    with_pings: list[float] = []
    held: list[int] = []
    for _ in range(settings.rounds):
        without.append(
            runner.ping_gatekeeper_wrk(
                duration_s=settings.duration_s, connections=settings.connections
            ).requests_per_s
        )
        with runner.held_pings(settings.held_pings) as holding:
            held.append(holding)
            with_pings.append(
                runner.ping_gatekeeper_wrk(
                    duration_s=settings.duration_s, connections=settings.connections
                ).requests_per_s
            )
    report.pings = {
        "asked": settings.held_pings,
        "held": min(held, default=0),
        "without": median(without),
        "with": median(with_pings),
        "rounds_without": without,
        "rounds_with": with_pings,
    }


def _checks(report: BenchReport) -> Iterator[Check]:
    m = report.medians
    if m:
        yield Check(
            name="hot path vs nginx proxy_pass",
            value=ratio(m.get("sentry", 0), m.get("nginx", 0)),
            target=TARGET_VS_NGINX,
            op=">=",
        )
        yield Check(
            name="hot path (no events) vs nginx proxy_pass",
            value=ratio(m.get("sentry_no_events", 0), m.get("nginx", 0)),
            target=TARGET_VS_NGINX,
            op=">=",
        )
        yield Check(
            name="through gatekeeper vs mock Exchange directly",
            value=ratio(m.get("sentry_exchange", 0), m.get("exchange", 0)),
            target=TARGET_VS_EXCHANGE,
            op=">=",
        )
    lat = report.latency
    if "backend" in lat and "sentry" in lat:
        yield Check(
            name="added p99 at half the maximum load (ms)",
            value=lat["sentry"].p99_ms - lat["backend"].p99_ms,
            target=TARGET_ADDED_P99_MS,
            op="<=",
            unit="ms",
        )
    if len(report.lookups) == 2:
        small, big = report.lookups
        yield Check(
            name=f"{big.records:,} vs {small.records:,} records (hot path req/s)",
            value=ratio(big.requests_per_s, small.requests_per_s),
            target=TARGET_1M_VS_1K,
            op=">=",
        )
        yield Check(
            name=f"bytes per record at {big.records:,}",
            value=big.bytes_per_record,
            target=TARGET_BYTES_PER_RECORD,
            op="<=",
            unit="B",
        )
    storm = report.storm
    if storm is not None:
        yield Check(
            name=f"first-access storm of {storm.devices:,} (decisions/s)",
            value=storm.decisions_per_s,
            target=TARGET_STORM_RATE,
            op=">=",
        )
        yield Check(
            name="devices not reported exactly once",
            value=float(storm.reported_twice + storm.never_reported),
            target=0.0,
            op="<=",
        )
    pings: Mapping[str, Any] = report.pings
    if pings and pings.get("without"):
        yield Check(
            name=f"cost of {pings['held']:,} held Pings on the hot path",
            value=1 - ratio(float(pings["with"]), float(pings["without"])),
            target=TARGET_PING_COST,
            op="<=",
        )
