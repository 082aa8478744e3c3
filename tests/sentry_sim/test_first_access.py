"""First access over real sockets: one report however many requests, waits, fallbacks."""

from __future__ import annotations

import asyncio

import aiohttp

from activesync.wbxml import decode
from sentry_sim.device_list import State
from tests.sentry_sim.fakes import FakeUem, FakeUpstream, StartSentry, eventually, headers, query
from uem_sim.contract import AccessState, Reason


async def test_first_access_reports_once_for_20_concurrent_requests(
    start_sentry: StartSentry, fake_uem: FakeUem, fake_upstream: FakeUpstream
) -> None:
    fake_uem.report_delay_s = 0.3
    sentry = await start_sentry()
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:

        async def one(i: int) -> int:
            async with session.post(sentry.url + query(), data=f"body{i}", headers=headers()) as r:
                await r.read()
                return r.status

        statuses = await asyncio.gather(*(one(i) for i in range(20)))
    assert statuses == [200] * 20
    assert len(fake_uem.reports) == 1
    assert len(fake_upstream.seen) == 20
    record = sentry.sentry.devices.get("alice/dev1")
    assert record is not None
    assert record.state is State.ALLOWED
    assert not record.is_fallback


async def test_wait_timeout_applies_unreachable_rule_then_uem_answer_replaces_it(
    start_sentry: StartSentry, fake_uem: FakeUem, fake_upstream: FakeUpstream
) -> None:
    fake_uem.report_delay_s = 1.0
    fake_uem.verdicts[("alice", "DEV1")] = (AccessState.BLOCK, int(Reason.COMPROMISED))
    sentry = await start_sentry(first_access_wait_s=0.2, uem_timeout_s=5)
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        started = asyncio.get_running_loop().time()
        async with session.post(sentry.url + query(), headers=headers()) as r:
            assert r.status == 200
            assert (await r.read()).startswith(b"upstream:")
        assert asyncio.get_running_loop().time() - started < 0.9
        record = sentry.sentry.devices.get("alice/dev1")
        assert record is not None
        assert record.is_fallback
        await eventually(lambda: sentry.sentry.devices.get("alice/dev1").state is State.BLOCKED)
        async with session.post(sentry.url + query(), headers=headers()) as r:
            body = await r.read()
            assert r.status == 200
            assert decode(body).child_text("Status") == "129"
    assert len(fake_uem.reports) == 1


async def test_uem_down_allow_mode_forwards_and_retried_report_reaches_uem_later(
    start_sentry: StartSentry, fake_uem: FakeUem, fake_upstream: FakeUpstream
) -> None:
    fake_uem.down = True
    fake_uem.verdicts[("bob", "PHONE2")] = (AccessState.BLOCK, int(Reason.MANUAL))
    sentry = await start_sentry(uem_unreachable="allow")
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        async with session.post(sentry.url + query("bob", "PHONE2"), headers=headers()) as r:
            assert r.status == 200
            assert (await r.read()).startswith(b"upstream:")
        assert sentry.sentry.devices.get("bob/phone2").is_fallback
        assert fake_uem.reports == []
        fake_uem.down = False
        await eventually(lambda: len(fake_uem.reports) == 1)
        await eventually(lambda: sentry.sentry.devices.get("bob/phone2").state is State.BLOCKED)
        async with session.post(sentry.url + query("bob", "PHONE2"), headers=headers("12.1")) as r:
            assert r.status == 403
            assert await r.read() == b""
    assert sentry.sentry.outbox.pending == 0


async def test_uem_down_block_mode_blocks_new_devices_until_the_uem_answers(
    start_sentry: StartSentry, fake_uem: FakeUem, fake_upstream: FakeUpstream
) -> None:
    fake_uem.down = True
    sentry = await start_sentry(uem_unreachable="block")
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        async with session.post(sentry.url + query(), headers=headers("16.1")) as r:
            assert r.status == 200
            assert decode(await r.read()).child_text("Status") == "129"
        assert fake_upstream.seen == []
        fake_uem.down = False
        await eventually(lambda: sentry.sentry.devices.get("alice/dev1").state is State.ALLOWED)
        async with session.post(sentry.url + query(), headers=headers("16.1")) as r:
            assert r.status == 200
            assert (await r.read()).startswith(b"upstream:")


async def test_user_spellings_share_a_record_only_when_the_rule_says_so(
    start_sentry: StartSentry, fake_uem: FakeUem
) -> None:
    sentry = await start_sentry()
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        for user in ("CORP%5CAlice", "alice", "alice%40example.com"):
            async with session.post(sentry.url + query(user), headers=headers()) as r:
                assert r.status == 200
    assert sorted(sentry.sentry.devices) == ["alice/dev1", "alice@example.com/dev1"]
    assert len(fake_uem.reports) == 2
    assert fake_uem.reports[0].user == "CORP\\Alice"
