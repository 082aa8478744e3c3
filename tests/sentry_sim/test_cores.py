"""Plain tests of the pure pieces: identity, device list, policy keys, config, store, events."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activesync.commands.provision import ProvisionDoc, ProvisionRequest, RequestKind
from activesync.versions import ProtocolVersion
from sentry_sim.config import BlockedResponse, ConfigError, SentryConfig
from sentry_sim.device_list import (
    DeviceList,
    IllegalTransition,
    State,
    pack_decision,
    record_key,
    split_key,
)
from sentry_sim.events import EventBus, PushReceived
from sentry_sim.gate import PolicyMode, Unreachable
from sentry_sim.policy_gate import PolicyGate
from sentry_sim.store import Store


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("alice", "alice"),
        ("CORP\\Alice", "alice"),
        (" Alice@Example.COM ", "alice@example.com"),
    ],
)
def test_record_key_normalises_the_user_and_lowercases_the_device(user: str, expected: str) -> None:
    assert record_key(user, "DEV1") == f"{expected}/dev1"
    assert split_key(record_key(user, "DEV1")) == (expected, "dev1")


@given(reasons=st.integers(0, 0xFFFF), version=st.integers(0, 0xFFFF), answer=st.integers(0, 2**40))
def test_packed_decision_round_trips(reasons: int, version: int, answer: int) -> None:
    devices = DeviceList()
    devices.apply(
        "u/d", State.BLOCKED, reasons=reasons, answer=answer, policy_version=version, now=1.0
    )
    record = devices.get("u/d")
    assert record is not None
    assert (record.reasons, record.policy_version, record.answer) == (reasons, version, answer)


def test_out_of_range_decision_numbers_are_refused() -> None:
    with pytest.raises(ValueError, match="reason bitmask"):
        pack_decision(0x10000, 0, 1)
    with pytest.raises(ValueError, match="policy version"):
        pack_decision(0, -1, 1)


def test_records_are_lean_slots_objects() -> None:
    devices = DeviceList()
    record = devices.first_seen("u/d", 1.0)
    assert not hasattr(record, "__dict__")
    assert not hasattr(record, "__weakref__")


def test_stale_answers_and_late_fallbacks_change_nothing() -> None:
    devices = DeviceList()
    devices.apply("u/d", State.BLOCKED, reasons=1, answer=5, policy_version=1, now=1.0)
    assert (
        devices.apply("u/d", State.ALLOWED, reasons=0, answer=4, policy_version=1, now=2.0) is None
    )
    assert (
        devices.apply("u/d", State.ALLOWED, reasons=0, answer=0, policy_version=0, now=2.0) is None
    )
    record = devices.get("u/d")
    assert record is not None
    assert record.state is State.BLOCKED


def test_no_decision_leads_back_to_unknown() -> None:
    devices = DeviceList()
    devices.apply("u/d", State.ALLOWED, reasons=0, answer=1, policy_version=1, now=1.0)
    with pytest.raises(IllegalTransition, match="ALLOWED to UNKNOWN"):
        devices.apply("u/d", State.UNKNOWN, reasons=0, answer=2, policy_version=1, now=1.0)


def test_rows_leave_out_unknown_and_fallback_records_and_load_back() -> None:
    devices = DeviceList()
    devices.first_seen("a/1", 1.0)
    devices.first_seen("b/2", 1.0)
    devices.apply("b/2", State.ALLOWED, reasons=0, answer=0, policy_version=0, now=2.0)
    devices.apply("c/3", State.WIPED, reasons=0x200, answer=9, policy_version=3, now=3.0)
    rows = list(devices.rows())
    assert [r[0] for r in rows] == ["c/3"]
    again = DeviceList()
    assert again.load(rows) == 1
    record = again.get("c/3")
    assert record is not None
    assert record.state is State.WIPED
    assert record.reasons == 0x200
    assert again.count(State.WIPED) == 1


def test_final_keys_are_derived_stable_and_change_with_the_policy_version() -> None:
    gate = PolicyGate(b"k" * 32, ProvisionDoc())
    key = gate.final_key("alice/dev1", 1)
    assert key == gate.final_key("alice/dev1", 1)
    assert 0 < key < 0x8000_0000
    assert key != gate.final_key("alice/dev1", 2)
    assert key != gate.final_key("alice/dev2", 1)
    assert gate.check("alice/dev1", key, 1) is None
    assert gate.check("alice/dev1", None, 1) == 142
    assert gate.check("alice/dev1", 0, 1) == 142
    assert gate.check("alice/dev1", key, 2) == 144
    other_secret = PolicyGate(b"x" * 32, ProvisionDoc())
    assert other_secret.final_key("alice/dev1", 1) != key


def test_temporary_key_from_an_older_policy_yields_no_final_key() -> None:
    gate = PolicyGate(b"k" * 32, ProvisionDoc())
    v = ProtocolVersion.V14_1
    first = gate.answer(
        "a/d",
        ProvisionRequest.initial(v),
        version=v,
        policy_version=1,
        wipe=False,
        presented_key=None,
    )
    temporary = first.response.policy_key_value
    assert temporary is not None
    assert temporary >= 0x8000_0000
    ack = ProvisionRequest.acknowledgement(v, temporary)
    late = gate.answer("a/d", ack, version=v, policy_version=2, wipe=False, presented_key=None)
    assert late.phase == "wrong_key"
    assert late.response.policy_status == 5
    assert ProvisionRequest.wipe_fetch().kind is RequestKind.WIPE_FETCH


def test_config_defaults_are_the_real_products() -> None:
    config = SentryConfig.from_mapping(None, "lab.yaml")
    assert config.uem_unreachable is Unreachable.ALLOW
    assert config.blocked_response is BlockedResponse.EAS
    assert config.activesync_policy_mode is PolicyMode.UEM


def test_config_reads_every_documented_setting() -> None:
    config = SentryConfig.from_mapping(
        {
            "uem_unreachable": "block",
            "blocked_response": "http403",
            "activesync_policy_mode": "pass_through",
            "resync_interval_s": 30,
            "first_access_wait_s": 0,
            "state_dir": "/tmp/x",
            "port": 8443,
        },
        "lab.yaml",
    )
    assert config.uem_unreachable is Unreachable.BLOCK
    assert config.blocked_response is BlockedResponse.HTTP403
    assert config.activesync_policy_mode is PolicyMode.PASS_THROUGH
    assert (config.resync_interval_s, config.first_access_wait_s) == (30.0, 0.0)
    assert (config.state_dir, config.port) == ("/tmp/x", 8443)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (
            {"uem_unreachable": "maybe"},
            'lab.yaml: sentry.uem_unreachable: expected allow or block, got "maybe"',
        ),
        (
            {"resync_interval_s": 0},
            "lab.yaml: sentry.resync_interval_s: expected a number of seconds > 0, got 0",
        ),
        ({"port": 70000}, "lab.yaml: sentry.port: expected a port 0..65535"),
        ({"resync_intervall_s": 5}, "lab.yaml: sentry.resync_intervall_s: unknown setting"),
        (
            {"default_activesync_policy": {"Bad Name": 1}},
            "sentry.default_activesync_policy.Bad Name",
        ),
        ([1, 2], "lab.yaml: sentry: expected a mapping"),
    ],
)
def test_config_errors_name_the_file_and_key_path(mapping: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        SentryConfig.from_mapping(mapping, "lab.yaml")
    assert message in str(info.value)


def test_store_keeps_devices_outbox_and_settings(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path))
    store.save_devices([("a/1", "allowed", 0, 3, 1, 1.0, 2.0, 4)])
    store.outbox_put("b/2", "{}", 5.0)
    store.outbox_put("b/2", "{second}", 6.0)  # one report per record
    store.outbox_attempted("b/2")
    store.put("policy.1", "{}")
    store.close()
    again = Store.open(str(tmp_path))
    assert again.load_devices() == [("a/1", "allowed", 0, 3, 1, 1.0, 2.0, 4)]
    [entry] = again.outbox()
    assert (entry.key, entry.payload, entry.attempts) == ("b/2", "{}", 1)
    assert again.items("policy.") == [("policy.1", "{}")]
    again.close()


def test_a_failing_subscriber_is_logged_not_fatal_unless_strict(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(_event: object) -> None:
        raise RuntimeError("dashboard bug")

    seen: list[str] = []
    bus = EventBus()
    bus.subscribe(broken)
    bus.subscribe(lambda e: seen.append(e.kind))
    bus.emit(PushReceived(at=1.0, changes=2))
    assert seen == ["push_received"]
    assert "dashboard bug" in caplog.text
    strict = EventBus(strict=True)
    strict.subscribe(broken)
    with pytest.raises(RuntimeError):
        strict.emit(PushReceived(at=1.0, changes=2))
    assert PushReceived(at=1.0, changes=2).to_json() == {
        "event": "push_received",
        "at": 1.0,
        "request_id": "",
        "record": "",
        "changes": 2,
    }
