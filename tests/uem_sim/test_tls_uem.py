"""The UEM's TLS over real loopback handshakes: its ports, its pushes, the admin API.

Every server here presents a certificate from a fresh ``labpki`` hierarchy; clients trust only
that hierarchy's root. Gatekeepers are tiny aiohttp apps standing in for Sentry's push
listener, some deliberately weak (TLS 1.1 only, CBC suites only).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from cryptography import x509

from labpki import (
    Hierarchy,
    client_context,
    legacy_server_context,
    make_hierarchy,
    server_context,
)
from scenarios.serving import StartedSite, start_site
from simclock import Clock, ManualClock, SystemClock
from uem_sim import contract
from uem_sim.app import make_app
from uem_sim.config import UemConfig
from uem_sim.events import (
    CertificateReplaced,
    EventBus,
    OutgoingTlsApplied,
    OutgoingTlsFailed,
    PushDelivered,
    PushFailed,
)
from uem_sim.tls import UemTls
from uem_sim.tls_usage import WEEK_S

TOKEN = "tls-test-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
CBC = "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"
CHACHA = "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"


@pytest.fixture(scope="module")
def pki() -> Hierarchy:
    return make_hierarchy("uem tls test")


@attrs.define
class RunningUem:
    url: str
    admin_url: str
    http: aiohttp.ClientSession
    events: EventBus

    async def call(
        self, method: str, path: str, json: Any = None, *, admin: bool = True
    ) -> tuple[int, Any]:
        base = self.admin_url if admin else self.url
        async with self.http.request(
            method, base + path, json=json, headers=ADMIN if admin else None
        ) as response:
            return response.status, await response.json()

    async def register(self, push_url: str, gatekeeper_id: str = "gk1") -> None:
        body = {"gatekeeper_id": gatekeeper_id, "push_url": push_url}
        status, _ = await self.call("POST", contract.GATEKEEPERS_PATH, body, admin=False)
        assert status == 200

    async def report(self, device_id: str, gatekeeper_id: str = "reporter") -> None:
        body = {"gatekeeper_id": gatekeeper_id, "user": "alice", "device_id": device_id}
        status, _ = await self.call(
            "POST", contract.REPORTS_PATH, {**body, "seen_at": 1}, admin=False
        )
        assert status == 200

    async def wait_for(
        self, kind: type[Any], where: Callable[[Any], bool] = lambda e: True, after: int = 0
    ) -> Any:
        """The first event of ``kind`` numbered above ``after`` that satisfies ``where``."""
        async with asyncio.timeout(5):
            while True:
                for _, event in self.events.recent(after):
                    if isinstance(event, kind) and where(event):
                        return event
                await asyncio.sleep(0.01)

    def mark(self) -> int:
        recent = self.events.recent()
        return recent[-1][0] if recent else 0


@contextlib.asynccontextmanager
async def running_uem(
    pki: Hierarchy,
    *,
    clock: Clock | None = None,
    api_tls: bool = True,
    admin_tls: bool = True,
    restart_s: float = 0.05,
) -> AsyncIterator[RunningUem]:
    config = UemConfig.from_mapping(
        {
            "users": [{"name": "alice"}],
            "uem": {
                "compliance_check_interval_s": 10 * WEEK_S,
                "tls": {"api": {"enabled": api_tls}, "admin": {"enabled": admin_tls}},
            },
        }
    )
    tls = UemTls.from_config(
        config, lab_credential=pki.server_credential(), lab_root_pem=pki.root_pem()
    )
    events = EventBus(strict=True)
    app = make_app(
        config,
        clock=clock or SystemClock(),
        admin_token=TOKEN,
        events=events,
        tls=tls,
        outgoing_restart_s=restart_s,
    )
    site = await start_site(app, ssl_context=tls.context("api"))
    try:
        admin = web.TCPSite(site.runner, "127.0.0.1", 0, ssl_context=tls.context("admin"))
        await admin.start()
        port = admin._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        scheme = "https" if admin_tls else "http"
        connector = aiohttp.TCPConnector(ssl=client_context(pki.root_pem()))
        async with aiohttp.ClientSession(connector=connector) as http:
            yield RunningUem(site.url, f"{scheme}://127.0.0.1:{port}", http, events)
    finally:
        await site.stop()


@attrs.define
class Gatekeeper:
    """A push listener; ``server_names`` are the SNI values its handshakes carried."""

    site: StartedSite
    pushes: int = 0
    server_names: list[str | None] = attrs.field(factory=list)

    def url(self, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.site.port}/push"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.site.port}"


@contextlib.asynccontextmanager
async def gatekeeper(context: ssl.SSLContext) -> AsyncIterator[Gatekeeper]:
    holder: list[Gatekeeper] = []

    def seen(obj: Any, name: str | None, ctx: ssl.SSLContext) -> None:
        holder[0].server_names.append(name)

    context.sni_callback = seen

    async def push(request: web.Request) -> web.Response:
        await request.read()
        holder[0].pushes += 1
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/push", push)
    site = await start_site(app, ssl_context=context)
    holder.append(Gatekeeper(site))
    try:
        yield holder[0]
    finally:
        await site.stop()


async def served_serial(url: str, root_pem: bytes) -> int:
    """The serial number of the certificate ``url``'s server presents in a new handshake."""
    host, port = url.removeprefix("https://").rsplit(":", 1)
    _, writer = await asyncio.open_connection(
        host, int(port), ssl=client_context(root_pem), server_hostname=host
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


# --- the UEM's own ports ---


async def test_api_port_chain_validates_from_the_root_alone(pki: Hierarchy) -> None:
    async with asyncio.timeout(10), running_uem(pki) as uem:
        assert uem.url.startswith("https://")
        await uem.report("Phone1")  # a client trusting only the root got through
        stranger = client_context(make_hierarchy("another lab").root_pem())
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=stranger)) as other:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await other.get(uem.url + contract.RECORDS_PATH)


