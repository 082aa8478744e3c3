"""The recorder, the validity verdict, thresholds and the console/JSON reports on known samples."""

from __future__ import annotations

import json

import pytest

from device_sim import Done, Halt, StepResult
from device_sim import Outcome as StepOutcome
from device_sim.client import DeviceState
from loadtest.histogram import Histogram
from loadtest.report import Verdict, summary, to_json, verdict
from loadtest.results import (
    DeviceClass,
    Limits,
    Outcome,
    Recorder,
    RunResult,
    Sample,
    Window,
    classify,
    judge_validity,
)
from loadtest.thresholds import Decision, DecisionExpectation, Threshold, evaluate


def sample(
    op: str = "sync",
    *,
    intended: float,
    started: float | None = None,
    ended: float,
    outcome: Outcome = Outcome.OK,
    device: str = "LTREG000001",
    device_class: DeviceClass = DeviceClass.REGISTERED,
    code: int | None = None,
) -> Sample:
    return Sample(
        op=op,
        device_id=device,
        device_class=device_class,
        outcome=outcome,
        code=code,
        intended=intended,
        started=intended if started is None else started,
        ended=ended,
    )


def finish(recorder: Recorder, end: float = 10.0) -> RunResult:
    return recorder.finish(end, limits=Limits(), profile="t", model="open 10/s")


def test_latency_runs_from_the_scheduled_start_and_service_from_the_send() -> None:
    recorder = Recorder(start=100.0)
    # Due at 100.0, sent only at 100.5 (the generator waited for a connection), done at 100.51.
    recorder.record(sample(intended=100.0, started=100.5, ended=100.51))
    stats = recorder.ops["sync"]
    assert stats.latency.percentile(50.0) == pytest.approx(510_000, rel=1e-3)
    assert stats.service.percentile(50.0) == pytest.approx(10_000, rel=1e-3)


def test_held_pings_stay_out_of_the_aggregate() -> None:
    recorder = Recorder(start=0.0)
    recorder.record(sample(intended=0.0, ended=0.002))
    recorder.record(sample("ping", intended=0.0, ended=60.0))
    result = finish(recorder)
    assert result.overall.latency.max == 2_000
    assert result.stats("ping") is not None
    assert result.windows[0].pings == 0
    assert result.windows[-1].pings == 1


def test_closed_model_samples_are_corrected_against_their_interval() -> None:
    recorder = Recorder(start=0.0)
    recorder.record(
        Sample(
            op="sync",
            device_id="d",
            device_class=DeviceClass.REGISTERED,
            outcome=Outcome.OK,
            intended=0.0,
            started=0.0,
            ended=0.1,
            expected_interval=0.02,
        )
    )
    assert recorder.ops["sync"].latency.total == 5


def test_decisions_are_tallied_per_device() -> None:
    recorder = Recorder(start=0.0)
    recorder.record(sample(intended=0, ended=1, device="A"))
    recorder.record(
        sample(
            "first_access",
            intended=0,
            ended=1,
            device="U1",
            device_class=DeviceClass.UNREGISTERED,
            outcome=Outcome.BLOCKED,
            code=129,
        )
    )
    recorder.record(
        sample(
            "first_access",
            intended=0,
            ended=1,
            device="U2",
            device_class=DeviceClass.UNREGISTERED,
            outcome=Outcome.OK,
        )
    )
    result = finish(recorder)
    checks = evaluate(
        (
            DecisionExpectation(device_class=DeviceClass.REGISTERED, decision=Decision.ALLOWED),
            DecisionExpectation(device_class=DeviceClass.UNREGISTERED, decision=Decision.BLOCKED),
        ),
        result,
    )
    assert [c.passed for c in checks] == [True, False]
    assert checks[1].measured == "1 of 2 allowed (U2)"
    assert result.ops["first_access"].codes["blocked 129"] == 1


def test_a_decision_expectation_without_devices_fails() -> None:
    result = finish(Recorder(start=0.0))
    (check,) = evaluate(
        (DecisionExpectation(device_class=DeviceClass.UNREGISTERED, decision=Decision.BLOCKED),),
        result,
    )
    assert not check.passed
    assert "no unregistered device" in check.measured


