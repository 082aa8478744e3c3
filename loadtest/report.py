"""Telling people and programs how a load run went: progress line, summary, JSON, exit code.

Responsibility: render a ``RunResult`` and its threshold ``Check``s as a console summary table
and a JSON document, draw the live progress line on stderr (rewritten in place on a terminal,
a plain line every few seconds otherwise), and map the verdict to the exit code: 0 every
threshold held, 1 a threshold failed, 2 the run is invalid (the generator was the bottleneck)
or the input was bad. It must not measure or decide thresholds; the HTML report lives in
``html_report``.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Final, TextIO

import attrs

from loadtest.generator import Progress
from loadtest.results import ALL, REPORTED_PERCENTILES, Outcome, RunResult
from loadtest.thresholds import Check
from loadtest.units import format_duration, format_micros

#: Seconds between progress lines when stderr is not a terminal.
PLAIN_PROGRESS_EVERY: Final = 5


class Verdict(enum.IntEnum):
    """The exit code of ``sentry-sim load``."""

    #: Valid run, every threshold held.
    PASSED = 0
    #: Valid run, at least one threshold failed.
    FAILED = 1
    #: The generator was the bottleneck (or the input was bad): the numbers say nothing.
    INVALID = 2


def verdict(result: RunResult, checks: tuple[Check, ...]) -> Verdict:
    if not result.validity.valid:
        return Verdict.INVALID
    return Verdict.PASSED if all(c.passed for c in checks) else Verdict.FAILED


@attrs.define(eq=False)
class ProgressLine:
    """Draws ``Progress`` snapshots on ``stream``."""

    stream: TextIO
    tty: bool
    _drawn: bool = False

    @classmethod
    def for_stream(cls, stream: TextIO) -> ProgressLine:
        isatty = getattr(stream, "isatty", None)
        return cls(stream, bool(isatty and isatty()))

    def __call__(self, progress: Progress) -> None:
        line = format_progress(progress)
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self._drawn = True
        elif round(progress.elapsed) % PLAIN_PROGRESS_EVERY == 0:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def format_progress(p: Progress) -> str:
    cpu = "-" if p.cpu is None else f"{p.cpu:.0%}"
    pings = f"  held pings {p.held_pings}" if p.held_pings else ""
    return (
        f"[{p.elapsed:5.1f}s/{p.planned:g}s] {p.phase}: {p.finished} done  "
        f"{p.last_second}/s  p99 {format_micros(p.last_p99)}  errors {p.errors}  "
        f"in flight {p.in_flight}{pings}  cpu {cpu}"
    )


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [_row(header, widths), _row(["-" * w for w in widths], widths)] + [
        _row(r, widths) for r in rows
    ]


def summary(result: RunResult, checks: tuple[Check, ...]) -> str:
    """The console summary: run facts, latency table, outcomes, decisions, thresholds, verdict."""
    lines = [
        f"profile {result.profile}: {result.model}, {format_duration(result.seconds)} measured"
        + (
            f" (planned {format_duration(result.planned_seconds)})"
            if result.planned_seconds
            else ""
        ),
    ]
    if result.warmup is not None and result.warmup.devices:
        w = result.warmup
        lines.append(
            f"warm-up: {w.ready} of {w.devices} devices ready in {format_duration(w.seconds)}"
        )
    lines.append(
        f"throughput {result.throughput():.1f}/s   error rate {result.error_rate():.4g}   "
        f"dispatched {result.dispatched}"
    )
    lines.append("")
    header = ["operation", "done", "errors", *(f"p{p:g}" for p in REPORTED_PERCENTILES)]
    header += ["max", "mean", "service p99"]
    rows = []
    names = [*sorted(n for n in result.ops if n != "ping"), ALL]
    if "ping" in result.ops:
        names.append("ping")
    for name in names:
        stats = result.stats(name)
        if stats is None:
            continue
        pct = stats.latency.percentiles(REPORTED_PERCENTILES)
        rows.append(
            [
                name,
                str(stats.finished),
                str(stats.errors),
                *(format_micros(pct[p]) for p in REPORTED_PERCENTILES),
                format_micros(stats.latency.max),
                format_micros(stats.latency.mean),
                format_micros(stats.service.percentile(99.0)),
            ]
        )
    lines += _table(header, rows)
    lines.append(
        "latency runs from each operation's scheduled start (coordinated omission "
        "corrected); service time from when it was sent"
    )
    lines.append("")
    outcome_parts = []
    for name in names:
        stats = result.stats(name)
        if stats is None or name == ALL:
            continue
        counts = ", ".join(f"{o.value} {stats.outcomes[o]}" for o in Outcome if stats.outcomes[o])
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(stats.codes.items()))
        outcome_parts.append(f"  {name}: {counts}" + (f"  [{codes}]" if codes else ""))
    lines.append("outcomes:")
    lines += outcome_parts or ["  none"]
    decisions = [
        f"  {c.value}: {len(t.allowed)} allowed, {len(t.blocked)} blocked, "
        f"{len(t.undecided - t.allowed - t.blocked)} never answered"
        for c, t in result.decisions.items()
        if t.allowed or t.blocked or t.undecided
    ]
    if decisions:
        lines.append("decisions per device:")
        lines += decisions
    v = result.validity
    cpu = "-" if v.cpu_mean is None else f"mean {v.cpu_mean:.0%}, max {v.cpu_max or 0:.0%}"
    lag = "-" if v.lag_p99 is None else f"p99 {format_duration(v.lag_p99)}"
    lines.append(f"generator: cpu {cpu} of one core; schedule lag {lag}")
    for marker in result.markers:
        if not marker.label.startswith("phase "):
            lines.append(f"event at {format_duration(marker.at)}: {marker.label}")
    for note in result.notes:
        lines.append(f"note: {note}")
    if checks:
        lines.append("")
        lines.append("thresholds:")
        for check in checks:
            mark = "PASS" if check.passed else "FAIL"
            lines.append(f"  {mark}  {check.rule}  (measured {check.measured})")
    lines.append("")
    outcome = verdict(result, checks)
    if outcome is Verdict.INVALID:
        lines.append("INVALID RUN: the numbers above describe the load generator, not the target:")
        lines += [f"  - {reason}" for reason in v.reasons]
    elif outcome is Verdict.FAILED:
        failed = sum(not c.passed for c in checks)
        lines.append(f"FAILED: {failed} of {len(checks)} thresholds did not hold")
    else:
        lines.append(
            "PASSED" + (f": all {len(checks)} thresholds held" if checks else " (no thresholds)")
        )
    return "\n".join(lines)


def to_json(result: RunResult, checks: tuple[Check, ...]) -> dict[str, object]:
    data = result.to_json()
    data["thresholds"] = [attrs.asdict(c) for c in checks]
    data["verdict"] = verdict(result, checks).name.lower()
    data["exit_code"] = int(verdict(result, checks))
    return data


def write_json(path: str | Path, result: RunResult, checks: tuple[Check, ...]) -> None:
    Path(path).write_text(json.dumps(to_json(result, checks), indent=2) + "\n", encoding="utf-8")
