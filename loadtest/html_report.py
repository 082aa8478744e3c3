"""The self-contained HTML report of a load run: tables and inline SVG plots, no scripts.

Responsibility: one HTML file that opens anywhere offline (no CDN, no JavaScript, no external
file): the verdict, thresholds, the latency table, and five plots drawn here as SVG: latency
percentiles over time, throughput over time, outcomes over time, the latency distribution
(percentile spectrum) and the generator's CPU. It must not compute anything the ``RunResult``
does not hold.

Theory of operation: ``_Chart`` maps data to a fixed 760x260 viewport (linear x; linear or
log10 y), draws axes with round ticks, polylines or stacked bars, and vertical markers for
events and phase boundaries. Every text that comes from the run is escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import attrs

from loadtest.report import summary, verdict
from loadtest.results import ALL, REPORTED_PERCENTILES, Outcome, RunResult
from loadtest.thresholds import Check
from loadtest.units import format_duration, format_micros

WIDTH: Final = 760
HEIGHT: Final = 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 40
COLORS: Final = ("#1b6ca8", "#e07b00", "#2e9d4a", "#c0392b", "#7d3c98", "#7f8c8d")
OUTCOME_COLORS: Final = {
    Outcome.OK: "#2e9d4a",
    Outcome.PROVISIONING: "#7fc97f",
    Outcome.BLOCKED: "#7d3c98",
    Outcome.HTTP_ERROR: "#c0392b",
    Outcome.TIMEOUT: "#e07b00",
    Outcome.CONNECTION_ERROR: "#8b0000",
    Outcome.DROPPED: "#444444",
    Outcome.SKIPPED: "#bbbbbb",
}
#: Percentiles of the distribution plot (the "percentile spectrum").
SPECTRUM: Final = (0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0)

Point = tuple[float, float]


@attrs.frozen
class Series:
    name: str
    color: str
    points: tuple[Point, ...]


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


@attrs.define
class _Chart:
    x_max: float
    y_max: float
    y_min: float = 0.0
    log_y: bool = False
    x_label: str = ""
    y_label: str = ""
    parts: list[str] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        if self.log_y:
            self.y_min = max(self.y_min, 1e-9)
            self.y_max = max(self.y_max, self.y_min * 10)
        elif self.y_max <= self.y_min:
            self.y_max = self.y_min + 1.0
        self.x_max = max(self.x_max, 1e-9)

    def x(self, value: float) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * min(max(value / self.x_max, 0.0), 1.0)

    def y(self, value: float) -> float:
        span = HEIGHT - TOP - BOTTOM
        if self.log_y:
            value = max(value, self.y_min)
            lo, hi = math.log10(self.y_min), math.log10(self.y_max)
            frac = (math.log10(value) - lo) / (hi - lo)
        else:
            frac = (value - self.y_min) / (self.y_max - self.y_min)
        return TOP + span * (1.0 - min(max(frac, 0.0), 1.0))

    def axes(self, x_ticks: Sequence[tuple[float, str]], y_format: str = "{:g}") -> None:
        p = self.parts
        bottom = HEIGHT - BOTTOM
        p.append(
            f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" class="axis"/>'
        )
        p.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" class="axis"/>')
        for value, label in x_ticks:
            x = self.x(value)
            p.append(
                f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" class="axis"/>'
            )
            p.append(
                f'<text x="{x:.1f}" y="{bottom + 16}" class="tick" text-anchor="middle">'
                f"{html.escape(label)}</text>"
            )
        if self.log_y:
            decades = range(
                math.floor(math.log10(self.y_min)), math.ceil(math.log10(self.y_max)) + 1
            )
            y_values = [10.0**d for d in decades if self.y_min <= 10.0**d <= self.y_max]
        else:
            y_values = _nice_ticks(self.y_min, self.y_max)
        for value in y_values:
            y = self.y(value)
            p.append(
                f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" class="grid"/>'
            )
            p.append(
                f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
                f"{html.escape(y_format.format(value))}</text>"
            )
        p.append(
            f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 4}" class="label" '
            f'text-anchor="middle">{html.escape(self.x_label)}</text>'
        )
        p.append(
            f'<text x="12" y="{(TOP + HEIGHT - BOTTOM) / 2}" class="label" '
            f'text-anchor="middle" transform="rotate(-90 12 {(TOP + HEIGHT - BOTTOM) / 2})">'
            f"{html.escape(self.y_label)}</text>"
        )

    def line(self, series: Series) -> None:
        if not series.points:
            return
        coords = " ".join(f"{self.x(x):.1f},{self.y(y):.1f}" for x, y in series.points)
        self.parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{series.color}" '
            f'stroke-width="1.8"><title>{html.escape(series.name)}</title></polyline>'
        )

    def markers(self, marks: Sequence[tuple[float, str]]) -> None:
        for at, label in marks:
            x = self.x(at)
            self.parts.append(
                f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{HEIGHT - BOTTOM}" class="marker">'
                f"<title>{html.escape(label)}</title></line>"
            )
            self.parts.append(
                f'<text x="{x + 3:.1f}" y="{TOP + 10}" class="mark">{html.escape(label)}</text>'
            )

    def svg(self, title: str, legend: Sequence[tuple[str, str]]) -> str:
        keys = "".join(
            f'<span class="key"><span class="swatch" style="background:{color}"></span>'
            f"{html.escape(name)}</span>"
            for name, color in legend
        )
        return (
            f"<figure><figcaption>{html.escape(title)}</figcaption>"
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{html.escape(title)}">'
            + "".join(self.parts)
            + f'</svg><div class="legend">{keys}</div></figure>'
        )


def _time_ticks(seconds: float) -> list[tuple[float, str]]:
    return [(t, f"{t:g}s") for t in _nice_ticks(0.0, max(seconds, 1.0), 8)]


def _marks(result: RunResult) -> list[tuple[float, str]]:
    return [(m.at, m.label) for m in result.markers if m.at > 0 or not m.label.startswith("phase")]


def latency_over_time(result: RunResult) -> str:
    """p50/p90/p99/max latency of each second (ms, log scale)."""
    wanted = ((50.0, "p50"), (90.0, "p90"), (99.0, "p99"), (100.0, "max"))
    series = []
    for (p, name), color in zip(wanted, COLORS, strict=False):
        points = []
        for w in result.windows:
            value = w.latency.percentile(p) if w.latency.total else None
            if value is not None:
                points.append((w.second + 0.5, value / 1000.0))
        series.append(Series(name, color, tuple(points)))
    values = [y for s in series for _, y in s.points]
    chart = _Chart(
        x_max=max(result.seconds, 1.0),
        y_min=min(values, default=0.01) / 2 if values else 0.01,
        y_max=max(values, default=1.0) * 1.5,
        log_y=True,
        x_label="seconds into the run",
        y_label="latency (ms, log)",
    )
    chart.axes(_time_ticks(result.seconds), "{:g}")
    for s in series:
        chart.line(s)
    chart.markers(_marks(result))
    return chart.svg("Latency percentiles per second", [(s.name, s.color) for s in series])


def throughput_over_time(result: RunResult) -> str:
    finished = Series(
        "finished/s",
        COLORS[0],
        tuple((w.second + 0.5, float(sum(w.outcomes.values()))) for w in result.windows),
    )
    dispatched = Series(
        "scheduled/s",
        COLORS[1],
        tuple((w.second + 0.5, float(w.dispatched)) for w in result.windows),
    )
    pings = Series(
        "held Pings returned/s",
        COLORS[2],
        tuple((w.second + 0.5, float(w.pings)) for w in result.windows),
    )
    shown = [s for s in (finished, dispatched, pings) if any(y for _, y in s.points)]
    top = max((y for s in shown for _, y in s.points), default=1.0)
    chart = _Chart(
        x_max=max(result.seconds, 1.0),
        y_max=top * 1.1,
        x_label="seconds into the run",
        y_label="operations per second",
    )
    chart.axes(_time_ticks(result.seconds))
    for s in shown:
        chart.line(s)
    chart.markers(_marks(result))
    return chart.svg("Throughput", [(s.name, s.color) for s in shown])


def outcomes_over_time(result: RunResult) -> str:
    """Stacked bars: each second's finished operations by outcome."""
    top = max((sum(w.outcomes.values()) for w in result.windows), default=1)
    seconds = max(result.seconds, float(len(result.windows)), 1.0)
    chart = _Chart(
        x_max=seconds, y_max=top * 1.1, x_label="seconds into the run", y_label="operations"
    )
    chart.axes(_time_ticks(seconds))
    bar = (WIDTH - LEFT - RIGHT) / seconds * 0.8
    used: list[Outcome] = []
    for w in result.windows:
        base = 0.0
        for outcome in Outcome:
            n = w.outcomes[outcome]
            if not n:
                continue
            if outcome not in used:
                used.append(outcome)
            y_top, y_bottom = chart.y(base + n), chart.y(base)
            chart.parts.append(
                f'<rect x="{chart.x(w.second + 0.1):.1f}" y="{y_top:.1f}" width="{bar:.1f}" '
                f'height="{max(0.5, y_bottom - y_top):.1f}" fill="{OUTCOME_COLORS[outcome]}">'
                f"<title>{w.second}s: {outcome.value} {n}</title></rect>"
            )
            base += n
    chart.markers(_marks(result))
    legend = [(o.value, OUTCOME_COLORS[o]) for o in used]
    totals = ", ".join(
        f"{o.value} {result.overall.outcomes[o]}" for o in Outcome if result.overall.outcomes[o]
    )
    return chart.svg(f"Outcomes per second ({totals or 'none'})", legend)