async def test_pkcs12_upload_switches_the_served_certificate(pki: Hierarchy) -> None:
    async with asyncio.timeout(10), running_uem(pki) as uem:
        before = await served_serial(uem.url, pki.root_pem())
        fresh = pki.server_credential(("127.0.0.1",), common_name="uem.lab.example")
        upload = {
            "pkcs12": base64.b64encode(fresh.to_pkcs12(b"s3cr3t-p12")).decode(),
            "password": "s3cr3t-p12",
        }
        status, view = await uem.call("PUT", "/api/v1/certificates/api", upload)
        assert status == 200, view
        assert view["certificate"]["serial"] == format(fresh.certificate.serial_number, "x")
        assert view["swaps"] == 1
        after = await served_serial(uem.url, pki.root_pem())
        assert before != after == fresh.certificate.serial_number
        replaced = await uem.wait_for(CertificateReplaced)
        assert (replaced.port, replaced.subject) == ("api", "CN=uem.lab.example")
        status, listing = await uem.call("GET", "/api/v1/certificates")
        assert listing["ports"]["api"]["certificate"]["subject"] == "CN=uem.lab.example"


async def test_bad_uploads_are_refused_without_echoing_the_password(pki: Hierarchy) -> None:
    async with asyncio.timeout(10), running_uem(pki, admin_tls=False) as uem:
        p12 = base64.b64encode(pki.server_credential().to_pkcs12(b"right-one")).decode()
        status, body = await uem.call(
            "PUT", "/api/v1/certificates/api", {"pkcs12": p12, "password": "wrong-guess-42"}
        )
        assert status == 400
        assert "wrong-guess-42" not in str(body)
        assert body["error"].startswith("request body: $.pkcs12")
        status, body = await uem.call("PUT", "/api/v1/certificates/api", {"pkcs12": "%%%"})
        assert status == 400
        assert "not valid base64" in body["error"]
        status, body = await uem.call("PUT", "/api/v1/certificates/admin", {"pkcs12": p12})
        assert status == 409
        assert "does not speak TLS" in body["error"]
        status, body = await uem.call("PUT", "/api/v1/certificates/device", {"pkcs12": p12})
        assert status == 404
        status, body = await uem.call("GET", "/api/v1/certificates", admin=False)
        assert status == 401


# --- outgoing TLS: what the pusher negotiates ---


