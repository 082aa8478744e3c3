"""The library tells the fault stories: UEM slow and flapping, Exchange's EAS-aware faults."""

from __future__ import annotations

from pathlib import Path

from scenarios.spec import load_scenario, thaw
from scenarios.spec_steps import ClearFaults, SetFaults

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios" / "library"


def test_library_sets_and_clears_faults_on_both_servers_with_eas_faults() -> None:
    plans: dict[str, list[dict[str, object]]] = {"uem": [], "exchange": []}
    cleared: set[str] = set()
    for path in sorted(LIBRARY.glob("*.yaml")):
        for step in load_scenario(path).steps:
            if isinstance(step, SetFaults):
                plans[step.actor].append(thaw(step.plan))
            elif isinstance(step, ClearFaults):
                cleared.update(step.actors)
    uem_keys = {key for plan in plans["uem"] for key in plan}
    exchange_keys = {key for plan in plans["exchange"] for key in plan}
    assert {"latency", "error_rate", "fail_after"} <= uem_keys
    assert {"provision_449_on", "sync_status", "corrupt_wbxml"} <= exchange_keys
    assert cleared == {"uem", "exchange"}