def _spectrum_x(p: float) -> float:
    """Percentile -> x position: log10(1 / (1 - p)), so 90, 99, 99.9 are evenly spaced."""
    return math.log10(1.0 / max(1e-4, 1.0 - p / 100.0))


def latency_distribution(result: RunResult) -> str:
    """Latency by percentile for each operation (the HDR percentile spectrum)."""
    names = [n for n in sorted(result.ops)] + ([ALL] if len(result.ops) > 1 else [])
    series = []
    for name, color in zip(names, COLORS, strict=False):
        stats = result.stats(name)
        if stats is None or not stats.latency.total:
            continue
        pct = stats.latency.percentiles(SPECTRUM)
        points = tuple((_spectrum_x(p), v / 1000.0) for p, v in pct.items() if v is not None)
        series.append(Series(name, color, points))
    values = [y for s in series for _, y in s.points]
    chart = _Chart(
        x_max=_spectrum_x(99.99),
        y_min=max(min(values, default=0.01) / 2, 1e-3),
        y_max=max(values, default=1.0) * 1.5,
        log_y=True,
        x_label="percentile",
        y_label="latency (ms, log)",
    )
    ticks = [(_spectrum_x(p), f"{p:g}") for p in (0.0, 90.0, 99.0, 99.9, 99.99)]
    chart.axes(ticks)
    for s in series:
        chart.line(s)
    return chart.svg(
        "Latency distribution (percentile spectrum)", [(s.name, s.color) for s in series]
    )


