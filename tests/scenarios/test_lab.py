"""``Lab``: one process, one clock, one admin token, the ready payload, restarts in place."""

from __future__ import annotations

import asyncio
import itertools

import aiohttp

from device_sim.client import FolderSync, Provision, Sync
from scenarios.lab import Lab, LabConfig
from sentry_sim.events import ResyncCompleted
from simclock import ManualClock

READY_KEYS = {
    "sentry_url",
    "sentry_admin_url",
    "uem_url",
    "uem_admin_url",
    "exchange_url",
    "admin_token",
    "dashboard_url",
}


async def test_ready_payload_has_exactly_the_contract_keys_and_distinct_ports() -> None:
    async with asyncio.timeout(10), Lab(LabConfig.default(), admin_token="t0ken") as lab:
        payload = lab.ready_payload()
        assert set(payload) == READY_KEYS
        assert payload["admin_token"] == "t0ken"
        urls = [v for k, v in payload.items() if k.endswith("_url")]
        assert all(u.startswith("http://127.0.0.1:") and not u.endswith("/") for u in urls)
        assert len(set(urls)) == 6
        assert lab.sentry.registered  # push URL registered before start returned


async def test_one_admin_token_opens_every_admin_api() -> None:
    async with asyncio.timeout(10), Lab(LabConfig.default()) as lab:
        headers = {"Authorization": f"Bearer {lab.admin_token}"}
        wrong = {"Authorization": "Bearer nope"}
        urls = (
            lab.sentry_admin_url + "/api/stats",
            lab.uem_admin_url + "/api/v1/eas/devices",
            lab.exchange_url + "/admin/mailboxes",
        )
        async with aiohttp.ClientSession() as session:
            for url in urls:
                async with session.get(url, headers=headers) as ok:
                    assert ok.status == 200, url
                async with session.get(url, headers=wrong) as refused:
                    assert refused.status == 401, url


async def test_every_actor_runs_on_the_one_manual_clock() -> None:
    clock = ManualClock()
    async with asyncio.timeout(10), Lab(LabConfig.default(), clock=clock) as lab:
        phone = lab.device("alice", "ALICEIPHONE01")
        assert (await phone.run_script([Provision(), FolderSync(), Sync()])).succeeded
        record = await lab.sentry_record("alice", "ALICEIPHONE01")
        assert record is not None
        assert record["decided_at"] == clock.now()
        explain = await lab.uem_explain("alice", "ALICEIPHONE01")
        assert explain["decided_at"] == clock.now()
        first_resync = lab.sentry.last_resync_at
        await clock.advance(lab.config.sentry.resync_interval_s + 1)
        # advance() waits for the woken resync to finish its HTTP round trip, so it has run,
        # at its own deadline, by the time advance() returns.
        last_resync = lab.sentry.last_resync_at
        assert first_resync is not None
        assert last_resync is not None
        assert first_resync < last_resync <= clock.now()


async def test_uem_outage_and_return_on_the_same_ports() -> None:
    async with asyncio.timeout(10), Lab(LabConfig.default()) as lab:
        before = (lab.uem_url, lab.uem_admin_url)
        await lab.uem_offline()
        async with aiohttp.ClientSession() as session:
            try:
                async with session.get(lab.uem_url + "/api/v1/sentry/records"):
                    reached = True
            except aiohttp.ClientConnectionError:
                reached = False
        assert reached is False
        await lab.uem_online()
        assert (lab.uem_url, lab.uem_admin_url) == before
        view = await lab.eas_devices()
        assert set(view["counts"]) == {
            "registered_allowed",
            "registered_blocked",
            "unregistered_allowed",
            "unregistered_blocked",
            "wiped",
        }


async def test_a_day_on_the_virtual_clock_runs_the_resync_once_per_interval() -> None:
    clock = ManualClock()
    async with asyncio.timeout(60), Lab(LabConfig.default(), clock=clock) as lab:
        interval = lab.config.sentry.resync_interval_s
        resyncs: list[float] = []
        lab.bus.subscribe(
            lambda event: (
                resyncs.append(clock.now()) if isinstance(event, ResyncCompleted) else None
            )
        )
        start = clock.now()
        await clock.advance(25 * 3600)
        assert len(resyncs) == int(25 * 3600 // interval)
        assert resyncs[0] <= start + interval
        assert all(b - a == interval for a, b in itertools.pairwise(resyncs))
