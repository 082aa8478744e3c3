"""Real handshakes on 127.0.0.1: chain validation, TLS versions and mutual TLS."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from labpki import (
    ClientCertMode,
    Hierarchy,
    PkiError,
    ServerCredential,
    client_context,
    contexts,
    identity_of,
    legacy_client_context,
    legacy_server_context,
    server_context,
)
from tests.labpki.tls_peers import HANDSHAKE_FAILURES, connect, echo_server, exchange

TIMEOUT = 10


async def test_client_trusting_only_the_root_validates_leaf_plus_intermediates(
    hierarchy: Hierarchy,
) -> None:
    credential = hierarchy.server_credential()
    async with asyncio.timeout(TIMEOUT), echo_server(server_context(credential)) as server:
        leaf = await exchange(server.port, client_context(hierarchy.root_pem()))
        leaf_by_name = await exchange(
            server.port, client_context(hierarchy.root_pem()), host="localhost"
        )
    assert leaf.serial_number == credential.certificate.serial_number
    assert leaf_by_name.serial_number == credential.certificate.serial_number


async def test_server_sending_only_the_leaf_fails_verification(hierarchy: Hierarchy) -> None:
    full = hierarchy.server_credential()
    leaf_only = ServerCredential(certificate=full.certificate, key=full.key, chain=())
    async with asyncio.timeout(TIMEOUT), echo_server(server_context(leaf_only)) as server:
        with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
            await exchange(server.port, client_context(hierarchy.root_pem()))


async def test_server_missing_the_intermediate_fails_verification(hierarchy: Hierarchy) -> None:
    full = hierarchy.server_credential()
    no_intermediate = ServerCredential(
        certificate=full.certificate, key=full.key, chain=full.chain[:1]
    )
    async with asyncio.timeout(TIMEOUT), echo_server(server_context(no_intermediate)) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            await exchange(server.port, client_context(hierarchy.root_pem()))


async def test_client_trusting_another_hierarchy_root_fails(
    hierarchy: Hierarchy, other_hierarchy: Hierarchy
) -> None:
    credential = hierarchy.server_credential()
    async with asyncio.timeout(TIMEOUT), echo_server(server_context(credential)) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            await exchange(server.port, client_context(other_hierarchy.root_pem()))


async def test_client_checks_the_host_name(hierarchy: Hierarchy) -> None:
    credential = hierarchy.server_credential(["mail.example.test"])
    async with asyncio.timeout(TIMEOUT), echo_server(server_context(credential)) as server:
        assert (
            await exchange(server.port, client_context(hierarchy.root_pem()), "mail.example.test")
        ).serial_number == credential.certificate.serial_number
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            await exchange(server.port, client_context(hierarchy.root_pem()), "127.0.0.1")


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["TLSv1.0", "TLSv1.1"]
)
async def test_legacy_client_is_refused_by_the_default_server(
    hierarchy: Hierarchy, version: ssl.TLSVersion
) -> None:
    credential = hierarchy.server_credential()
    async with asyncio.timeout(TIMEOUT), echo_server(server_context(credential)) as server:
        # The server's protocol_version alert may arrive as an SSLError or as a reset.
        with pytest.raises(HANDSHAKE_FAILURES):
            await exchange(server.port, legacy_client_context(hierarchy.root_pem(), version))
    assert server.peercerts == []


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["TLSv1.0", "TLSv1.1"]
)
async def test_legacy_server_talks_to_a_legacy_client_but_not_to_the_default_client(
    hierarchy: Hierarchy, version: ssl.TLSVersion
) -> None:
    credential = hierarchy.server_credential()
    legacy = legacy_server_context(credential, version)
    async with asyncio.timeout(TIMEOUT), echo_server(legacy) as server:
        # The legacy pair works, so the refusal below is the version and nothing else.
        async with connect(server.port, legacy_client_context(hierarchy.root_pem(), version)) as c:
            assert await c.echo() == b"ping"
            assert c.writer.get_extra_info("ssl_object").version() == version.name.replace("_", ".")
        with pytest.raises(HANDSHAKE_FAILURES):
            await exchange(server.port, client_context(hierarchy.root_pem()))


@pytest.mark.parametrize(
    ("server_max", "client_max", "expected"),
    [
        (None, None, "TLSv1.3"),
        (ssl.TLSVersion.TLSv1_2, None, "TLSv1.2"),
        (None, ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
    ],
)
async def test_version_limits_choose_the_protocol(
    hierarchy: Hierarchy,
    server_max: ssl.TLSVersion | None,
    client_max: ssl.TLSVersion | None,
    expected: str,
) -> None:
    context = server_context(hierarchy.server_credential(), max_version=server_max)
    async with asyncio.timeout(TIMEOUT), echo_server(context) as server:
        client = client_context(hierarchy.root_pem(), max_version=client_max)
        async with connect(server.port, client) as connection:
            assert connection.writer.get_extra_info("ssl_object").version() == expected


async def test_tls13_only_server_refuses_a_tls12_only_client(hierarchy: Hierarchy) -> None:
    context = server_context(hierarchy.server_credential(), min_version=ssl.TLSVersion.TLSv1_3)
    client = client_context(hierarchy.root_pem(), max_version=ssl.TLSVersion.TLSv1_2)
    async with asyncio.timeout(TIMEOUT), echo_server(context) as server:
        with pytest.raises(HANDSHAKE_FAILURES):
            await exchange(server.port, client)
    assert server.peercerts == []


def _mtls(hierarchy: Hierarchy, mode: ClientCertMode) -> ssl.SSLContext:
    return server_context(
        hierarchy.server_credential(), client_cert=mode, client_roots_pem=hierarchy.root_pem()
    )


async def test_mtls_required_without_client_certificate_fails_the_handshake(
    hierarchy: Hierarchy,
) -> None:
    async with (
        asyncio.timeout(TIMEOUT),
        echo_server(_mtls(hierarchy, ClientCertMode.REQUIRED)) as server,
    ):
        with pytest.raises(HANDSHAKE_FAILURES):
            await exchange(server.port, client_context(hierarchy.root_pem()))
    assert server.peercerts == []


async def test_mtls_required_with_device_identity_names_user_and_device(
    hierarchy: Hierarchy,
) -> None:
    identity = hierarchy.device_identity("CORP\\alice", "ApplABC123")
    client = client_context(hierarchy.root_pem(), identity=identity)
    async with (
        asyncio.timeout(TIMEOUT),
        echo_server(_mtls(hierarchy, ClientCertMode.REQUIRED)) as server,
    ):
        await exchange(server.port, client)
    [peercert] = server.peercerts
    found = identity_of(peercert)
    assert found is not None
    assert (found.user, found.device_id) == ("CORP\\alice", "ApplABC123")


async def test_mtls_identity_from_another_hierarchy_is_refused(
    hierarchy: Hierarchy, other_hierarchy: Hierarchy
) -> None:
    stranger = other_hierarchy.device_identity("mallory", "X1")
    client = client_context(hierarchy.root_pem(), identity=stranger)
    async with (
        asyncio.timeout(TIMEOUT),
        echo_server(_mtls(hierarchy, ClientCertMode.OPTIONAL)) as server,
    ):
        with pytest.raises(HANDSHAKE_FAILURES):
            await exchange(server.port, client)
    assert server.peercerts == []


async def test_mtls_identity_sent_without_its_chain_is_refused(hierarchy: Hierarchy) -> None:
    identity = hierarchy.device_identity("alice", "A1")
    bare = type(identity)(identity.certificate, identity.key)  # no intermediates to send
    client = client_context(hierarchy.root_pem(), identity=bare)
    async with (
        asyncio.timeout(TIMEOUT),
        echo_server(_mtls(hierarchy, ClientCertMode.REQUIRED)) as server,
    ):
        with pytest.raises(HANDSHAKE_FAILURES):
            await exchange(server.port, client)
    assert server.peercerts == []


async def test_server_certificate_is_refused_as_a_client_certificate(
    hierarchy: Hierarchy,
) -> None:
    # OpenSSL checks the clientAuth purpose: a serverAuth-only certificate is no identity.
    server_cred = hierarchy.server_credential(["device.example.test"])
    as_identity = type(hierarchy.root)(server_cred.certificate, server_cred.key, server_cred.chain)
    client = client_context(hierarchy.root_pem(), identity=as_identity)
    async with (
        asyncio.timeout(TIMEOUT),
        echo_server(_mtls(hierarchy, ClientCertMode.REQUIRED)) as server,
    ):
        with pytest.raises(HANDSHAKE_FAILURES):
            await exchange(server.port, client)
    assert server.peercerts == []


async def test_mtls_optional_without_certificate_connects_with_no_identity(
    hierarchy: Hierarchy,
) -> None:
    async with (
        asyncio.timeout(TIMEOUT),
        echo_server(_mtls(hierarchy, ClientCertMode.OPTIONAL)) as server,
    ):
        await exchange(server.port, client_context(hierarchy.root_pem()))
    [peercert] = server.peercerts
    assert identity_of(peercert) is None


def test_client_cert_mode_without_roots_is_an_error(hierarchy: Hierarchy) -> None:
    with pytest.raises(PkiError, match="client_roots_pem"):
        server_context(hierarchy.server_credential(), client_cert=ClientCertMode.REQUIRED)


def test_server_context_refuses_a_legacy_minimum(hierarchy: Hierarchy) -> None:
    with pytest.raises(PkiError, match="below TLSv1_2"):
        server_context(hierarchy.server_credential(), min_version=ssl.TLSVersion.TLSv1_1)


def test_server_context_refuses_max_below_min(hierarchy: Hierarchy) -> None:
    with pytest.raises(PkiError, match="below the minimum"):
        server_context(
            hierarchy.server_credential(),
            min_version=ssl.TLSVersion.TLSv1_3,
            max_version=ssl.TLSVersion.TLSv1_2,
        )


def test_unknown_cipher_list_is_an_error(hierarchy: Hierarchy) -> None:
    with pytest.raises(PkiError, match="no cipher matches 'NOT-A-CIPHER'"):
        server_context(hierarchy.server_credential(), ciphers="NOT-A-CIPHER")


def test_client_context_rejects_a_root_that_is_not_pem() -> None:
    with pytest.raises(PkiError, match="trusted root: no PEM certificate"):
        client_context(b"not a certificate")


def test_legacy_contexts_accept_only_legacy_versions(hierarchy: Hierarchy) -> None:
    with pytest.raises(PkiError, match="expected TLSv1 or TLSv1_1"):
        legacy_server_context(hierarchy.server_credential(), ssl.TLSVersion.TLSv1_2)


def test_loading_a_context_leaves_no_key_file_behind(
    hierarchy: Hierarchy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[str] = []

    def scratch() -> str:
        used.append(str(tmp_path))
        return str(tmp_path)

    monkeypatch.setattr(contexts, "_scratch_parent", scratch)
    server_context(hierarchy.server_credential())
    client_context(hierarchy.root_pem(), identity=hierarchy.device_identity("alice"))
    assert len(used) == 2  # both loads went through the scratch directory...
    assert list(tmp_path.iterdir()) == []  # ...and removed what they wrote
