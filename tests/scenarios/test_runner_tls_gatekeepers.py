"""Extra gatekeepers of a scenario (``gatekeepers: 2``) in a ``lab.tls: true`` lab: each one
starts with the lab's TLS, registers with the https-only UEM and reports its devices."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from scenarios.runner import render_failures, run_scenario
from scenarios.spec import load_scenario

LAB = Path(__file__).resolve().parents[2] / "scenarios" / "labs" / "default.yaml"

TWO_GATEKEEPERS_TLS = f"""\
name: two-gatekeepers-over-tls
lab: {LAB}
gatekeepers: 2
lab_overrides:
  lab: {{tls: true}}
  uem:
    devices:
      - {{device_id: ALICEIPHONE01, user: alice, platform: ios, os_version: "17.4",
          model: "iPhone15,2", data_protection: true}}
      - {{device_id: ALICEIPAD01, user: alice, platform: ios, os_version: "17.4",
          model: "iPad14,1", data_protection: true}}
devices:
  alice-phone: {{user: alice, device_id: ALICEIPHONE01, gatekeeper: 1}}
  alice-ipad: {{user: alice, device_id: ALICEIPAD01, device_type: iPad, gatekeeper: 2}}
steps:
  - connect: alice-phone
  - connect: alice-ipad
  - expect:
      device: {{device: alice-ipad, saw: allowed}}
      gatekeeper:
        - {{device: alice-phone, gatekeeper: 1, state: ALLOWED}}
        - {{device: alice-ipad, gatekeeper: 2, state: ALLOWED}}
"""


async def test_second_gatekeeper_in_a_tls_lab_registers_and_reports_over_https(
    tmp_path: Path,
) -> None:
    path = tmp_path / "two-tls.yaml"
    path.write_text(TWO_GATEKEEPERS_TLS, encoding="utf-8")
    journal = tmp_path / "journal.jsonl"
    async with asyncio.timeout(30):
        result = await run_scenario(load_scenario(path), journal=journal)
    assert result.error is None, result.error
    assert result.passed, "\n".join(render_failures(result))
    records = [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines()]
    reported = sorted(r["device_id"] for r in records if r["type"] == "report")
    # One report from each gatekeeper: the iPad's could only come from gatekeeper 2.
    assert reported == ["ALICEIPAD01", "ALICEIPHONE01"]
