"""``sentry-sim demo``: every story turns out as it says, and a story that does not fails it."""

from __future__ import annotations

import argparse
import asyncio
import json

import pytest

from scenarios import cli_demo
from scenarios.cli_demo import Style, demo
from scenarios.lab import LabConfig, default_lab_mapping


async def run(config: LabConfig | None = None, *, as_json: bool = False) -> tuple[int, str]:
    lines: list[str] = []
    async with asyncio.timeout(15):
        code = await demo(
            as_json=as_json, style=Style(color=False), write=lines.append, config=config
        )
    return code, "\n".join(lines)


async def test_demo_tells_every_story_with_its_outcome_and_exits_0() -> None:
    code, out = await run()
    assert code == 0, out
    for letter in "abcdef":
        assert f"({letter}) " in out
    # (a) allowed, policy provisioned, mail synced
    assert "device ready, policy applied, 5 messages synced" in out
    # (b) compromised at 14.1: Status 129
    assert "HTTP 200 + Status 129 (DeviceIsBlockedForThisUser)" in out
    assert "reasons COMPROMISED" in out
    # (c) unregistered at 12.1: HTTP 403, AUTO_BLOCK
    assert "reasons AUTO_BLOCK" in out
    assert "answered HTTP 403" in out
    # (d) third device: Status 177
    assert "HTTP 200 + Status 177 (MaximumDevicesReached)" in out
    # (e) the push
    assert "push arrived" in out
    # (f) the wipe
    assert "RemoteWipe directive" in out
    assert "device wiped" in out
    # the devices view, five groups
    for group in cli_demo.GROUP_TITLES.values():
        assert group in out
    assert "all 6 stories turned out as they say" in out
    assert "\x1b[" not in out


async def test_demo_json_is_one_document_with_every_story_passed() -> None:
    code, out = await run(as_json=True)
    assert code == 0
    document = json.loads(out)
    assert document["passed"] is True
    assert [s["story"] for s in document["stories"]] == list("abcdef")
    assert all(len(s["steps"]) == 8 for s in document["stories"])
    assert "admin_token" not in document["lab"]
    assert set(document["devices_view"]["groups"]) == set(cli_demo.GROUP_TITLES)


async def test_a_story_that_does_not_turn_out_fails_the_demo_naming_it() -> None:
    mapping = default_lab_mapping()
    for device in mapping["uem"]["devices"]:
        if device["device_id"] == "BOBPIXEL01":
            device["compromised"] = False  # bob's phone is fine now: story (b) cannot hold
    code, out = await run(LabConfig.from_mapping(mapping, "test lab"))
    assert code == 1
    assert "story (b) A compromised registered device is blocked:" in out
    assert "1 of 6 stories did not turn out as they say" in out


def test_demo_command_runs_with_no_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="sentry-sim")
    cli_demo.register(parser.add_subparsers())
    code = cli_demo.main(parser.parse_args(["demo", "--no-color"]))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "The UEM's ActiveSync devices view" in out


def test_colour_only_on_a_terminal() -> None:
    class Tty:
        encoding = "utf-8"

        def isatty(self) -> bool:
            return True

    class Pipe(Tty):
        def isatty(self) -> bool:
            return False

    assert cli_demo.style_for(Pipe(), no_color=False).color is False  # type: ignore[arg-type]
    assert cli_demo.style_for(Tty(), no_color=True).color is False  # type: ignore[arg-type]
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("NO_COLOR", raising=False)
        assert cli_demo.style_for(Tty(), no_color=False).color is True  # type: ignore[arg-type]
