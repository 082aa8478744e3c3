"""The first-access storm's plumbing: placements, the per-device report count, and one small
storm as deployed (``sentry-sim uem``, ``sentry-sim sentry`` and the load generator in three
processes). No speed is asserted: the figures are the bench's business."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from loadtest.bench import StormResult
from loadtest.bench_parts import StormPlacement, _storm_figures, storm_device

ROOT = Path(__file__).resolve().parents[2]


def test_a_placement_reads_back_as_written() -> None:
    placement = StormPlacement.parse("gatekeeper=0, uem=1,client=-")
    assert placement == StormPlacement(gatekeeper=0, uem=1, client=None)
    assert StormPlacement.parse(placement.text()) == placement
    assert StormPlacement.parse("") == StormPlacement(gatekeeper=None, uem=None, client=None)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("gatekeeper", "expected name=core"),
        ("exchange=1", "expected name=core with name one of gatekeeper, uem, client"),
        ("uem=first", "uem: expected a core number or -, got 'first'"),
    ],
)
def test_a_bad_placement_says_what_was_expected(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        StormPlacement.parse(text)


def test_devices_reported_twice_or_never_are_counted_per_device() -> None:
    reports = Counter({storm_device(0): 1, storm_device(1): 2, "someone-else": 1})
    figures = _storm_figures(3, {"seconds": 1.5, "failed": 0}, reports)
    assert figures == {
        "devices": 3,
        "seconds": 1.5,
        "failed_requests": 0,
        "reports": 4,
        "reported_twice": 1,
        "never_reported": 1,
    }


def test_a_small_deployed_storm_reports_every_device_exactly_once() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.bench_parts", "storm", "--devices", "40"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = StormResult(**json.loads(done.stdout.strip().splitlines()[-1]))
    assert result.mode == "deployed"
    assert (result.reports, result.reported_twice, result.never_reported) == (40, 0, 0)
    assert result.failed_requests == 0
    assert set(result.cpu_ms_per_decision) == {"uem", "gatekeeper", "client"}
