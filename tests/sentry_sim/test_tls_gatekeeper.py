"""Gatekeeper TLS on loopback: real handshakes on the device and admin ports, with and without
the fast lane, Certificate Mgmt uploads swapping the served certificate, and mutual TLS."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from labpki import (
    Hierarchy,
    client_context,
    legacy_client_context,
    make_hierarchy,
)
from scenarios.cli_sentry import RunningSentry, serve
from sentry_sim.config import SentryConfig
from sentry_sim.events import EventBus, RequestDenied
from sentry_sim.tls import IDENTITY_HEADER, REASON_HEADER, SentryTls
from tests.sentry_sim.fakes import EAS, FakeUem, FakeUpstream, headers, query

TOKEN = {"Authorization": "Bearer test-token"}


@pytest.fixture(scope="module")
def pki() -> Hierarchy:
    return make_hierarchy("gatekeeper tls test")


@pytest.fixture
async def start_tls(
    fake_uem: FakeUem, fake_upstream: FakeUpstream, pki: Hierarchy
) -> AsyncIterator[Any]:
    """Start gatekeepers with the lab's credential on the TLS ports; all stopped at the end."""
    running: list[RunningSentry] = []

    async def start(
        *,
        device: bool = True,
        admin: bool = False,
        fast_lane: bool = True,
        client_certificates: str = "off",
        bus: EventBus | None = None,
    ) -> RunningSentry:
        device_tls: dict[str, Any] = {"enabled": device}
        if client_certificates != "off":
            device_tls["client_certificates"] = client_certificates
        config = SentryConfig.from_mapping(
            {
                "activesync_policy_mode": "pass_through",
                "first_access_wait_s": 3,
                "uem_timeout_s": 2,
                "fast_lane": fast_lane,
                "tls": {"device": device_tls, "admin": {"enabled": admin}},
            },
            "test.yaml",
        )
        tls = SentryTls.from_config(
            config, lab_credential=pki.server_credential(), lab_root_pem=pki.root_pem()
        )
        sentry = await serve(
            config,
            upstream_url=fake_upstream.url,
            uem_url=fake_uem.url,
            admin_token="test-token",
            bus=bus or EventBus(strict=True),
            tls=tls,
        )
        running.append(sentry)
        return sentry

    yield start
    for sentry in reversed(running):
        await sentry.stop()


async def served_serial(url: str, context: ssl.SSLContext) -> int:
    """The serial number of the certificate a fresh TLS connection to ``url`` is served."""
    parts = urlsplit(url)
    _, writer = await asyncio.open_connection(parts.hostname, parts.port, ssl=context)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
    return x509.load_der_x509_certificate(der).serial_number


@pytest.mark.parametrize("fast_lane", [True, False], ids=["lane", "aiohttp"])
async def test_device_port_over_tls_forwards_first_access_and_hot_path(
    start_tls: Any, fake_upstream: FakeUpstream, pki: Hierarchy, fast_lane: bool
) -> None:
    running = await start_tls(fast_lane=fast_lane)
    assert running.url.startswith("https://127.0.0.1:")
    assert running.admin_url.startswith("http://")
    device = client_context(pki.root_pem())  # trusts only the lab's root
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        for body in (b"first", b"second"):
            async with session.post(
                running.url + query(cmd="Sync"), data=body, headers=headers(), ssl=device
            ) as answer:
                assert answer.status == 200
                assert await answer.read() == b"upstream:" + body
    assert [s["body"] for s in fake_upstream.seen] == [b"first", b"second"]
    if fast_lane:
        assert running.lane is not None
        assert running.lane.forwarded == 1  # the second took the hot path, over TLS too


