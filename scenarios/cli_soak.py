"""``sentry-sim soak --minutes N``: a steady mixed load for N minutes, and a drift report.

Responsibility: the composition root of a soak. Build the steady profile
(``loadtest.soak.steady_profile`` from ``morning_rush`` or ``--profile``), start a lab in this
process (or target a running one through ``--ready-file``), run the generator, take a resource
reading (RSS, open descriptors: ``loadtest.soak_probe``) at every interval boundary, then print
the per-interval table and the drift summary and write the JSON. The arithmetic lives in
``loadtest.soak``; the load in ``loadtest.generator``.

Theory of operation: the generator reports progress once a second with the seconds elapsed
since its measured start; the reading for interval k is taken on the first progress call at or
past ``k * interval``, so readings and the generator's one-second latency windows share one
timeline. With the lab in this process the readings cover the lab and the generator together
(the report says so); with ``--ready-file`` give ``--pid`` of the lab's process to read it
instead of this one. Exit code: 0 when the run was valid and the profile's thresholds held,
1 when a threshold failed, 2 for bad input or an invalid run (the generator was the bottleneck).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import attrs

from loadtest import soak_probe
from loadtest.generator import GeneratorError, Progress, run_profile
from loadtest.profiles import Profile, ProfileError, TargetKind, load_profile
from loadtest.report import ProgressLine, Verdict, verdict
from loadtest.results import RunResult
from loadtest.soak import (
    FIRST_ACCESS_SHARE,
    ResourceReading,
    SoakError,
    SoakReport,
    drift,
    intervals,
    steady_profile,
)
from loadtest.target import Target, TargetError, read_ready_file
from loadtest.thresholds import Check, evaluate
from scenarios.cli_load import LabFaults, duration_arg, lab_for, quiet_actor_logs, rate_arg
from scenarios.lab import LabConfigError, LabError

DEFAULT_PROFILE = "morning_rush"


@attrs.define(eq=False)
class Sampler:
    """Takes a resource reading at every interval boundary of the measured run."""

    interval_s: float
    pid: int | None
    forward: ProgressLine | None
    readings: list[ResourceReading] = attrs.field(factory=list)
    _next: float = 0.0

    def __call__(self, progress: Progress) -> None:
        if not self.readings:
            # The baseline: the first second of the measured run, warm-up done.
            self.readings.append(soak_probe.read(progress.elapsed, self.pid))
            self._next = self.interval_s
        while progress.elapsed >= self._next - 0.5:
            self.readings.append(soak_probe.read(progress.elapsed, self.pid))
            self._next += self.interval_s
        if self.forward is not None:
            self.forward(progress)

    def final(self, at: float) -> None:
        """The reading after the drain (closes a last interval the progress calls missed)."""
        self.readings.append(soak_probe.read(at, self.pid))


async def _run(profile: Profile, sampler: Sampler, ready_file: str | None) -> tuple[RunResult, str]:
    if ready_file is not None:
        target = read_ready_file(ready_file)
        result = await run_profile(profile, target, on_progress=sampler)
        return result, f"the lab of {ready_file}"
    async with lab_for(profile) as lab:
        target = Target.from_mapping(lab.ready_payload(), "the embedded lab")
        result = await run_profile(
            profile, target, lab=LabFaults(lab), lab_in_process=True, on_progress=sampler
        )
        return result, "a lab in this process"


def _event_loop_run(
    profile: Profile, sampler: Sampler, ready_file: str | None
) -> tuple[RunResult, str]:
    if sys.platform != "win32":
        import uvloop

        return uvloop.run(_run(profile, sampler, ready_file))
    return asyncio.run(_run(profile, sampler, ready_file))


def build_report(
    profile: Profile,
    result: RunResult,
    readings: list[ResourceReading],
    *,
    interval_s: float,
    target: str,
    pid: int | None,
    in_process: bool,
) -> SoakReport:
    """The drift report of a finished soak (pure: everything comes in as values)."""
    parts = intervals(result, readings, interval_s)
    notes = list(result.notes)
    if in_process:
        notes.append(
            "the lab ran in this process: RSS and descriptors cover the lab and the generator"
        )
    elif pid is None:
        notes.append("no --pid given: RSS and descriptors are the generator's own, not the lab's")
    notes.append(
        "expected growth: each first access adds a device record (gatekeeper and UEM), and "
        "the generator keeps one latency window per second of the run"
    )
    rate = profile.model.rate if hasattr(profile.model, "rate") else 0.0
    return SoakReport(
        profile=profile.name,
        target=target,
        rate=float(rate),
        planned_seconds=profile.duration,
        interval_s=interval_s,
        baseline=readings[0] if readings else None,
        intervals=parts,
        trends=drift(parts),
        finished=result.overall.finished,
        errors=result.overall.errors,
        valid=result.validity.valid,
        invalid_reasons=result.validity.reasons,
        notes=tuple(notes),
    )


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of minutes, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected more than 0 minutes, got {text!r}")
    return value


def _share(text: str) -> float:
    """``--first-access-share``: a fraction of the arrivals, 0 (none) up to but not 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a fraction like 0.02 (0 <= share < 1), got {text!r}"
        ) from None
    # steady_profile needs room for the base mix: a share of 1 would leave nothing else.
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(
            f"expected 0 <= share < 1 (0 leaves first accesses out), got {text!r}"
        )
    return value


