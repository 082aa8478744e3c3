"""Simulated phones over TLS: trusting only a given root, client certificates, clear failures."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from device_sim.client import DeviceClient, FolderSync, Options, Provision, Step, Sync
from device_sim.fleet import make_identities, run_fleet
from device_sim.shell import (
    AiohttpTransport,
    DeviceRunner,
    DeviceTls,
    ScriptReport,
    TlsSetupError,
    TransportError,
    read_identity,
    read_root,
)
from device_sim.wire import DeviceIdentity, HttpRequest
from exchange_sim.app import make_app
from exchange_sim.config import ExchangeConfig
from labpki import ClientCertMode, Hierarchy, Issued, make_hierarchy, server_context
from scenarios import cli_device
from scenarios.serving import StartedSite, start_site
from simclock import SystemClock

LAB = {
    "users": [
        {"name": "alice", "email": "alice@example.com", "password": "alice-pass"},
        {"name": "bob", "email": "bob@example.com", "password": "bob-pass"},
    ],
    "exchange": {"seed_messages_per_mailbox": 2, "seed": 3},
}
SCRIPT: list[Step] = [Options(), Provision(), FolderSync(), Sync()]


@pytest.fixture(scope="module")
def lab_ca() -> Hierarchy:
    return make_hierarchy("device tls test")


@pytest.fixture(scope="module")
def other_ca() -> Hierarchy:
    return make_hierarchy("someone else")


def alice() -> DeviceIdentity:
    return DeviceIdentity(
        user="alice", password="alice-pass", device_id="TLS1", device_type="iPhone"
    )


async def exchange_site(context: ssl.SSLContext | None) -> StartedSite:
    config = ExchangeConfig.from_mapping(LAB, source="test lab")
    app = make_app(config, clock=SystemClock(), admin_token="t")
    return await start_site(app, ssl_context=context)


@pytest.fixture
async def tls_exchange(lab_ca: Hierarchy) -> AsyncIterator[StartedSite]:
    site = await exchange_site(server_context(lab_ca.server_credential()))
    try:
        yield site
    finally:
        await site.stop()


@pytest.fixture
async def mtls_exchange(lab_ca: Hierarchy) -> AsyncIterator[StartedSite]:
    context = server_context(
        lab_ca.server_credential(),
        client_cert=ClientCertMode.REQUIRED,
        client_roots_pem=lab_ca.root_pem(),
    )
    site = await exchange_site(context)
    try:
        yield site
    finally:
        await site.stop()


@pytest.fixture
async def plain_exchange() -> AsyncIterator[StartedSite]:
    site = await exchange_site(None)
    try:
        yield site
    finally:
        await site.stop()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def identity_files(directory: Path, issued: Issued) -> tuple[Path, Path]:
    cert = write(directory / "device.pem", issued.chain_pem())
    key = write(directory / "device.key", issued.key_pem())
    return cert, key


def p12_of(issued: Issued, password: bytes | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return pkcs12.serialize_key_and_certificates(
        b"device", issued.key, issued.certificate, list(issued.chain), encryption
    )


async def run_script(
    url: str,
    tls: DeviceTls | ssl.SSLContext | str | os.PathLike[str],
    identity: DeviceIdentity | None = None,
) -> ScriptReport:
    async with aiohttp.ClientSession() as session:
        runner = DeviceRunner(
            DeviceClient(identity or alice()),
            AiohttpTransport(session, url, tls=tls),
            SystemClock(),
            request_timeout=10,
        )
        return await runner.run_script(SCRIPT)


# -- the transport ------------------------------------------------------------------------------


async def test_device_trusting_only_the_root_provisions_and_syncs(
    tls_exchange: StartedSite, lab_ca: Hierarchy
) -> None:
    assert tls_exchange.url.startswith("https://127.0.0.1:")
    async with asyncio.timeout(20):
        report = await run_script(tls_exchange.url, DeviceTls.from_root(lab_ca.root_pem()))
    assert report.succeeded, report


async def test_a_root_pem_path_or_a_bare_context_also_work(
    tls_exchange: StartedSite, lab_ca: Hierarchy, tmp_path: Path
) -> None:
    root = write(tmp_path / "root.pem", lab_ca.root_pem())
    context = ssl.create_default_context(cadata=lab_ca.root_pem().decode())
    async with asyncio.timeout(20):
        tls: Path | str | ssl.SSLContext
        for tls in (root, str(root), context):
            report = await run_script(tls_exchange.url, tls)
            assert report.succeeded, (tls, report)


async def test_another_root_fails_with_the_clear_message(
    tls_exchange: StartedSite, other_ca: Hierarchy
) -> None:
    tls = DeviceTls.from_root(other_ca.root_pem())
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        transport = AiohttpTransport(session, tls_exchange.url, tls=tls)
        with pytest.raises(TransportError) as failure:
            await transport(HttpRequest("OPTIONS", "/Microsoft-Server-ActiveSync"))
    text = str(failure.value)
    assert text.startswith(
        f"TLS: certificate verify failed for {tls_exchange.url} — does --ca name the lab's root?"
    )
    assert "unable to get local issuer certificate" in text


async def test_the_failed_step_ends_the_script_with_that_message(
    tls_exchange: StartedSite, other_ca: Hierarchy
) -> None:
    async with asyncio.timeout(10):
        report = await run_script(tls_exchange.url, DeviceTls.from_root(other_ca.root_pem()))
    error = report.error
    assert error is not None
    assert error.startswith("TLS: certificate verify failed for https://")


async def test_https_to_a_plain_http_server_says_so(
    plain_exchange: StartedSite, lab_ca: Hierarchy
) -> None:
    url = plain_exchange.url.replace("http://", "https://")
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        transport = AiohttpTransport(session, url, tls=DeviceTls.from_root(lab_ca.root_pem()))
        with pytest.raises(TransportError, match=r"handshake with .* failed: WRONG_VERSION_NUMBER"):
            await transport(HttpRequest("OPTIONS", "/Microsoft-Server-ActiveSync"))


async def test_mutual_tls_device_with_identity_passes_and_one_without_is_told_why(
    mtls_exchange: StartedSite, lab_ca: Hierarchy, other_ca: Hierarchy
) -> None:
    root = lab_ca.root_pem()
    mine = DeviceTls.from_root(root, identity=lab_ca.device_identity("alice", "TLS1"))
    async with asyncio.timeout(20):
        report = await run_script(mtls_exchange.url, mine)
        assert report.succeeded, report
        for tls in (
            DeviceTls.from_root(root),
            DeviceTls.from_root(root, identity=other_ca.device_identity("alice", "TLS1")),
        ):
            refused = await run_script(mtls_exchange.url, tls)
            error = refused.error or ""
            assert "requires a client certificate" in error, error
            assert "--client-cert" in error


async def test_fleet_shares_a_root_and_gives_each_device_its_own_certificate(
    mtls_exchange: StartedSite, lab_ca: Hierarchy
) -> None:
    identities = make_identities(2, user="alice", password="alice-pass", device_id="FLEET{n}")
    root = lab_ca.root_pem()

    def own(identity: DeviceIdentity) -> DeviceTls:
        issued = lab_ca.device_identity(identity.user, identity.device_id)
        return DeviceTls.from_root(root, identity=issued)

    async with asyncio.timeout(20):
        report = await run_fleet(
            identities,
            [Provision(), FolderSync()],
            base_url=mtls_exchange.url,
            clock=SystemClock(),
            tls=DeviceTls.from_root(root),
            tls_for=own,
        )
        assert report.succeeded == 2
        without = await run_fleet(
            identities[:1],
            [Provision()],
            base_url=mtls_exchange.url,
            clock=SystemClock(),
            tls=DeviceTls.from_root(root),
        )
        assert without.errors == 1


# -- reading files ------------------------------------------------------------------------------


def test_read_root_names_a_missing_or_wrong_file(tmp_path: Path) -> None:
    with pytest.raises(TlsSetupError, match=r"nothere.pem: cannot read the root certificate"):
        read_root(tmp_path / "nothere.pem")
    junk = write(tmp_path / "junk.pem", b"not a certificate")
    with pytest.raises(TlsSetupError, match=r"junk.pem: no PEM certificate"):
        read_root(junk)
    empty = write(tmp_path / "empty.pem", b"")
    with pytest.raises(TlsSetupError, match=r"empty.pem: the root certificate \(PEM\) file is"):
        read_root(empty)


def test_pem_identity_keeps_its_chain_and_drops_a_root(tmp_path: Path, lab_ca: Hierarchy) -> None:
    issued = lab_ca.device_identity("alice", "TLS1")
    cert = write(tmp_path / "id.pem", issued.chain_pem() + lab_ca.root_pem())
    key = write(tmp_path / "id.key", issued.key_pem())
    loaded = read_identity(cert, key)
    assert loaded.certificate == issued.certificate
    assert loaded.chain == issued.chain  # the intermediates, never the root
    assert len(loaded.chain) == 2


@pytest.mark.parametrize("password", [None, b"s3cret"])
def test_pkcs12_identity_reads_with_its_password(
    tmp_path: Path, lab_ca: Hierarchy, password: bytes | None
) -> None:
    issued = lab_ca.device_identity("alice")
    p12 = write(tmp_path / "id.p12", p12_of(issued, password))
    loaded = read_identity(p12, password=password)
    assert loaded.certificate == issued.certificate
    assert loaded.chain == issued.chain


def test_identity_errors_name_the_file(
    tmp_path: Path, lab_ca: Hierarchy, other_ca: Hierarchy
) -> None:
    issued = lab_ca.device_identity("alice")
    p12 = write(tmp_path / "id.p12", p12_of(issued, b"right"))
    with pytest.raises(TlsSetupError, match=r"id.p12: wrong password or not a PKCS#12 file"):
        read_identity(p12, password=b"wrong")
    with pytest.raises(TlsSetupError, match=r"id.p12: not a PKCS#12 file, or it needs a password"):
        read_identity(p12)
    cert, _ = identity_files(tmp_path, issued)
    with pytest.raises(TlsSetupError, match=r"device.pem: a PEM certificate needs its key too"):
        read_identity(cert)
    stranger = write(tmp_path / "stranger.key", other_ca.device_identity("x").key_pem())
    with pytest.raises(TlsSetupError, match=r"stranger.key: the private key does not belong"):
        read_identity(cert, stranger)
    with pytest.raises(TlsSetupError, match=r"device.pem: no readable PEM private key"):
        read_identity(cert, cert)


def test_from_files_trusts_the_root_file_and_loads_the_identity(
    tmp_path: Path, lab_ca: Hierarchy
) -> None:
    root = write(tmp_path / "root.pem", lab_ca.root_pem())
    cert, key = identity_files(tmp_path, lab_ca.device_identity("alice", "TLS1"))
    tls = DeviceTls.from_files(root, client_cert=cert, client_key=key)
    assert tls.context.verify_mode is ssl.CERT_REQUIRED
    assert tls.context.check_hostname
    assert len(tls.context.get_ca_certs()) == 1  # only the lab's root, no system store
    with pytest.raises(TlsSetupError, match=r"device.key: a client key without its certificate"):
        DeviceTls.from_files(root, client_key=key)


# -- sentry-sim device ----------------------------------------------------------------------------


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
        "TLS1",
        "--device-type",
        "iPhone",
        *extra,
    ]


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scenarios.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


def test_help_lists_the_tls_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["device", "--help"])
    text = capsys.readouterr().out
    for option in ("--ca", "--client-cert", "--client-key", "--client-cert-password-env"):
        assert option in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ca", "nothere.pem"], "--ca: nothere.pem: cannot read the root certificate"),
        (["--client-cert", "x.p12"], "--client-cert: needs --ca ROOT.pem"),
        (["--ca", "{root}", "--client-key", "{key}"], "--client-key: needs --client-cert"),
        (
            ["--ca", "{root}", "--client-cert", "{p12}", "--client-cert-password-env", "NO_VAR"],
            "environment variable NO_VAR is not set",
        ),
        (
            ["--ca", "{root}", "--client-cert", "{p12}"],
            "--client-cert: {p12}: not a PKCS#12 file, or it needs a password",
        ),
        (
            ["--ca", "{root}", "--client-cert", "{cert}", "--client-key", "{stranger}"],
            "--client-key: {stranger}: the private key does not belong",
        ),
    ],
)
def test_bad_tls_options_exit_2_naming_option_and_file(
    tmp_path: Path,
    lab_ca: Hierarchy,
    other_ca: Hierarchy,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NO_VAR", raising=False)
    issued = lab_ca.device_identity("alice", "TLS1")
    cert, key = identity_files(tmp_path, issued)
    names = {
        "root": str(write(tmp_path / "root.pem", lab_ca.root_pem())),
        "cert": str(cert),
        "key": str(key),
        "p12": str(write(tmp_path / "id.p12", p12_of(issued, b"pw"))),
        "stranger": str(write(tmp_path / "s.key", other_ca.device_identity("x").key_pem())),
    }
    argv = device_args("https://127.0.0.1:9", *(part.format(**names) for part in extra))
    args = parser().parse_args(argv)
    assert args.func(args) == 2
    assert message.format(**names) in capsys.readouterr().err


def test_ca_with_a_plain_http_url_is_refused(
    tmp_path: Path, lab_ca: Hierarchy, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(tmp_path / "root.pem", lab_ca.root_pem())
    args = parser().parse_args(device_args("http://127.0.0.1:9", "--ca", str(root)))
    assert args.func(args) == 2
    assert "--ca: the URL is plain http" in capsys.readouterr().err


async def test_cli_with_the_root_and_a_pkcs12_identity_runs_over_mutual_tls(
    mtls_exchange: StartedSite, lab_ca: Hierarchy, tmp_path: Path
) -> None:
    root = write(tmp_path / "root.pem", lab_ca.root_pem())
    p12 = write(tmp_path / "alice.p12", p12_of(lab_ca.device_identity("alice", "TLS1"), b"pw"))
    argv = device_args(
        mtls_exchange.url,
        "--steps",
        "options,provision,foldersync,sync",
        "--ca",
        str(root),
        "--client-cert",
        str(p12),
        "--client-cert-password-env",
        "DEVICE_P12_PASSWORD",
    )
    async with asyncio.timeout(30):
        code, out = await run_cli(*argv, env={"DEVICE_P12_PASSWORD": "pw"})
    assert code == 0, out
    assert "READY, 4/4 steps succeeded" in out
    assert "pw" not in out.replace("password", "")


async def test_cli_with_another_root_exits_1_with_the_clear_message(
    tls_exchange: StartedSite, other_ca: Hierarchy, tmp_path: Path
) -> None:
    root = write(tmp_path / "other-root.pem", other_ca.root_pem())
    argv = device_args(tls_exchange.url, "--steps", "options", "--ca", str(root))
    async with asyncio.timeout(30):
        code, out = await run_cli(*argv)
    assert code == 1, out
    expected = f"TLS: certificate verify failed for {tls_exchange.url} — does --ca name the lab's"
    assert expected in out
    assert "Traceback" not in out


async def test_run_device_prints_the_tls_error_once_without_a_traceback(
    tls_exchange: StartedSite, other_ca: Hierarchy
) -> None:
    out = io.StringIO()
    async with asyncio.timeout(10):
        code = await cli_device.run_device(
            alice(),
            [Options()],
            url=tls_exchange.url,
            as_json=False,
            request_timeout=5,
            out=out,
            tls=DeviceTls.from_root(other_ca.root_pem()),
        )
    assert code == 1
    errors = [line for line in out.getvalue().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert "does --ca name the lab's root?" in errors[0]