async def test_device_port_sends_the_chain_but_not_the_root(start_tls: Any, pki: Hierarchy) -> None:
    running = await start_tls()
    parts = urlsplit(running.url)
    async with asyncio.timeout(10):
        # Python 3.11's ssl cannot list what the server sent; openssl s_client can.
        proc = await asyncio.create_subprocess_exec(
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{parts.port}",
            "-showcerts",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await proc.communicate()
    blocks = out.split(b"-----BEGIN CERTIFICATE-----")[1:]
    sent = [
        x509.load_pem_x509_certificate(b"-----BEGIN CERTIFICATE-----" + block) for block in blocks
    ]
    subjects = [cert.subject for cert in sent]
    assert subjects[1:] == [pki.issuing.certificate.subject, pki.intermediate.certificate.subject]
    assert pki.root.certificate.subject not in subjects


async def test_client_trusting_another_root_refuses_the_gatekeeper(start_tls: Any) -> None:
    running = await start_tls()
    stranger = client_context(make_hierarchy("another lab").root_pem())
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.post(running.url + query(), headers=headers(), ssl=stranger)


@pytest.mark.parametrize("fast_lane", [True, False], ids=["lane", "aiohttp"])
async def test_tls_1_1_client_is_refused(start_tls: Any, pki: Hierarchy, fast_lane: bool) -> None:
    running = await start_tls(fast_lane=fast_lane)
    parts = urlsplit(running.url)
    legacy = legacy_client_context(pki.root_pem(), ssl.TLSVersion.TLSv1_1)
    async with asyncio.timeout(10):
        # The server refuses the ClientHello: an alert (SSLError) or a reset, never a session.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.open_connection(parts.hostname, parts.port, ssl=legacy)


async def test_admin_port_tls_with_plain_device_port(
    start_tls: Any, fake_uem: FakeUem, pki: Hierarchy
) -> None:
    running = await start_tls(device=False, admin=True)
    assert running.url.startswith("http://")
    assert running.admin_url.startswith("https://")
    trusting = client_context(pki.root_pem())
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        async with session.post(running.url + query(), headers=headers()) as answer:
            assert answer.status == 200
        async with session.get(
            running.admin_url + "/api/v1/certificates", headers=TOKEN, ssl=trusting
        ) as answer:
            ports = (await answer.json())["ports"]
        with pytest.raises(aiohttp.ClientError):
            await session.get(running.admin_url + "/api/v1/certificates", headers=TOKEN)
    assert ports["device"]["enabled"] is False
    assert ports["device"]["certificate"] is None
    assert ports["admin"]["enabled"] is True
    assert ports["admin"]["min_version"] == "1.2"
    assert ports["admin"]["certificate"]["chain"] == [
        pki.issuing.certificate.subject.rfc4514_string(),
        pki.intermediate.certificate.subject.rfc4514_string(),
    ]
    # The UEM is told to push to the admin port: over TLS now.
    await _until(lambda: bool(fake_uem.registrations))
    push_url = fake_uem.registrations[-1].push_url
    assert push_url.startswith(running.admin_url + "/uem/push/")


async def _until(check: Any) -> None:
    async with asyncio.timeout(5):
        while not check():  # noqa: ASYNC110 - another actor changes it over a socket
            await asyncio.sleep(0.01)


async def _put(
    session: aiohttp.ClientSession, running: RunningSentry, port: str, body: Any
) -> tuple[int, dict[str, Any]]:
    async with session.put(
        f"{running.admin_url}/api/v1/certificates/{port}", json=body, headers=TOKEN
    ) as answer:
        return answer.status, await answer.json()


@pytest.mark.parametrize("fast_lane", [True, False], ids=["lane", "aiohttp"])
async def test_pkcs12_upload_switches_the_served_certificate_without_a_restart(
    start_tls: Any, pki: Hierarchy, fast_lane: bool
) -> None:
    running = await start_tls(fast_lane=fast_lane)
    device = client_context(pki.root_pem())
    before = await served_serial(running.url, device)
    fresh = pki.server_credential()
    upload = {
        "pkcs12": base64.b64encode(fresh.to_pkcs12(b"s3cret-pw")).decode(),
        "password": "s3cret-pw",
    }
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        status, body = await _put(session, running, "device", upload)
        assert status == 200, body
        assert body["certificate"]["serial"] == format(fresh.certificate.serial_number, "x")
        assert body["swaps"] == 1
        assert "s3cret-pw" not in str(body)
        after = await served_serial(running.url, device)
        # New connections get the new certificate and still work end to end.
        async with session.post(running.url + query(), headers=headers(), ssl=device) as answer:
            assert answer.status == 200
    assert before != after == fresh.certificate.serial_number


def _expired_upload(pki: Hierarchy) -> dict[str, str]:
    old = pki.server_credential(days=1, now=datetime.now(UTC) - timedelta(days=3))
    return {"pkcs12": base64.b64encode(old.to_pkcs12()).decode()}


def _keyless_upload(pki: Hierarchy) -> dict[str, str]:
    cert = pki.server_credential().certificate
    data = pkcs12.serialize_key_and_certificates(
        b"no key", None, None, [cert], serialization.NoEncryption()
    )
    return {"pkcs12": base64.b64encode(data).decode()}


async def test_bad_uploads_get_400_with_the_reason_and_change_nothing(
    start_tls: Any, pki: Hierarchy
) -> None:
    running = await start_tls()
    device = client_context(pki.root_pem())
    serial = await served_serial(running.url, device)
    good = base64.b64encode(pki.server_credential().to_pkcs12(b"right")).decode()
    cases: list[tuple[Any, str]] = [
        ({"pkcs12": "%%% not base64 %%%"}, "$.pkcs12: not valid base64"),
        ({"pkcs12": good, "password": "wrong-guess"}, "wrong password or not a PKCS#12 file"),
        ({"pkcs12": base64.b64encode(b"just some bytes").decode()}, "not a PKCS#12 file"),
        (_keyless_upload(pki), "has no private key"),
        (_expired_upload(pki), "expired"),
        ({"pkcs12": good, "password": 7}, "$.password: expected a string"),
        ({"certificate": good}, "$.certificate: unknown field"),
        ([good], "expected a JSON object"),
    ]
    async with asyncio.timeout(15), aiohttp.ClientSession() as session:
        for body, reason in cases:
            status, answer = await _put(session, running, "device", body)
            assert status == 400, (body, answer)
            assert reason in answer["error"], answer
            assert "wrong-guess" not in str(answer)
        async with session.put(
            f"{running.admin_url}/api/v1/certificates/device", data=b"{", headers=TOKEN
        ) as raw:
            assert raw.status == 400
            assert "expected JSON" in (await raw.json())["error"]
        status, answer = await _put(session, running, "admin", {"pkcs12": good})
        assert status == 409, answer
        assert "admin port does not speak TLS" in answer["error"]
        status, answer = await _put(session, running, "backdoor", {"pkcs12": good})
        assert status == 404
        async with session.get(
            running.admin_url + "/api/v1/certificates/device", headers=TOKEN
        ) as reply:
            port = await reply.json()
    assert port["swaps"] == 0
    assert port["certificate"]["serial"] == format(serial, "x")
    assert await served_serial(running.url, device) == serial


async def test_upload_without_the_admin_token_is_refused(start_tls: Any, pki: Hierarchy) -> None:
    running = await start_tls()
    good = base64.b64encode(pki.server_credential().to_pkcs12()).decode()
    async with (
        asyncio.timeout(10),
        aiohttp.ClientSession() as session,
        session.put(
            running.admin_url + "/api/v1/certificates/device", json={"pkcs12": good}
        ) as answer,
    ):
        assert answer.status == 401
    assert running.tls is not None
    assert running.tls.device is not None
    assert running.tls.device.swaps == 0


# -- mutual TLS ------------------------------------------------------------------------------
@pytest.mark.parametrize("fast_lane", [True, False], ids=["lane", "aiohttp"])
async def test_mtls_required_without_a_certificate_fails_the_handshake(
    start_tls: Any, pki: Hierarchy, fake_upstream: FakeUpstream, fast_lane: bool
) -> None:
    running = await start_tls(client_certificates="required", fast_lane=fast_lane)
    parts = urlsplit(running.url)
    tls12 = client_context(pki.root_pem(), max_version=ssl.TLSVersion.TLSv1_2)
    async with asyncio.timeout(10):
        # TLS 1.2: the server's refusal ends the handshake itself (an alert or a reset).
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.open_connection(parts.hostname, parts.port, ssl=tls12)
        # TLS 1.3: the client finishes first, then the server's alert ends the connection.
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                async with session.post(
                    running.url + query(), headers=headers(), ssl=client_context(pki.root_pem())
                ) as answer:
                    await answer.read()
    assert fake_upstream.seen == []


@pytest.mark.parametrize("fast_lane", [True, False], ids=["lane", "aiohttp"])
async def test_mtls_matching_certificate_is_forwarded_and_another_users_gets_403(
    start_tls: Any, pki: Hierarchy, fake_upstream: FakeUpstream, fast_lane: bool
) -> None:
    bus = EventBus(strict=True)
    running = await start_tls(client_certificates="required", fast_lane=fast_lane, bus=bus)
    alice = client_context(pki.root_pem(), identity=pki.device_identity("alice", "DEV1"))
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        for _ in range(2):  # first access (full path), then the hot path with the lane
            async with session.post(
                running.url + query("alice", "DEV1", "Sync"), headers=headers(), ssl=alice
            ) as answer:
                assert answer.status == 200
        async with session.post(
            running.url + query("bob", "DEV9", "Sync"), headers=headers(), ssl=alice
        ) as answer:
            assert answer.status == 403
            reason = answer.headers[REASON_HEADER]
            assert reason == await answer.text()
    assert "certificate is for alice (device DEV1)" in reason
    assert "bob" in reason
    assert len(fake_upstream.seen) == 2
    denied = [e for e in bus.recent(200) if isinstance(e, RequestDenied)]
    assert [(e.record, e.why, e.http_status) for e in denied] == [
        ("bob/dev9", "client_certificate", 403)
    ]


async def test_mtls_per_user_certificate_matches_any_device_of_that_user(
    start_tls: Any, pki: Hierarchy
) -> None:
    running = await start_tls(client_certificates="required")
    alice = client_context(pki.root_pem(), identity=pki.device_identity("alice"))
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        for device in ("PHONE", "TABLET"):
            async with session.post(
                running.url + query("CORP\\alice", device), headers=headers(), ssl=alice
            ) as answer:
                assert answer.status == 200


async def test_mtls_identity_the_lane_cannot_read_is_checked_by_the_full_path(
    start_tls: Any, pki: Hierarchy, fake_upstream: FakeUpstream
) -> None:
    """The user only in Basic credentials of a plain query: the lane hands the request over
    with the connection's identity, and a header forged by the device counts for nothing."""
    running = await start_tls(client_certificates="required")
    alice = client_context(pki.root_pem(), identity=pki.device_identity("alice", "DEV1"))
    target = f"{EAS}?Cmd=FolderSync&DeviceId=DEV1&DeviceType=iPhone"
    forged = '- ["bob", "DEV1"]'
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        bob = {**headers(), "Authorization": "Basic " + base64.b64encode(b"bob:pw").decode()}
        async with session.post(
            running.url + target, headers={**bob, IDENTITY_HEADER: forged}, ssl=alice
        ) as answer:
            assert answer.status == 403
            assert "certificate is for alice" in answer.headers[REASON_HEADER]
        mine = {**headers(), "Authorization": "Basic " + base64.b64encode(b"alice:pw").decode()}
        async with session.post(
            running.url + target, headers={**mine, IDENTITY_HEADER: forged}, ssl=alice
        ) as answer:
            assert answer.status == 200
    assert len(fake_upstream.seen) == 1
    # Neither the lane's header (it holds the secret) nor the forged one reaches upstream.
    assert IDENTITY_HEADER.lower() not in fake_upstream.seen[0]["header_names"]


async def test_mtls_optional_lets_a_device_without_a_certificate_through(
    start_tls: Any, pki: Hierarchy
) -> None:
    running = await start_tls(client_certificates="optional")
    plain = client_context(pki.root_pem())
    carol = client_context(pki.root_pem(), identity=pki.device_identity("carol", "C1"))
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        async with session.post(running.url + query(), headers=headers(), ssl=plain) as answer:
            assert answer.status == 200
        async with session.post(running.url + query(), headers=headers(), ssl=carol) as answer:
            assert answer.status == 403


async def test_mtls_device_certificate_from_another_ca_fails_the_handshake(
    start_tls: Any, pki: Hierarchy
) -> None:
    running = await start_tls(client_certificates="optional")
    other = make_hierarchy("rogue ca")
    rogue = client_context(
        pki.root_pem(),
        identity=other.device_identity("alice", "DEV1"),
        max_version=ssl.TLSVersion.TLSv1_2,
    )
    parts = urlsplit(running.url)
    async with asyncio.timeout(10):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.open_connection(parts.hostname, parts.port, ssl=rogue)
