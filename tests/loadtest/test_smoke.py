"""A small bounded load run against a real in-process lab (scenarios.lab.Lab on 127.0.0.1).

No speed assertions: only that the run is bounded, everything it did is accounted for, the
decisions come out right, and the reports hold what they promise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from loadtest.generator import GeneratorError, run_profile
from loadtest.html_report import render
from loadtest.profiles import Profile
from loadtest.results import Outcome, RunResult
from loadtest.target import Target
from loadtest.thresholds import evaluate
from scenarios import cli_load
from scenarios.cli_load import LabFaults, lab_for

SMOKE: dict[str, Any] = {
    "name": "smoke",
    "model": {"open": {"rate": "100/s"}},
    "phases": [{"name": "steady", "duration": "1s"}],
    "population": {"registered": 10, "new": 6, "unregistered": 4},
    "held_pings": {"devices": 3, "heartbeat": "1s"},
    "workload": {"sync": 8, "foldersync": 1, "first_access": 1},
    "thresholds": [
        "error_rate < 0.001",
        {"decisions": {"registered": "allowed", "unregistered": "blocked"}},
    ],
    "options": {"timeout": "5s"},
}


async def run_smoke(mapping: dict[str, Any]) -> RunResult:
    profile = Profile.from_mapping(mapping, "smoke.yaml")
    async with asyncio.timeout(60), lab_for(profile) as lab:
        target = Target.from_mapping(lab.ready_payload(), "lab")
        return await run_profile(profile, target, lab=LabFaults(lab), lab_in_process=True)


async def test_one_second_at_100_per_second_is_bounded_and_accounted_for() -> None:
    result = await run_smoke(SMOKE)
    # Bounded: the open model schedules rate x duration arrivals, no more.
    assert result.dispatched == 100
    finished = sum(s.finished for name, s in result.ops.items() if name != "ping")
    skipped = sum(s.outcomes[Outcome.SKIPPED] for s in result.ops.values())
    assert finished + skipped == 100
    assert result.overall.errors == 0
    assert result.warmup is not None
    assert result.warmup.ready == result.warmup.devices == 13
    assert result.ops["ping"].finished >= 3
    checks = evaluate(Profile.from_mapping(SMOKE, "smoke.yaml").rules, result)
    assert [c.passed for c in checks] == [True, True, True], checks
    html = render(result, checks)
    assert "<script" not in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    svgs = [part.split("</svg>")[0] + "</svg>" for part in html.split("<svg")[1:]]
    assert len(svgs) == 5
    for svg in svgs:
        ET.fromstring("<svg" + svg)  # each plot is well-formed SVG
    for title in (
        "Latency percentiles per second",
        "Throughput",
        "Outcomes per second",
        "Latency distribution",
        "Generator CPU",
    ):
        assert title in html


async def test_uem_outage_events_reach_the_lab_and_known_devices_keep_syncing() -> None:
    mapping = {
        **SMOKE,
        "phases": [{"duration": "1.5s"}],
        "held_pings": None,
        "workload": {"sync": 1},
        "events": [{"at": "0.3s", "uem": "down"}, {"at": "1s", "uem": "up"}],
    }
    mapping.pop("held_pings")
    result = await run_smoke(mapping)
    assert [m.label for m in result.markers if m.label.startswith("UEM")] == ["UEM down", "UEM up"]
    assert result.ops["sync"].errors == 0


async def test_events_without_a_controllable_lab_are_refused() -> None:
    mapping = {**SMOKE, "events": [{"at": "0.5s", "uem": "down"}]}
    profile = Profile.from_mapping(mapping, "smoke.yaml")
    target = Target(sentry_url="http://127.0.0.1:9")
    with pytest.raises(GeneratorError, match="needs a lab this run controls"):
        await run_profile(profile, target)


async def test_a_target_nobody_listens_on_fails_the_warm_up_clearly() -> None:
    profile = Profile.from_mapping(
        {**SMOKE, "held_pings": {"devices": 1, "heartbeat": "1s"}, "options": {"timeout": "1s"}},
        "smoke.yaml",
    )
    with socket.socket() as probe:  # a port that was free a moment ago, now closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(GeneratorError, match="warm-up: none of the 11 registered devices"):
        async with asyncio.timeout(30):
            await run_profile(profile, Target(sentry_url=f"http://127.0.0.1:{port}"))


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli_load.register(sub)
    args = parser.parse_args(["load", *argv])
    return int(args.func(args))


def test_cli_runs_a_profile_and_writes_json_and_html(tmp_path: Path) -> None:
    profile = tmp_path / "smoke.yaml"
    profile.write_text(json.dumps({**SMOKE, "thresholds": ["p99 < 1ms", "error_rate < 0.5"]}))
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    code = run_cli([str(profile), "--quiet", "--json", str(out_json), "--html", str(out_html)])
    data = json.loads(out_json.read_text())
    # 1 when a threshold failed, 2 when the run was invalid: either way the file says which.
    assert code == data["exit_code"]
    assert data["verdict"] in ("passed", "failed", "invalid")
    assert [t["rule"] for t in data["thresholds"]] == ["p99 < 1ms", "error_rate < 0.5"]
    assert data["dispatched"] == 100
    assert out_html.read_text().count("<svg") == 5


def test_cli_bad_profile_exits_2_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = tmp_path / "broken.yaml"
    profile.write_text("model: {open: {rate: fast}}\nphases: [{duration: 1s}]\n")
    assert run_cli([str(profile)]) == 2
    assert "broken.yaml: model.open.rate" in capsys.readouterr().err


def test_cli_refuses_a_ready_file_that_points_off_the_machine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ready = tmp_path / "ready.json"
    ready.write_text(json.dumps({"sentry_url": "http://10.0.0.1:443"}))
    assert run_cli(["hot_path", "--ready-file", str(ready), "--quiet"]) == 2
    assert "10.0.0.1 is not a loopback address" in capsys.readouterr().err


def test_cli_writes_the_lab_config_of_a_population(tmp_path: Path) -> None:
    out = tmp_path / "lab.yaml"
    assert run_cli(["first_access_storm", "--write-lab-config", str(out)]) == 0
    text = out.read_text()
    assert "LTNEW000100" in text
    assert "LTUNR000001" not in text.split("devices:")[1]
