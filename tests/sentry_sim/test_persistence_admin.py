"""Restart with the persisted list, the outbox surviving, the admin API and /metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from sentry_sim.device_list import State
from tests.sentry_sim.fakes import FakeUem, StartSentry, eventually, headers, query
from uem_sim.contract import AccessState, Reason

AUTH = {"Authorization": "Bearer test-token"}


async def test_restart_reloads_decided_records_not_unknown_ones_and_resumes_reports(
    start_sentry: StartSentry, fake_uem: FakeUem, tmp_path: Path
) -> None:
    state_dir = str(tmp_path / "state")
    fake_uem.verdicts[("bob", "PHONE2")] = (AccessState.BLOCK, int(Reason.COMPROMISED))
    first = await start_sentry(state_dir=state_dir, first_access_wait_s=0.1)
    async with asyncio.timeout(15), aiohttp.ClientSession() as session:
        for user, device in (("alice", "DEV1"), ("bob", "PHONE2")):
            async with session.post(first.url + query(user, device), headers=headers()) as r:
                await r.read()
        fake_uem.down = True
        async with session.post(first.url + query("carol", "TAB1"), headers=headers()) as r:
            assert r.status == 200  # allowed by the fallback; its report waits in the outbox
        assert first.sentry.devices.get("carol/tab1").is_fallback
        await first.stop()

        second = await start_sentry(state_dir=state_dir)
        devices = second.sentry.devices
        assert devices.get("alice/dev1").state is State.ALLOWED
        bob = devices.get("bob/phone2")
        assert bob is not None
        assert bob.state is State.BLOCKED
        assert bob.reasons == Reason.COMPROMISED
        assert "carol/tab1" not in devices  # fallback records are not written
        assert devices.is_reporting("carol/tab1")  # but the report survived in the outbox
        # Known devices keep their last state while the UEM is down.
        async with session.post(second.url + query("bob", "PHONE2"), headers=headers("12.1")) as r:
            assert r.status == 403
        fake_uem.down = False
        await eventually(lambda: any(rep.user == "carol" for rep in fake_uem.reports), within=5)
        await eventually(lambda: "carol/tab1" in devices and not devices.is_reporting("carol/tab1"))


async def test_admin_api_requires_the_token(start_sentry: StartSentry) -> None:
    sentry = await start_sentry()
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        for path in ("/api/devices", "/api/stats", "/metrics", "/api/events"):
            async with session.get(sentry.admin_url + path) as r:
                assert r.status == 401, path
                assert "Bearer" in (await r.json())["hint"]
            async with session.get(
                sentry.admin_url + path, headers={"Authorization": "Bearer wrong"}
            ) as r:
                assert r.status == 401, path
            async with session.get(sentry.admin_url + path, headers=AUTH) as r:
                assert r.status == 200, path


async def test_device_list_explain_stats_and_events(
    start_sentry: StartSentry, fake_uem: FakeUem
) -> None:
    fake_uem.verdicts[("bob", "PHONE2")] = (AccessState.BLOCK, int(Reason.PER_MAILBOX_LIMIT))
    sentry = await start_sentry()
    async with asyncio.timeout(10), aiohttp.ClientSession(headers=AUTH) as session:
        async with session.post(sentry.url + query("bob", "PHONE2"), headers=headers()) as r:
            await r.read()
        async with session.get(sentry.admin_url + "/api/devices?state=blocked") as r:
            listing = await r.json()
        assert [d["key"] for d in listing["devices"]] == ["bob/phone2"]
        async with session.get(sentry.admin_url + "/api/devices/Bob/PHONE2") as r:
            explained = await r.json()
        assert explained["state"] == "blocked"
        assert explained["reason_names"] == ["PER_MAILBOX_LIMIT"]
        assert explained["decided_by"] == f"uem answer #{explained['answer']}"
        assert "PER_MAILBOX_LIMIT" in explained["explanation"]
        async with session.get(sentry.admin_url + "/api/devices/nobody/X1") as r:
            assert r.status == 404
        async with session.get(sentry.admin_url + "/api/stats") as r:
            stats = await r.json()
        assert stats["by_state"]["blocked"] == 1
        assert stats["uem_reachable"] is True
        async with session.get(sentry.admin_url + "/api/events?limit=50") as r:
            events = (await r.json())["events"]
    kinds = [e["event"] for e in events]
    for kind in ("device_first_seen", "report_queued", "report_sent", "decision_applied"):
        assert kind in kinds
    first_seen = next(e for e in events if e["event"] == "device_first_seen")
    denied = next(e for e in events if e["event"] == "request_denied")
    assert first_seen["record"] == denied["record"] == "bob/phone2"
    assert first_seen["request_id"] == denied["request_id"] != ""


async def test_metrics_are_prometheus_text(start_sentry: StartSentry, fake_uem: FakeUem) -> None:
    fake_uem.verdicts[("bob", "PHONE2")] = (AccessState.BLOCK, int(Reason.MANUAL))
    sentry = await start_sentry()
    async with asyncio.timeout(10), aiohttp.ClientSession(headers=AUTH) as session:
        for user, device in (("alice", "DEV1"), ("bob", "PHONE2")):
            async with session.post(sentry.url + query(user, device), headers=headers()) as r:
                await r.read()
        async with session.get(sentry.admin_url + "/metrics") as r:
            assert r.content_type == "text/plain"
            text = await r.text()
    lines = text.splitlines()
    assert "# TYPE sentry_requests_total counter" in lines
    assert 'sentry_requests_total{outcome="forwarded"} 1' in lines
    assert 'sentry_requests_total{outcome="denied"} 1' in lines
    assert 'sentry_devices{state="blocked"} 1' in lines
    assert 'sentry_reports_total{result="sent"} 2' in lines
    assert "sentry_uem_reachable 1" in lines


async def test_event_stream_delivers_live_events(start_sentry: StartSentry) -> None:
    sentry = await start_sentry()
    async with (
        asyncio.timeout(10),
        aiohttp.ClientSession() as session,
        session.get(sentry.admin_url + "/api/events/stream", headers=AUTH) as stream,
    ):
        assert stream.content_type == "text/event-stream"
        await stream.content.readuntil(b"\n\n")  # the greeting comment
        async with session.post(sentry.url + query(), headers=headers()) as r:
            await r.read()
        chunk = await stream.content.readuntil(b"\n\n")
    assert chunk.startswith(b"event: request_received\ndata: {")