def _print_checks(checks: tuple[Check, ...]) -> None:
    for check in checks:
        mark = "ok  " if check.passed else "FAIL"
        print(f"  {mark} {check.rule}: {check.measured}")


def soak_profile(args: argparse.Namespace) -> Profile:
    """The steady profile the options ask for (``--profile``, ``--minutes``, ``--rate``,
    ``--first-access-share``); ``ProfileError``/``SoakError`` if it cannot be run."""
    return steady_profile(
        load_profile(args.profile),
        seconds=args.minutes * 60.0,
        rate=args.rate,
        first_access_share=args.first_access_share,
    )


def handle(args: argparse.Namespace) -> int:
    seconds = args.minutes * 60.0
    interval_s = args.interval if args.interval is not None else min(60.0, seconds)
    try:
        profile = soak_profile(args)
        if interval_s > seconds:
            raise SoakError(
                f"--interval: {interval_s:g}s is longer than the run ({seconds:g}s); give a "
                "shorter interval"
            )
        if interval_s < 1.0:
            raise SoakError(f"--interval: expected at least 1s, got {interval_s:g}s")
        if args.ready_file is not None:
            profile = profile.with_overrides(ready_file=args.ready_file)
    except (ProfileError, SoakError, TargetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(Verdict.INVALID)
    in_process = profile.target.kind is TargetKind.LAB
    pid = None if in_process else args.pid
    progress = None if args.quiet else ProgressLine.for_stream(sys.stderr)
    sampler = Sampler(interval_s, pid, progress)
    try:
        with quiet_actor_logs():
            result, target = _event_loop_run(profile, sampler, args.ready_file)
    except (GeneratorError, TargetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(Verdict.INVALID)
    except (LabConfigError, LabError) as exc:
        print(f"error: the soak's lab: {exc}", file=sys.stderr)
        return int(Verdict.INVALID)
    finally:
        if progress is not None:
            progress.close()
    sampler.final(result.seconds)
    report = build_report(
        profile,
        result,
        sampler.readings,
        interval_s=interval_s,
        target=target,
        pid=pid,
        in_process=in_process,
    )
    checks = evaluate(profile.rules, result)
    print(report.render())
    if checks:
        print("thresholds:")
        _print_checks(checks)
    if args.json:
        document = {**report.to_json(), "thresholds": [attrs.asdict(c) for c in checks]}
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"JSON report: {args.json}")
    return int(verdict(result, checks))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "soak",
        help="run a steady mixed load for N minutes and report drift (memory, fds, latency)",
        description="Run a steady open-model load (the morning_rush mix: syncs, folder syncs, "
        "a trickle of first accesses, held Pings) for N minutes against a lab in this process "
        "(or a running lab's --ready-file), read RSS and open file descriptors once per "
        "interval, and print per-interval latency percentiles with a drift summary (first vs "
        "last interval, least-squares slope per minute). Exit 0 when the run was valid and "
        "the profile's thresholds held, 1 when one failed, 2 for bad input or an invalid "
        "run. See docs/reliability.md.",
    )
    parser.add_argument(
        "--minutes", type=_minutes, required=True, metavar="N", help="run for N minutes (0.1 ok)"
    )
    parser.add_argument(
        "--rate", type=rate_arg, metavar="R", help="arrivals per second (default: the profile's)"
    )
    parser.add_argument(
        "--interval",
        type=duration_arg,
        metavar="TIME",
        help="sampling interval (default 1m, or the whole run when shorter), e.g. 10s",
    )
    parser.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        metavar="PROFILE",
        help=f"the profile whose mix and population to run steadily (default {DEFAULT_PROFILE})",
    )
    parser.add_argument(
        "--first-access-share",
        type=_share,
        default=FIRST_ACCESS_SHARE,
        metavar="X",
        help="fraction of arrivals that are first accesses, 0 <= X < 1 (default "
        f"{FIRST_ACCESS_SHARE:g}); 0 adds no device record during the run",
    )
    parser.add_argument("--json", metavar="OUT", help="write the drift report as JSON to OUT")
    parser.add_argument(
        "--ready-file", metavar="FILE", help="target the running lab of this ready file"
    )
    parser.add_argument(
        "--pid",
        type=int,
        metavar="PID",
        help="with --ready-file: read RSS and descriptors of this process (the lab's)",
    )
    parser.add_argument("--quiet", action="store_true", help="no live progress line")
    parser.set_defaults(func=handle)
