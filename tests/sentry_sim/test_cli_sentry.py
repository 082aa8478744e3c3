"""``sentry-sim sentry``: arguments, config errors, and a real run with a ready file."""

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

from scenarios import cli_sentry
from tests.sentry_sim.fakes import FakeUem, FakeUpstream, headers, query

ROOT = Path(__file__).resolve().parents[2]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="sentry-sim")
    cli_sentry.register(top.add_subparsers())
    return top


def test_sentry_command_requires_upstream_and_uem(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["sentry", "--uem", "http://127.0.0.1:1"])
    assert "--upstream" in capsys.readouterr().err


def test_config_error_names_the_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text("sentry:\n  blocked_response: teapot\n", encoding="utf-8")
    args = parser().parse_args(
        [
            "sentry",
            "--upstream",
            "http://127.0.0.1:1",
            "--uem",
            "http://127.0.0.1:2",
            "--config",
            str(lab),
        ]
    )
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "lab.yaml: sentry.blocked_response: expected eas or http403" in err


async def test_sentry_command_serves_and_writes_the_ready_file(
    tmp_path: Path, fake_uem: FakeUem, fake_upstream: FakeUpstream
) -> None:
    ready = tmp_path / "ready.json"
    lab = tmp_path / "lab.yaml"
    lab.write_text("sentry:\n  activesync_policy_mode: pass_through\n", encoding="utf-8")
    code = (
        "import argparse, sys; from scenarios import cli_sentry; p = argparse.ArgumentParser(); "
        "cli_sentry.register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); "
        "sys.exit(a.func(a))"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        "sentry",
        "--upstream",
        fake_upstream.url,
        "--uem",
        fake_uem.url,
        "--config",
        str(lab),
        "--port",
        "0",
        "--admin-port",
        "0",
        "--ready-file",
        str(ready),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(20):
            while not ready.exists():
                assert proc.returncode is None, "sentry-sim sentry exited before it was ready"
                await asyncio.sleep(0.05)
            payload = json.loads(ready.read_text(encoding="utf-8"))
            assert set(payload) == {"sentry_url", "sentry_admin_url", "admin_token"}
            assert oct(ready.stat().st_mode & 0o777) == "0o600"
            async with aiohttp.ClientSession() as session:
                async with session.post(payload["sentry_url"] + query(), headers=headers()) as r:
                    assert r.status == 200
                auth = {"Authorization": f"Bearer {payload['admin_token']}"}
                async with session.get(
                    payload["sentry_admin_url"] + "/api/stats", headers=auth
                ) as r:
                    assert (await r.json())["records"] == 1
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
