"""Every scenario of ``scenarios/library`` runs and holds; the library covers what it promises."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from scenarios.runner import render_failures, run_scenario
from scenarios.spec import load_scenario
from scenarios.spec_steps import Expect, Fault
from uem_sim.contract import Reason

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios" / "library"
FILES = sorted(LIBRARY.glob("*.yaml"))


def test_library_has_at_least_twenty_scenarios_with_distinct_names() -> None:
    names = [load_scenario(path).name for path in FILES]
    assert len(names) >= 20
    assert len(set(names)) == len(names)


def test_library_expects_every_reason_bit() -> None:
    seen = 0
    for path in FILES:
        for step in load_scenario(path).steps:
            if isinstance(step, Expect):
                for gk in step.gatekeeper:
                    seen |= (gk.reasons or 0) | gk.reasons_include
                for uem in step.uem:
                    seen |= (uem.reasons or 0) | uem.reasons_include
    missing = [r.name for r in Reason if r.name and r.value and not seen & r.value]
    assert missing == []


def test_library_has_the_outage_and_two_gatekeeper_stories() -> None:
    scenarios = [load_scenario(path) for path in FILES]
    assert any(s.gatekeepers == 2 for s in scenarios)
    faults = {
        (step.actor, step.up) for s in scenarios for step in s.steps if isinstance(step, Fault)
    }
    assert {("uem", False), ("uem", True), ("exchange", False), ("push", False)} <= faults


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_library_scenario_holds(path: Path) -> None:
    scenario = load_scenario(path)
    async with asyncio.timeout(30):
        result = await run_scenario(scenario)
    assert result.passed, "\n".join(render_failures(result))
    assert result.checks > 0
