"""uem policy mode in front of an upstream that demands its own policy (the real mock Exchange).

The gatekeeper answers the device's Provision with the UEM's policy and its own keys; the mock
Exchange (``provisioning_required: true``) demands provisioning too (HTTP 449 below 14.0, body
Status 142/144 from 14.0). The gatekeeper provisions with it on the device's behalf, replays the
request with the upstream's key, and the device never sees that key. Real apps on loopback:
``exchange_sim.app.make_app``, the gatekeeper via ``scenarios.cli_sentry.serve`` (which wraps
``sentry_sim.app.make_app``), the fake UEM, and ``device_sim`` phones.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web

from activesync.commands.folder_sync import FolderSyncRequest
from activesync.commands.provision import ProvisionRequest, ProvisionResponse
from activesync.versions import ProtocolVersion
from activesync.wbxml import decode, encode
from device_sim import (
    DeviceClient,
    DeviceIdentity,
    DeviceState,
    FolderSync,
    HttpRequest,
    HttpResponse,
    Ping,
    Provision,
    QueryForm,
    SendMail,
    StepResult,
    Sync,
)
from device_sim.shell import AiohttpTransport, DeviceRunner
from exchange_sim.app import STATE
from exchange_sim.app import make_app as make_exchange_app
from exchange_sim.config import ExchangeConfig
from scenarios.cli_sentry import RunningSentry
from scenarios.serving import StartedSite, start_site
from sentry_sim.device_list import record_key
from sentry_sim.events import UpstreamProvisioned
from simclock import ManualClock
from tests.sentry_sim.fakes import StartSentry, headers, query

VERSIONS = ("12.1", "14.0", "14.1", "16.1")
PASSWORD = "alice-pass"
LAB = {
    "users": [{"name": "alice", "email": "alice@example.com", "password": PASSWORD}],
    "exchange": {"provisioning_required": True, "seed_messages_per_mailbox": 3, "seed": 5},
}
HEARTBEAT = 60


@attrs.define
class Exchange:
    site: StartedSite
    app: web.Application
    clock: ManualClock

    @property
    def url(self) -> str:
        return self.site.url

    def upstream_final_key(self, device_id: str) -> int | None:
        return self.app[STATE].provisioning.machine("alice", device_id).final_key

    def change_policy(self, device_id: str, version: int) -> None:
        """The Exchange policy changes: the partnership's key turns stale (Status 144)."""
        self.app[STATE].provisioning.machine("alice", device_id).policy_changed(version)


@pytest.fixture
async def exchange() -> AsyncIterator[Exchange]:
    clock = ManualClock(1_000.0)
    app = make_exchange_app(ExchangeConfig.from_mapping(LAB), clock=clock)
    site = await start_site(app)
    yield Exchange(site, app, clock)
    await site.stop()


@attrs.define
class InstantClock:
    """A device clock whose sleeps return at once and are recorded (the back-off seconds)."""

    slept: list[float] = attrs.field(factory=list)

    def now(self) -> float:
        return 1_000.0

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


@attrs.define
class Recording:
    """A transport that keeps every response the device received."""

    inner: AiohttpTransport
    responses: list[HttpResponse] = attrs.field(factory=list)

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        response = await self.inner(request)
        self.responses.append(response)
        return response


@attrs.define
class Phone:
    client: DeviceClient
    runner: DeviceRunner
    transport: Recording
    log: list[StepResult]

    @property
    def record(self) -> str:
        return record_key(self.client.identity.user, self.client.identity.device_id)

    async def step(self, step: Any) -> bool:
        _, ok = await self.runner.run_step(step)
        return ok

    def summaries(self) -> str:
        return "\n".join(f"{r.label}: {r.outcome.value}: {r.summary}" for r in self.log)


def phone(
    session: aiohttp.ClientSession,
    url: str,
    version: str,
    form: QueryForm,
    *,
    password: str = PASSWORD,
    device_id: str | None = None,
    clock: InstantClock | None = None,
) -> Phone:
    identity = DeviceIdentity(
        user="alice",
        password=password,
        device_id=device_id or f"Dev{version.replace('.', '')}{form.value}",
        device_type="iPhone",
        version=version,
        query_form=form,
        model="iPhone15,2",
        os="iOS 17.4",
    )
    client = DeviceClient(identity)
    transport = Recording(AiohttpTransport(session, url))
    log: list[StepResult] = []
    runner = DeviceRunner(
        client, transport, clock or InstantClock(), on_result=log.append, request_timeout=10.0
    )
    return Phone(client, runner, transport, log)


