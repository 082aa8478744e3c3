"""``sentry-sim load PROFILE``: run a load profile and judge it by its thresholds.

Responsibility: the composition root of a load run. Read the profile (a path, or the name of
a shipped one), apply the command-line overrides, find the target (a lab embedded in this
process and built for the profile's population, a running lab's ready file, or URLs in the
profile; loopback only), run the generator with a live progress line on stderr, print the
summary, write the JSON and HTML reports, and exit 0 (thresholds held), 1 (a threshold failed)
or 2 (invalid run, bad input). The generator, reports and rules live in ``loadtest``.

Theory of operation: for ``target: {lab: default}`` a ``scenarios.lab.Lab`` is started on
127.0.0.1 (port 0) from ``loadtest.profiles.lab_config(profile)``: one mailbox per device, the
registered groups enrolled in the UEM. ``LabFaults`` adapts it to ``loadtest.target.LabControl``
so ``uem: down``/``up`` events stop and restart the UEM's listeners.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import yaml

from loadtest.generator import GeneratorError, run_profile
from loadtest.html_report import write_html
from loadtest.profiles import (
    Profile,
    ProfileError,
    TargetKind,
    lab_config,
    load_profile,
    shipped_profiles,
)
from loadtest.report import ProgressLine, Verdict, summary, verdict, write_json
from loadtest.results import RunResult
from loadtest.target import Target, TargetError, read_ready_file
from loadtest.thresholds import evaluate
from loadtest.units import UnitError, parse_duration, parse_rate
from scenarios.lab import Lab, LabConfig, LabConfigError, LabError


@attrs.frozen
class LabFaults:
    """``loadtest.target.LabControl`` for a ``scenarios.lab.Lab``: UEM outages on demand."""

    lab: Lab

    async def set_uem_reachable(self, reachable: bool) -> None:
        if reachable:
            await self.lab.uem_online()
        else:
            await self.lab.uem_offline()


def lab_for(profile: Profile) -> Lab:
    """A lab (not yet started) built for the profile's population."""
    # No live view during a load run: folding every event for a page nobody watches would
    # skew the figures.
    config = LabConfig.from_mapping(lab_config(profile), f"{profile.source} (population)")
    return Lab(config, dashboard=False)


def _target_of(profile: Profile) -> Target:
    spec = profile.target
    if spec.kind is TargetKind.READY_FILE:
        assert spec.ready_file is not None
        return read_ready_file(spec.ready_file)
    return Target.from_mapping(spec.urls, f"{profile.source}: target")


async def _run(profile: Profile, progress: ProgressLine | None) -> RunResult:
    try:
        if profile.target.kind is not TargetKind.LAB:
            return await run_profile(profile, _target_of(profile), on_progress=progress)
        async with lab_for(profile) as lab:
            target = Target.from_mapping(lab.ready_payload(), "the embedded lab")
            return await run_profile(
                profile, target, lab=LabFaults(lab), lab_in_process=True, on_progress=progress
            )
    finally:
        if progress is not None:
            progress.close()


def _event_loop_run(profile: Profile, progress: ProgressLine | None) -> RunResult:
    # uvloop (as scenarios.serving.run) where there is one: the generator's CPU is the budget.
    if sys.platform != "win32":
        import uvloop

        return uvloop.run(_run(profile, progress))
    return asyncio.run(_run(profile, progress))


@contextlib.contextmanager
def quiet_actor_logs() -> Iterator[None]:
    """Only errors from the root logger while a run lasts, then the level it had before.

    The actors log every refused connection during a UEM outage; the run's report tells that
    story. Restoring the level keeps a caller's logging (a test's, an embedding program's)
    as it was.
    """
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(before)


def duration_arg(text: str) -> float:
    """An argparse ``type``: seconds from ``10s``/``250ms``/``2m`` (``loadtest.units``)."""
    try:
        return parse_duration(text)
    except UnitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def rate_arg(text: str) -> float:
    """An argparse ``type``: arrivals per second from ``500``/``500/s``/``30/m``."""
    try:
        return parse_rate(text)
    except UnitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def handle(args: argparse.Namespace) -> int:
    if args.list or args.profile is None:
        print("shipped profiles: " + ", ".join(shipped_profiles()))
        return 0 if args.list else 2
    try:
        profile = load_profile(args.profile).with_overrides(
            duration=args.duration,
            rate=args.rate,
            concurrency=args.concurrency,
            ready_file=args.ready_file,
        )
    except (ProfileError, TargetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(Verdict.INVALID)
    if args.write_lab_config:
        text = yaml.safe_dump(lab_config(profile), sort_keys=False)
        Path(args.write_lab_config).write_text(text, encoding="utf-8")
        print(f"wrote the lab config for {profile.name}'s population to {args.write_lab_config}")
        return 0
    progress = None if args.quiet else ProgressLine.for_stream(sys.stderr)
    try:
        with quiet_actor_logs():
            result = _event_loop_run(profile, progress)
    except (GeneratorError, TargetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(Verdict.INVALID)
    except (LabConfigError, LabError) as exc:
        print(f"error: {profile.source}: target.lab_settings: {exc}", file=sys.stderr)
        return int(Verdict.INVALID)
    checks = evaluate(profile.rules, result)
    print(summary(result, checks))
    if args.json:
        write_json(args.json, result, checks)
        print(f"JSON report: {args.json}")
    if args.html:
        write_html(args.html, result, checks)
        print(f"HTML report: {args.html}")
    return int(verdict(result, checks))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "load",
        help="run a load profile against a lab (loopback only) and check its thresholds",
        description="Run a load profile: known devices syncing (hot path), first-access "
        "storms, held Pings, a UEM outage, or a mix. Open model (constant arrival rate, "
        "latency from the scheduled start) or closed model. Exit 0 when every threshold "
        "held, 1 when one failed, 2 when the run is invalid (the generator was the "
        "bottleneck) or the input is bad. See docs/loadtest.md.",
    )
    parser.add_argument(
        "profile",
        nargs="?",
        metavar="PROFILE",
        help="a profile YAML file, or the name of a shipped one ("
        + ", ".join(shipped_profiles())
        + ")",
    )
    parser.add_argument(
        "--duration", type=duration_arg, metavar="TIME", help="run for TIME in all (e.g. 10s)"
    )
    parser.add_argument(
        "--rate", type=rate_arg, metavar="N", help="open model: arrivals per second (e.g. 500)"
    )
    parser.add_argument(
        "--concurrency", type=int, metavar="N", help="closed model: number of workers"
    )
    parser.add_argument("--json", metavar="OUT", help="write the JSON report to OUT")
    parser.add_argument("--html", metavar="OUT", help="write the HTML report (with plots) to OUT")
    parser.add_argument(
        "--ready-file",
        metavar="FILE",
        help="target the running lab of this ready file instead of the profile's target",
    )
    parser.add_argument(
        "--write-lab-config",
        metavar="FILE",
        help="write the lab config (users, registered devices) the profile's population needs, "
        "for 'sentry-sim lab --config FILE', and exit",
    )
    parser.add_argument("--quiet", action="store_true", help="no live progress line")
    parser.add_argument("--list", action="store_true", help="list the shipped profiles")
    parser.set_defaults(func=handle)
