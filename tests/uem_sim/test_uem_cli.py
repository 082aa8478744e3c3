"""``sentry-sim uem``: help, config errors, and a real run that writes the ready file."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from scenarios import cli_uem

ROOT = Path(__file__).resolve().parents[2]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="sentry-sim")
    cli_uem.register(top.add_subparsers(dest="command"))
    return top


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["uem", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for option in ("--config", "--host", "--port", "--admin-port", "--state-dir", "--ready-file"):
        assert option in out


def test_a_bad_config_exits_2_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text("uem:\n  devices:\n    - {device_id: X, user: bob, os_version: 17}\n")
    args = parser().parse_args(["uem", "--config", str(lab)])
    assert args.func(args) == 2
    assert "error: lab.yaml: uem.devices[0].os_version:" in capsys.readouterr().err


async def test_uem_command_writes_the_ready_file_and_serves_both_urls(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text("users:\n  - {name: alice}\nuem:\n  max_devices_per_mailbox: 1\n")
    ready = tmp_path / "ready.json"
    code = (
        "import sys; from scenarios.cli_uem import register; import argparse;"
        "p = argparse.ArgumentParser(); register(p.add_subparsers());"
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        "uem",
        "--config",
        str(lab),
        "--ready-file",
        str(ready),
        "--state-dir",
        str(tmp_path / "state"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(15):
            while not ready.exists():  # noqa: ASYNC110 - another process writes the file
                await asyncio.sleep(0.05)
            info = json.loads(ready.read_text())
            assert set(info) == {"uem_url", "uem_admin_url", "admin_token"}
            assert oct(ready.stat().st_mode & 0o777) == "0o600"
            async with aiohttp.ClientSession() as http:
                report = {"gatekeeper_id": "g", "user": "alice", "device_id": "D1", "seen_at": 0}
                async with http.post(info["uem_url"] + "/api/v1/sentry/reports", json=report) as r:
                    assert (await r.json())["state"] == "ALLOW"
                headers = {"Authorization": "Bearer " + info["admin_token"]}
                async with http.get(
                    info["uem_admin_url"] + "/api/v1/eas/devices", headers=headers
                ) as r:
                    assert (await r.json())["counts"]["unregistered_allowed"] == 1
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert (tmp_path / "state" / "uem.sqlite3").exists()
