"""``sentry-sim tlscheck`` against real loopback servers: OK, FAILED, no TLS, exit codes."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from labpki import Hierarchy, legacy_server_context, make_hierarchy, server_context
from scenarios import cli_tlscheck
from scenarios.cli_tlscheck import (
    FAILED,
    OK,
    PLAIN,
    Target,
    TlsCheckError,
    exit_code,
    format_lines,
    parse_target,
    run_checks,
    targets_from_ready,
)
from scenarios.serving import StartedSite, start_site

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pki() -> Hierarchy:
    return make_hierarchy("tlscheck test")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="sentry-sim")
    cli_tlscheck.register(top.add_subparsers(dest="command"))
    return top


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hi")


@contextlib.asynccontextmanager
async def site(context: ssl.SSLContext | None) -> AsyncIterator[StartedSite]:
    app = web.Application()
    app.router.add_get("/", hello)
    started = await start_site(app, ssl_context=context)
    try:
        yield started
    finally:
        await started.stop()


def test_ready_file_servers_are_every_url_key_named_without_the_suffix() -> None:
    ready = {
        "sentry_url": "https://127.0.0.1:1",
        "uem_admin_url": "http://127.0.0.1:2",
        "admin_token": "secret",
        "tls_root": "/tmp/root.pem",
    }
    assert targets_from_ready(ready, "r.json") == [
        Target("sentry", "https://127.0.0.1:1"),
        Target("uem_admin", "http://127.0.0.1:2"),
    ]
    assert parse_target("https://localhost:8443/") == Target("localhost", "https://localhost:8443")
    with pytest.raises(TlsCheckError, match="expected an http:// or https:// URL"):
        parse_target("ftp://x")


async def test_lines_say_ok_failed_and_no_tls_and_the_exit_code_follows(pki: Hierarchy) -> None:
    credential = pki.server_credential()
    stranger = make_hierarchy("someone else").server_credential()
    async with (
        asyncio.timeout(20),
        site(server_context(credential, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")) as good,
        site(legacy_server_context(credential, ssl.TLSVersion.TLSv1_1)) as old,
        site(server_context(stranger)) as untrusted,
        site(None) as plain,
    ):
        targets = [
            Target("uem", good.url),
            Target("old", old.url),
            Target("other", untrusted.url),
            Target("exchange", plain.url),
        ]
        outcomes = await run_checks(targets, pki.root_pem(), "root.pem", 5.0)
        lines = format_lines(outcomes)
        assert lines[0] == (
            f"{OK.ljust(14)}  uem       {good.url.ljust(len(untrusted.url))}  "
            "(ECDHE-ECDSA-AES128-GCM-SHA256, chain ok)"
        )
        assert lines[1].startswith(f"{FAILED}  old ")
        assert lines[1].endswith("(the server speaks only TLSv1.1; TLS 1.2 refused)")
        assert lines[2].startswith(f"{FAILED}  other ")
        assert "certificate not trusted" in lines[2]
        assert lines[2].endswith("; trusting root.pem)")
        assert lines[3].startswith(f"{PLAIN.ljust(14)}  exchange")
        assert lines[3].endswith("(plain http: nothing to check)")
        assert exit_code(outcomes) == 1
        assert exit_code([outcomes[0], outcomes[3]]) == 0
        assert outcomes[0].protocol == "TLSv1.2"
        assert outcomes[0].sni is None  # 127.0.0.1: no SNI (RFC 6066)


async def test_the_command_reads_the_ready_file_and_its_tls_root(
    pki: Hierarchy, tmp_path: Path
) -> None:
    root = tmp_path / "root.pem"
    root.write_bytes(pki.root_pem())
    async with (
        asyncio.timeout(30),
        site(server_context(pki.server_credential())) as good,
        site(None) as plain,
    ):
        ready = tmp_path / "ready.json"
        ready.write_text(
            json.dumps(
                {
                    "uem_url": good.url,
                    "exchange_url": plain.url,
                    "admin_token": "t",
                    "tls_root": str(root),
                }
            )
        )
        code = (
            "import sys, argparse; from scenarios.cli_tlscheck import register;"
            "p = argparse.ArgumentParser(); register(p.add_subparsers());"
            "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            "tlscheck",
            "--ready",
            str(ready),
            "--json",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        report = json.loads(out)
        assert report["ok"] is True
        assert report["trust"] == str(root)
        by_name = {s["name"]: s for s in report["servers"]}
        assert by_name["uem"]["status"] == OK
        assert by_name["uem"]["protocol"] == "TLSv1.2"
        assert by_name["exchange"]["tls"] is False
        assert "t" not in [s["name"] for s in report["servers"]]


def test_no_servers_or_a_bad_ca_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parser().parse_args(["tlscheck"])
    assert args.func(args) == 2
    assert "no servers to check" in capsys.readouterr().err
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    args = parser().parse_args(["tlscheck", "--ca", str(bad), "https://127.0.0.1:1"])
    assert args.func(args) == 2
    assert f"--ca {bad}: no PEM certificate (expected -----BEGIN" in capsys.readouterr().err
    leaf = tmp_path / "leaf.pem"
    leaf_cert = make_hierarchy("tlscheck lab").server_credential().certificate
    leaf.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    args = parser().parse_args(["tlscheck", "--ca", str(leaf), "https://127.0.0.1:1"])
    assert args.func(args) == 2
    assert f"--ca {leaf}: none of the 1 certificates is a CA" in capsys.readouterr().err


def test_help_describes_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["tlscheck", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for option in ("--ready", "--ca", "--json", "--timeout", "TLS 1.2 OK"):
        assert option in out
