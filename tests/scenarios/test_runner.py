"""The scenario runner: narrated runs, failed expectations with useful diffs, bad files, reports."""

from __future__ import annotations

import argparse
import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from scenarios import cli_run
from scenarios.report_mermaid import mermaid_diagram
from scenarios.runner import render_failures, run_scenario
from scenarios.spec import load_scenario

LAB = Path(__file__).resolve().parents[2] / "scenarios" / "labs" / "default.yaml"

WRONG = f"""\
name: wrong-expectation
lab: {LAB}
devices:
  bob-pixel: {{user: bob, device_id: BOBPIXEL01, device_type: Android}}
  alice-phone: {{user: alice, device_id: ALICEIPHONE01}}
steps:
  - connect: bob-pixel
  - expect:
      gatekeeper: {{device: bob-pixel, state: ALLOWED}}
  - connect: alice-phone
  - expect:
      device: {{device: alice-phone, saw: allowed}}
      counters: {{reports_sent: 5}}
"""

PASSING = f"""\
name: passing
lab: {LAB}
devices:
  alice-phone: {{user: alice, device_id: ALICEIPHONE01}}
steps:
  - say: Alice connects.
  - connect: alice-phone
  - expect:
      gatekeeper: {{device: alice-phone, state: ALLOWED}}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="sentry-sim")
    sub = parser.add_subparsers()
    cli_run.register(sub)
    args = parser.parse_args(["run", *argv])
    code: int = args.func(args)
    return code


async def test_wrong_expectation_fails_with_a_diff_naming_step_line_expected_and_actual(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "wrong.yaml", WRONG)
    narration: list[str] = []
    async with asyncio.timeout(20):
        result = await run_scenario(load_scenario(path), narrate=narration.append)
    assert not result.passed
    assert result.error is None
    first_step, first, line = result.failures[0]
    assert first_step.index == 1
    assert first.path == "steps[1].expect.gatekeeper.state"
    assert (first.expected, first.actual) == ("ALLOWED", "BLOCKED")
    assert line == 9
    diff = "\n".join(render_failures(result))
    assert "steps[1].expect.gatekeeper.state (line 9)  [bob-pixel]" in diff
    assert "- expected: ALLOWED" in diff
    assert "+ actual:   BLOCKED" in diff
    assert "COMPROMISED" in diff  # the gatekeeper's explanation says why
    # The run went on after the failure: alice connected, her expectation held, the counter
    # mismatch is reported with its own line.
    counter = [m for _, m, _ in result.failures if m.path.endswith("reports_sent")]
    assert [(m.expected, m.actual) for m in counter] == [("5", "2")]
    assert len(result.steps) == 4
    assert any("FAILED (1 of 2)" in text for text in narration)


async def test_step_that_cannot_run_stops_the_scenario_with_an_error(tmp_path: Path) -> None:
    text = PASSING.replace(
        "  - say: Alice connects.\n",
        "  - unregister: {user: nobody, device_id: NOPE1}\n  - say: never reached\n",
    )
    result = await run_scenario(load_scenario(write(tmp_path, "stop.yaml", text)))
    assert not result.passed
    assert result.error is not None
    assert result.error.startswith("steps[0] (line 6): DELETE")
    assert len(result.steps) == 1


async def test_journal_records_the_reports_the_uem_received(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    result = await run_scenario(load_scenario(write(tmp_path, "ok.yaml", PASSING)), journal=journal)
    assert result.passed
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert lines[0]["type"] == "header"
    assert [(x["type"], x["device_id"]) for x in lines[1:]] == [("report", "ALICEIPHONE01")]


def test_cli_exit_codes_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "good.yaml", PASSING)
    bad = write(tmp_path, "bad.yaml", WRONG)
    junit, mermaid = tmp_path / "out.xml", tmp_path / "out.md"
    assert run_cli(str(good)) == 0
    assert "PASS passing" in capsys.readouterr().out
    code = run_cli(str(good), str(bad), "--junit", str(junit), "--mermaid", str(mermaid))
    assert code == 1
    out = capsys.readouterr().out
    assert "1 of 2 scenario(s) passed" in out
    assert "- expected: ALLOWED" in out
    root = ET.fromstring(junit.read_text())
    assert root.get("tests") == "2"
    assert root.get("failures") == "1"
    failures = root.findall(".//testcase/failure")
    assert len(failures) == 1
    assert "steps[1].expect.gatekeeper.state" in (failures[0].get("message") or "")
    markdown = mermaid.read_text()
    assert markdown.count("```mermaid\nsequenceDiagram") == 2
    assert "Sentry->>UEM: report bob-pixel" in markdown


def test_cli_json_prints_the_run_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(str(write(tmp_path, "bad.yaml", WRONG)), "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is False
    assert report["summary"]["failed_checks"] == 2
    failure = report["scenarios"][0]["steps"][1]["failures"][0]
    assert failure["path"] == "steps[1].expect.gatekeeper.state"
    assert failure["line"] == 9


@pytest.mark.parametrize(
    ("text", "promised"),
    [
        (
            PASSING.replace("state: ALLOWED", "state: ALOWED"),
            "steps[2].expect.gatekeeper.state: expected one of ALLOWED, BLOCKED, WIPED, UNKNOWN, "
            'absent, got "ALOWED"; did you mean "ALLOWED"? (line 9)',
        ),
        (
            PASSING.replace("- connect: alice-phone", "- conect: alice-phone"),
            'steps[1]: unknown step kind "conect"; did you mean "connect"?',
        ),
        (
            PASSING.replace("- say: Alice connects.", "- advance: 90"),
            "steps[0].advance: expected a duration like 90s, 15m, 25h or 7d, got 90; "
            "add a unit, e.g. 90s (line 6)",
        ),
        (
            PASSING.replace(
                "- connect: alice-phone", "- connect: {device: alice-phone, gatekeeper: 2}"
            ),
            "steps[1].connect.gatekeeper: unknown key",
        ),
        (
            PASSING.replace("- say: Alice connects.", "- gatekeeper: {action: push_sideways}"),
            "steps[0].gatekeeper.action: expected one of resync, push_down, push_up, "
            'got "push_sideways"; did you mean "push_down"? (line 6)',
        ),
    ],
    ids=["misspelt-state", "misspelt-step", "duration-without-unit", "unknown-key", "bad-action"],
)
def test_bad_file_exits_2_naming_file_step_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, promised: str
) -> None:
    path = write(tmp_path, "broken.yaml", text)
    assert run_cli(str(path), str(write(tmp_path, "good.yaml", PASSING))) == 2
    err = capsys.readouterr().err
    assert f"{path}: {promised}" in err
    assert "nothing was run" in err


def test_second_gatekeeper_must_be_declared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = PASSING.replace(
        "alice-phone: {user: alice, device_id: ALICEIPHONE01}",
        "alice-phone: {user: alice, device_id: ALICEIPHONE01, gatekeeper: 2}",
    )
    assert run_cli(str(write(tmp_path, "gk.yaml", text))) == 2
    err = capsys.readouterr().err
    assert "devices.alice-phone.gatekeeper: gatekeeper 2 does not exist: the scenario runs 1" in err
    assert "set gatekeepers: 2" in err


async def test_mermaid_diagram_has_every_participant_and_the_flow(tmp_path: Path) -> None:
    result = await run_scenario(load_scenario(write(tmp_path, "ok.yaml", PASSING)))
    diagram = mermaid_diagram(result)
    assert diagram.startswith("sequenceDiagram\n")
    for participant in (
        "participant d_alice_phone as alice-phone",
        "participant Sentry",
        "participant UEM",
        "participant Exchange",
    ):
        assert participant in diagram
    flow = [
        "d_alice_phone->>Sentry: Provision",
        "Sentry->>UEM: report alice-phone",
        "UEM-->>Sentry: ALLOW",
        "Sentry->>Exchange: FolderSync",
    ]
    positions = [diagram.index(line) for line in flow]
    assert positions == sorted(positions)
    assert "Note over Sentry,UEM: Alice connects." in diagram