async def start_uem_mode(
    start_sentry: StartSentry, exchange: Exchange, **settings: Any
) -> RunningSentry:
    sentry: RunningSentry = await start_sentry(
        upstream_url=exchange.url, activesync_policy_mode="uem", **settings
    )
    return sentry


def upstream_events(sentry: RunningSentry) -> list[UpstreamProvisioned]:
    return [e for e in sentry.sentry.bus.recent(2000) if isinstance(e, UpstreamProvisioned)]


def received_keys(device: Phone) -> set[int]:
    """Every policy key the device was handed in a Provision answer."""
    keys: set[int] = set()
    for response in device.transport.responses:
        if response.status != 200 or not response.body:
            continue
        root = decode(response.body)
        if root.tag == "Provision":
            key = ProvisionResponse.from_element(root).policy_key_value
            if key is not None:
                keys.add(key)
    return keys


def assert_never_saw(device: Phone, key: int) -> None:
    """The upstream key is in no Provision answer, body or header the device received."""
    assert key not in received_keys(device)
    text = str(key).encode()
    for response in device.transport.responses:
        assert text not in response.body
        assert all(str(key) not in value for _, value in response.headers)


async def full_script(device: Phone, exchange: Exchange) -> None:
    """Provision, FolderSync, Sync, then a Ping that the Exchange's clock runs out."""
    for step in (Provision(), FolderSync(), Sync()):
        assert await device.step(step), device.summaries()
    ping = asyncio.ensure_future(device.step(Ping(heartbeat=HEARTBEAT)))
    for _ in range(2000):
        if exchange.clock.pending_sleepers or ping.done():
            break
        await asyncio.sleep(0.005)
    assert exchange.clock.pending_sleepers, "the Exchange never held the Ping"
    await exchange.clock.advance(HEARTBEAT)
    assert await ping, device.summaries()


@pytest.mark.parametrize("version", VERSIONS)
async def test_device_works_through_gatekeeper_and_never_sees_the_upstream_key(
    start_sentry: StartSentry, exchange: Exchange, version: str
) -> None:
    sentry = await start_uem_mode(start_sentry, exchange)
    async with asyncio.timeout(20), aiohttp.ClientSession() as session:
        phones = [phone(session, sentry.url, version, form) for form in QueryForm]
        for device in phones:
            await full_script(device, exchange)
    for device in phones:
        gatekeeper_key = sentry.sentry.policy.final_key(device.record, 1)
        upstream_key = sentry.sentry.upstream_keys.get(device.record)
        assert device.client.state is DeviceState.READY
        # The device holds the gatekeeper's key (UEM policy v1), the gatekeeper the Exchange's.
        assert device.client.policy_key == gatekeeper_key
        assert upstream_key is not None
        assert upstream_key == exchange.upstream_final_key(device.client.identity.device_id)
        assert upstream_key != gatekeeper_key
        assert_never_saw(device, upstream_key)
        assert device.client.policy is not None
        assert device.client.policy.doc is not None
        # The policy the device applied is the UEM's (POLICY_V1: 6-digit PIN), not Exchange's.
        assert device.client.policy.doc["MinDevicePasswordLength"] == 6
        folder_sync = [r for r in device.log if r.command == "FolderSync"]
        assert [r.http_status for r in folder_sync] == [200]
    provisioned = upstream_events(sentry)
    # One upstream provisioning per device, answering the Exchange's version-correct demand.
    assert sorted(e.record for e in provisioned) == sorted(p.record for p in phones)
    assert all(e.ok for e in provisioned)
    expected_demand = 449 if version == "12.1" else 142
    assert {e.demand for e in provisioned} == {expected_demand}