def cpu_over_time(result: RunResult) -> str:
    points = tuple((w.second + 0.5, w.cpu * 100.0) for w in result.windows if w.cpu is not None)
    ceiling = result.limits.max_cpu * 100.0
    limit = Series(
        "invalid above", COLORS[3], ((0.0, ceiling), (max(result.seconds, 1.0), ceiling))
    )
    cpu = Series("generator process CPU % of one core", COLORS[0], points)
    chart = _Chart(
        x_max=max(result.seconds, 1.0),
        y_max=max([110.0, *(y for _, y in points)]),
        x_label="seconds into the run",
        y_label="% of one core",
    )
    chart.axes(_time_ticks(result.seconds))
    chart.line(cpu)
    chart.line(limit)
    chart.markers(_marks(result))
    return chart.svg("Generator CPU", [(cpu.name, cpu.color), (limit.name, limit.color)])


_STYLE: Final = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;
max-width:820px;color:#222}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.verdict{padding:10px 14px;border-radius:6px;font-weight:600;margin:12px 0}
.passed{background:#e6f4ea;color:#1e6b34}.failed{background:#fdecea;color:#a12622}
.invalid{background:#fff4e5;color:#8a4b00}
table{border-collapse:collapse;margin:6px 0;font-variant-numeric:tabular-nums}
td,th{padding:3px 10px;border-bottom:1px solid #e3e3e3;text-align:right}
td:first-child,th:first-child{text-align:left}
figure{margin:18px 0} figcaption{font-weight:600;margin-bottom:4px}
svg{background:#fcfcfc;border:1px solid #e6e6e6;max-width:100%;height:auto}
.axis{stroke:#555;stroke-width:1}.grid{stroke:#e8e8e8;stroke-width:1}
.marker{stroke:#888;stroke-dasharray:4 3}.mark{font-size:10px;fill:#555}
.tick{font-size:11px;fill:#444}.label{font-size:12px;fill:#333}
.legend{font-size:12px;margin-top:4px}.key{margin-right:14px;white-space:nowrap}
.swatch{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
pre{background:#f6f6f6;padding:10px;overflow:auto;font-size:12px}
"""


def render(result: RunResult, checks: tuple[Check, ...]) -> str:
    """The whole report as one HTML document."""
    outcome = verdict(result, checks)
    cls = outcome.name.lower()
    headline = {
        "passed": "PASSED" + (f": all {len(checks)} thresholds held" if checks else ""),
        "failed": f"FAILED: {sum(not c.passed for c in checks)} of {len(checks)} thresholds "
        "did not hold",
        "invalid": "INVALID RUN: the load generator was the bottleneck",
    }[cls]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>sentry-sim load: {html.escape(result.profile)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Load run: {html.escape(result.profile)}</h1>",
        f"<div>{html.escape(result.model)}; {format_duration(result.seconds)} measured; "
        f"{result.throughput():.1f} operations/s; error rate {result.error_rate():.4g}</div>",
        f"<div class='verdict {cls}'>{html.escape(headline)}</div>",
    ]
    if result.validity.reasons:
        parts.append(
            "<ul>"
            + "".join(f"<li>{html.escape(r)}</li>" for r in result.validity.reasons)
            + "</ul>"
        )
    if checks:
        parts.append(
            "<h2>Thresholds</h2><table><tr><th>rule</th><th>result</th><th>measured</th></tr>"
        )
        for c in checks:
            parts.append(
                f"<tr><td>{html.escape(c.rule)}</td><td>{'PASS' if c.passed else 'FAIL'}</td>"
                f"<td>{html.escape(c.measured)}</td></tr>"
            )
        parts.append("</table>")
    parts.append("<h2>Latency</h2><table><tr><th>operation</th><th>done</th><th>errors</th>")
    parts += [f"<th>p{p:g}</th>" for p in REPORTED_PERCENTILES]
    parts.append("<th>max</th><th>mean</th></tr>")
    for name in [*sorted(result.ops), ALL]:
        stats = result.stats(name)
        if stats is None:
            continue
        pct = stats.latency.percentiles(REPORTED_PERCENTILES)
        cells = [name, str(stats.finished), str(stats.errors)]
        cells += [format_micros(pct[p]) for p in REPORTED_PERCENTILES]
        cells += [format_micros(stats.latency.max), format_micros(stats.latency.mean)]
        parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    parts.append(
        "</table><p>Latency runs from each operation's scheduled start, so time spent "
        "queued behind a slow target counts (coordinated omission corrected). "
        "&quot;all&quot; excludes held Pings, whose latency is their heartbeat.</p>"
    )
    parts.append("<h2>Plots</h2>")
    parts.append(latency_over_time(result))
    parts.append(throughput_over_time(result))
    parts.append(outcomes_over_time(result))
    parts.append(latency_distribution(result))
    parts.append(cpu_over_time(result))
    parts.append("<h2>Console summary</h2><pre>" + html.escape(summary(result, checks)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(path: str | Path, result: RunResult, checks: tuple[Check, ...]) -> None:
    Path(path).write_text(render(result, checks), encoding="utf-8")
