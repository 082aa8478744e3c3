"""The live view's token check sits behind labauth's lockout: 3 wrong tokens lock the client
for 15 minutes (429 + Retry-After, even with the right token) on the lab's clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from scenarios.dashboard.app import cookie_name
from scenarios.lab import Lab, LabConfig
from simclock import ManualClock

WRONG = "not-the-admin-token"


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    async with Lab(LabConfig.default(), clock=ManualClock()) as running:
        yield running


async def status_of(session: aiohttp.ClientSession, method: str, path: str, **kw: object) -> int:
    async with session.request(method, path, allow_redirects=False, **kw) as response:  # type: ignore[arg-type]
        await response.read()
        return response.status


async def test_three_wrong_tokens_lock_out_even_the_right_one_until_15_minutes_pass(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    assert isinstance(lab.clock, ManualClock)
    right = {"Authorization": f"Bearer {lab.admin_token}"}
    async with asyncio.timeout(20), aiohttp.ClientSession(base_url=lab.dashboard_url) as http:
        # Every way of presenting a token counts: the address bar, the form, a Bearer header.
        assert await status_of(http, "GET", f"/?token={WRONG}") == 401
        assert await status_of(http, "POST", "/login", data={"token": WRONG}) == 401
        headers = {"Authorization": f"Bearer {WRONG}"}
        assert await status_of(http, "GET", "/api/state", headers=headers) == 401
        # Locked: the right token is refused too, everywhere, with the time to wait.
        async with http.get("/api/state", headers=right) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "900"
            body = await response.json()
            assert "locked out for 900 more seconds" in body["error"]
        assert await status_of(http, "GET", f"/?token={lab.admin_token}") == 429
        assert await status_of(http, "POST", "/login", data={"token": lab.admin_token}) == 429
        # Attempts during the lock do not extend it; the lab's clock ends it.
        await lab.clock.advance(899)
        async with http.get("/api/state", headers=right) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "1"
        await lab.clock.advance(1)
        assert await status_of(http, "GET", "/api/state", headers=right) == 200
        assert await status_of(http, "GET", f"/?token={lab.admin_token}") == 303
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "dashboard: wrong admin token from 127.0.0.1" in logged
    assert WRONG not in logged
    assert lab.admin_token not in logged


async def test_missing_tokens_and_stale_cookies_are_not_failed_attempts(lab: Lab) -> None:
    stale = {cookie_name(int(lab.dashboard_url.rsplit(":", 1)[1])): "digest-of-an-older-lab"}
    async with (
        asyncio.timeout(20),
        aiohttp.ClientSession(base_url=lab.dashboard_url, cookies=stale) as http,
    ):
        for _ in range(5):
            assert await status_of(http, "GET", "/") == 401
            assert await status_of(http, "GET", "/api/state") == 401
        right = {"Authorization": f"Bearer {lab.admin_token}"}
        assert await status_of(http, "GET", "/api/state", headers=right) == 200


async def test_the_right_token_resets_the_count(lab: Lab) -> None:
    right = {"Authorization": f"Bearer {lab.admin_token}"}
    wrong = {"Authorization": f"Bearer {WRONG}"}
    async with asyncio.timeout(20), aiohttp.ClientSession(base_url=lab.dashboard_url) as http:
        for _ in range(3):
            assert await status_of(http, "GET", "/api/state", headers=wrong) == 401
            assert await status_of(http, "GET", "/api/state", headers=wrong) == 401
            assert await status_of(http, "GET", "/api/state", headers=right) == 200


async def test_lockout_log_line_is_a_warning_naming_the_count(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="scenarios.dashboard.app")
    async with asyncio.timeout(20), aiohttp.ClientSession(base_url=lab.dashboard_url) as http:
        for _ in range(3):
            await status_of(http, "GET", f"/?token={WRONG}")
    lines = [r.getMessage() for r in caplog.records if r.name == "scenarios.dashboard.app"]
    assert lines[-1].endswith("(3 of 3); locked out for 900 s")
