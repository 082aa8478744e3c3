"""The lab file: the default lab loads, and every error names the file and the key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from scenarios.lab import LabConfig, LabConfigError, default_lab_mapping
from sentry_sim.gate import PolicyMode, Unreachable


def write(tmp_path: Path, mapping: Any) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(mapping), encoding="utf-8")
    return path


def error_of(tmp_path: Path, mapping: Any) -> str:
    path = write(tmp_path, mapping)
    with pytest.raises(LabConfigError) as info:
        LabConfig.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message


def test_default_lab_loads_with_every_section() -> None:
    config = LabConfig.default()
    assert [u.name for u in config.users] == ["alice", "bob", "carol", "dave", "erin"]
    assert config.uem.policy.max_devices_per_mailbox == 2
    assert config.uem.policy.auto_block_unregistered is True
    assert {d.device_id for d in config.uem.devices} >= {"ALICEIPHONE01", "BOBPIXEL01"}
    assert config.sentry.uem_unreachable is Unreachable.ALLOW
    assert config.sentry.activesync_policy_mode is PolicyMode.UEM
    assert config.exchange.seed_messages_per_mailbox == 5
    assert config.lab.host == "127.0.0.1"
    assert config.lab.sentry_port == 0


def test_default_lab_file_on_disk_loads_the_same(tmp_path: Path) -> None:
    path = write(tmp_path, default_lab_mapping())
    assert LabConfig.load(path).uem == LabConfig.default().uem


def test_exchange_keeps_its_own_provisioning_unless_the_file_says_so(tmp_path: Path) -> None:
    # uem mode: the gatekeeper provisions with Exchange on the device's behalf.
    assert LabConfig.default().exchange.provisioning_required is True
    mapping = default_lab_mapping()
    mapping["exchange"]["provisioning_required"] = False
    assert LabConfig.load(write(tmp_path, mapping)).exchange.provisioning_required is False


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("users:\n  - name: alice\n    email: [unclosed\n", encoding="utf-8")
    with pytest.raises(LabConfigError) as info:
        LabConfig.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: line ")
    assert "not valid YAML" in message


def test_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(LabConfigError, match=r"nowhere\.yaml: cannot read"):
        LabConfig.load(path)


def test_unknown_top_level_key_names_file_and_key(tmp_path: Path) -> None:
    mapping = default_lab_mapping()
    mapping["gatekeeper"] = {"port": 1}
    message = error_of(tmp_path, mapping)
    assert "gatekeeper: unknown top-level key" in message
    assert "users, uem, sentry, exchange, lab" in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert "expected a mapping" in error_of(tmp_path, ["users"])


@pytest.mark.parametrize(
    ("section", "change", "where"),
    [
        ("users", lambda m: m["users"][1].update(email="no-at-sign"), "users[1].email"),
        ("users", lambda m: m["users"][0].pop("password"), "users[0].password"),
        (
            "uem",
            lambda m: m["uem"]["devices"][2].update(os_version=17),
            "uem.devices[2].os_version",
        ),
        (
            "uem",
            lambda m: m["uem"].update(max_devices_per_mailbox=0),
            "uem.max_devices_per_mailbox",
        ),
        ("uem", lambda m: m["uem"].update(colour="blue"), "uem.colour"),
        (
            "uem",
            lambda m: m["uem"]["devices"][0].update(user="nobody"),
            "uem.devices[0].user",
        ),
        ("sentry", lambda m: m["sentry"].update(uem_unreachable="maybe"), "sentry.uem_unreachable"),
        ("sentry", lambda m: m["sentry"].update(resync_interval_s=-1), "sentry.resync_interval_s"),
        ("sentry", lambda m: m["sentry"].update(colour=1), "sentry.colour"),
        (
            "exchange",
            lambda m: m["exchange"].update(heartbeat_min_s="soon"),
            "exchange.heartbeat_min_s",
        ),
        ("exchange", lambda m: m["exchange"].update(colour=1), "exchange.colour"),
        ("lab", lambda m: m["lab"].update(uem_port=70000), "lab.uem_port"),
        ("lab", lambda m: m["lab"].update(host="not a host"), "lab.host"),
        ("lab", lambda m: m["lab"].update(colour=1), "lab.colour"),
        (
            "lab",
            lambda m: m["lab"].update(uem_port=18080, exchange_port=18080),
            "lab.exchange_port",
        ),
        ("sentry", lambda m: m["sentry"].update(host="10.1.2.3"), "sentry.host"),
    ],
)
def test_bad_value_in_each_section_names_file_and_key_path(
    tmp_path: Path, section: str, change: Any, where: str
) -> None:
    mapping = default_lab_mapping()
    change(mapping)
    message = error_of(tmp_path, mapping)
    assert f": {where}" in message, message


def test_sentry_port_and_lab_port_must_agree(tmp_path: Path) -> None:
    mapping = default_lab_mapping()
    mapping["sentry"]["port"] = 18443
    assert LabConfig.load(write(tmp_path, mapping)).lab.sentry_port == 18443
    mapping["lab"]["sentry_port"] = 18444
    assert "sentry.port: 18443 contradicts lab.sentry_port" in error_of(tmp_path, mapping)


def test_empty_file_needs_users(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(LabConfigError, match=r"empty.yaml: users: expected a list"):
        LabConfig.load(path)
