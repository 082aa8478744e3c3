"""``sentry-sim device``: options, output and exit codes, against real loopback servers."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from activesync.answers import blocked_answer
from activesync.query import parse_request
from exchange_sim.app import make_app
from exchange_sim.config import ExchangeConfig
from scenarios import cli_device
from scenarios.serving import StartedSite, start_site
from simclock import SystemClock

LAB = {
    "users": [{"name": "alice", "email": "alice@example.com", "password": "alice-pass"}],
    "exchange": {"seed_messages_per_mailbox": 3, "seed": 5},
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="sentry-sim")
    cli_device.register(top.add_subparsers(dest="command"))
    return top


def device_args(url: str, *extra: str) -> list[str]:
    return [
        "device",
        "--url",
        url,
        "--user",
        "alice",
        "--password",
        "alice-pass",
        "--device-id",
        "CLI1",
        "--device-type",
        "iPhone",
        *extra,
    ]


async def run_cli(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scenarios.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


@pytest.fixture
async def exchange() -> AsyncIterator[StartedSite]:
    config = ExchangeConfig.from_mapping(LAB, source="test lab")
    site = await start_site(make_app(config, clock=SystemClock(), admin_token="t"))
    try:
        yield site
    finally:
        await site.stop()


@pytest.fixture
async def blocking_server() -> AsyncIterator[StartedSite]:
    """Answers every command with the version's blocked answer (403 or Status 129)."""

    async def handler(request: web.Request) -> web.Response:
        eas = parse_request(request.method, request.path, request.query_string, request.headers)
        assert eas.protocol_version is not None
        answer = blocked_answer(eas.command, eas.protocol_version)
        return web.Response(status=answer.http_status, body=answer.body, headers=answer.headers)

    app = web.Application()
    app.router.add_post("/Microsoft-Server-ActiveSync", handler)
    site = await start_site(app)
    try:
        yield site
    finally:
        await site.stop()


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(["device", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--url", "--device-id", "--version", "--base64", "--steps", "--json"):
        assert option in text


def test_unknown_step_is_refused_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(device_args("http://127.0.0.1:9", "--steps", "options,dance"))
    assert args.func(args) == 2
    assert "unknown step 'dance'" in capsys.readouterr().err


def test_connection_refused_exits_1_naming_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(device_args("http://127.0.0.1:9"))
    assert args.func(args) == 1
    assert "cannot connect to http://127.0.0.1:9" in capsys.readouterr().out


async def test_full_script_prints_each_step_and_exits_0(exchange: StartedSite) -> None:
    async with asyncio.timeout(20):
        code, out = await run_cli(
            *device_args(
                exchange.url, "--version", "14.1", "--steps", "options,provision,foldersync,sync"
            )
        )
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("1 OPTIONS  HTTP 200  versions ")
    assert "3 Provision (acknowledge)  HTTP 200  Status 1  policy key" in out
    assert "4 FolderSync  HTTP 200  Status 1  7 folders  sync key 1" in out
    assert "Sync Inbox  HTTP 200  Status 1  3 new items" in out
    assert lines[-1] == "CLI1 (alice, 14.1 plain query): READY, 4/4 steps succeeded"


async def test_json_output_in_base64_form(exchange: StartedSite) -> None:
    async with asyncio.timeout(20):
        code, out = await run_cli(
            *device_args(exchange.url, "--base64", "--steps", "provision,foldersync", "--json")
        )
    assert code == 0, out
    document = json.loads(out)
    assert document["device"]["query_form"] == "base64"
    assert document["state"] == "ready"
    assert [r["label"] for r in document["results"]] == [
        "Provision",
        "Provision (acknowledge)",
        "FolderSync",
    ]
    assert document["exit_code"] == 0


@pytest.mark.parametrize(("version", "code_seen"), [("12.1", 403), ("16.1", 129)])
async def test_blocked_device_exits_3_with_code_and_meaning(
    blocking_server: StartedSite, version: str, code_seen: int
) -> None:
    async with asyncio.timeout(20):
        code, out = await run_cli(
            *device_args(blocking_server.url, "--version", version, "--steps", "provision")
        )
    assert code == 3, out
    assert f"BLOCKED with code {code_seen}" in out