async def test_upstream_policy_change_is_absorbed_without_the_device_noticing(
    start_sentry: StartSentry, exchange: Exchange
) -> None:
    sentry = await start_uem_mode(start_sentry, exchange)
    async with asyncio.timeout(15), aiohttp.ClientSession() as session:
        device = phone(session, sentry.url, "16.1", QueryForm.BASE64)
        for step in (Provision(), FolderSync()):
            assert await device.step(step), device.summaries()
        first = sentry.sentry.upstream_keys.get(device.record)
        device_key = device.client.policy_key
        exchange.change_policy(device.client.identity.device_id, 2)
        assert await device.step(Sync()), device.summaries()
    second = sentry.sentry.upstream_keys.get(device.record)
    assert first is not None
    assert second is not None
    assert second != first
    assert second == exchange.upstream_final_key(device.client.identity.device_id)
    assert device.client.policy_key == device_key  # no re-provisioning seen by the device
    assert [r.command for r in device.log].count("Provision") == 2  # only the first round
    assert [e.demand for e in upstream_events(sentry)] == [142, 144]
    assert_never_saw(device, first)
    assert_never_saw(device, second)


async def test_concurrent_requests_share_one_upstream_provisioning(
    start_sentry: StartSentry, exchange: Exchange
) -> None:
    sentry = await start_uem_mode(start_sentry, exchange)
    async with asyncio.timeout(15), aiohttp.ClientSession() as session:
        device = phone(session, sentry.url, "14.1", QueryForm.PLAIN)
        assert await device.step(Provision()), device.summaries()
        key = device.client.policy_key
        auth = device.client.identity.authorization
        device_id = device.client.identity.device_id

        async def folder_sync() -> tuple[int, bytes]:
            async with session.post(
                sentry.url + query(device=device_id, cmd="FolderSync"),
                data=folder_sync_body(),
                headers=headers("14.1", **{"X-MS-PolicyKey": str(key), "Authorization": auth}),
            ) as r:
                return r.status, await r.read()

        answers = await asyncio.gather(*(folder_sync() for _ in range(8)))
    for status, answer in answers:
        assert status == 200
        assert decode(answer).child_text("Status") == "1"
    assert len(upstream_events(sentry)) == 1


async def test_wrong_password_gets_the_upstream_401(
    start_sentry: StartSentry, exchange: Exchange
) -> None:
    sentry = await start_uem_mode(start_sentry, exchange)
    async with asyncio.timeout(15), aiohttp.ClientSession() as session:
        device = phone(session, sentry.url, "14.1", QueryForm.PLAIN, password="wrong")
        # The gatekeeper answers Provision itself and checks no password...
        assert await device.step(Provision()), device.summaries()
        # ...the upstream does, and its 401 reaches the device unchanged.
        assert not await device.step(FolderSync())
    assert device.client.state is DeviceState.AUTH_FAILED
    last = device.transport.responses[-1]
    assert last.status == 401
    assert last.header("WWW-Authenticate") is not None


async def test_gatekeeper_key_and_upstream_key_survive_a_restart(
    start_sentry: StartSentry, exchange: Exchange, tmp_path: Path
) -> None:
    state_dir = str(tmp_path / "sentry")
    sentry = await start_uem_mode(start_sentry, exchange, state_dir=state_dir)
    async with asyncio.timeout(15), aiohttp.ClientSession() as session:
        device = phone(session, sentry.url, "12.1", QueryForm.BASE64)
        for step in (Provision(), FolderSync()):
            assert await device.step(step), device.summaries()
        upstream_key = sentry.sentry.upstream_keys.get(device.record)
        await sentry.stop()
        again = await start_uem_mode(start_sentry, exchange, state_dir=state_dir)
        assert again.sentry.upstream_keys.get(device.record) == upstream_key
        device.runner.transport = Recording(AiohttpTransport(session, again.url))
        assert await device.step(Sync()), device.summaries()
    # Straight through with the stored key: no Provision anywhere after the restart.
    assert upstream_events(again) == []
    assert [r.command for r in device.log].count("Provision") == 2


