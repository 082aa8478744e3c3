"""``sentry-sim exchange``: argument parsing, config errors, and a real run with a ready file."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml
from exchange_client import basic

from exchange_sim.config import ConfigError
from scenarios import cli_exchange


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="sentry-sim")
    cli_exchange.register(root.add_subparsers(dest="command"))
    return root


def test_parser_reads_every_option(tmp_path: Path) -> None:
    args = parser().parse_args(
        [
            "exchange",
            "--config",
            str(tmp_path / "lab.yaml"),
            "--port",
            "8443",
            "--ready-file",
            str(tmp_path / "ready.json"),
            "--admin-token",
            "t",
        ]
    )
    assert (args.port, args.admin_token, args.host) == (8443, "t", "127.0.0.1")
    assert args.func is cli_exchange.main


def test_bad_config_exits_2_and_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text("users:\n  - {name: a, email: a@x.org, password: p}\nexchange:\n  seed: x\n")
    args = parser().parse_args(["exchange", "--config", str(lab)])
    assert args.func(args) == 2
    assert f"{lab}: exchange.seed: expected an integer" in capsys.readouterr().err


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        cli_exchange.load_config(tmp_path / "absent.yaml")


def test_lab_default_yaml_is_accepted() -> None:
    lab = Path(__file__).parents[2] / "scenarios/labs/default.yaml"
    config = cli_exchange.load_config(lab)
    # The lab file is edited by the lab's owners: compare with what it lists, not a copy.
    listed = [u["name"] for u in yaml.safe_load(lab.read_text())["users"]]
    assert listed
    assert [u.name for u in config.users] == listed


async def test_serve_writes_the_ready_file_and_answers_options(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    stop = asyncio.Event()
    config = cli_exchange.load_config(None)
    server = asyncio.create_task(
        cli_exchange.serve(config, ready_file=ready, admin_token="tok", stop=stop.wait())
    )
    try:
        async with asyncio.timeout(5):
            # The ready file is the server's only signal to the outside: poll for it.
            while not ready.exists():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            payload = json.loads(ready.read_text())
            assert payload["admin_token"] == "tok"
            assert payload["exchange_url"].startswith("http://127.0.0.1:")
            assert ready.stat().st_mode & 0o777 == 0o600
            async with aiohttp.ClientSession() as session:
                async with session.options(
                    f"{payload['exchange_url']}/Microsoft-Server-ActiveSync",
                    headers={"Authorization": basic("bob", "bob-pass")},
                ) as response:
                    assert response.status == 200
                async with session.get(
                    f"{payload['exchange_admin_url']}/admin/mailboxes/bob",
                    headers={"Authorization": "Bearer tok"},
                ) as response:
                    assert (await response.json())["email"] == "bob@example.com"
    finally:
        stop.set()
        async with asyncio.timeout(5):
            assert await server == 0


async def test_command_in_a_subprocess_serves_until_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    script = (
        "import argparse, sys\n"
        "from scenarios import cli_exchange\n"
        "root = argparse.ArgumentParser()\n"
        "cli_exchange.register(root.add_subparsers())\n"
        "args = root.parse_args(sys.argv[1:])\n"
        "sys.exit(args.func(args))\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        "exchange",
        "--ready-file",
        str(ready),
        cwd=Path(__file__).parents[2],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(15):
            while not ready.exists():
                assert process.returncode is None
                await asyncio.sleep(0.05)
            url = json.loads(ready.read_text())["exchange_url"]
            async with (
                aiohttp.ClientSession() as session,
                session.options(
                    f"{url}/Microsoft-Server-ActiveSync",
                    headers={"Authorization": basic("alice", "alice-pass")},
                ) as response,
            ):
                assert response.status == 200
            process.send_signal(signal.SIGTERM)
            out, _ = await process.communicate()
            assert process.returncode == 0
            assert b"serving" in out
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
