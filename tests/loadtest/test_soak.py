"""The soak: steady profile, intervals and drift (pure), the /proc probe, and a short real run."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest import soak_probe
from loadtest.histogram import Histogram
from loadtest.profiles import Op, OpenModel, load_profile
from loadtest.results import DeviceClass, Limits, Outcome, Recorder, Sample
from loadtest.soak import (
    FIRST_ACCESS_SHARE,
    ResourceReading,
    SoakError,
    drift,
    intervals,
    slope,
    steady_profile,
)
from scenarios import cli_soak


def test_steady_profile_is_one_phase_with_a_trickle_of_first_accesses() -> None:
    base = load_profile("morning_rush")
    profile = steady_profile(base, seconds=600, rate=20)
    assert [p.name for p in profile.phases] == ["steady"]
    assert profile.duration == 600
    assert profile.model == OpenModel(20)
    weights = dict(profile.workload)
    share = weights[Op.FIRST_ACCESS] / sum(weights.values())
    assert share == pytest.approx(FIRST_ACCESS_SHARE)
    # Enough unseen devices for every first access of the run.
    assert profile.population.new + profile.population.unregistered >= 20 * 600 * share
    assert profile.held_pings == base.held_pings


@pytest.mark.parametrize(("seconds", "rate"), [(0, None), (3601, None), (60, 0)])
def test_steady_profile_refuses_out_of_bounds_settings(seconds: float, rate: float | None) -> None:
    with pytest.raises(SoakError):
        steady_profile(load_profile("morning_rush"), seconds=seconds, rate=rate)


def test_slope_is_least_squares_per_x() -> None:
    assert slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2.0)
    assert slope([(0, 1)]) is None
    assert slope([(1, 1), (1, 2)]) is None


def _result(seconds: int, latency_us: int, growth_us: int) -> Recorder:
    recorder = Recorder(start=0.0)
    for second in range(seconds):
        for k in range(10):
            ended = second + 0.05 + k * 0.09
            latency = (latency_us + growth_us * second) / 1e6
            recorder.record(
                Sample(
                    op="sync",
                    device_id="D",
                    device_class=DeviceClass.REGISTERED,
                    outcome=Outcome.TIMEOUT if (second, k) == (3, 0) else Outcome.OK,
                    intended=ended - latency,
                    started=ended - latency,
                    ended=ended,
                )
            )
    return recorder


def test_intervals_merge_seconds_and_pair_each_with_the_reading_at_its_end() -> None:
    recorder = _result(seconds=6, latency_us=1000, growth_us=0)
    result = recorder.finish(6.0, limits=Limits(), profile="p", model="m", planned_seconds=6.0)
    readings = [
        ResourceReading(at=1.0, rss_bytes=100 * 2**20, open_fds=10),
        ResourceReading(at=2.0, rss_bytes=101 * 2**20, open_fds=10),
        ResourceReading(at=4.0, rss_bytes=103 * 2**20, open_fds=11),
        ResourceReading(at=6.1, rss_bytes=105 * 2**20, open_fds=12),
    ]
    parts = intervals(result, readings, 2.0)
    assert [(p.start, p.end) for p in parts] == [(0, 2), (2, 4), (4, 6)]
    assert [p.finished for p in parts] == [20, 20, 20]
    assert [p.errors for p in parts] == [0, 1, 0]
    assert [p.rss_bytes for p in parts] == [101 * 2**20, 103 * 2**20, 105 * 2**20]
    assert [p.open_fds for p in parts] == [10, 11, 12]
    assert parts[0].p50_us is not None
    assert Histogram().lowest_equivalent(990) <= parts[0].p50_us <= 1001


def test_drift_reports_first_last_and_slope_per_minute() -> None:
    recorder = _result(seconds=120, latency_us=1000, growth_us=50)
    result = recorder.finish(120.0, limits=Limits(), profile="p", model="m", planned_seconds=120)
    readings = [
        ResourceReading(at=float(t), rss_bytes=(100 + t // 30) * 2**20, open_fds=20)
        for t in range(0, 121, 30)
    ]
    trends = {t.metric: t for t in drift(intervals(result, readings, 30.0))}
    rss = trends["rss"]
    assert (rss.first, rss.last) == (101.0, 104.0)
    assert rss.slope_per_min == pytest.approx(2.0)
    assert trends["open_fds"].slope_per_min == pytest.approx(0.0)
    # Latency grows 50 us per second: 3 ms per minute.
    assert trends["p50"].slope_per_min == pytest.approx(3.0, rel=0.05)
    assert trends["throughput"].first == pytest.approx(10.0)


def test_intervals_refuse_a_sub_second_interval() -> None:
    result = Recorder(start=0.0).finish(1.0, limits=Limits(), profile="p", model="m")
    with pytest.raises(SoakError, match="--interval"):
        intervals(result, [], 0.5)


def test_probe_reads_this_process() -> None:
    before = soak_probe.open_fds()
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        assert soak_probe.open_fds() == (before or 0) + 1
    finally:
        os.close(fd)
    rss = soak_probe.rss_bytes()
    assert rss is not None
    assert rss > 1024 * 1024
    assert soak_probe.rss_bytes(pid=2**22 + 12345) is None


def _args(**overrides: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli_soak.register(sub)
    argv = ["soak", "--minutes", "0.1", "--interval", "2s", "--rate", "20", "--quiet"]
    args = parser.parse_args(argv)
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def test_short_soak_prints_a_drift_report_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "soak.json"
    # Its own process: the soak measures the process's file descriptors and memory, which the
    # rest of the suite would otherwise share.
    argv = ["soak", "--minutes", "0.1", "--interval", "2s", "--rate", "20", "--quiet"]
    done = subprocess.run(
        [sys.executable, "-m", "scenarios.cli", *argv, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    printed = done.stdout
    assert done.returncode == 0, printed + done.stderr
    assert "drift (first interval -> last interval" in printed
    report = json.loads(out.read_text())
    assert report["planned_seconds"] == pytest.approx(6.0)
    assert len(report["intervals"]) == 3
    assert all(i["finished"] > 0 for i in report["intervals"])
    assert report["errors"] == 0
    assert all(i["rss_bytes"] for i in report["intervals"])
    assert report["drift"]["open_fds"]["first"] is not None
    assert {t["rule"] for t in report["thresholds"]} >= {"p99 < 2s"}


def test_soak_refuses_an_interval_longer_than_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_soak.handle(_args(interval=60.0)) == 2
    assert "--interval" in capsys.readouterr().err
