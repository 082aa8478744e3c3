"""Fault steps in a run: the plan reaches the server, the actors meet it, clearing restores."""

from __future__ import annotations

import asyncio
from pathlib import Path

from scenarios.runner import render_failures, run_scenario
from scenarios.spec import load_scenario

LAB = Path(__file__).resolve().parents[2] / "scenarios" / "labs" / "default.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "faults.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def test_exchange_error_rate_reaches_the_phone_and_clearing_restores_it(
    tmp_path: Path,
) -> None:
    text = f"""\
lab: {LAB}
devices:
  alice-phone: {{user: alice, device_id: ALICEIPHONE01}}
steps:
  - connect: alice-phone
  - exchange_faults: {{scope: {{command: FolderSync}}, error_rate: {{rate: 1, status: 500}}}}
  - foldersync: alice-phone
  - expect:
      device: {{device: alice-phone, saw: error, http: 500}}
      gatekeeper: {{device: alice-phone, state: ALLOWED}}
      events:
        since: previous
        happened:
          - {{event: RequestForwarded, where: {{command: FolderSync, upstream_status: 500}}}}
  - clear_faults: exchange
  - foldersync: alice-phone
  - expect:
      device: {{device: alice-phone, saw: allowed, http: 200}}
"""
    narration: list[str] = []
    async with asyncio.timeout(30):
        result = await run_scenario(load_scenario(write(tmp_path, text)), narrate=narration.append)
    assert result.passed, "\n".join(render_failures(result))
    joined = "\n".join(narration)
    assert "Exchange: fault plan set:" in joined
    assert '"status": 500' in joined
    assert "Exchange: faults cleared" in joined


async def test_uem_reports_failing_in_block_mode_block_the_new_phone_until_cleared(
    tmp_path: Path,
) -> None:
    text = f"""\
lab: {LAB}
lab_overrides:
  sentry: {{uem_unreachable: block}}
devices:
  alice-phone: {{user: alice, device_id: ALICEIPHONE01}}
steps:
  - uem_faults:
      scope: {{path_prefix: /api/v1/sentry/reports}}
      fail_after: {{n: 0, status: 502}}
  - connect: alice-phone
  - expect:
      device: {{device: alice-phone, saw: blocked}}
      gatekeeper: {{device: alice-phone, state: BLOCKED, fallback: true}}
      counters: {{reports_sent: 0, reports_failed: {{at_least: 1}}, outbox_pending: 1}}
  - clear_faults: all
  - advance: 1m
  - expect:
      gatekeeper: {{device: alice-phone, state: ALLOWED, fallback: false}}
      counters: {{reports_sent: 1, outbox_pending: 0, uem_reports_received: 1}}
"""
    async with asyncio.timeout(30):
        result = await run_scenario(load_scenario(write(tmp_path, text)))
    assert result.passed, "\n".join(render_failures(result))


async def test_fault_step_while_the_uem_is_down_stops_the_run_naming_the_step(
    tmp_path: Path,
) -> None:
    text = f"""\
lab: {LAB}
steps:
  - uem: down
  - uem_faults: {{latency: 0.01}}
  - say: never reached
"""
    async with asyncio.timeout(30):
        result = await run_scenario(load_scenario(write(tmp_path, text)))
    assert not result.passed
    assert result.error is not None
    assert result.error.startswith("steps[1] (line 4): uem faults: the UEM is down")
    assert len(result.steps) == 2


async def test_uem_latency_slows_the_report_but_the_decision_is_the_uems(
    tmp_path: Path,
) -> None:
    text = f"""\
lab: {LAB}
devices:
  bob-pixel: {{user: bob, device_id: BOBPIXEL01, device_type: Android}}
steps:
  - uem_faults: {{seed: 1, latency: {{fixed_s: 0.1, jitter_s: 0.05}}}}
  - connect: bob-pixel
  - expect:
      gatekeeper: {{device: bob-pixel, state: BLOCKED, reasons: [COMPROMISED], fallback: false}}
      counters: {{reports_sent: 1, reports_failed: 0}}
"""
    async with asyncio.timeout(30):
        result = await run_scenario(load_scenario(write(tmp_path, text)))
    assert result.passed, "\n".join(render_failures(result))
