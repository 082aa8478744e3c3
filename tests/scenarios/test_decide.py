"""``sentry-sim decide``: offline decisions from a policy file and a device file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from scenarios import cli_decide

POLICY = """\
max_devices_per_mailbox: 2
auto_block_unregistered: true
security_policy:
  min_os_version: {ios: "17.0"}
  require_data_protection: true
"""


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli_decide.register(parser.add_subparsers())
    args = parser.parse_args(["decide", *argv])
    code: int = args.func(args)
    return code


def files(tmp_path: Path, device: str, policy: str = POLICY) -> list[str]:
    (tmp_path / "policy.yaml").write_text(policy, encoding="utf-8")
    (tmp_path / "device.yaml").write_text(device, encoding="utf-8")
    return ["--policy", str(tmp_path / "policy.yaml"), "--device", str(tmp_path / "device.yaml")]


def test_old_ios_without_encryption_is_blocked_with_both_reasons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    device = 'user: alice\nplatform: ios\nos_version: "16.4"\ndata_protection: false\n'
    assert run(files(tmp_path, device)) == 0
    out = capsys.readouterr().out
    assert "state:       BLOCK" in out
    assert "OS_VERSION, DATA_PROTECTION (0xa)" in out
    assert "inputs: os_version=16.4, minimum=17.0" in out
    assert "[XX] require data protection" in out


def test_json_output_carries_the_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    device = 'platform: ios\nos_version: "17.2"\nmailbox_allowed_devices: 2\n'
    assert run([*files(tmp_path, device), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["state"], out["reason_names"], out["reasons_hex"]) == (
        "BLOCK",
        ["PER_MAILBOX_LIMIT"],
        "0x80",
    )
    limit = next(r for r in out["trace"] if r["rule"] == "maximum devices per mailbox")
    assert limit["inputs"] == {"limit": "2", "allowed_elsewhere": "2"}


def test_unregistered_device_is_auto_blocked_and_an_admin_allow_wins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([*files(tmp_path, "registered: false\n"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reason_names"] == ["AUTO_BLOCK"]
    override = "registered: false\noverride: {action: allow, note: CEO}\n"
    assert run([*files(tmp_path, override), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "ALLOW"


def test_a_whole_lab_file_is_accepted_as_the_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = Path(__file__).parents[2] / "scenarios" / "labs" / "default.yaml"
    device = 'platform: android\nos_version: "11"\nlast_check_in_days_ago: 8\n'
    assert run(["--policy", str(lab), *files(tmp_path, device)[2:], "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reason_names"] == ["OS_VERSION", "DEVICE_OUT_OF_CONTACT"]


@pytest.mark.parametrize(
    ("device", "policy", "where"),
    [
        ('platform: ios\nos_version: 17\n', POLICY, "device.yaml: os_version: expected a version"),
        ("registered: false\ncompromised: true\n", POLICY, "device.yaml: compromised:"),
        ('os_version: "17.1"\nmailbox_allowed: 1\n', POLICY, "device.yaml: mailbox_allowed:"),
        ('os_version: "17.1"\n', "max_devices_per_mailbox: 0\n",
         "policy.yaml: max_devices_per_mailbox: expected an integer >= 1"),
        ('os_version: "17.1"\n', "security_policy: {min_os: {}}\n",
         "policy.yaml: security_policy.min_os: unknown key"),
        ('os_version: "17.1"\n', "uem: [\n", "policy.yaml: not valid YAML"),
    ],
)  # fmt: skip
def test_bad_files_give_one_line_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], device: str, policy: str, where: str
) -> None:
    assert run(files(tmp_path, device, policy)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert where in err


def test_missing_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = files(tmp_path, 'os_version: "17.1"\n')
    argv[1] = str(tmp_path / "nope.yaml")
    assert run(argv) == 2
    assert "nope.yaml: cannot read the file" in capsys.readouterr().err
