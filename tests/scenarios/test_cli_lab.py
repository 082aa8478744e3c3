"""``sentry-sim lab`` as users run it: a real subprocess, its ready file, a device, SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import stat
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from device_sim.client import DeviceClient, FolderSync, Provision, Sync
from device_sim.shell import AiohttpTransport, DeviceRunner
from device_sim.wire import DeviceIdentity
from scenarios import cli_lab
from scenarios.lab import default_lab_mapping
from simclock import SystemClock

REPO = Path(__file__).resolve().parents[2]
READY_KEYS = {
    "sentry_url",
    "sentry_admin_url",
    "uem_url",
    "uem_admin_url",
    "exchange_url",
    "admin_token",
    "dashboard_url",
}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sentry-sim")
    cli_lab.register(parser.add_subparsers())
    return parser.parse_args(argv)


async def wait_for_file(path: Path, process: asyncio.subprocess.Process) -> dict[str, str]:
    # Polled: the ready file is the only signal a separate process gives (bounded by the caller).
    for _ in range(400):
        if await asyncio.to_thread(path.exists):
            break
        if process.returncode is not None:
            raise AssertionError(f"sentry-sim lab exited with {process.returncode} before ready")
        await asyncio.sleep(0.05)
    text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    data: dict[str, str] = json.loads(text)
    return data


async def test_lab_subprocess_writes_ready_file_serves_a_device_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    ready = tmp_path / "ready.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scenarios.cli",
        "lab",
        "--ready-file",
        str(ready),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(20):
            payload = await wait_for_file(ready, process)
            assert set(payload) == READY_KEYS
            assert stat.S_IMODE(os.stat(ready).st_mode) == 0o600
            for key, value in payload.items():
                if key.endswith("_url"):
                    assert value.startswith("http://127.0.0.1:")
                    assert not value.endswith("/")
            async with aiohttp.ClientSession() as session:
                identity = DeviceIdentity(
                    user="alice",
                    password="alice-pass",
                    device_id="ALICEIPHONE01",
                    device_type="iPhone",
                    version="16.1",
                )
                runner = DeviceRunner(
                    DeviceClient(identity),
                    AiohttpTransport(session, payload["sentry_url"]),
                    SystemClock(),
                    request_timeout=10,
                )
                report = await runner.run_script([Provision(), FolderSync(), Sync()])
                assert report.succeeded, [r.summary for r in report.results]
                headers = {"Authorization": f"Bearer {payload['admin_token']}"}
                url = payload["sentry_admin_url"] + "/api/devices/alice/ALICEIPHONE01"
                async with session.get(url, headers=headers) as response:
                    assert response.status == 200
                    assert (await response.json())["state"] == "allowed"
            process.send_signal(signal.SIGTERM)
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    out = stdout.decode()
    assert payload["sentry_url"] in out
    assert payload["uem_admin_url"] in out
    assert payload["admin_token"] not in out
    assert "alice-pass" not in out  # passwords stay in the config file
    assert str(ready) in out  # where the token is
    assert "stopped" in out


def test_config_error_is_one_line_naming_file_and_key_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mapping = default_lab_mapping()
    mapping["sentry"]["blocked_response"] = "shrug"
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(mapping), encoding="utf-8")
    code = cli_lab.main(parse(["lab", "--config", str(path)]))
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert f"{path}: sentry.blocked_response: expected eas or http403" in err


def test_port_in_use_exits_1_naming_the_listener(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        mapping = default_lab_mapping()
        mapping["lab"]["uem_port"] = port
        path = tmp_path / "lab.yaml"
        path.write_text(yaml.safe_dump(mapping), encoding="utf-8")
        code = cli_lab.main(parse(["lab", "--config", str(path), "--no-uvloop"]))
    err = capsys.readouterr().err
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "uem_port" in err


async def test_virtual_clock_option_gives_the_live_view_a_clock_it_can_advance(
    tmp_path: Path,
) -> None:
    ready = tmp_path / "ready.json"
    config = cli_lab.load(None)
    server = asyncio.ensure_future(cli_lab.serve(config, ready, "tok", virtual_clock=True))
    try:
        async with asyncio.timeout(20):
            while not ready.exists():
                assert not server.done()
                await asyncio.sleep(0.05)
            payload = json.loads(ready.read_text(encoding="utf-8"))
            headers = {"Authorization": "Bearer tok", "X-Sentry-Sim-Dashboard": "1"}
            async with aiohttp.ClientSession(headers=headers) as session:
                async with session.get(payload["dashboard_url"] + "/api/state") as response:
                    assert response.status == 200
                    before = await response.json()
                assert before["status"]["virtual_clock"] is True
                async with session.post(
                    payload["dashboard_url"] + "/api/clock", json={"advance_s": 3600}
                ) as response:
                    assert response.status == 200, await response.text()
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
