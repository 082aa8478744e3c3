"""``sentry-sim whatif``: which decisions of a recorded lab run would flip under a new policy.

Responsibility: read a journal (``scenarios.whatif``) and a policy file (a lab file or its
``uem:`` section, as for ``decide``; with ``--patch`` only the keys it names change the
journal's policy), replay, and print each flipped record with its old and new state, reasons,
explanation and the rules that changed with their inputs. Exit 0 whether or not anything flips;
2 for a bad file (one line naming the file, the line or key).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scenarios.cli_decide import (
    InputError,
    format_trace,
    load_policy_file,
    reasons_text,
    rule_json,
)
from scenarios.spec import read_yaml_file
from scenarios.spec_read import ScenarioError
from scenarios.whatif import Flip, Journal, Verdict, read_journal, replay, run_journal
from uem_sim.config import UEM_KEYS, Reader
from uem_sim.config import parse_policy as read_policy_keys
from uem_sim.contract import reason_names
from uem_sim.errors import ConfigError
from uem_sim.model import UemPolicy


def patched_policy(path: str, base: UemPolicy) -> UemPolicy:
    """``base`` with the policy keys of ``path`` applied (a lab file's uem: or a bare one)."""
    try:
        data, _ = read_yaml_file(Path(path), path)
    except ScenarioError as exc:
        raise InputError(str(exc)) from None
    reader = Reader(path)
    try:
        if isinstance(data, Mapping) and "uem" in data:
            section = reader.mapping(data["uem"] or {}, "uem", UEM_KEYS)
            prefix = "uem"
        else:
            section = reader.mapping({} if data is None else data, "", UEM_KEYS)
            prefix = ""
        return read_policy_keys(reader, section, prefix, base)
    except ConfigError as exc:
        raise InputError(f"{exc.message}{'; ' + exc.hint if exc.hint else ''}") from None


def _verdict_json(v: Verdict) -> dict[str, Any]:
    return {
        "state": v.state,
        "reasons": v.reasons,
        "reasons_hex": f"0x{v.reasons:x}",
        "reason_names": list(reason_names(v.reasons)),
        "explanation": v.explanation,
        "trace": [rule_json(r) for r in v.trace],
    }


def flip_json(flip: Flip) -> dict[str, Any]:
    return {
        "user": flip.user,
        "device_id": flip.device_id,
        "before": _verdict_json(flip.before),
        "after": _verdict_json(flip.after),
        "changed_rules": [
            {
                "rule": c.rule,
                "before": c.before,
                "after": c.after,
                "inputs_before": dict(c.inputs_before),
                "inputs_after": dict(c.inputs_after),
                "detail": c.detail_after,
            }
            for c in flip.changed_rules
        ],
    }


def _head(v: Verdict) -> str:
    return v.explanation.splitlines()[0] if v.explanation else v.state


def format_flips(
    journal: Journal, flips: list[Flip], records: int, skipped: tuple[str, ...]
) -> str:
    lines = [
        f"replayed {journal.reports} reports of {records} records from {journal.source}",
    ]
    lines += [f"  skipped {s}" for s in skipped]
    if not flips:
        lines.append("no record flips: every state and reason stays the same")
        return "\n".join(lines)
    lines.append(f"{len(flips)} record(s) flip:")
    for flip in flips:
        before, after = flip.before, flip.after
        lines.append("")
        lines.append(
            f"{flip.user} / {flip.device_id}: {before.state} {reasons_text(before.reasons)}"
            f"  ->  {after.state} {reasons_text(after.reasons)}"
        )
        lines.append(f"  before: {_head(before)}")
        lines.append(f"  after:  {_head(after)}")
        if flip.changed_rules:
            lines.append("  rules that changed (new outcome, the inputs it read):")
            lines += format_trace(
                (
                    {
                        "rule": f"{c.rule} (was {c.before})",
                        "outcome": c.after,
                        "reason": next((r.reason for r in after.trace if r.rule == c.rule), 0),
                        "inputs": dict(c.inputs_after),
                        "detail": c.detail_after,
                    }
                    for c in flip.changed_rules
                ),
                indent="    ",
            )
    return "\n".join(lines)


def handle(args: argparse.Namespace) -> int:
    try:
        try:
            journal = read_journal(args.journal)
        except ScenarioError as exc:
            raise InputError(str(exc)) from None
        if args.patch:
            policy = patched_policy(args.policy, journal.header.policy)
        else:
            policy = load_policy_file(args.policy)
        flips = replay(journal, policy)
        baseline = run_journal(journal, journal.header.policy)
    except (InputError, ScenarioError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        out = {
            "journal": journal.source,
            "reports": journal.reports,
            "records": len(baseline.records),
            "skipped": list(baseline.skipped),
            "flips": [flip_json(f) for f in flips],
        }
        print(json.dumps(out, indent=2))
    else:
        print(format_flips(journal, flips, len(baseline.records), baseline.skipped))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "whatif",
        help="replay a recorded journal of reports against a changed policy",
        description="Replay a journal of gatekeeper reports (recorded by a lab) through the "
        "UEM's decision logic twice, with the journal's policy and with a new one, and list "
        "the records whose state or reasons would differ, with both explanations and the "
        "rules that changed. See docs/scenarios.md for the journal format.",
    )
    parser.add_argument("--journal", required=True, metavar="FILE", help="journal (JSON Lines)")
    parser.add_argument(
        "--policy",
        required=True,
        metavar="FILE",
        help="the new policy: a lab file or its uem: section",
    )
    parser.add_argument(
        "--patch",
        action="store_true",
        help="apply only the keys the policy file names to the journal's policy",
    )
    parser.add_argument("--json", action="store_true", help="print the flips as JSON")
    parser.set_defaults(func=handle)
