"""Per-request decisions: seeded determinism, counts, scopes and the order of faults."""

from __future__ import annotations

import random
from typing import Any

import pytest

from labfaults import FaultControl, FaultPlan, FaultState, Outcome, RequestFacts

GET = RequestFacts("GET", "/api/v1/admin/users")
REPORT = RequestFacts("POST", "/api/v1/sentry/reports")
SYNC = RequestFacts("POST", "/Microsoft-Server-ActiveSync", "Sync")
PING = RequestFacts("POST", "/Microsoft-Server-ActiveSync", "Ping")


def state(mapping: dict[str, Any], seed: int | None = None) -> FaultState:
    plan = FaultPlan.from_mapping(mapping, commands={"Sync", "Ping"})
    return FaultState.start(plan, None if seed is None else random.Random(seed))


def test_error_rate_fails_exactly_the_draws_below_the_rate() -> None:
    oracle = random.Random(11)
    expected = [503 if oracle.random() < 0.3 else None for _ in range(200)]
    faults = state({"error_rate": 0.3}, seed=11)
    assert [faults.decide(GET).status for _ in range(200)] == expected
    assert None in expected
    assert 503 in expected


def test_the_plan_seed_makes_two_runs_identical() -> None:
    mapping = {"seed": 5, "error_rate": 0.5, "latency": {"fixed_s": 0.1, "jitter_s": 0.4}}
    first, second = state(mapping), state(mapping)
    assert [first.decide(GET) for _ in range(50)] == [second.decide(GET) for _ in range(50)]


def test_jittered_latency_stays_between_fixed_and_fixed_plus_jitter() -> None:
    faults = state({"latency": {"fixed_s": 0.2, "jitter_s": 0.3}}, seed=1)
    delays = [faults.decide(GET).delay_s for _ in range(100)]
    assert all(0.2 <= d <= 0.5 for d in delays)
    assert len(set(delays)) > 1
    assert faults.injected == {"latency": 100}


def test_fail_after_lets_n_through_then_fails_every_request() -> None:
    faults = state({"fail_after": {"n": 3, "status": 500}})
    assert [faults.decide(GET).status for _ in range(6)] == [None, None, None, 500, 500, 500]


def test_fail_after_counts_only_requests_in_its_scope() -> None:
    faults = state({"fail_after": 1, "scope": {"path_prefix": "/api/v1/sentry/"}})
    outcomes = [faults.decide(facts).outcome for facts in (GET, REPORT, GET, REPORT)]
    assert outcomes == [Outcome.PROCEED, Outcome.PROCEED, Outcome.PROCEED, Outcome.RESPOND]


def test_command_scope_matches_only_that_command() -> None:
    faults = state({"error_rate": 1, "scope": {"command": "Sync"}})
    assert faults.decide(SYNC).outcome is Outcome.RESPOND
    assert faults.decide(PING).outcome is Outcome.PROCEED


def test_method_scope() -> None:
    faults = state({"hang": True, "scope": {"methods": ["POST"]}})
    assert faults.decide(GET).outcome is Outcome.PROCEED
    assert faults.decide(REPORT).outcome is Outcome.HANG


@pytest.mark.parametrize(
    ("mapping", "outcome"),
    [
        ({"down": True, "hang": True, "error_rate": 1}, Outcome.DROP),
        ({"hang": {"max_s": 2}, "error_rate": 1}, Outcome.HANG),
        ({"fail_after": 0, "error_rate": {"rate": 1, "status": 502}}, Outcome.RESPOND),
    ],
)
def test_the_first_terminal_fault_wins(mapping: dict[str, Any], outcome: Outcome) -> None:
    action = state(mapping).decide(GET)
    assert action.outcome is outcome


def test_fail_after_wins_over_error_rate_in_one_rule() -> None:
    action = state({"fail_after": {"n": 0, "status": 500}, "error_rate": 1}).decide(GET)
    assert action.status == 500
    assert action.reason.startswith("fail_after")


def test_latency_of_every_matching_rule_adds_up_and_the_first_terminal_rule_chooses() -> None:
    faults = state(
        {
            "rules": [
                {"latency": 0.1},
                {"latency": 0.2, "error_rate": {"rate": 1, "status": 502}},
                {"error_rate": {"rate": 1, "status": 504}},
            ]
        }
    )
    action = faults.decide(GET)
    assert action.delay_s == pytest.approx(0.3)
    assert action.status == 502
    assert faults.matched == [1, 1, 1]


def test_hang_carries_its_bound() -> None:
    assert state({"hang": {"max_s": 2.5}}).decide(GET).hang_max_s == 2.5


def test_control_without_plan_decides_nothing_and_counts_nothing() -> None:
    control = FaultControl()
    assert control.decide(GET).is_noop
    assert control.describe() == {"active": False, "plan": None, "generation": 0}


def test_control_restarts_counters_on_every_set() -> None:
    control = FaultControl()
    control.set_mapping({"fail_after": 1})
    assert [control.decide(GET).outcome for _ in range(2)] == [Outcome.PROCEED, Outcome.RESPOND]
    control.set_mapping({"fail_after": 1})
    assert control.decide(GET).outcome is Outcome.PROCEED
    assert control.describe()["stats"]["matched_per_rule"] == [1]


def test_control_tells_subscribers_and_survives_a_failing_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    control = FaultControl()
    seen: list[bool | None] = []

    def broken(_: FaultPlan | None) -> None:
        raise RuntimeError("subscriber bug")

    control.subscribe(broken)
    unsubscribe = control.subscribe(lambda plan: seen.append(None if plan is None else plan.down))
    control.set_mapping({"down": True})
    control.clear()
    unsubscribe()
    control.set_mapping({"down": True})
    assert seen == [True, None]
    assert control.generation == 3
    assert "subscriber bug" in caplog.text


def test_control_uses_the_injected_random_factory() -> None:
    made: list[int | None] = []

    def factory(seed: int | None) -> random.Random:
        made.append(seed)
        return random.Random(0)

    control = FaultControl(random_factory=factory)
    control.set_mapping({"seed": 9, "error_rate": 0.5})
    assert made == [9]
