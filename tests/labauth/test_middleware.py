"""``admin_guard`` over a real loopback socket, driven by a manual clock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from labauth import Lockout, LockoutPolicy, admin_guard, guards_admin, token_matches
from simclock import ManualClock

TOKEN = "s3cret-admin-token-for-tests"
ROOT = Path(__file__).resolve().parents[2]


async def _ok(_request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@contextlib.asynccontextmanager
async def guarded(
    clock: ManualClock, *, accept_x_admin_token: bool = False, lockout: Lockout | None = None
) -> AsyncIterator[str]:
    app = web.Application(
        middlewares=[
            admin_guard(
                TOKEN,
                clock=clock,
                protected=lambda r: r.path.startswith("/admin"),
                accept_x_admin_token=accept_x_admin_token,
                lockout=lockout,
            )
        ]
    )
    app.router.add_get("/admin/thing", _ok)
    app.router.add_get("/open", _ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _get(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, object], dict[str, str]]:
    async with session.get(url, headers=headers or {}) as response:
        return response.status, await response.json(), dict(response.headers)


BEARER = {"Authorization": f"Bearer {TOKEN}"}
WRONG = {"Authorization": "Bearer not-the-token"}


async def test_right_token_passes_and_open_routes_need_none() -> None:
    async with asyncio.timeout(10), guarded(ManualClock()) as url, aiohttp.ClientSession() as s:
        assert (await _get(s, url + "/admin/thing", BEARER))[0] == 200
        assert (await _get(s, url + "/open"))[0] == 200


async def test_missing_token_gets_401_with_bearer_challenge_and_is_not_counted() -> None:
    async with asyncio.timeout(10), guarded(ManualClock()) as url, aiohttp.ClientSession() as s:
        for _ in range(5):
            status, body, headers = await _get(s, url + "/admin/thing")
            assert status == 401
            assert body["error"] == "missing admin token"
            assert "Bearer" in str(body["hint"])
            assert headers["WWW-Authenticate"].startswith("Bearer")
        assert (await _get(s, url + "/admin/thing", BEARER))[0] == 200


async def test_three_wrong_tokens_lock_out_even_the_right_token_with_retry_after() -> None:
    clock = ManualClock()
    async with asyncio.timeout(10), guarded(clock) as url, aiohttp.ClientSession() as s:
        statuses = [(await _get(s, url + "/admin/thing", WRONG))[0] for _ in range(3)]
        assert statuses == [401, 401, 401]
        status, body, headers = await _get(s, url + "/admin/thing", BEARER)
        assert status == 429
        assert headers["Retry-After"] == "900"
        assert "locked out" in str(body["error"])
        await clock.advance(600)
        status, _, headers = await _get(s, url + "/admin/thing", BEARER)
        assert (status, headers["Retry-After"]) == (429, "300")
        # Open routes are not behind the lock.
        assert (await _get(s, url + "/open"))[0] == 200
        await clock.advance(300)
        assert (await _get(s, url + "/admin/thing", BEARER))[0] == 200


async def test_right_token_between_failures_resets_the_count() -> None:
    async with asyncio.timeout(10), guarded(ManualClock()) as url, aiohttp.ClientSession() as s:
        for _ in range(4):
            assert (await _get(s, url + "/admin/thing", WRONG))[0] == 401
            assert (await _get(s, url + "/admin/thing", WRONG))[0] == 401
            assert (await _get(s, url + "/admin/thing", BEARER))[0] == 200


async def test_x_admin_token_only_where_accepted() -> None:
    header = {"X-Admin-Token": TOKEN}
    async with asyncio.timeout(10), aiohttp.ClientSession() as s:
        async with guarded(ManualClock(), accept_x_admin_token=True) as url:
            assert (await _get(s, url + "/admin/thing", header))[0] == 200
        async with guarded(ManualClock()) as url:
            status, body, _ = await _get(s, url + "/admin/thing", header)
            assert (status, body["error"]) == (401, "missing admin token")


async def test_shared_lockout_policy_applies() -> None:
    table = Lockout(LockoutPolicy(max_failures=1, lock_s=10.0))
    async with (
        asyncio.timeout(10),
        guarded(ManualClock(), lockout=table) as url,
        aiohttp.ClientSession() as s,
    ):
        assert (await _get(s, url + "/admin/thing", WRONG))[0] == 401
        status, _, headers = await _get(s, url + "/admin/thing", BEARER)
        assert (status, headers["Retry-After"]) == (429, "10")
        assert len(table) == 1


async def test_refusals_never_log_or_echo_the_presented_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guess = "Guess-0123456789abcdef"
    caplog.set_level(logging.DEBUG)
    async with asyncio.timeout(10), guarded(ManualClock()) as url, aiohttp.ClientSession() as s:
        seen: list[str] = []
        for _ in range(4):
            async with s.get(
                url + "/admin/thing", headers={"Authorization": f"Bearer {guess}"}
            ) as r:
                seen.append(await r.text())
                seen.extend(r.headers.values())
    text = caplog.text + "".join(seen)
    assert "wrong admin token from 127.0.0.1" in caplog.text
    assert guess not in text
    assert TOKEN not in text


def test_token_matches_is_exact_and_bounded() -> None:
    assert token_matches(TOKEN, TOKEN)
    assert not token_matches(TOKEN + "x", TOKEN)
    assert not token_matches(TOKEN[:-1], TOKEN)
    assert not token_matches("ä" * 5000, TOKEN)


def test_empty_token_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        admin_guard("", clock=ManualClock())


def test_comparison_is_constant_time_hmac_compare_digest() -> None:
    source = (ROOT / "labauth" / "middleware.py").read_text(encoding="utf-8")
    assert "hmac.compare_digest(" in source


@pytest.mark.parametrize("path", ["uem_sim/app.py", "exchange_sim/app.py", "sentry_sim/admin.py"])
def test_every_admin_api_uses_the_shared_guard_and_no_comparison_of_its_own(path: str) -> None:
    source = (ROOT / path).read_text(encoding="utf-8")
    assert "admin_guard(" in source
    assert "== token" not in source
    assert "token ==" not in source


def test_guards_admin_tells_guarded_apps_apart() -> None:
    guarded_app = web.Application(middlewares=[admin_guard(TOKEN, clock=ManualClock())])
    assert guards_admin(guarded_app)
    assert not guards_admin(web.Application())
