"""Reading fault plans: the accepted forms, the round trip, and errors that name the key."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labfaults import (
    Down,
    ErrorRate,
    FailAfter,
    FaultError,
    FaultPlan,
    FaultRule,
    Hang,
    Latency,
    Scope,
)
from labfaults.plan import MAX_FAULT_S

PURE = ("plan.py", "state.py", "control.py")
IO = {"asyncio", "aiohttp", "socket", "uvloop", "ssl", "selectors", "time"}


@pytest.mark.parametrize("module", PURE)
def test_core_modules_import_no_io(module: str) -> None:
    path = Path(__file__).resolve().parents[2] / "labfaults" / module
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names] + [
        n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    ]
    assert [n for n in names if n.split(".")[0] in IO] == []


def test_top_level_keys_are_one_rule_with_the_default_scope() -> None:
    plan = FaultPlan.from_mapping(
        {"latency": {"fixed_s": 0.2, "jitter_s": 0.1}, "error_rate": {"rate": 0.5, "status": 500}}
    )
    assert plan == FaultPlan(
        rules=(
            FaultRule(
                scope=Scope(),
                latency=Latency(0.2, 0.1),
                error_rate=ErrorRate(0.5, 500),
            ),
        )
    )


def test_shorthands_read_as_their_long_forms() -> None:
    short = FaultPlan.from_mapping(
        {"latency": 1, "error_rate": 0.25, "fail_after": 3, "hang": True, "down": True}
    )
    long = FaultPlan.from_mapping(
        {
            "latency": {"fixed_s": 1},
            "error_rate": {"rate": 0.25, "status": 503},
            "fail_after": {"n": 3},
            "hang": {"max_s": MAX_FAULT_S},
            "down": True,
        }
    )
    assert short == long
    assert short.rules[0].faults == (Down(), Hang(), FailAfter(3), ErrorRate(0.25), Latency(1.0))


def test_rules_with_scopes_and_seed() -> None:
    plan = FaultPlan.from_mapping(
        {
            "seed": 7,
            "rules": [
                {"scope": {"path_prefix": "/api/v1/sentry/", "methods": ["post"]}, "hang": True},
                {"scope": {"command": "Sync"}, "error_rate": 1},
            ],
        },
        commands={"Sync", "Ping"},
    )
    assert plan.seed == 7
    assert plan.rules[0].scope == Scope("/api/v1/sentry/", frozenset({"POST"}))
    assert plan.rules[1].scope.command == "Sync"
    assert plan.needs_command


def test_down_with_the_default_scope_is_a_whole_server_down() -> None:
    assert FaultPlan.from_mapping({"down": True}).down
    scoped = FaultPlan.from_mapping({"down": True, "scope": {"path_prefix": "/api/"}})
    assert not scoped.down


@pytest.mark.parametrize(
    ("mapping", "path", "words"),
    [
        ([], "", "expected a mapping"),
        ({}, "", "at least one fault"),
        ({"latncy": 1}, "latncy", "unknown key"),
        ({"error_rate": {"rate": 2}}, "error_rate.rate", "0..1"),
        ({"error_rate": {"rate": 0.5, "status": 200}}, "error_rate.status", "400..599"),
        ({"error_rate": {"status": 500}}, "error_rate.rate", "missing"),
        ({"latency": {"fixed_s": -1}}, "latency.fixed_s", "0..300"),
        ({"latency": {"fixed_s": 200, "jitter_s": 200}}, "latency.jitter_s", "at most 300"),
        ({"latency": "slow"}, "latency", "expected a mapping"),
        ({"fail_after": {"n": -1}}, "fail_after.n", "integer"),
        ({"fail_after": {"status": 500}}, "fail_after.n", "missing"),
        ({"hang": {"max_s": 0}}, "hang.max_s", "0.001..300"),
        ({"down": False}, "down", "expected true"),
        ({"down": True, "scope": {"path_prefix": "api"}}, "scope.path_prefix", "starting with /"),
        ({"down": True, "scope": {"methods": ["BREW"]}}, "scope.methods[0]", "one of"),
        ({"down": True, "scope": {"command": "Sync"}}, "scope.command", "names no commands"),
        ({"down": True, "seed": "x"}, "seed", "integer"),
        ({"rules": []}, "rules", "1..32"),
        ({"rules": [{"down": True}, {"hang": 5}]}, "rules[1].hang", "expected a mapping"),
        ({"rules": [{"down": True}], "hang": True}, "hang", "not both"),
    ],
)
def test_errors_name_the_key(mapping: Any, path: str, words: str) -> None:
    with pytest.raises(FaultError) as caught:
        FaultPlan.from_mapping(mapping, "lab.yaml")
    assert caught.value.path == path
    assert words in caught.value.problem
    assert str(caught.value).startswith("lab.yaml: ")


def test_a_command_the_server_does_not_know_is_named() -> None:
    with pytest.raises(FaultError) as caught:
        FaultPlan.from_mapping({"down": True, "scope": {"command": "Sinc"}}, commands={"Sync"})
    assert caught.value.path == "scope.command"
    assert "Sync" in caught.value.problem


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
fault_keys = st.sampled_from(
    ["latency", "error_rate", "fail_after", "hang", "down", "scope", "rules", "seed", "n", "rate"]
)
near_mappings = st.dictionaries(fault_keys, json_values, max_size=4)


@given(st.one_of(json_values, near_mappings))
def test_any_mapping_reads_or_raises_fault_error_only(mapping: object) -> None:
    try:
        plan = FaultPlan.from_mapping(mapping, commands={"Sync"})
    except FaultError:
        return
    assert plan.rules


scopes = st.builds(
    Scope,
    path_prefix=st.sampled_from(["/", "/api/", "/Microsoft-Server-ActiveSync"]),
    methods=st.frozensets(st.sampled_from(["GET", "POST"])),
    command=st.sampled_from([None, "Sync"]),
)
seconds = st.floats(0, 100, allow_nan=False)
rules = st.builds(
    FaultRule,
    scope=scopes,
    down=st.none() | st.just(Down()),
    hang=st.none() | st.builds(Hang, st.floats(0.001, MAX_FAULT_S)),
    fail_after=st.none() | st.builds(FailAfter, st.integers(0, 10), st.integers(400, 599)),
    error_rate=st.none() | st.builds(ErrorRate, st.floats(0, 1), st.integers(400, 599)),
    latency=st.builds(Latency, seconds, seconds),
)
plans = st.builds(
    FaultPlan, st.lists(rules, min_size=1, max_size=4).map(tuple), st.none() | st.integers(0, 99)
)


@given(plans)
def test_to_mapping_round_trips(plan: FaultPlan) -> None:
    assert FaultPlan.from_mapping(plan.to_mapping(), commands={"Sync"}) == plan
