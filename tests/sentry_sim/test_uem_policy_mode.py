"""uem policy mode: the gatekeeper provisions the UEM's policy and enforces its own keys."""

from __future__ import annotations

import asyncio

import aiohttp

from activesync.commands.provision import ProvisionRequest, ProvisionResponse
from activesync.versions import ProtocolVersion
from activesync.wbxml import decode, encode
from tests.sentry_sim.fakes import (
    FakeUem,
    FakeUpstream,
    StartSentry,
    decision,
    eventually,
    headers,
    query,
)
from uem_sim.contract import ActiveSyncPolicy

V16 = ProtocolVersion.V16_1


async def provision(
    session: aiohttp.ClientSession,
    url: str,
    body: ProvisionRequest,
    version: str = "16.1",
    extra_query: str = "",
    **hdrs: str,
) -> ProvisionResponse:
    async with session.post(
        url + query(cmd="Provision") + extra_query,
        data=encode(body.to_element()),
        headers=headers(version, **hdrs),
    ) as r:
        assert r.status == 200
        return ProvisionResponse.from_element(decode(await r.read()))


async def test_two_phase_provision_then_the_final_key_is_enforced(
    start_sentry: StartSentry, fake_uem: FakeUem, fake_upstream: FakeUpstream
) -> None:
    sentry = await start_sentry(activesync_policy_mode="uem")
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        # No X-MS-PolicyKey at all on the first Provision (what many clients send).
        first = await provision(session, sentry.url, ProvisionRequest.initial(V16))
        assert first.status == 1
        assert first.doc is not None
        assert first.doc["MinDevicePasswordLength"] == 6  # the UEM's policy, not a default
        temporary = first.policy_key_value
        assert temporary is not None
        # The acknowledgement: key in the body and as a PolicyKey query parameter.
        ack = ProvisionRequest.acknowledgement(V16, temporary)
        second = await provision(session, sentry.url, ack, extra_query=f"&PolicyKey={temporary}")
        final = second.policy_key_value
        assert second.policy_status == 1
        assert final is not None
        assert final != temporary
        async with session.post(
            sentry.url + query(cmd="FolderSync"),
            headers=headers("16.1", **{"X-MS-PolicyKey": str(final)}),
        ) as r:
            assert r.status == 200
            assert (await r.read()).startswith(b"upstream:")
        # The upstream never sees the gatekeeper's key, and never saw the Provision.
        assert len(fake_upstream.seen) == 1
        assert "x-ms-policykey" not in fake_upstream.seen[0]["header_names"]
        async with session.post(sentry.url + query(cmd="FolderSync"), headers=headers("16.1")) as r:
            assert decode(await r.read()).child_text("Status") == "142"
        async with session.post(sentry.url + query(cmd="FolderSync"), headers=headers("12.1")) as r:
            assert r.status == 449
        fake_upstream.ping_release.set()
        async with session.post(sentry.url + query(cmd="Ping"), headers=headers("16.1")) as r:
            # Ping carries no key (MS-ASPROV 3.1.5.1): forwarded, not refused with 142.
            assert r.status == 200
            assert (await r.read()).startswith(b"upstream:")

        # The UEM's policy changes: the old key is stale (144) until the device re-provisions.
        await eventually(lambda: bool(fake_uem.registrations))
        v2 = ActiveSyncPolicy(
            version=2, settings={"DevicePasswordEnabled": 1, "MinDevicePasswordLength": 8}
        )
        await fake_uem.push(decision("alice", "DEV1", version=fake_uem.next_version(), policy=v2))
        await eventually(lambda: sentry.sentry.devices.get("alice/dev1").policy_version == 2)
        stale = headers("16.1", **{"X-MS-PolicyKey": str(final)})
        async with session.post(sentry.url + query(cmd="Sync"), headers=stale) as r:
            assert decode(await r.read()).child_text("Status") == "144"
        again = await provision(session, sentry.url, ProvisionRequest.initial(V16))
        assert again.doc is not None
        assert again.doc["MinDevicePasswordLength"] == 8


async def test_wrong_acknowledgement_key_gets_policy_status_5(
    start_sentry: StartSentry, fake_uem: FakeUem
) -> None:
    sentry = await start_sentry(activesync_policy_mode="uem")
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        first = await provision(session, sentry.url, ProvisionRequest.initial(V16))
        assert first.policy_key_value is not None
        wrong = ProvisionRequest.acknowledgement(V16, 12345)
        answer = await provision(session, sentry.url, wrong)
        assert answer.policy_status == 5
        assert answer.policy_key is None


async def test_uem_down_allow_comes_with_the_temporary_default_policy(
    start_sentry: StartSentry, fake_uem: FakeUem
) -> None:
    fake_uem.down = True
    sentry = await start_sentry(
        activesync_policy_mode="uem",
        default_activesync_policy={"DevicePasswordEnabled": 1, "MinDevicePasswordLength": 4},
    )
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        first = await provision(session, sentry.url, ProvisionRequest.initial(V16))
    assert first.doc is not None
    assert first.doc["MinDevicePasswordLength"] == 4
    assert sentry.sentry.devices.get("alice/dev1").is_fallback


async def test_pass_through_mode_sends_provision_upstream_unchanged(
    start_sentry: StartSentry, fake_upstream: FakeUpstream
) -> None:
    sentry = await start_sentry(activesync_policy_mode="pass_through")
    body = encode(ProvisionRequest.initial(V16).to_element())
    async with (
        asyncio.timeout(10),
        aiohttp.ClientSession() as session,
        session.post(
            sentry.url + query(cmd="Provision"),
            data=body,
            headers=headers("16.1", **{"X-MS-PolicyKey": "0"}),
        ) as r,
    ):
        assert await r.read() == b"upstream:" + body
    assert fake_upstream.seen[0]["headers"]["X-MS-PolicyKey"] == "0"