async def test_large_body_is_streamed_and_the_device_is_told_to_retry(
    start_sentry: StartSentry, exchange: Exchange
) -> None:
    sentry = await start_uem_mode(start_sentry, exchange)
    sentry.sentry.forwarder.buffer_limit = 64  # every SendMail body is "large" here
    clock = InstantClock()
    async with asyncio.timeout(15), aiohttp.ClientSession() as session:
        device = phone(session, sentry.url, "14.1", QueryForm.PLAIN, clock=clock)
        assert await device.step(Provision()), device.summaries()
        sent = await device.step(SendMail(to="bob@example.com", subject="hi", body="x" * 500))
    assert sent, device.summaries()
    sends = [r for r in device.log if r.command == "SendMail"]
    # First answer: Status 111 with Retry-After 1 (the body could not be replayed); the retry
    # then goes through with the upstream key the gatekeeper got meanwhile.
    assert [(r.http_status, r.outcome.value) for r in sends] == [(200, "backoff"), (200, "ok")]
    assert "Status 111" in sends[0].summary
    assert clock.slept == [1.0]
    denied = [e for e in sentry.sentry.bus.recent(500) if e.kind == "request_denied"]
    assert [getattr(e, "why", "") for e in denied] == ["upstream_retry"]


# --- an upstream whose Provision fails -------------------------------------------------------


@attrs.define
class RefusingUpstream:
    """Demands provisioning on every command and refuses the Provision with ``refusal``."""

    refusal: Callable[[], web.Response]
    provisions: list[bytes] = attrs.field(factory=list)
    site: StartedSite | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if "Cmd=Provision" in request.raw_path:
            self.provisions.append(body)
            return self.refusal()
        return web.Response(status=449, reason="Retry after sending a PROVISION command")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


@pytest.fixture
async def refusing() -> AsyncIterator[RefusingUpstream]:
    upstream = RefusingUpstream(
        lambda: web.Response(
            status=401, text="bad password", headers={"WWW-Authenticate": 'Basic realm="x"'}
        )
    )
    upstream.site = await start_site(upstream.app())
    yield upstream
    await upstream.site.stop()


async def provisioned_key(session: aiohttp.ClientSession, url: str, version: str) -> int:
    """Provision with the gatekeeper (both phases) and return its final key."""
    v = ProtocolVersion.from_text(version)
    request = ProvisionRequest.initial(v)
    key = 0
    for _phase in range(2):
        async with session.post(
            url + query(cmd="Provision"),
            data=encode(request.to_element()),
            headers=headers(version, **{"X-MS-PolicyKey": str(key)}),
        ) as r:
            answer = ProvisionResponse.from_element(decode(await r.read()))
        assert answer.policy_key_value is not None
        key = answer.policy_key_value
        request = ProvisionRequest.acknowledgement(v, key)
    return key


def folder_sync_body() -> bytes:
    return encode(FolderSyncRequest("0").to_element())


async def test_upstream_provision_refused_with_401_passes_the_401_through(
    start_sentry: StartSentry, refusing: RefusingUpstream
) -> None:
    assert refusing.site is not None
    sentry = await start_sentry(upstream_url=refusing.site.url, activesync_policy_mode="uem")
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        key = await provisioned_key(session, sentry.url, "12.1")
        auth = "Basic " + base64.b64encode(b"alice:wrong").decode()
        async with session.post(
            sentry.url + query(cmd="FolderSync"),
            data=folder_sync_body(),
            headers=headers("12.1", **{"X-MS-PolicyKey": str(key), "Authorization": auth}),
        ) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"] == 'Basic realm="x"'
            assert await r.text() == "bad password"
    assert len(refusing.provisions) == 1  # phase 1 only: the refusal ends it
    (event,) = upstream_events(sentry)
    assert not event.ok
    assert event.upstream_status == 401
    assert event.demand == 449


async def test_upstream_wipe_directive_is_never_acknowledged(
    start_sentry: StartSentry, refusing: RefusingUpstream
) -> None:
    assert refusing.site is not None
    wipe = ProvisionResponse.wipe_directive(version=ProtocolVersion.V14_1)
    refusing.refusal = lambda: web.Response(
        body=encode(wipe.to_element()), content_type="application/vnd.ms-sync.wbxml"
    )
    sentry = await start_sentry(upstream_url=refusing.site.url, activesync_policy_mode="uem")
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        key = await provisioned_key(session, sentry.url, "14.1")
        async with session.post(
            sentry.url + query(cmd="FolderSync"),
            data=folder_sync_body(),
            headers=headers("14.1", **{"X-MS-PolicyKey": str(key)}),
        ) as r:
            # The upstream's own demand is what the device gets.
            assert r.status == 449
    assert len(refusing.provisions) == 1
    (event,) = upstream_events(sentry)
    assert not event.ok
    assert "remote wipe" in event.detail
