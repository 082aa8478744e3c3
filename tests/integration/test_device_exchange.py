"""device_sim against exchange_sim over loopback, at every version and in both query forms.

The phone provisions (two phases), fetches the folder list, syncs the seeded Inbox, then holds a
Ping that returns when mail is injected through the Exchange admin API (or expires when the
manual clock passes the heartbeat), and syncs the new mail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import attrs
import pytest

from device_sim.client import (
    DeviceClient,
    DeviceState,
    FolderSync,
    Options,
    Ping,
    Provision,
    SendMail,
    Settings,
    StepResult,
    Sync,
)
from device_sim.fleet import make_identities, run_fleet
from device_sim.shell import AiohttpTransport, DeviceRunner
from device_sim.wire import DeviceIdentity, QueryForm
from exchange_sim.app import make_app
from exchange_sim.config import ExchangeConfig
from scenarios.serving import StartedSite, start_site
from simclock import ManualClock

VERSIONS = ("12.1", "14.0", "14.1", "16.0", "16.1")
FORMS = (QueryForm.PLAIN, QueryForm.BASE64)
TOKEN = "device-test-token"
SEEDED = 5
LAB = {
    "users": [
        {"name": "alice", "email": "alice@example.com", "password": "alice-pass"},
        {"name": "bob", "email": "bob@example.com", "password": "bob-pass"},
    ],
    "exchange": {"seed_messages_per_mailbox": SEEDED, "seed": 7},
}


@attrs.define
class Exchange:
    site: StartedSite
    clock: ManualClock
    session: aiohttp.ClientSession

    async def inject(self, to: str, subject: str) -> None:
        async with self.session.post(
            f"{self.site.url}/admin/mail",
            json={"to": to, "subject": subject, "body": "hello", "from": "carol@example.com"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response:
            assert response.status == 200, await response.text()

    def runner(self, identity: DeviceIdentity, log: list[StepResult]) -> DeviceRunner:
        return DeviceRunner(
            DeviceClient(identity),
            AiohttpTransport(self.session, self.site.url),
            self.clock,
            on_result=log.append,
            request_timeout=10.0,
        )

    async def until_ping_is_held(self) -> None:
        # The server parks a held Ping on the manual clock's heartbeat sleep.
        for _ in range(2000):
            if self.clock.pending_sleepers:
                return
            await asyncio.sleep(0.005)
        raise AssertionError("the server never held the Ping")


@pytest.fixture
async def exchange() -> AsyncIterator[Exchange]:
    clock = ManualClock()
    config = ExchangeConfig.from_mapping(LAB, source="test lab")
    site = await start_site(make_app(config, clock=clock, admin_token=TOKEN))
    session = aiohttp.ClientSession()
    try:
        yield Exchange(site, clock, session)
    finally:
        await session.close()
        await site.stop()


def alice(version: str, form: QueryForm) -> DeviceIdentity:
    return DeviceIdentity(
        user="alice",
        password="alice-pass",
        device_id=f"ALICE{version.replace('.', '')}{form.value[0]}",
        device_type="iPhone",
        version=version,
        query_form=form,
    )


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("version", VERSIONS)
async def test_phone_provisions_syncs_and_pings_until_mail_arrives(
    exchange: Exchange, version: str, form: QueryForm
) -> None:
    async with asyncio.timeout(10):
        log: list[StepResult] = []
        runner = exchange.runner(alice(version, form), log)
        report = await runner.run_script([Options(), Provision(), FolderSync(), Sync(), Settings()])
        assert report.succeeded, [r.summary for r in report.results]
        client = runner.client
        assert client.state is DeviceState.READY
        assert client.policy_key != 0
        assert client.policy is not None
        assert client.policy.restrictions
        inbox = client.folder_named("Inbox")
        assert inbox is not None
        assert len(client.items[inbox.server_id]) == SEEDED

        ping = asyncio.create_task(runner.run_step(Ping(300)))
        await exchange.until_ping_is_held()
        assert not ping.done()
        await exchange.inject("alice", f"news for {version}")
        results, ok = await ping
        assert ok
        assert results[0].eas_status == 2
        assert results[0].details["changed_folders"] == ["Inbox"]
        assert results[-1].details["subjects"] == [f"news for {version}"]
        assert len(client.items[inbox.server_id]) == SEEDED + 1


@pytest.mark.parametrize("version", ["12.1", "16.1"])
async def test_ping_expires_when_the_manual_clock_passes_the_heartbeat(
    exchange: Exchange, version: str
) -> None:
    async with asyncio.timeout(10):
        runner = exchange.runner(alice(version, QueryForm.PLAIN), [])
        report = await runner.run_script([Provision(), FolderSync()])
        assert report.succeeded
        ping = asyncio.create_task(runner.run_step(Ping(120)))
        await exchange.until_ping_is_held()
        await exchange.clock.advance(121)
        results, ok = await ping
        assert ok
        assert results[-1].eas_status == 1
        assert "120 s" in results[-1].summary


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("version", VERSIONS)
async def test_phone_sends_mail_that_the_recipient_syncs(
    exchange: Exchange, version: str, form: QueryForm
) -> None:
    async with asyncio.timeout(10):
        sender = exchange.runner(alice(version, form), [])
        mail = SendMail(to="bob@example.com", subject=f"from alice {version} {form.value}")
        report = await sender.run_script([Provision(), mail])
        assert report.succeeded, [r.summary for r in report.results]
        bob = DeviceIdentity(
            user="bob", password="bob-pass", device_id="BOB1", device_type="Android"
        )
        receiver = exchange.runner(bob, [])
        got = await receiver.run_script([Provision(), Sync()])
        assert got.succeeded
        inbox = receiver.client.folder_named("Inbox")
        assert inbox is not None
        subjects = {item.subject for item in receiver.client.items[inbox.server_id].values()}
        assert mail.subject in subjects


async def test_wrong_password_halts_with_an_auth_error(exchange: Exchange) -> None:
    async with asyncio.timeout(10):
        wrong = attrs.evolve(alice("16.1", QueryForm.PLAIN), password="nope")
        report = await exchange.runner(wrong, []).run_script([Provision(), FolderSync()])
        assert report.state is DeviceState.AUTH_FAILED
        assert report.steps_run == 1
        assert not report.succeeded


async def test_a_fleet_of_phones_syncs_through_one_session(exchange: Exchange) -> None:
    async with asyncio.timeout(10):
        identities = make_identities(
            6, user="alice", password="alice-pass", device_id="FLEET{n}", version="14.1"
        )
        report = await run_fleet(
            identities,
            [Provision(), FolderSync(), Sync()],
            base_url=exchange.site.url,
            clock=exchange.clock,
            concurrency=3,
        )
        assert report.succeeded == 6
        assert (report.blocked, report.wiped, report.errors) == (0, 0, 0)
