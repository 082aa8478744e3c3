"""Fault steps in scenario files: every fault of docs/faults.md parses; a bad field is named
with the file, the step, the plan's key path and the line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from scenarios.spec import load_scenario, thaw
from scenarios.spec_read import ScenarioError
from scenarios.spec_steps import ClearFaults, SetFaults

LAB = """\
users:
  - {name: alice, email: alice@example.com, password: alice-pass}
"""

EVERY_FAULT = """\
steps:
  - uem_faults: {latency: 0.25}
  - uem_faults: {latency: {fixed_s: 0.2, jitter_s: 0.1}, seed: 4}
  - uem_faults:
      scope: {path_prefix: /api/v1/sentry/reports, methods: [POST]}
      error_rate: {rate: 0.5, status: 502}
  - uem_faults: {down: true}
  - uem_faults: {hang: {max_s: 2}}
  - uem_faults: {fail_after: {n: 3, status: 500}}
  - exchange_faults:
      rules:
        - {scope: {command: Sync}, error_rate: 0.2}
        - {scope: {command: Ping}, hang: true}
  - exchange_faults: {provision_449_on: 2}
  - exchange_faults: {provision_449_on: {nth: 1, always_449: true}}
  - exchange_faults: {sync_status: {status: 12, count: 2}}
  - exchange_faults: {corrupt_wbxml: FolderSync}
  - exchange_faults: {corrupt_wbxml: {command: Sync, count: 3}, latency: 0.01}
  - clear_faults: uem
  - clear_faults: exchange
  - clear_faults: all
"""


def load(tmp_path: Path, text: str) -> list[object]:
    (tmp_path / "lab.yaml").write_text(LAB, encoding="utf-8")
    path = tmp_path / "faults.yaml"
    path.write_text("lab: lab.yaml\n" + textwrap.dedent(text), encoding="utf-8")
    return list(load_scenario(path).steps)


def error_of(tmp_path: Path, steps: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load(tmp_path, "steps:\n" + textwrap.indent(textwrap.dedent(steps), "  "))
    return info.value


def test_every_fault_of_the_docs_parses_into_a_fault_step(tmp_path: Path) -> None:
    steps = load(tmp_path, EVERY_FAULT)
    sets = [s for s in steps if isinstance(s, SetFaults)]
    clears = [s for s in steps if isinstance(s, ClearFaults)]
    assert [s.actor for s in sets] == ["uem"] * 6 + ["exchange"] * 6
    assert [c.actors for c in clears] == [("uem",), ("exchange",), ("uem", "exchange")]
    assert thaw(sets[1].plan) == {"latency": {"fixed_s": 0.2, "jitter_s": 0.1}, "seed": 4}
    assert thaw(sets[9].plan) == {"sync_status": {"status": 12, "count": 2}}
    # Every step keeps its index and its line, so a run can point at it.
    assert [s.index for s in sets[:2]] == [0, 1]
    assert sets[0].line == 3


@pytest.mark.parametrize(
    ("steps", "path", "line", "problem"),
    [
        (
            "- uem_faults: {error_rate: {rate: 1.5}}",
            "steps[0].uem_faults.error_rate.rate",
            3,
            "expected a number 0..1",
        ),
        (
            "- say: hello\n- exchange_faults:\n    latency: {fixed_s: 1, jitter_s: -1}",
            "steps[1].exchange_faults.latency.jitter_s",
            5,
            "",
        ),
        (
            "- uem_faults: {error_rate: {rate: 0.1, status: 302}}",
            "steps[0].uem_faults.error_rate.status",
            3,
            "400",
        ),
        (
            "- uem_faults: {fail_after: {n: -1}}",
            "steps[0].uem_faults.fail_after.n",
            3,
            "",
        ),
        (
            "- uem_faults: {provision_449_on: 2}",
            "steps[0].uem_faults.provision_449_on",
            3,
            "unknown key",
        ),
        (
            "- uem_faults: {scope: {command: Sync}, down: true}",
            "steps[0].uem_faults.scope.command",
            3,
            "",
        ),
        (
            "- exchange_faults: {sync_status: {status: 1}}",
            "steps[0].exchange_faults.sync_status.status",
            3,
            "",
        ),
        (
            "- exchange_faults: {corrupt_wbxml: {command: SendMail}}",
            "steps[0].exchange_faults.corrupt_wbxml.command",
            3,
            "",
        ),
        (
            "- exchange_faults: {hang: {max_s: 0}}",
            "steps[0].exchange_faults.hang.max_s",
            3,
            "",
        ),
    ],
)
def test_bad_fault_field_names_file_step_key_path_and_line(
    tmp_path: Path, steps: str, path: str, line: int, problem: str
) -> None:
    error = error_of(tmp_path, steps)
    assert error.source.endswith("faults.yaml")
    assert error.path == path
    assert error.line == line
    assert problem in error.problem
    assert "docs/faults.md" in str(error)


def test_bad_fault_error_message_reads_file_step_field_expected_got(tmp_path: Path) -> None:
    error = error_of(tmp_path, "- uem_faults: {error_rate: {rate: 1.5}}")
    assert str(error) == (
        f"{error.source}: steps[0].uem_faults.error_rate.rate: expected a number 0..1, "
        "got float 1.5; see docs/faults.md for the plan format (line 3)"
    )


def test_fault_step_needs_a_plan_mapping_and_points_at_clear_faults(tmp_path: Path) -> None:
    error = error_of(tmp_path, "- exchange_faults: down")
    assert error.path == "steps[0].exchange_faults"
    assert "expected a fault plan mapping" in error.problem
    assert "clear_faults: exchange" in error.hint


def test_empty_fault_plan_is_refused(tmp_path: Path) -> None:
    for kind in ("uem_faults", "exchange_faults"):
        error = error_of(tmp_path, f"- {kind}: {{}}")
        assert error.path == f"steps[0].{kind}"
        assert "expected at least one fault" in error.problem or "fault" in error.problem


def test_clear_faults_names_what_it_can_clear_and_suggests(tmp_path: Path) -> None:
    error = error_of(tmp_path, "- clear_faults: uemm")
    assert error.path == "steps[0].clear_faults"
    assert "expected one of uem, exchange, all" in error.problem
    assert 'did you mean "uem"?' in error.hint
