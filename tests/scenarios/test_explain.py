"""``sentry-sim explain`` against a real gatekeeper, UEM and Exchange on loopback."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web

from exchange_sim.app import make_app as make_exchange_app
from exchange_sim.config import ExchangeConfig
from scenarios import cli_explain
from scenarios.cli_explain import Endpoints, fetch_explain, format_explained
from scenarios.cli_sentry import RunningSentry, serve
from scenarios.serving import StartedSite, start_site
from sentry_sim.config import SentryConfig
from uem_sim.app import make_app as make_uem_app
from uem_sim.config import UemConfig

TOKEN = "explain-token"
LAB: dict[str, Any] = {
    "users": [
        {"name": "alice", "email": "alice@example.com", "password": "alice-pass"},
        {"name": "bob", "email": "bob@example.com", "password": "bob-pass"},
    ],
    "uem": {
        "security_policy": {"min_os_version": {"ios": "16.0"}},
        "devices": [
            {"device_id": "ALICE1", "user": "alice", "platform": "ios", "os_version": "17.4"},
            {"device_id": "BOB1", "user": "bob", "platform": "android", "os_version": "14",
             "compromised": True},
        ],
    },
    "exchange": {"provisioning_required": False, "seed_messages_per_mailbox": 1},
}  # fmt: skip


@attrs.frozen
class Running:
    exchange: StartedSite
    uem: StartedSite
    sentry: RunningSentry

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(sentry_admin=self.sentry.admin_url, uem_admin=self.uem.url, token=TOKEN)

    def ready(self) -> dict[str, str]:
        return {
            "sentry_url": self.sentry.url,
            "sentry_admin_url": self.sentry.admin_url,
            "uem_url": self.uem.url,
            "uem_admin_url": self.uem.url,
            "exchange_url": self.exchange.url,
            "admin_token": TOKEN,
        }


@pytest.fixture
async def lab() -> AsyncIterator[Running]:
    async with asyncio.timeout(15):
        exchange = await start_site(
            make_exchange_app(ExchangeConfig.from_mapping(LAB), admin_token=TOKEN)
        )
        uem = await start_site(make_uem_app(UemConfig.from_mapping(LAB), admin_token=TOKEN))
        sentry = await serve(
            SentryConfig.from_mapping({"activesync_policy_mode": "pass_through"}, "test"),
            upstream_url=exchange.url,
            uem_url=uem.url,
            admin_token=TOKEN,
        )
    yield Running(exchange, uem, sentry)
    await sentry.stop()
    await uem.stop()
    await exchange.stop()


async def device_request(running: Running, user: str, password: str, device_id: str) -> int:
    """One FolderSync as a 16.1 phone would send it; returns the HTTP status."""
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    url = (
        f"{running.sentry.url}/Microsoft-Server-ActiveSync?Cmd=FolderSync&User={user}"
        f"&DeviceId={device_id}&DeviceType=iPhone"
    )
    headers = {
        "MS-ASProtocolVersion": "16.1",
        "Authorization": f"Basic {auth}",
        "Content-Type": "application/vnd.ms-sync.wbxml",
    }
    async with aiohttp.ClientSession() as session, session.post(url, headers=headers) as r:
        await r.read()
        return r.status


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli_explain.register(parser.add_subparsers())
    args = parser.parse_args(["explain", *argv])
    code: int = args.func(args)
    return code


async def test_allowed_device_is_explained_by_both_sides(lab: Running) -> None:
    async with asyncio.timeout(10):
        await device_request(lab, "alice", "alice-pass", "ALICE1")
        explained = await fetch_explain(lab.endpoints, "alice", "ALICE1")
    assert explained.gatekeeper.body["state"] == "allowed"
    assert explained.uem.body["state"] == "ALLOW"
    assert explained.uem.body["group"] == "registered_allowed"
    text = format_explained(explained)
    assert "state:        ALLOWED" in text
    assert "by uem answer #" in text
    assert "until the UEM pushes a change" in text
    assert "inputs: os_version=17.4, minimum=16.0" in text
    assert "in agreement: the gatekeeper enforces the UEM's ALLOW" in text


async def test_blocked_device_shows_reasons_via_the_cli(
    lab: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ready = tmp_path / "ready.json"
    ready.write_text(json.dumps(lab.ready()), encoding="utf-8")
    async with asyncio.timeout(10):
        assert await device_request(lab, "bob", "bob-pass", "BOB1") == 200  # Status 129
        argv = ["--user", "bob", "--device", "BOB1", "--ready-file", str(ready)]
        assert await asyncio.to_thread(run_cli, argv) == 0
        text = capsys.readouterr().out
        assert await asyncio.to_thread(run_cli, [*argv, "--json"]) == 0
    assert "state:        BLOCKED" in text
    assert "COMPROMISED (0x1)" in text
    assert "[XX] block compromised devices" in text
    out = json.loads(capsys.readouterr().out)
    assert out["gatekeeper"]["reason_names"] == ["COMPROMISED"]
    assert out["uem"]["group"] == "registered_blocked"


async def test_unknown_device_says_no_record(lab: Running) -> None:
    async with asyncio.timeout(10):
        explained = await fetch_explain(lab.endpoints, "alice", "NEVERSEEN")
    assert (explained.gatekeeper.status, explained.uem.status) == (404, 404)
    assert "no record (404)" in format_explained(explained)


async def test_connection_refused_names_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    site = await start_site(web.Application())
    url = site.url
    await site.stop()  # nothing listens on this port any more
    argv = ["--user", "a", "--device", "D1", "--sentry-admin", url, "--uem-admin", url]
    async with asyncio.timeout(15):
        assert await asyncio.to_thread(run_cli, [*argv, "--token", "t"]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach {url}/" in err


def test_missing_flags_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["--user", "a", "--device", "D1", "--sentry-admin", "http://127.0.0.1:1"]) == 2
    assert "missing --uem-admin, --token" in capsys.readouterr().err


def test_bad_ready_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ready = tmp_path / "ready.json"
    ready.write_text('{"sentry_admin_url": "http://127.0.0.1:1"}', encoding="utf-8")
    assert run_cli(["--user", "a", "--device", "D1", "--ready-file", str(ready)]) == 2
    assert "uem_admin_url: missing" in capsys.readouterr().err
