"""``sentry-sim bench``: the gatekeeper's hot path against nginx and the backends, side by side.

Runs ``loadtest.bench.run_bench`` with the real runner (``loadtest.bench_run.SystemRunner``):
installs nginx and wrk with apt-get when missing, pins proxies and load to separate cores,
prints the table and writes the JSON report. What is measured and the targets are in
docs/performance.md. Exit code 0 when every target held, 1 when one was missed, 2 on bad
arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import attrs

from loadtest.bench import BenchReport, BenchRunner, BenchSettings, run_bench
from scenarios.cli_load import duration_arg

RunnerFactory = Callable[[], BenchRunner]


def _duration(text: str) -> float:
    try:
        value = duration_arg(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a duration like 10s or 1m, got {text!r}"
        ) from None
    if not 1 <= value <= 600:
        raise argparse.ArgumentTypeError(f"expected 1s..10m, got {text!r}")
    return value


def settings_from(args: argparse.Namespace) -> BenchSettings:
    settings = BenchSettings.quick() if args.quick else BenchSettings()
    if args.rounds is not None:
        settings = attrs.evolve(settings, rounds=args.rounds)
    if args.duration is not None:
        settings = attrs.evolve(settings, duration_s=args.duration)
    return settings


def execute(args: argparse.Namespace, make_runner: RunnerFactory) -> int:
    """Run the bench with ``make_runner()``, print and write the report."""
    report: BenchReport = run_bench(settings_from(args), make_runner())
    print(report.table(), flush=True)
    if args.json:
        Path(args.json).write_text(report.dumps() + "\n", encoding="utf-8")
        print(f"JSON report: {args.json}", flush=True)
    return 0 if all(c.ok for c in report.checks) else 1


def handle(args: argparse.Namespace) -> int:
    if args.rounds is not None and not 1 <= args.rounds <= 20:
        print(f"error: --rounds: expected 1..20, got {args.rounds}", file=sys.stderr)
        return 2
    from loadtest.bench_run import SystemRunner

    return execute(args, SystemRunner)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "bench",
        help="benchmark the gatekeeper's hot path against nginx proxy_pass and the backends",
        description="Side by side on this machine, interleaved rounds, medians and ratios: "
        "(a) a static nginx backend directly, (b) through the gatekeeper's fast lane, (c) "
        "through nginx proxy_pass with upstream keep-alive, and the mock Exchange directly vs "
        "through the gatekeeper; added p99 at half load; the device list at 1k vs 1M records; "
        "a first-access storm against a lab; the cost of held Pings. Installs nginx-light and "
        "wrk with apt-get when missing. Prints a table; --json writes the report.",
    )
    parser.add_argument("--quick", action="store_true", help="a short, smaller smoke run")
    parser.add_argument("--json", metavar="OUT", help="write the JSON report to OUT")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--duration", type=_duration, default=None, help="each wrk run, e.g. 10s (default)"
    )
    parser.set_defaults(func=handle)
