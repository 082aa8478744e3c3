"""``sentry-sim run``: run scenario files, narrate them, write JUnit/JSON/Mermaid, exit status.

Responsibility: load every scenario file named on the command line (a directory stands for its
``*.yaml`` files), refuse the whole run with exit status 2 if any of them is bad (each error
names the file, the step and the field), run the others one after the other, each in its own
lab on a virtual clock (``scenarios.runner``), print the narration and a readable diff for
every failed expectation, and write the requested reports. Exit 0 only if every expectation of
every scenario held; 1 otherwise. It must not hold runner logic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from scenarios.report_junit import junit_xml
from scenarios.report_mermaid import mermaid_markdown
from scenarios.runner import ScenarioResult, render_failures, run_scenarios
from scenarios.spec import Scenario, ScenarioError, load_scenario

#: Exit statuses.
EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_BAD_FILES = 2


def expand(paths: Sequence[Path]) -> list[Path]:
    """Files as given; a directory stands for its ``*.yaml`` files, sorted."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(path.glob("*.yaml"))
        else:
            out.append(path)
    return out


def load_all(paths: Sequence[Path]) -> tuple[list[Scenario], list[str]]:
    """Every scenario that loads, and one message per file that does not."""
    scenarios: list[Scenario] = []
    errors: list[str] = []
    for path in paths:
        try:
            scenarios.append(load_scenario(path))
        except ScenarioError as exc:
            errors.append(str(exc))
    return scenarios, errors


def select(scenarios: Sequence[Scenario], tags: Sequence[str]) -> list[Scenario]:
    if not tags:
        return list(scenarios)
    wanted = set(tags)
    return [s for s in scenarios if wanted & set(s.tags)]


def exit_code(results: Sequence[ScenarioResult]) -> int:
    return EXIT_PASSED if all(r.passed for r in results) else EXIT_FAILED


def report_json(results: Sequence[ScenarioResult]) -> dict[str, object]:
    return {
        "passed": all(r.passed for r in results),
        "scenarios": [r.to_json() for r in results],
        "summary": {
            "scenarios": len(results),
            "passed": sum(r.passed for r in results),
            "failed": sum(not r.passed for r in results),
            "checks": sum(r.checks for r in results),
            "failed_checks": sum(len(r.failures) for r in results),
        },
    }


def handle(args: argparse.Namespace) -> int:
    paths = expand(args.scenarios)
    if not paths:
        print("sentry-sim run: no scenario files found", file=sys.stderr)
        return EXIT_BAD_FILES
    scenarios, errors = load_all(paths)
    if errors:
        for message in errors:
            print(f"error: {message}", file=sys.stderr)
        print(
            f"sentry-sim run: {len(errors)} of {len(paths)} scenario file(s) cannot be used; "
            "nothing was run",
            file=sys.stderr,
        )
        return EXIT_BAD_FILES
    chosen = select(scenarios, args.tag or [])
    if not chosen:
        print(f"sentry-sim run: no scenario has the tag(s) {', '.join(args.tag)}", file=sys.stderr)
        return EXIT_BAD_FILES
    as_json: bool = args.json

    def narrate(line: str) -> None:
        if not as_json:
            print(line, flush=True)

    async def go() -> tuple[ScenarioResult, ...]:
        return await run_scenarios(chosen, narrate=narrate, journal=args.journal)

    results = asyncio.run(go())
    if args.junit is not None:
        args.junit.write_text(junit_xml(results), encoding="utf-8")
    if args.mermaid is not None:
        args.mermaid.write_text(mermaid_markdown(results), encoding="utf-8")
    if as_json:
        print(json.dumps(report_json(results), indent=2))
    else:
        print()
        failed = [r for r in results if not r.passed]
        for result in failed:
            for line in render_failures(result):
                print(line)
        passed = len(results) - len(failed)
        print(
            f"{passed} of {len(results)} scenario(s) passed, "
            f"{sum(r.checks for r in results)} checks, "
            f"{sum(len(r.failures) for r in results)} failed"
        )
    return exit_code(results)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "run",
        help="run scenario files (a lab per scenario, virtual clock) and check expectations",
        description=(
            "Run scenario files (docs/scenarios.md): each in a fresh lab on a virtual clock, "
            "narrated step by step, every expect: checked with a readable diff when it fails. "
            "Exit 0 only if every expectation held, 1 if any failed, 2 if a file is bad "
            "(then nothing runs). A directory stands for its *.yaml files, e.g. "
            "scenarios/library/."
        ),
    )
    parser.add_argument("scenarios", nargs="+", type=Path, metavar="FILE", help="scenario files")
    parser.add_argument("--junit", type=Path, metavar="OUT.xml", help="write JUnit XML for CI")
    parser.add_argument(
        "--json", action="store_true", help="print the run as JSON instead of the narration"
    )
    parser.add_argument(
        "--mermaid",
        type=Path,
        metavar="OUT.md",
        help="write each scenario as a Mermaid sequence diagram (Markdown)",
    )
    parser.add_argument(
        "--journal",
        type=Path,
        metavar="FILE",
        help="record a whatif journal of the reports the UEM receives (the last scenario's)",
    )
    parser.add_argument(
        "--tag", action="append", metavar="TAG", help="run only scenarios with this tag (repeat)"
    )
    parser.set_defaults(func=handle)
