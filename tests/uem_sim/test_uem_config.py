"""UemConfig.from_mapping: a full lab section loads; mistakes are named by file and key path."""

from __future__ import annotations

from typing import Any

import pytest

from uem_sim.config import UemConfig
from uem_sim.errors import ConfigError

FULL = {
    "users": [
        {"name": "alice", "email": "alice@example.com", "password": "p1"},
        {"name": "bob"},
    ],
    "uem": {
        "auto_block_unregistered": True,
        "max_devices_per_mailbox": 3,
        "compliance_check_interval_s": 60,
        "security_policy": {
            "block_compromised": True,
            "min_os_version": {"iOS": "17.1", "android": "13"},
            "require_data_protection": True,
            "max_days_out_of_contact": 14,
            "allowed_platforms": ["ios", "android"],
            "allowed_models": None,
        },
        "activesync_policy": {"DevicePasswordEnabled": True, "MinDevicePasswordLength": 6},
        "devices": [
            {"device_id": "ApplA", "user": "alice@example.com", "os_version": "17.2"},
            {"device_id": "AndrB", "user": "CORP\\bob", "platform": "Android", "os_version": "14"},
        ],
    },
    "sentry": {"anything": "is not the UEM's business"},
}


def test_a_complete_lab_section_loads() -> None:
    config = UemConfig.from_mapping(FULL)
    assert [u.mailbox for u in config.users] == ["alice", "bob"]
    policy = config.policy
    assert policy.auto_block_unregistered
    assert policy.max_devices_per_mailbox == 3
    assert dict(policy.security.min_os_version) == {"ios": "17.1", "android": "13"}
    assert policy.security.allowed_platforms == frozenset({"ios", "android"})
    assert policy.security.allowed_models is None
    assert policy.security.version == 1
    assert policy.activesync.version == 1
    assert dict(policy.activesync.settings) == {
        "DevicePasswordEnabled": True,
        "MinDevicePasswordLength": 6,
    }
    assert [(d.device_id, d.posture.platform) for d in config.devices] == [
        ("ApplA", "ios"),
        ("AndrB", "android"),
    ]
    assert config.compliance_check_interval_s == 60


def test_an_empty_file_gives_the_defaults() -> None:
    config = UemConfig.from_mapping(None)
    assert config.users == ()
    assert config.policy.max_devices_per_mailbox is None
    assert config.policy.activesync.settings["DevicePasswordEnabled"] is True


def with_uem(**changes: Any) -> dict[str, Any]:
    return {"users": FULL["users"], "uem": {**FULL["uem"], **changes}}  # type: ignore[dict-item]


def devices(*extra: dict[str, Any]) -> dict[str, Any]:
    return with_uem(devices=[*FULL["uem"]["devices"], *extra])  # type: ignore[index]


@pytest.mark.parametrize(
    ("lab", "message"),
    [
        (
            devices({"device_id": "X", "user": "bob", "os_version": 17}),
            'lab.yaml: uem.devices[2].os_version: expected a version like "17.1", got 17',
        ),
        (
            devices({"device_id": "X", "user": "bob", "os_version": 17.1}),
            'lab.yaml: uem.devices[2].os_version: expected a version like "17.1", got 17.1',
        ),
        (
            devices({"device_id": "X", "user": "carol", "os_version": "1"}),
            'lab.yaml: uem.devices[2].user: no user named "carol"',
        ),
        (
            devices({"device_id": "ApplA", "user": "alice", "os_version": "1"}),
            "lab.yaml: uem.devices[2].device_id: 'ApplA' is already registered for alice",
        ),
        (
            devices({"device_id": "X", "user": "bob"}),
            'lab.yaml: uem.devices[2].os_version: missing (e.g. os_version: "17.1")',
        ),
        (
            devices({"device_id": "X", "user": "bob", "os_version": "1", "jailbroken": True}),
            "lab.yaml: uem.devices[2].jailbroken: unknown key",
        ),
        (
            devices({"device_id": "has space", "user": "bob", "os_version": "1"}),
            "lab.yaml: uem.devices[2].device_id: expected an EAS DeviceId",
        ),
        (
            with_uem(max_devices_per_mailbox=0),
            "lab.yaml: uem.max_devices_per_mailbox: expected an integer >= 1, got 0",
        ),
        (
            with_uem(auto_block_unregistered="yes"),
            'lab.yaml: uem.auto_block_unregistered: expected true or false, got "yes"',
        ),
        (
            with_uem(security_policy={"min_os_version": {"ios": "seventeen"}}),
            "lab.yaml: uem.security_policy.min_os_version.ios: "
            'expected a version like "17.1", got "seventeen"',
        ),
        (
            with_uem(security_policy={"max_days_out_of_contact": -1}),
            "lab.yaml: uem.security_policy.max_days_out_of_contact: expected a number >= 0, got -1",
        ),
        (
            with_uem(security_policy={"allowed_platforms": "ios"}),
            'lab.yaml: uem.security_policy.allowed_platforms: expected a list, got "ios"',
        ),
        (
            with_uem(security_policy={"block_rooted": True}),
            "lab.yaml: uem.security_policy.block_rooted: unknown key",
        ),
        (
            with_uem(activesync_policy={"Device-Password": True}),
            "lab.yaml: uem.activesync_policy.Device-Password: "
            "expected an EASProvisionDoc setting name",
        ),
        (
            with_uem(activesync_policy={"MaxAttachmentSize": [1]}),
            "lab.yaml: uem.activesync_policy.MaxAttachmentSize: "
            "expected a string, integer or boolean, got [1]",
        ),
        (
            with_uem(activesync_policy={"DevicePasswordEnabld": True}),
            "lab.yaml: uem.activesync_policy.DevicePasswordEnabld: unknown EASProvisionDoc "
            "setting; did you mean DevicePasswordEnabled",
        ),
        (
            with_uem(activesync_policy={"MinDevicePasswordLength": 40}),
            "lab.yaml: uem.activesync_policy.MinDevicePasswordLength: expected an integer 1..16",
        ),
        ({"users": [{"email": "x@example.com"}]}, "lab.yaml: users[0].name: missing"),
        (
            {"users": [{"name": "a"}, {"name": "A"}]},
            "lab.yaml: users[1]: 'a' is already used by users[0]",
        ),
        (
            {"users": [{"name": "a", "email": "nope"}]},
            'lab.yaml: users[0].email: expected an address like alice@example.com, got "nope"',
        ),
        ({"uem": {"max_devices": 2}}, "lab.yaml: uem.max_devices: unknown key"),
        ({"uem": []}, "lab.yaml: uem: expected a mapping, got []"),
        (
            {"uem": {"compliance_check_interval_s": 0}},
            "lab.yaml: uem.compliance_check_interval_s: expected a number > 0, got 0",
        ),
    ],
)
def test_config_mistakes_name_the_file_and_key_path(lab: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        UemConfig.from_mapping(lab, source="lab.yaml")
    assert caught.value.message.startswith(message), caught.value.message


def test_unknown_key_error_lists_the_known_keys_in_its_hint() -> None:
    with pytest.raises(ConfigError) as caught:
        UemConfig.from_mapping({"uem": {"max_devices": 2}}, source="my-lab.yaml")
    assert caught.value.message.startswith("my-lab.yaml: ")
    assert "max_devices_per_mailbox" in caught.value.hint


def test_float_version_error_hints_at_quoting() -> None:
    with pytest.raises(ConfigError) as caught:
        UemConfig.from_mapping(devices({"device_id": "X", "user": "bob", "os_version": 17.1}))
    assert "quote it" in caught.value.hint
