"""``sentry-sim eas-query``: decode and encode from the command line."""

from __future__ import annotations

import argparse
import json

import pytest

from scenarios import cli_eas_query

SPEC_EXAMPLE = "jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sentry-sim")
    sub = parser.add_subparsers(dest="command")
    cli_eas_query.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.mark.parametrize(
    "text", [SPEC_EXAMPLE, f"/Microsoft-Server-ActiveSync?{SPEC_EXAMPLE}", f"?{SPEC_EXAMPLE}"]
)
def test_decode_prints_the_spec_example_as_json(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["eas-query", "decode", text]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "version": "14.0",
        "command": "Sync",
        "locale": "0x0409",
        "device_id": "v140Device",
        "device_id_hex": b"v140Device".hex(),
        "policy_key": None,
        "device_type": "SmartPhone",
        "user": None,
        "params": [],
    }


def test_encode_reproduces_the_spec_example(capsys: pytest.CaptureFixture[str]) -> None:
    code = run(
        [
            "eas-query",
            "encode",
            "--cmd",
            "Sync",
            "--device-id",
            "v140Device",
            "--device-type",
            "SmartPhone",
            "--version",
            "14.0",
            "--locale",
            "0x0409",
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.strip() == SPEC_EXAMPLE


def test_encode_then_decode_carries_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    run(
        [
            "eas-query",
            "encode",
            "--cmd",
            "SmartReply",
            "--device-id",
            "abc123",
            "--device-type",
            "iPhone",
            "--version",
            "16.1",
            "--policy-key",
            "3942919513",
            "--locale",
            "1031",
            "--user",
            "CONTOSO\\ann",
            "--param",
            "ItemId=5:1",
            "--param",
            "CollectionId=7",
        ]
    )
    query = capsys.readouterr().out.strip()
    assert run(["eas-query", "decode", query]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["command"] == "SmartReply"
    assert out["policy_key"] == 3942919513
    assert out["locale"] == "0x0407"
    assert out["user"] == "CONTOSO\\ann"
    assert out["params"] == [["User", "CONTOSO\\ann"], ["ItemId", "5:1"], ["CollectionId", "7"]]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["decode", "!!!"], "not valid base64"),
        (["decode", "AAAA"], "expected at least 7"),
        (["decode", "Cmd=Sync&DeviceId=a"], "plain-text query"),
        (
            [
                "encode",
                "--cmd",
                "Nope",
                "--device-id",
                "a",
                "--device-type",
                "b",
                "--version",
                "14.0",
            ],
            "unknown command 'Nope'",
        ),
        (
            [
                "encode",
                "--cmd",
                "Sync",
                "--device-id",
                "a-b",
                "--device-type",
                "b",
                "--version",
                "14.0",
            ],
            "1-32 letters or digits",
        ),
        (
            [
                "encode",
                "--cmd",
                "Sync",
                "--device-id",
                "a",
                "--device-type",
                "b",
                "--version",
                "14.0",
                "--param",
                "Bogus=1",
            ],
            "no tag for it",
        ),
        (
            [
                "encode",
                "--cmd",
                "Sync",
                "--device-id",
                "a",
                "--device-type",
                "b",
                "--version",
                "14.0",
                "--param",
                "novalue",
            ],
            "expected NAME=VALUE",
        ),
    ],
)
def test_errors_are_one_line_on_stderr_and_exit_1(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["eas-query", *argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert needle in captured.err
    assert captured.err.count("\n") == 1
