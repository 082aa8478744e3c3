"""Every admin API of a lab: the right token works, 3 wrong ones lock the client for 15 minutes.

The lab runs on one manual clock, so the lockout's 15 minutes pass in an instant.
"""

from __future__ import annotations

import asyncio

import aiohttp

from device_sim.client import FolderSync, Provision
from scenarios.lab import Lab, LabConfig
from simclock import ManualClock

TOKEN = "lockout-test-token-0123456789"
RIGHT = {"Authorization": f"Bearer {TOKEN}"}
WRONG = {"Authorization": "Bearer a-wrong-guess"}


async def _status(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> int:
    async with session.get(url, headers=headers) as response:
        return response.status


async def test_each_admin_api_locks_out_after_three_wrong_tokens_for_fifteen_minutes() -> None:
    clock = ManualClock()
    async with (
        asyncio.timeout(20),
        Lab(LabConfig.default(), clock=clock, admin_token=TOKEN) as lab,
        aiohttp.ClientSession() as session,
    ):
        urls = {
            "gatekeeper": lab.sentry_admin_url + "/api/stats",
            "uem": lab.uem_admin_url + "/api/v1/eas/devices",
            "exchange": lab.exchange_url + "/admin/mailboxes",
        }
        for url in urls.values():
            assert await _status(session, url, RIGHT) == 200
            assert [await _status(session, url, WRONG) for _ in range(3)] == [401, 401, 401]
        for name, url in urls.items():
            async with session.get(url, headers=RIGHT) as response:
                assert response.status == 429, name
                assert response.headers["Retry-After"] == "900", name
        await clock.advance(899)
        assert {n: await _status(session, u, RIGHT) for n, u in urls.items()} == {
            n: 429 for n in urls
        }
        await clock.advance(1)
        assert {n: await _status(session, u, RIGHT) for n, u in urls.items()} == {
            n: 200 for n in urls
        }


async def test_the_gatekeeper_push_and_device_paths_are_not_behind_the_admin_lock() -> None:
    clock = ManualClock()
    async with (
        asyncio.timeout(20),
        Lab(LabConfig.default(), clock=clock, admin_token=TOKEN) as lab,
        aiohttp.ClientSession() as session,
    ):
        uem_admin = lab.uem_admin_url + "/api/v1/eas/devices"
        for _ in range(3):
            await _status(session, uem_admin, WRONG)
        assert await _status(session, uem_admin, RIGHT) == 429
        # The lock is on the admin routes only: phones still get through the gatekeeper.
        phone = lab.device("alice", "ALICEIPHONE01")
        assert (await phone.run_script([Provision(), FolderSync()])).succeeded
