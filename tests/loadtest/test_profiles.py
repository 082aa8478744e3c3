"""Profile validation: shipped profiles load; every error names the file and the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from loadtest.profiles import (
    ClosedModel,
    Op,
    OpenModel,
    ProfileError,
    TargetKind,
    UemState,
    lab_config,
    load_profile,
    shipped_profiles,
)
from loadtest.profiles import Profile as P
from loadtest.thresholds import DecisionExpectation, Threshold

BASE: dict[str, Any] = {
    "model": {"open": {"rate": "50/s"}},
    "phases": [{"name": "steady", "duration": "2s"}],
    "population": {"registered": 5},
    "workload": {"sync": 1},
}


def profile_with(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


def no_resolver(host: str) -> list[str]:
    raise AssertionError(f"looked up {host!r}")


def test_every_shipped_profile_loads() -> None:
    names = shipped_profiles()
    assert names == [
        "first_access_storm",
        "held_pings",
        "hot_path",
        "morning_rush",
        "uem_outage",
    ]
    for name in names:
        profile = load_profile(name)
        assert profile.name == name
        assert profile.target.kind is TargetKind.LAB
        # "Small enough to run in seconds by default."
        assert profile.duration <= 10


def test_uem_outage_profile_has_down_then_up_events() -> None:
    profile = load_profile("uem_outage")
    assert [e.uem for e in profile.events] == [UemState.DOWN, UemState.UP]
    assert profile.events[0].at < profile.events[1].at < profile.duration


def test_minimal_profile_reads_model_phases_and_defaults() -> None:
    profile = P.from_mapping(profile_with(), "p.yaml")
    assert profile.model == OpenModel(50.0)
    assert profile.duration == 2.0
    assert profile.workload == ((Op.SYNC, 1.0),)
    assert profile.phase_bound(profile.phases[0]) == 101
    assert profile.target.kind is TargetKind.LAB


def test_thresholds_and_decisions_are_parsed() -> None:
    profile = P.from_mapping(
        profile_with(
            thresholds=[
                "p99 < 5ms",
                "sync.error_rate <= 0.001",
                {"decisions": {"registered": "allowed"}},
            ]
        ),
        "p.yaml",
    )
    first, second, third = profile.rules
    assert isinstance(first, Threshold)
    assert (first.op, first.metric, first.value) == ("all", "p99", 0.005)
    assert isinstance(second, Threshold)
    assert (second.op, second.comparator) == ("sync", "<=")
    assert isinstance(third, DecisionExpectation)


@pytest.mark.parametrize(
    ("changes", "where", "what"),
    [
        ({"model": {"open": {"rate": "fast"}}}, "model.open.rate", "rate like 500/s"),
        ({"model": {"open": {"rate": 1e9}}}, "model.open.rate", "at most"),
        ({"model": {"open": {}, "closed": {}}}, "model", "exactly one"),
        ({"model": None}, "model", "missing"),
        ({"phases": [{"name": "x"}]}, "phases[0].duration", "bounded in time"),
        ({"phases": [{"duration": "soon"}]}, "phases[0].duration", "duration like 5s"),
        ({"phases": [{"duration": "2h"}]}, "phases[0].duration", "at most"),
        ({"phases": [{"duration": "1s", "requests": 0}]}, "phases[0].requests", "expected 1"),
        ({"phases": [{"duration": "1s", "concurrency": 4}]}, "phases[0].concurrency", "closed"),
        ({"phases": []}, "phases", "at least one"),
        ({"workload": {"sync": 0}}, "workload", "weight above 0"),
        ({"workload": {"browse": 1}}, "workload.browse", "unknown key"),
        ({"population": {"registered": -1}}, "population.registered", "expected 0..100000"),
        ({"population": {"registered": 1, "versions": ["15.0"]}}, "population.versions[0]", "16.1"),
        ({"population": {"unregistered": 3}}, "population.registered", "warm registered"),
        ({"workload": {"first_access": 1}, "population": {}}, "population", "unseen devices"),
        ({"held_pings": {"devices": 5}}, "held_pings.heartbeat", "missing"),
        ({"events": [{"at": "1s", "uem": "sideways"}]}, "events[0].uem", "down or up"),
        ({"events": [{"at": "5s", "uem": "down"}]}, "events[0].at", "before the end"),
        ({"thresholds": ["p99 << 5ms"]}, "thresholds[0]", "operation.]metric"),
        ({"thresholds": ["p98 < 5ms"]}, "thresholds[0]", "unknown metric"),
        ({"thresholds": ["login.p99 < 5ms"]}, "thresholds[0]", "unknown operation"),
        ({"thresholds": ["error_rate < 2"]}, "thresholds[0]", "fraction"),
        ({"thresholds": [{"decisions": {"guests": "blocked"}}]}, "thresholds[0]", "device class"),
        ({"thresholds": [{"decisions": {"registered": "maybe"}}]}, "thresholds[0]", "allowed or"),
        ({"target": {"lab": "default", "ready_file": "r.json"}}, "target", "exactly one"),
        ({"target": {"lab": "big"}}, "target.lab", "expected default"),
        ({"options": {"max_cpu": 2}}, "options.max_cpu", "expected 0.05..1"),
        ({"colour": "blue"}, "colour", "unknown key"),
    ],
)
def test_bad_profiles_name_file_and_key(changes: dict[str, Any], where: str, what: str) -> None:
    with pytest.raises(ProfileError) as caught:
        P.from_mapping(profile_with(**changes), "bad.yaml", resolver=no_resolver)
    message = str(caught.value)
    assert message.startswith(f"bad.yaml: {where}"), message
    assert what in message


def test_a_target_url_outside_loopback_is_refused_at_load_time() -> None:
    with pytest.raises(ProfileError, match=r"bad\.yaml: target\.sentry_url: 10\.0\.0\.1"):
        P.from_mapping(
            profile_with(target={"sentry_url": "http://10.0.0.1:443"}),
            "bad.yaml",
            resolver=no_resolver,
        )


def test_a_loopback_target_url_is_kept() -> None:
    profile = P.from_mapping(
        profile_with(target={"sentry_url": "http://127.0.0.2:8443/"}),
        "p.yaml",
        resolver=no_resolver,
    )
    assert profile.target.urls == {"sentry_url": "http://127.0.0.2:8443"}


def test_not_a_mapping_is_refused() -> None:
    with pytest.raises(ProfileError, match=r"p\.yaml: \(top level\): expected a mapping"):
        P.from_mapping(["model"], "p.yaml")


def test_unreadable_and_invalid_yaml_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"cannot read.*shipped profiles: first_access_storm"):
        load_profile(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(ProfileError, match=r"broken\.yaml: line 2, column 1: not valid YAML"):
        load_profile(broken)


def test_duration_override_scales_phases_to_the_total() -> None:
    profile = load_profile("morning_rush").with_overrides(duration=14.0)
    assert profile.duration == pytest.approx(14.0)
    assert [p.duration for p in profile.phases] == pytest.approx([4.0, 6.0, 4.0])


def test_rate_override_scales_phase_rates_in_proportion() -> None:
    profile = load_profile("morning_rush").with_overrides(rate=100.0)
    assert profile.model == OpenModel(100.0)
    assert profile.phases[1].rate == pytest.approx(300.0)


def test_overrides_that_do_not_fit_the_profile_are_refused() -> None:
    with pytest.raises(ProfileError, match="--concurrency"):
        load_profile("hot_path").with_overrides(concurrency=5)
    with pytest.raises(ProfileError, match="before the event"):
        load_profile("uem_outage").with_overrides(duration=1.0)


def test_closed_model_with_interval() -> None:
    profile = P.from_mapping(
        profile_with(model={"closed": {"concurrency": 4, "interval": "20ms"}}), "c.yaml"
    )
    assert profile.model == ClosedModel(4, 0.02)
    assert profile.with_overrides(concurrency=8).model == ClosedModel(8, 0.02)


def test_ready_file_override_replaces_the_target() -> None:
    profile = load_profile("hot_path").with_overrides(ready_file="ready.json")
    assert profile.target.kind is TargetKind.READY_FILE
    assert profile.target.ready_file == "ready.json"


def test_lab_config_has_a_mailbox_per_device_and_enrolls_registered_groups() -> None:
    profile = load_profile("morning_rush")
    config = lab_config(profile)
    assert len(config["users"]) == 40 + 40 + 20 + 30
    enrolled = {d["device_id"] for d in config["uem"]["devices"]}
    assert "LTREG000001" in enrolled
    assert "LTNEW000040" in enrolled
    assert "LTPNG000030" in enrolled
    assert not any(d.startswith("LTUNR") for d in enrolled)
    assert config["uem"]["auto_block_unregistered"] is True


def test_lab_settings_are_merged_into_the_generated_lab() -> None:
    config = lab_config(load_profile("uem_outage"))
    assert config["sentry"]["first_access_wait_s"] == 0.5
    assert config["sentry"]["blocked_response"] == "eas"


def test_a_lab_config_is_accepted_by_the_lab_actors() -> None:
    from exchange_sim.config import ExchangeConfig
    from sentry_sim.config import SentryConfig
    from uem_sim.config import UemConfig

    config = lab_config(load_profile("morning_rush"))
    assert len(ExchangeConfig.from_mapping(config).users) == 130
    assert len(UemConfig.from_mapping(config).devices) == 110
    assert SentryConfig.from_mapping(config["sentry"]).first_access_wait_s == 5.0
