"""What-if: journals written, read back, and replayed against changed policies."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import attrs
import pytest

from scenarios import cli_whatif
from scenarios.spec_read import ScenarioError
from scenarios.whatif import (
    JournalHeader,
    JournalRecorder,
    JournalWriter,
    parse_journal,
    read_journal,
    replay,
)
from uem_sim.config import UemConfig
from uem_sim.contract import Reason, ReportRequest
from uem_sim.events import DecisionChanged, RecordReported
from uem_sim.model import AdminAction
from uem_sim.registry import Registry

START = 1_700_000_000.0
LAB: dict[str, Any] = {
    "users": [
        {"name": "alice", "email": "alice@example.com", "password": "a"},
        {"name": "dave", "email": "dave@example.com", "password": "d"},
    ],
    "uem": {
        "max_devices_per_mailbox": 3,
        "security_policy": {"min_os_version": {"ios": "16.0"}},
        "devices": [
            {"device_id": "ALICE16", "user": "alice", "platform": "ios", "os_version": "16.4"},
            {"device_id": "DAVE1", "user": "dave", "platform": "ios", "os_version": "17.4"},
            {"device_id": "DAVE2", "user": "dave", "platform": "ios", "os_version": "17.4"},
            {"device_id": "DAVE3", "user": "dave", "platform": "android", "os_version": "14"},
        ],
    },
}


def report(user: str, device_id: str, at: float) -> ReportRequest:
    return ReportRequest(
        gatekeeper_id="gk1", user=user, device_id=device_id, device_type="iPhone", seen_at=at
    )


def journal_lines() -> list[str]:
    config = UemConfig.from_mapping(LAB, "lab.yaml")
    writer = JournalWriter()
    lines = [writer.header(JournalHeader.from_config(config, START))]
    for i, (user, device) in enumerate(
        [("alice", "ALICE16"), ("dave", "DAVE1"), ("dave", "DAVE2"), ("dave", "DAVE3")]
    ):
        lines.append(writer.report(report(user, device, START + 60 * (i + 1))))
    return lines


def policy_with(**uem: object) -> UemConfig:
    return UemConfig.from_mapping({**LAB, "uem": {**LAB["uem"], **uem}}, "new.yaml")


def test_raising_the_minimum_os_flips_the_ios_16_device() -> None:
    journal = parse_journal(journal_lines(), "j.jsonl")
    new = policy_with(security_policy={"min_os_version": {"ios": "17.0"}}).policy
    (flip,) = replay(journal, new)
    assert (flip.user, flip.device_id) == ("alice", "ALICE16")
    assert (flip.before.state, flip.after.state) == ("ALLOW", "BLOCK")
    assert flip.after.reasons == Reason.OS_VERSION
    (rule,) = flip.changed_rules
    assert (rule.rule, rule.before, rule.after) == (
        "minimum OS version for ios",
        "pass",
        "violated",
    )
    assert dict(rule.inputs_after) == {"os_version": "16.4", "minimum": "17.0"}


def test_lowering_the_mailbox_limit_flips_the_latest_device() -> None:
    journal = parse_journal(journal_lines(), "j.jsonl")
    (flip,) = replay(journal, policy_with(max_devices_per_mailbox=2).policy)
    assert (flip.user, flip.device_id) == ("dave", "DAVE3")
    assert flip.after.reasons == Reason.PER_MAILBOX_LIMIT
    assert "PER_MAILBOX_LIMIT" in flip.after.explanation


def test_the_same_policy_flips_nothing() -> None:
    journal = parse_journal(journal_lines(), "j.jsonl")
    assert replay(journal, journal.header.policy) == []


def test_checkin_and_action_lines_are_replayed() -> None:
    writer = JournalWriter()
    lines = [
        *journal_lines(),
        writer.checkin(START + 600, "alice", "ALICE16", {"os_version": "17.2"}),
        writer.action(START + 700, "dave", "DAVE1", AdminAction.BLOCK, "lost"),
    ]
    journal = parse_journal(lines, "j.jsonl")
    new = policy_with(security_policy={"min_os_version": {"ios": "17.0"}}).policy
    # Alice updated to 17.2, so the new minimum no longer flips her; Dave's block holds in both.
    assert replay(journal, new) == []
    # Limit 1: the block of DAVE1 frees its slot for DAVE2 (first come), DAVE3 stays out.
    (flip,) = replay(journal, policy_with(max_devices_per_mailbox=1).policy)
    assert (flip.device_id, flip.after.reasons) == ("DAVE3", Reason.PER_MAILBOX_LIMIT)


def test_recorder_writes_a_file_read_journal_reads_back(tmp_path: Path) -> None:
    config = UemConfig.from_mapping(LAB, "lab.yaml")
    path = tmp_path / "journal.jsonl"
    recorder = JournalRecorder.to_file(path, JournalHeader.from_config(config, START))
    recorder.on_report(report("alice", "ALICE16", START + 1))
    recorder.on_uem_event(
        RecordReported(
            at=START + 2, mailbox="dave", device_id="DAVE1", gatekeeper_id="gk1", first_report=True
        )
    )
    recorder.on_uem_event(
        DecisionChanged(
            at=START + 2,
            mailbox="dave",
            device_id="DAVE1",
            state="ALLOW",
            reasons=0,
            reason_names=(),
            version=2,
            removed=False,
        )
    )  # not a report: ignored
    recorder.close()
    journal = read_journal(path)
    assert recorder.lines == 3
    assert journal.reports == 2
    assert journal.header.policy == config.policy
    assert [d.device_id for d in journal.header.devices] == ["ALICE16", "DAVE1", "DAVE2", "DAVE3"]
    assert journal.ends_at == START + 2


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda ls: [*ls[:2], "{not json\n", *ls[2:]], "j.jsonl: line 3: not valid JSON"),
        (lambda ls: ls[1:], "j.jsonl: line 1: type: the first line must be the header"),
        (lambda ls: [*ls, '{"type": "report", "user": "a"}\n'],
         "j.jsonl: line 6: gatekeeper_id: missing"),
        (lambda ls: [*ls, '{"type": "repot"}\n'], 'j.jsonl: line 6: type: expected one of'),
        (lambda ls: [*ls, '{"type": "action", "at": 1, "user": "a", "device_id": "b", '
                          '"action": "nuke"}\n'], "j.jsonl: line 6: action: expected one of"),
        (lambda ls: [ls[0].replace('"16.0"', "16")], "j.jsonl: line 1: policy.security_policy"),
        (lambda ls: [], "j.jsonl: empty journal"),
    ],
)  # fmt: skip
def test_bad_journals_name_file_and_line(mutate: object, message: str) -> None:
    assert callable(mutate)
    with pytest.raises(ScenarioError) as info:
        parse_journal(mutate(journal_lines()), "j.jsonl")
    assert str(info.value).startswith(message)


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli_whatif.register(parser.add_subparsers())
    args = parser.parse_args(["whatif", *argv])
    code: int = args.func(args)
    return code


def test_cli_lists_flips_with_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "j.jsonl").write_text("".join(journal_lines()), encoding="utf-8")
    (tmp_path / "new.yaml").write_text(
        'security_policy: {min_os_version: {ios: "17.0"}}\n', encoding="utf-8"
    )
    argv = ["--journal", str(tmp_path / "j.jsonl"), "--policy", str(tmp_path / "new.yaml")]
    # A bare policy replaces the whole policy: the limit of 3 is gone too, which flips nothing
    # more (nobody was over it), so only Alice flips.
    assert run_cli(argv) == 0
    out = capsys.readouterr().out
    assert "replayed 4 reports of 4 records" in out
    assert "alice / ALICE16: ALLOW none (0x0)  ->  BLOCK OS_VERSION (0x2)" in out
    assert "inputs: os_version=16.4, minimum=17.0" in out
    (tmp_path / "limit.yaml").write_text("max_devices_per_mailbox: 2\n", encoding="utf-8")
    argv[3] = str(tmp_path / "limit.yaml")
    assert run_cli([*argv, "--patch", "--json"]) == 0
    out_json = json.loads(capsys.readouterr().out)
    assert [(f["device_id"], f["after"]["reason_names"]) for f in out_json["flips"]] == [
        ("DAVE3", ["PER_MAILBOX_LIMIT"])
    ]


def test_cli_bad_policy_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "j.jsonl").write_text("".join(journal_lines()), encoding="utf-8")
    (tmp_path / "new.yaml").write_text("max_devices: 2\n", encoding="utf-8")
    argv = ["--journal", str(tmp_path / "j.jsonl"), "--policy", str(tmp_path / "new.yaml")]
    assert run_cli(argv) == 2
    assert "new.yaml: max_devices: unknown key" in capsys.readouterr().err


def test_header_from_a_running_registry_matches_the_config() -> None:
    config = UemConfig.from_mapping(LAB, "lab.yaml")
    header = JournalHeader.from_registry(Registry.from_config(config, START), START)
    expected = JournalHeader.from_config(config, START)
    assert attrs.evolve(header, users=expected.users) == expected
