"""``sentry-sim sentry`` with TLS from certificate files (one process and workers), bad files
refused before anything listens, and the admin token never printed."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from labpki import Hierarchy, client_context, make_hierarchy
from scenarios import cli_sentry
from tests.sentry_sim.fakes import FakeUem, FakeUpstream, headers, query

ROOT = Path(__file__).resolve().parents[2]
CODE = (
    "import argparse, sys; from scenarios import cli_sentry; p = argparse.ArgumentParser(); "
    "cli_sentry.register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); "
    "sys.exit(a.func(a))"
)
PASSWORD = "p12-password-not-for-stdout"


@pytest.fixture(scope="module")
def pki() -> Hierarchy:
    return make_hierarchy("cli tls test")


def lab_files(tmp_path: Path, pki: Hierarchy, *, workers: int = 1) -> Path:
    """A lab file with TLS on both ports: PKCS#12 (password from the environment) for the
    device port, PEM files for the admin port, paths relative to the lab file."""
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "device.p12").write_bytes(pki.server_credential().to_pkcs12(PASSWORD.encode()))
    admin = pki.server_credential()
    (certs / "admin.pem").write_bytes(admin.chain_pem())
    (certs / "admin.key").write_bytes(admin.key_pem())
    lab = tmp_path / "lab.yaml"
    lab.write_text(
        "sentry:\n"
        "  activesync_policy_mode: pass_through\n"
        f"  workers: {workers}\n"
        "  tls:\n"
        "    device:\n"
        "      enabled: true\n"
        "      certificate: {pkcs12: certs/device.p12, password_env: SENTRY_P12_PW}\n"
        "    admin:\n"
        "      enabled: true\n"
        '      min_version: "1.3"\n'
        "      certificate: {cert_chain: certs/admin.pem, key: certs/admin.key}\n",
        encoding="utf-8",
    )
    return lab


async def start(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CODE,
        "sentry",
        *args,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.fixture
async def processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    started: list[asyncio.subprocess.Process] = []
    yield started
    for proc in started:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def wait_ready(proc: asyncio.subprocess.Process, ready: Path) -> dict[str, object]:
    while not await asyncio.to_thread(ready.exists):
        assert proc.returncode is None, "sentry-sim sentry exited before it was ready"
        await asyncio.sleep(0.05)
    text = await asyncio.to_thread(ready.read_text, encoding="utf-8")
    payload: dict[str, object] = json.loads(text)
    return payload


async def stop(proc: asyncio.subprocess.Process) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return out.decode()


async def test_standalone_gatekeeper_serves_tls_from_certificate_files(
    tmp_path: Path,
    pki: Hierarchy,
    fake_uem: FakeUem,
    fake_upstream: FakeUpstream,
    processes: list[asyncio.subprocess.Process],
) -> None:
    lab = lab_files(tmp_path, pki)
    ready = tmp_path / "ready.json"
    proc = await start(
        *("--upstream", fake_upstream.url, "--uem", fake_uem.url, "--config", str(lab)),
        *("--ready-file", str(ready)),
        env={"SENTRY_P12_PW": PASSWORD},
    )
    processes.append(proc)
    trusting = client_context(pki.root_pem())
    async with asyncio.timeout(20):
        payload = await wait_ready(proc, ready)
        device_url, admin_url = str(payload["sentry_url"]), str(payload["sentry_admin_url"])
        assert device_url.startswith("https://")
        assert admin_url.startswith("https://")
        auth = {"Authorization": f"Bearer {payload['admin_token']}"}
        async with aiohttp.ClientSession() as session:
            async with session.post(
                device_url + query(), headers=headers(), ssl=trusting
            ) as answer:
                assert answer.status == 200
            async with session.get(
                admin_url + "/api/v1/certificates", headers=auth, ssl=trusting
            ) as answer:
                ports = (await answer.json())["ports"]
        out = await stop(proc)
    assert ports["device"]["enabled"]
    assert ports["admin"]["enabled"]
    assert ports["admin"]["min_version"] == "1.3"
    assert f"admin token: in the ready file {ready}" in out
    assert str(payload["admin_token"]) not in out
    assert PASSWORD not in out


async def test_workers_load_the_same_files_and_an_upload_reaches_one_worker(
    tmp_path: Path,
    pki: Hierarchy,
    fake_uem: FakeUem,
    fake_upstream: FakeUpstream,
    processes: list[asyncio.subprocess.Process],
) -> None:
    lab = lab_files(tmp_path, pki, workers=2)
    ready = tmp_path / "ready.json"
    proc = await start(
        *("--upstream", fake_upstream.url, "--uem", fake_uem.url, "--config", str(lab)),
        *("--ready-file", str(ready)),
        env={"SENTRY_P12_PW": PASSWORD},
    )
    processes.append(proc)
    trusting = client_context(pki.root_pem())
    upload = {"pkcs12": base64.b64encode(pki.server_credential().to_pkcs12()).decode()}
    async with asyncio.timeout(30):
        payload = await wait_ready(proc, ready)
        auth = {"Authorization": f"Bearer {payload['admin_token']}"}
        workers = payload["workers"]
        assert isinstance(workers, list)
        assert len(workers) == 2
        admin_urls = [str(w["admin_url"]) for w in workers]
        async with aiohttp.ClientSession() as session:
            async with session.post(
                str(payload["sentry_url"]) + query(), headers=headers(), ssl=trusting
            ) as answer:
                assert answer.status == 200
            async with session.put(
                admin_urls[0] + "/api/v1/certificates/device",
                json=upload,
                headers=auth,
                ssl=trusting,
            ) as answer:
                assert answer.status == 200
            swaps = []
            for url in admin_urls:
                async with session.get(
                    url + "/api/v1/certificates/device", headers=auth, ssl=trusting
                ) as answer:
                    swaps.append((await answer.json())["swaps"])
        await stop(proc)
    assert all(url.startswith("https://") for url in admin_urls)
    assert swaps == [1, 0]  # the documented limit: the other worker keeps its files


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="sentry-sim")
    cli_sentry.register(top.add_subparsers())
    return top


def test_bad_certificate_file_stops_the_command_with_file_and_key(
    tmp_path: Path, pki: Hierarchy, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = lab_files(tmp_path, pki)
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
    os.environ.pop("SENTRY_P12_PW", None)
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "lab.yaml: sentry.tls.device.certificate.password_env: environment variable" in err
    (tmp_path / "certs" / "admin.key").unlink()
    lab.write_text(lab.read_text(encoding="utf-8").replace("password_env: SENTRY_P12_PW", ""))
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "lab.yaml: sentry.tls.device.certificate.pkcs12: " in err
    assert "not a PKCS#12 file, or it needs a password" in err


@pytest.mark.parametrize("token_given", [True, False], ids=["--admin-token", "random"])
async def test_admin_token_is_never_printed_without_a_ready_file(
    fake_uem: FakeUem,
    fake_upstream: FakeUpstream,
    processes: list[asyncio.subprocess.Process],
    token_given: bool,
) -> None:
    token = "given-token-that-must-stay-secret"
    extra = ("--admin-token", token) if token_given else ()
    proc = await start("--upstream", fake_upstream.url, "--uem", fake_uem.url, *extra)
    processes.append(proc)
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(20):
        while not any(line.startswith("admin token:") for line in lines):
            line = await proc.stdout.readline()
            assert line, "sentry-sim sentry ended before printing its banner"
            lines.append(line.decode())
        out = "".join(lines) + await stop(proc)
    note = next(line for line in lines if line.startswith("admin token:"))
    if token_given:
        assert note.strip() == "admin token: the one given with --admin-token"
        assert token not in out
    else:
        assert "not shown; run with --ready-file FILE" in note
    assert cli_sentry.token_note(None, token_given) == note.strip()
