"""``sentry-sim bench`` plumbing with a fake runner: no wrk, no nginx, no speed asserted."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from loadtest.bench import (
    EXCHANGE,
    STATIC,
    BenchSettings,
    LookupResult,
    StormResult,
    WrkResult,
    run_bench,
)
from scenarios import cli_bench

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:1/x
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   490.25us  149.46us   3.58ms   69.24%
  Latency Distribution
     50%  471.00us
     75%  560.00us
     90%  670.00us
     99%    1.02ms
  312743 requests in 5.10s, 49.51MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  61322.25
Transfer/sec:      9.71MB
"""


@attrs.define
class FakeRunner:
    """Answers every measurement from a table; records what it was asked, in order."""

    rates: dict[str, float]
    asked: list[str] = attrs.field(factory=list)
    closed: bool = False

    def prepare(self) -> list[str]:
        return ["fake runner"]

    def close(self) -> None:
        self.closed = True

    def wrk(self, target: str, *, duration_s: float, connections: int) -> WrkResult:
        self.asked.append(target)
        return WrkResult(requests_per_s=self.rates[target], p50_ms=0.4, p99_ms=1.0)

    def paced(self, target: str, *, rate: float, duration_s: float) -> WrkResult:
        self.asked.append(f"paced {target} {rate:.0f}")
        return WrkResult(requests_per_s=rate, p50_ms=0.5, p99_ms=2.0 if target == "sentry" else 1.5)

    def lookup(self, records: int) -> LookupResult:
        return LookupResult(
            records=records, lookups_per_s=1e5, requests_per_s=5e4, bytes_per_record=220.0
        )

    def storm(self, devices: int) -> StormResult:
        return StormResult(
            devices=devices,
            seconds=devices / 2500,
            reports=devices,
            reported_twice=0,
            never_reported=0,
            failed_requests=0,
            mode="deployed",
            placement="gatekeeper=0,uem=1,client=1",
            cpu_ms_per_decision={"gatekeeper": 0.4, "uem": 0.25, "client": 0.03},
        )

    def storm_lab(self, devices: int) -> StormResult:
        return StormResult(
            devices=devices,
            seconds=devices / 700,
            reports=devices,
            reported_twice=0,
            never_reported=0,
            failed_requests=0,
        )

    @contextlib.contextmanager
    def held_pings(self, count: int) -> Iterator[int]:
        self.asked.append(f"hold {count}")
        yield count

    def ping_gatekeeper_wrk(self, *, duration_s: float, connections: int) -> WrkResult:
        self.asked.append("ping gatekeeper")
        return WrkResult(requests_per_s=30_000.0)


RATES = {
    "backend": 120_000.0,
    "sentry": 36_000.0,
    "sentry_no_events": 40_000.0,
    "nginx": 80_000.0,
    "exchange": 2_000.0,
    "sentry_exchange": 1_900.0,
}


def test_wrk_output_is_read_with_units() -> None:
    result = WrkResult.from_output(WRK_OUTPUT)
    assert result.requests_per_s == 61322.25
    assert result.p50_ms == pytest.approx(0.471)
    assert result.p99_ms == pytest.approx(1.02)
    assert result.errors == 3
    with pytest.raises(ValueError, match="Requests/sec"):
        WrkResult.from_output("wrk: connection refused")


def test_rounds_are_interleaved_and_ratios_checked_against_the_targets() -> None:
    runner = FakeRunner(RATES)
    report = run_bench(BenchSettings(rounds=2, duration_s=1), runner)
    order = [a for a in runner.asked if a in RATES]
    assert order == [*STATIC, *EXCHANGE] * 2
    assert runner.closed
    checks = {c.name: c for c in report.checks}
    assert checks["hot path vs nginx proxy_pass"].value == pytest.approx(36 / 80)
    assert not checks["hot path vs nginx proxy_pass"].ok
    assert checks["hot path (no events) vs nginx proxy_pass"].ok
    assert checks["through gatekeeper vs mock Exchange directly"].value == pytest.approx(0.95)
    assert checks["added p99 at half the maximum load (ms)"].value == pytest.approx(0.5)
    # Paced at half the gatekeeper's median maximum.
    assert "paced sentry 18000" in runner.asked
    assert report.pings["held"] == 10_000
    assert all(c.ok for n, c in checks.items() if "nginx proxy_pass" not in n or "no events" in n)


def test_cli_prints_the_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="sentry-sim")
    cli_bench.register(parser.add_subparsers())
    out = tmp_path / "bench.json"
    args = parser.parse_args(["bench", "--quick", "--json", str(out), "--duration", "2s"])
    code = cli_bench.execute(args, lambda: FakeRunner(RATES))
    assert code == 1  # the fake's hot path misses the nginx target
    printed = capsys.readouterr().out
    assert "hot path vs nginx proxy_pass" in printed
    assert "MISSED" in printed
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["settings"]["duration_s"] == 2.0
    assert data["settings"]["rounds"] == 1
    assert data["throughput"]["nginx"]["median_requests_per_s"] == 80_000.0
    assert {c["name"] for c in data["checks"] if not c["ok"]} == {"hot path vs nginx proxy_pass"}
    # The deployed storm is judged; the in-process lab's is a second line for comparison.
    assert data["storm"]["mode"] == "deployed"
    assert data["storm"]["decisions_per_s"] == pytest.approx(2500)
    assert data["storm_lab"]["decisions_per_s"] == pytest.approx(700)
    assert "(deployed, gatekeeper=0,uem=1,client=1): 2,500 decisions/s" in printed
    assert "CPU ms/decision: gatekeeper 0.400, uem 0.250, client 0.030" in printed


def test_bad_duration_is_refused_with_the_expected_form(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="sentry-sim")
    cli_bench.register(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--duration", "soon"])
    assert "expected a duration like 10s" in capsys.readouterr().err
