"""Blocked answers per version and mode, pushes, resyncs, wipes, OPTIONS: over real sockets."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from activesync.commands.provision import ProvisionRequest, ProvisionResponse
from activesync.versions import ProtocolVersion
from activesync.wbxml import decode, encode
from sentry_sim.device_list import State
from simclock import ManualClock
from tests.sentry_sim.fakes import (
    EAS,
    FakeUem,
    FakeUpstream,
    StartSentry,
    decision,
    eventually,
    headers,
    query,
)
from uem_sim.contract import AccessState, Reason


@pytest.mark.parametrize(
    ("mode", "reasons", "version", "cmd", "http_status", "body_status"),
    [
        ("eas", Reason.MANUAL, "12.1", "FolderSync", 403, None),
        ("eas", Reason.MANUAL, "14.0", "FolderSync", 200, "129"),
        ("eas", Reason.COMPROMISED, "16.1", "Sync", 200, "129"),
        ("eas", Reason.PER_MAILBOX_LIMIT, "14.0", "FolderSync", 403, None),
        ("eas", Reason.PER_MAILBOX_LIMIT, "14.1", "FolderSync", 200, "177"),
        ("eas", Reason.MANUAL, "16.1", "Provision", 200, "129"),
        ("http403", Reason.MANUAL, "16.1", "FolderSync", 403, None),
        ("http403", Reason.PER_MAILBOX_LIMIT, "14.1", "Sync", 403, None),
    ],
)
async def test_blocked_device_gets_the_version_correct_answer(
    start_sentry: StartSentry,
    fake_uem: FakeUem,
    fake_upstream: FakeUpstream,
    mode: str,
    reasons: int,
    version: str,
    cmd: str,
    http_status: int,
    body_status: str | None,
) -> None:
    fake_uem.verdicts[("alice", "DEV1")] = (AccessState.BLOCK, int(reasons))
    sentry = await start_sentry(blocked_response=mode)
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        url = sentry.url + query(cmd=cmd)
        async with session.post(url, headers=headers(version)) as r:
            body = await r.read()
    assert r.status == http_status
    if body_status is None:
        assert body == b""
    else:
        root = decode(body)
        assert root.tag == cmd
        assert root.child_text("Status") == body_status
    assert fake_upstream.seen == []


async def test_options_is_never_blocked(
    start_sentry: StartSentry, fake_uem: FakeUem, fake_upstream: FakeUpstream
) -> None:
    fake_uem.verdicts[("alice", "DEV1")] = (AccessState.BLOCK, int(Reason.MANUAL))
    sentry = await start_sentry()
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        async with session.post(sentry.url + query(), headers=headers()) as r:
            assert r.status == 200
            assert decode(await r.read()).child_text("Status") == "129"
        async with session.options(sentry.url + query()) as r:
            assert r.status == 200
            assert "16.1" in r.headers["MS-ASProtocolVersions"]
    assert [s["method"] for s in fake_upstream.seen] == ["OPTIONS"]


async def test_push_updates_the_cache_within_a_second(
    start_sentry: StartSentry, fake_uem: FakeUem, fake_upstream: FakeUpstream
) -> None:
    sentry = await start_sentry()
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        async with session.post(sentry.url + query(), headers=headers()) as r:
            assert r.status == 200
        await eventually(lambda: bool(fake_uem.registrations))
        blocked = decision(
            "alice", "DEV1", AccessState.BLOCK, version=fake_uem.next_version(), reasons=0x200
        )
        assert await fake_uem.push(blocked) == 200
        await eventually(
            lambda: sentry.sentry.devices.get("alice/dev1").state is State.BLOCKED,
            within=1.0,
        )
        async with session.post(sentry.url + query(), headers=headers()) as r:
            assert decode(await r.read()).child_text("Status") == "129"


async def test_push_with_wrong_secret_is_refused(
    start_sentry: StartSentry, fake_uem: FakeUem
) -> None:
    sentry = await start_sentry()
    async with (
        asyncio.timeout(10),
        aiohttp.ClientSession() as session,
        session.post(sentry.admin_url + "/uem/push/not-the-secret", data="{}") as r,
    ):
        assert r.status == 404


async def test_periodic_resync_applies_changes_and_startup_pull_caches_allowed_devices(
    start_sentry: StartSentry, fake_uem: FakeUem
) -> None:
    fake_uem.changes.append(decision("carol", "TAB1", version=fake_uem.next_version()))
    fake_uem.changes.append(
        decision("dave", "PH1", AccessState.BLOCK, version=fake_uem.next_version(), reasons=1)
    )
    clock = ManualClock()
    sentry = await start_sentry(clock, resync_interval_s=60)
    devices = sentry.sentry.devices
    async with asyncio.timeout(10):
        await eventually(lambda: "carol/tab1" in devices)
        # The start-up pull caches the allowed fleet; a blocked device waits until it asks.
        assert "dave/ph1" not in devices
        fake_uem.changes.append(
            decision("carol", "TAB1", AccessState.WIPE, version=fake_uem.next_version())
        )
        await clock.advance(61)
        await eventually(lambda: devices.get("carol/tab1").state is State.WIPED)
    assert fake_uem.changes_asked == [0, 2]


async def test_wiped_device_gets_remote_wipe_on_provision_and_140_otherwise(
    start_sentry: StartSentry, fake_uem: FakeUem
) -> None:
    fake_uem.verdicts[("alice", "DEV1")] = (AccessState.WIPE, int(Reason.MANUAL))
    sentry = await start_sentry()
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        async with session.post(sentry.url + query(cmd="Sync"), headers=headers("14.1")) as r:
            assert r.status == 200
            assert decode(await r.read()).child_text("Status") == "140"
        async with session.post(sentry.url + query(cmd="Sync"), headers=headers("12.1")) as r:
            assert r.status == 403
        fetch = encode(ProvisionRequest.wipe_fetch().to_element())
        async with session.post(
            sentry.url + query(cmd="Provision"), data=fetch, headers=headers("14.1")
        ) as r:
            assert r.status == 200
            answer = ProvisionResponse.from_element(decode(await r.read()))
        assert answer.remote_wipe
        ack = encode(ProvisionRequest.wipe_ack(1).to_element())
        async with session.post(
            sentry.url + query(cmd="Provision"), data=ack, headers=headers("14.1")
        ) as r:
            answer = ProvisionResponse.from_element(decode(await r.read()))
        assert answer.status == 1
        assert not answer.remote_wipe


async def test_malformed_request_gets_the_errors_status(start_sentry: StartSentry) -> None:
    sentry = await start_sentry()
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        bad_id = f"{EAS}?Cmd=Sync&User=alice&DeviceId=bad-id!&DeviceType=iPhone"
        async with session.post(sentry.url + bad_id, headers=headers()) as r:
            # The request line is unreadable, so there is no version to shape a body for.
            assert r.status == 400
            assert await r.read() == b""
        async with session.post(sentry.url + "/elsewhere", headers=headers()) as r:
            assert r.status == 404
        no_user = f"{EAS}?Cmd=Sync&DeviceId=DEV1&DeviceType=iPhone"
        async with session.post(sentry.url + no_user, headers=headers()) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith("Basic")


async def test_base64_query_device_is_identified_and_forwarded(
    start_sentry: StartSentry, fake_uem: FakeUem, fake_upstream: FakeUpstream
) -> None:
    from activesync.query import EasRequest

    sentry = await start_sentry()
    eas = EasRequest.create(
        command="FolderSync",
        device_id="v140Device",
        device_type="SmartPhone",
        version=ProtocolVersion.V14_1,
        form="base64",
        user="rmjones",
    )
    raw_query, _ = eas.wire()
    async with (
        asyncio.timeout(10),
        aiohttp.ClientSession() as session,
        session.post(f"{sentry.url}{EAS}?{raw_query}", data=b"x") as r,
    ):
        assert r.status == 200
    assert "rmjones/v140device" in sentry.sentry.devices
    assert fake_upstream.seen[0]["raw_path"] == f"{EAS}?{raw_query}"