async def test_pushing_over_tls_1_2_records_protocol_and_suite(pki: Hierarchy) -> None:
    only_chacha = server_context(pki.server_credential(), ciphers="ECDHE-ECDSA-CHACHA20-POLY1305")
    async with asyncio.timeout(10), gatekeeper(only_chacha) as gk, running_uem(pki) as uem:
        await uem.register(gk.url())
        await uem.report("Phone1")
        await uem.wait_for(PushDelivered)
        status, usage = await uem.call("GET", "/api/v1/outgoing-tls/usage")
        assert status == 200
        [entry] = usage["endpoints"]
        assert entry["endpoint"] == gk.endpoint
        assert (entry["protocol"], entry["cipher"]) == ("TLSv1.2", CHACHA)
        assert entry["calls"] >= 1
        # An IP literal carries no SNI (RFC 6066); the gatekeeper saw none either.
        assert entry["sni"] is None
        assert gk.server_names[0] is None
        chacha = next(s for s in usage["suites"] if s["name"] == CHACHA)
        assert chacha["used_by"] == [gk.endpoint]


async def test_sni_is_sent_when_the_push_url_names_a_host(pki: Hierarchy) -> None:
    async with (
        asyncio.timeout(10),
        gatekeeper(server_context(pki.server_credential())) as gk,
        running_uem(pki) as uem,
    ):
        await uem.register(gk.url("localhost"))
        await uem.report("Phone1")
        await uem.wait_for(PushDelivered)
        assert "localhost" in gk.server_names
        _, usage = await uem.call("GET", "/api/v1/outgoing-tls/usage")
        assert usage["endpoints"][0]["sni"] == "localhost"


async def test_a_tls_1_1_only_gatekeeper_is_refused_naming_the_endpoint(pki: Hierarchy) -> None:
    weak = legacy_server_context(pki.server_credential(), ssl.TLSVersion.TLSv1_1)
    async with asyncio.timeout(10), gatekeeper(weak) as gk, running_uem(pki) as uem:
        await uem.register(gk.url())
        await uem.report("Phone1")
        failed = await uem.wait_for(PushFailed)
        assert gk.endpoint in failed.error
        assert "speaks only TLSv1.1" in failed.error
        assert gk.pushes == 0
        diagnosed = await uem.wait_for(OutgoingTlsFailed)
        assert (diagnosed.endpoint, diagnosed.speaks_only) == (gk.endpoint, "TLSv1.1")
        _, usage = await uem.call("GET", "/api/v1/outgoing-tls/usage")
        [entry] = usage["endpoints"]
        assert entry["failing"] is True
        assert entry["speaks_only"] == "TLSv1.1"
        assert entry["protocol"] is None


async def test_a_gatekeeper_certificate_from_another_root_is_not_trusted(
    pki: Hierarchy,
) -> None:
    stranger = server_context(make_hierarchy("not the lab").server_credential())
    async with asyncio.timeout(10), gatekeeper(stranger) as gk, running_uem(pki) as uem:
        await uem.register(gk.url())
        await uem.report("Phone1")
        failed = await uem.wait_for(PushFailed)
        assert f"certificate of {gk.endpoint} not trusted" in failed.error
        assert "unable to get local issuer certificate" in failed.error
        assert gk.pushes == 0


async def test_a_needed_disabled_suite_is_marked_and_selecting_it_delivers(
    pki: Hierarchy,
) -> None:
    only_cbc = server_context(pki.server_credential(), ciphers="ECDHE-ECDSA-AES128-SHA256")
    async with asyncio.timeout(10), gatekeeper(only_cbc) as gk, running_uem(pki) as uem:
        await uem.register(gk.url())
        await uem.report("Phone1")
        failed = await uem.wait_for(PushFailed)
        assert f"{gk.endpoint} failed" in failed.error
        assert CBC in failed.error
        _, usage = await uem.call("GET", "/api/v1/outgoing-tls/usage")
        assert usage["marked"] == [CBC]
        marked = next(s for s in usage["suites"] if s["name"] == CBC)
        assert (marked["status"], marked["marker"], marked["needed_by"]) == (
            "disabled",
            "*",
            [gk.endpoint],
        )

        _, current = await uem.call("GET", "/api/v1/outgoing-tls")
        selected = [*current["settings"]["selected_ciphers"], CBC]
        mark = uem.mark()
        status, applied = await uem.call(
            "PUT", "/api/v1/outgoing-tls", {"selected_ciphers": selected}
        )
        assert status == 200, applied
        assert applied["settings"]["selected_ciphers"][-1] == CBC
        assert applied["settings"]["is_default"] is False
        event = await uem.wait_for(OutgoingTlsApplied, after=mark)
        assert CBC in event.selected
        await uem.wait_for(PushDelivered, after=mark)  # the backoff retried after the restart
        _, usage = await uem.call("GET", "/api/v1/outgoing-tls/usage")
        assert usage["endpoints"][0]["cipher"] == CBC
        assert usage["marked"] == []


