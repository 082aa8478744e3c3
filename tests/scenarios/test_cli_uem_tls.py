"""``sentry-sim uem`` with TLS on both ports, and where it says the admin token is."""

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

from labpki import client_context, make_hierarchy
from scenarios import cli_uem

ROOT = Path(__file__).resolve().parents[2]
CODE = (
    "import sys, argparse; from scenarios.cli_uem import register;"
    "p = argparse.ArgumentParser(); register(p.add_subparsers());"
    "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="sentry-sim")
    cli_uem.register(top.add_subparsers(dest="command"))
    return top


def test_the_token_note_says_where_the_token_is_never_what_it_is() -> None:
    assert cli_uem.token_note("r.json", False) == (
        "admin token: in the ready file r.json (key admin_token, mode 0600)"
    )
    assert cli_uem.token_note(None, True) == "admin token: the one given with --admin-token"
    assert "not shown" in cli_uem.token_note(None, False)


def test_tls_without_a_certificate_outside_the_lab_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text("uem:\n  tls:\n    api: {enabled: true}\n")
    args = parser().parse_args(["uem", "--config", str(lab)])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "error: lab.yaml: uem.tls.api.certificate: expected {pkcs12: path" in err
    assert "only the in-process lab supplies a certificate" in err


def test_a_pkcs12_password_variable_that_is_not_set_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UEM_TEST_P12_PASSWORD", raising=False)
    (tmp_path / "uem.p12").write_bytes(make_hierarchy().server_credential().to_pkcs12(b"pw"))
    lab = tmp_path / "lab.yaml"
    lab.write_text(
        "uem:\n  tls:\n    api:\n      enabled: true\n"
        "      certificate: {pkcs12: uem.p12, password_env: UEM_TEST_P12_PASSWORD}\n"
    )
    args = parser().parse_args(["uem", "--config", str(lab)])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "uem.tls.api.certificate.password_env: environment variable UEM_TEST_P12_PASSWORD" in err


async def test_uem_command_serves_both_ports_over_tls(tmp_path: Path) -> None:
    pki = make_hierarchy("cli uem test")
    credential = pki.server_credential()
    (tmp_path / "api.p12").write_bytes(credential.to_pkcs12(b"p12-secret"))
    (tmp_path / "chain.pem").write_bytes(credential.chain_pem())
    (tmp_path / "key.pem").write_bytes(credential.key_pem())
    (tmp_path / "root.pem").write_bytes(pki.root_pem())
    lab = tmp_path / "lab.yaml"
    lab.write_text(
        "users:\n  - {name: alice}\n"
        "uem:\n"
        "  tls:\n"
        "    api:\n"
        "      enabled: true\n"
        "      certificate: {pkcs12: api.p12, password_env: UEM_TEST_P12}\n"
        "    admin:\n"
        "      enabled: true\n"
        "      certificate: {cert_chain: chain.pem, key: key.pem}\n"
    )
    ready = tmp_path / "ready.json"
    token = "given-admin-token-123"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "UEM_TEST_P12": "p12-secret"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CODE,
        "uem",
        "--config",
        str(lab),
        "--ready-file",
        str(ready),
        "--admin-token",
        token,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(20):
            while not ready.exists():  # noqa: ASYNC110 - another process writes the file
                await asyncio.sleep(0.05)
            info = json.loads(ready.read_text())
            assert info["uem_url"].startswith("https://127.0.0.1:")
            assert info["uem_admin_url"].startswith("https://127.0.0.1:")
            connector = aiohttp.TCPConnector(ssl=client_context(pki.root_pem()))
            async with aiohttp.ClientSession(connector=connector) as http:
                report = {"gatekeeper_id": "g", "user": "alice", "device_id": "D1", "seen_at": 0}
                async with http.post(info["uem_url"] + "/api/v1/sentry/reports", json=report) as r:
                    assert (await r.json())["state"] == "ALLOW"
                headers = {"Authorization": f"Bearer {token}"}
                async with http.get(
                    info["uem_admin_url"] + "/api/v1/certificates", headers=headers
                ) as r:
                    listing = await r.json()
                assert listing["ports"]["api"]["enabled"] is True
                assert listing["ports"]["admin"]["certificate"]["sha256"]
            process.send_signal(signal.SIGTERM)
            out, err = await process.communicate()
            assert process.returncode == 0, err.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    printed = out.decode() + err.decode()
    assert token not in printed
    assert "p12-secret" not in printed
    assert f"admin token: in the ready file {ready}" in printed