def test_numeric_thresholds_pass_and_fail_on_measured_values() -> None:
    recorder = Recorder(start=0.0)
    for i in range(100):
        recorder.record(sample(intended=i * 0.1, ended=i * 0.1 + 0.001 * (i + 1)))
    recorder.record(sample(intended=9.0, ended=9.5, outcome=Outcome.TIMEOUT))
    result = finish(recorder)
    rules = tuple(
        Threshold.parse(t)
        for t in (
            "p50 < 60ms",
            "p99 < 50ms",
            "max <= 500ms",
            "error_rate < 0.02",
            "error_rate < 0.001",
            "throughput > 5/s",
            "foldersync.p99 < 1s",
        )
    )
    assert [c.passed for c in evaluate(rules, result)] == [
        True,
        False,
        True,
        True,
        False,
        True,
        False,
    ]


def test_cpu_bound_seconds_make_the_run_invalid() -> None:
    windows = [Window(second=i, cpu=0.95 if i < 3 else 0.2) for i in range(10)]
    validity = judge_validity(windows, Histogram(), 0, Limits(max_cpu=0.9))
    assert not validity.valid
    assert "3 of 10 seconds" in validity.reasons[0]


def test_an_occasional_busy_second_does_not_invalidate() -> None:
    windows = [Window(second=i, cpu=0.95 if i == 0 else 0.3) for i in range(10)]
    assert judge_validity(windows, Histogram(), 0, Limits()).valid


def test_schedule_lag_and_drops_make_the_run_invalid() -> None:
    lag = Histogram()
    lag.record(200_000, count=10)
    validity = judge_validity([], lag, 3, Limits(max_lag=0.05))
    assert not validity.valid
    assert len(validity.reasons) == 2
    assert "dispatched late" in validity.reasons[0]
    assert "3 arrivals were dropped" in validity.reasons[1]


def test_verdict_orders_invalid_over_failed_over_passed() -> None:
    recorder = Recorder(start=0.0)
    recorder.record(sample(intended=0.0, ended=0.2))
    good = finish(recorder)
    failing = evaluate((Threshold.parse("p99 < 1ms"),), good)
    assert verdict(good, ()) is Verdict.PASSED
    assert verdict(good, failing) is Verdict.FAILED
    recorder.record_cpu(1.0, 1.0)
    bad = finish(recorder)
    assert verdict(bad, ()) is Verdict.INVALID
    assert "INVALID RUN" in summary(bad, failing)


def test_json_report_is_serializable_and_holds_the_verdict() -> None:
    recorder = Recorder(start=0.0)
    recorder.record_dispatch(0.001, 0.0)
    recorder.record(sample(intended=0.0, ended=0.003))
    recorder.mark(2.0, "UEM down")
    result = finish(recorder, 3.0)
    checks = evaluate((Threshold.parse("p99 < 5ms"),), result)
    data = json.loads(json.dumps(to_json(result, checks)))
    assert data["verdict"] == "passed"
    assert data["exit_code"] == 0
    assert data["operations"]["sync"]["latency_us"]["p99"] == 3_000
    assert data["markers"] == [{"at": 2.0, "label": "UEM down"}]
    assert Histogram.from_json(data["operations"]["all"]["histogram"]).total == 1


def result_of(outcome: StepOutcome, http: int, eas: int | None, action: Done | Halt) -> StepResult:
    return StepResult(
        step="Sync",
        command="Sync",
        label="Sync Inbox",
        outcome=outcome,
        summary="",
        http_status=http,
        eas_status=eas,
        details={},
        action=action,
    )


@pytest.mark.parametrize(
    ("results", "ok", "expected"),
    [
        ([result_of(StepOutcome.OK, 200, 1, Done(True))], True, (Outcome.OK, None)),
        (
            [
                result_of(StepOutcome.REPROVISION, 449, None, Done(True)),
                result_of(StepOutcome.OK, 200, 1, Done(True)),
            ],
            True,
            (Outcome.PROVISIONING, None),
        ),
        (
            [result_of(StepOutcome.BLOCKED, 200, 129, Halt(DeviceState.BLOCKED))],
            False,
            (Outcome.BLOCKED, 129),
        ),
        (
            [result_of(StepOutcome.BLOCKED, 403, None, Halt(DeviceState.BLOCKED))],
            False,
            (Outcome.BLOCKED, 403),
        ),
        ([result_of(StepOutcome.FAILED, 500, None, Done(False))], False, (Outcome.HTTP_ERROR, 500)),
        (
            [result_of(StepOutcome.FAILED, 0, None, Done(False))],
            False,
            (Outcome.CONNECTION_ERROR, None),
        ),
    ],
    ids=["ok", "provisioning", "blocked-129", "blocked-403", "http-500", "connection"],
)
def test_step_results_are_classified(
    results: list[StepResult], ok: bool, expected: tuple[Outcome, int | None]
) -> None:
    assert classify(results, ok) == expected