async def test_a_push_during_the_restart_fails_briefly_and_is_retried(pki: Hierarchy) -> None:
    async with (
        asyncio.timeout(10),
        gatekeeper(server_context(pki.server_credential())) as gk,
        running_uem(pki, restart_s=0.3) as uem,
    ):
        await uem.register(gk.url())
        status, _ = await uem.call("POST", "/api/v1/outgoing-tls/reset")
        assert status == 200
        mark = uem.mark()
        await uem.report("Phone1")
        failed = await uem.wait_for(PushFailed, after=mark)
        assert "restarting to apply new TLS settings" in failed.error
        delivered = await uem.wait_for(PushDelivered, after=mark)
        assert delivered.attempts >= 2


async def test_the_outgoing_api_refuses_other_protocols_and_unknown_suites(
    pki: Hierarchy,
) -> None:
    async with asyncio.timeout(10), running_uem(pki) as uem:
        cases: list[tuple[dict[str, Any], str]] = [
            (
                {"selected_ciphers": ["AES128-SHA"], "protocols": ["TLSv1.1", "TLSv1.2"]},
                "request body: $.protocols[0]: TLSv1.1 cannot be enabled",
            ),
            (
                {"selected_ciphers": ["AES128-SHA"], "disabled_protocols": ["TLSv1.2"]},
                "request body: $.disabled_protocols[0]: TLSv1.2 cannot be disabled",
            ),
            (
                {"selected_ciphers": ["TLS_NULL_WITH_NULL_NULL"]},
                "request body: $.selected_ciphers[0]: unknown TLS 1.2 cipher suite",
            ),
            ({"selected_ciphers": []}, "request body: $.selected_ciphers: no cipher suite"),
            ({"disabled_ciphers": []}, "request body: $.selected_ciphers: missing"),
            ({"selected_ciphers": ["AES128-SHA"], "tls13": True}, "request body: $.tls13"),
        ]
        for body, message in cases:
            status, answer = await uem.call("PUT", "/api/v1/outgoing-tls", body)
            assert status == 400, body
            assert answer["error"].startswith(message), answer
        _, current = await uem.call("GET", "/api/v1/outgoing-tls")
        assert current["settings"]["is_default"] is True  # nothing was applied
        assert current["generation"] == 0


async def test_reset_restores_the_documented_default(pki: Hierarchy) -> None:
    async with asyncio.timeout(10), running_uem(pki) as uem:
        status, _ = await uem.call(
            "PUT",
            "/api/v1/outgoing-tls",
            {"selected_ciphers": ["AES256-SHA"], "disabled_ciphers": [CHACHA]},
        )
        assert status == 200
        _, changed = await uem.call("GET", "/api/v1/outgoing-tls")
        assert changed["settings"]["selected_ciphers"] == ["TLS_RSA_WITH_AES_256_CBC_SHA"]
        assert changed["settings"]["disabled_ciphers"][0] == CHACHA
        status, reset = await uem.call("POST", "/api/v1/outgoing-tls/reset")
        assert status == 200
        assert reset["settings"] == reset["default"]
        assert reset["settings"]["protocols"] == ["TLSv1.2"]
        assert reset["generation"] == 2


async def test_usage_is_cleared_after_a_week_on_the_lab_clock(pki: Hierarchy) -> None:
    clock = ManualClock()
    async with (
        asyncio.timeout(15),
        gatekeeper(server_context(pki.server_credential())) as gk,
        running_uem(pki, clock=clock) as uem,
    ):
        await uem.register(gk.url())
        await uem.report("Phone1")
        await uem.wait_for(PushDelivered)
        _, usage = await uem.call("GET", "/api/v1/outgoing-tls/usage")
        assert [e["endpoint"] for e in usage["endpoints"]] == [gk.endpoint]
        await clock.advance(WEEK_S)
        _, usage = await uem.call("GET", "/api/v1/outgoing-tls/usage")
        assert usage["endpoints"] == []
        assert usage["clears"] == 1
