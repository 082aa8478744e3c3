"""The dashboard app over loopback: access, state, the live stream, controls and exports."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from scenarios.dashboard.app import CONTROL_HEADER
from scenarios.lab import Lab, LabConfig
from simclock import ManualClock, SystemClock

KEY = "alice/aliceiphone01"


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    async with Lab(LabConfig.default(), clock=ManualClock()) as running:
        yield running


@pytest.fixture
async def http(lab: Lab) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {lab.admin_token}", CONTROL_HEADER: "1"}
    async with aiohttp.ClientSession(base_url=lab.dashboard_url, headers=headers) as session:
        yield session


async def post(http: aiohttp.ClientSession, path: str, body: Any) -> tuple[int, Any]:
    async with http.post(path, json=body) as response:
        return response.status, await response.json()


async def state(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get("/api/state") as response:
        assert response.status == 200
        data = await response.json()
        assert isinstance(data, dict)
        return data


async def wait_for_row(
    http: aiohttp.ClientSession, key: str, state_name: str, phone_done: bool = True
) -> dict[str, Any]:
    async with asyncio.timeout(8):
        while True:
            rows: dict[str, dict[str, Any]] = {r["key"]: r for r in (await state(http))["devices"]}
            row = rows.get(key)
            if row and row["state"] == state_name and not (phone_done and row["phone_busy"]):
                return row
            await asyncio.sleep(0.05)


async def test_ready_payload_names_the_dashboard_on_loopback(lab: Lab) -> None:
    payload = lab.ready_payload()
    assert payload["dashboard_url"] == lab.dashboard_url
    assert payload["dashboard_url"].startswith("http://127.0.0.1:")
    assert not payload["dashboard_url"].endswith("/")


async def test_everything_but_the_sign_in_needs_the_token(lab: Lab) -> None:
    async with asyncio.timeout(10), aiohttp.ClientSession(base_url=lab.dashboard_url) as anon:
        for path in ("/api/state", "/api/events/stream", f"/api/devices/{KEY}/mermaid"):
            async with anon.get(path) as response:
                assert response.status == 401, path
                assert "token" in (await response.json())["hint"]
        async with anon.get("/") as response:
            assert response.status == 401
            assert 'name="token"' in await response.text()  # the sign-in form
        async with anon.get("/?token=wrong") as response:
            assert response.status == 401
        async with anon.get("/static/dashboard.js") as response:
            assert response.status == 200  # no secret in the static files
            assert response.content_type == "text/javascript"


async def test_opening_the_page_with_the_token_sets_a_cookie_that_is_not_the_token(
    lab: Lab,
) -> None:
    # unsafe=True: keep cookies of an IP-address host (127.0.0.1), as a browser does.
    jar = aiohttp.CookieJar(unsafe=True)
    async with (
        asyncio.timeout(10),
        aiohttp.ClientSession(base_url=lab.dashboard_url, cookie_jar=jar) as browser,
    ):
        async with browser.get(f"/?token={lab.admin_token}", allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"] == "/"
            (cookie,) = response.cookies.values()
            assert cookie["httponly"]
            assert cookie["samesite"] == "Strict"
            assert lab.admin_token not in cookie.value
        async with browser.get("/") as response:
            assert response.status == 200
            assert "<title>sentry-sim live view</title>" in await response.text()
        async with browser.get("/api/state") as response:
            assert response.status == 200


async def test_control_posts_need_the_header_and_the_pages_origin(lab: Lab) -> None:
    auth = {"Authorization": f"Bearer {lab.admin_token}"}
    body = {"pause_s": 1}
    async with asyncio.timeout(10), aiohttp.ClientSession(base_url=lab.dashboard_url) as client:
        async with client.post("/api/slow-motion", json=body, headers=auth) as response:
            assert response.status == 403
            assert CONTROL_HEADER in (await response.json())["error"]
        cross = {**auth, CONTROL_HEADER: "1", "Origin": "http://evil.example"}
        async with client.post("/api/slow-motion", json=body, headers=cross) as response:
            assert response.status == 403
        same = {**auth, CONTROL_HEADER: "1", "Origin": lab.dashboard_url}
        async with client.post("/api/slow-motion", json=body, headers=same) as response:
            assert response.status == 200
            assert (await response.json())["slow_motion_s"] == 1.0


async def test_adding_a_device_connects_it_and_the_state_shows_its_ladder_and_views(
    lab: Lab, http: aiohttp.ClientSession
) -> None:
    async with asyncio.timeout(15):
        status, body = await post(
            http, "/api/devices", {"user": "alice", "device_id": "ALICEIPHONE01"}
        )
        assert (status, body) == (202, {"record": KEY, "started": True})
        row = await wait_for_row(http, KEY, "allowed")
        assert row["phone"] == "ready"
        assert row["eas_device_id"] == "ALICEIPHONE01"
        assert row["requests"] >= 4
        data = await state(http)
        steps = [a["step"] for a in data["flows"][KEY]]
        assert steps[:9] == [1, 2, 3, 3, 4, 5, 5, 6, 7]
        assert data["uem"]["counts"]["registered_allowed"] == 1
        assert data["status"]["virtual_clock"] is True
        assert [lane["id"] for lane in data["lanes"]] == ["device", "sentry", "uem", "exchange"]
        kinds = {(e["source"], e["kind"]) for e in data["log"]}
        assert {("dashboard", "trainer_add"), ("device", "device_exchange")} <= kinds


async def test_a_registered_compromised_device_is_blocked_with_its_reason(
    lab: Lab, http: aiohttp.ClientSession
) -> None:
    async with asyncio.timeout(15):
        body = {
            "user": "erin",
            "device_id": "ErinTablet9",
            "registered": True,
            "platform": "android",
            "os_version": "14",
            "compromised": True,
            "version": "14.1",
        }
        assert (await post(http, "/api/devices", body))[0] == 202
        row = await wait_for_row(http, "erin/erintablet9", "blocked")
        assert row["reason_names"] == ["COMPROMISED"]
        assert row["eas_device_id"] == "ErinTablet9"
        data = await state(http)
        blocked = data["uem"]["groups"]["registered_blocked"]
        assert [(r["user"], r["device_id"]) for r in blocked] == [("erin", "ErinTablet9")]
        denial = [a for a in data["flows"]["erin/erintablet9"] if a["step"] == 8]
        assert denial
        assert denial[0]["reasons"] == ["COMPROMISED"]
        assert "Status 129" in denial[0]["label"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user": "mallory", "device_id": "X1"}, "user"),
        ({"user": "alice", "device_id": "no spaces"}, "device_id"),
        ({"user": "alice", "device_id": "X1", "version": "99"}, "version"),
    ],
)
async def test_bad_control_input_is_400_naming_the_field(
    http: aiohttp.ClientSession, body: dict[str, Any], field: str
) -> None:
    async with asyncio.timeout(5):
        status, answer = await post(http, "/api/devices", body)
    assert status == 400
    assert answer["field"] == field
    assert f"$.{field}" in answer["error"]


async def test_block_then_sync_denies_the_next_request_and_the_ladder_says_step_8(
    lab: Lab, http: aiohttp.ClientSession
) -> None:
    async with asyncio.timeout(15):
        await post(http, "/api/devices", {"user": "alice", "device_id": "ALICEIPHONE01"})
        await wait_for_row(http, KEY, "allowed")
        status, _ = await post(http, "/api/devices/alice/ALICEIPHONE01/action", {"action": "block"})
        assert status == 200
        await lab.wait_for_sentry_state("alice", "ALICEIPHONE01", "blocked")
        status, _ = await post(http, "/api/devices/alice/ALICEIPHONE01/sync", {})
        assert status == 202
        row = await wait_for_row(http, KEY, "blocked")
        assert row["phone"] == "blocked"
        last = (await state(http))["flows"][KEY][-1]
        assert (last["step"], last["source"], last["target"]) == (8, "sentry", "device")
        assert last["reasons"] == ["MANUAL"]
        status, answer = await post(
            http, "/api/devices/alice/ALICEIPHONE01/action", {"action": "nuke"}
        )
        assert (status, answer["field"]) == (400, "action")


async def test_posture_change_blocks_through_the_push(
    lab: Lab, http: aiohttp.ClientSession
) -> None:
    async with asyncio.timeout(15):
        await post(http, "/api/devices", {"user": "alice", "device_id": "ALICEIPHONE01"})
        await wait_for_row(http, KEY, "allowed")
        status, _ = await post(
            http, "/api/devices/alice/ALICEIPHONE01/posture", {"os_version": "15.0"}
        )
        assert status == 200
        row = await wait_for_row(http, KEY, "blocked")
        assert row["reason_names"] == ["OS_VERSION"]


async def test_uem_down_and_up_and_the_views_say_so(lab: Lab, http: aiohttp.ClientSession) -> None:
    async with asyncio.timeout(15):
        status, answer = await post(http, "/api/uem", {"state": "down"})
        assert (status, answer) == (200, {"uem_listening": False})
        data = await state(http)
        assert data["status"]["uem_listening"] is False
        assert data["uem"]["stale"] is True
        assert "cannot be read" in data["uem"]["error"]
        assert (await post(http, "/api/uem", {"state": "up"}))[1] == {"uem_listening": True}
        assert (await state(http))["uem"]["stale"] is False


async def test_the_virtual_clock_advances_and_a_system_clock_refuses(
    lab: Lab, http: aiohttp.ClientSession
) -> None:
    before = lab.clock.now()
    async with asyncio.timeout(10):
        status, answer = await post(http, "/api/clock", {"advance_s": 3600})
        assert status == 200
        assert answer["now"] == before + 3600
        assert (await post(http, "/api/clock", {"advance_s": "soon"}))[1]["field"] == "advance_s"
    async with (
        asyncio.timeout(15),
        Lab(LabConfig.default(), clock=SystemClock()) as real,
        aiohttp.ClientSession(
            base_url=real.dashboard_url,
            headers={"Authorization": f"Bearer {real.admin_token}", CONTROL_HEADER: "1"},
        ) as other,
    ):
        status, answer = await post(other, "/api/clock", {"advance_s": 60})
        assert status == 409
        assert "system clock" in answer["error"]


async def test_the_stream_sends_the_state_then_each_event_as_it_happens(
    lab: Lab, http: aiohttp.ClientSession
) -> None:
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(15), http.get("/api/events/stream") as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        started = False
        async for raw in response.content:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            message = json.loads(line[6:])
            messages.append(message)
            if message["type"] == "state" and not started:
                started = True
                await post(http, "/api/devices", {"user": "carol", "device_id": "CAROLPHONE01"})
            if message["type"] == "event" and any(a["step"] == 8 for a in message["arrows"]):
                break
    assert messages[0]["type"] == "state"
    events = [m for m in messages if m["type"] == "event"]
    numbers = [m["entry"]["n"] for m in events]
    assert numbers == sorted(numbers)
    steps = [a["step"] for m in events for a in m["arrows"] if m["record"] == "carol/carolphone01"]
    assert steps[:4] == [1, 2, 3, 3]
    assert steps[-1] == 8
    assert any(m["type"] == "views" for m in messages) or events


async def test_slow_motion_pauses_between_a_phones_steps(
    lab: Lab, http: aiohttp.ClientSession
) -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(15):
        assert (await post(http, "/api/slow-motion", {"pause_s": 0.2}))[0] == 200
        started = loop.time()
        await post(http, "/api/devices", {"user": "alice", "device_id": "ALICEIPHONE01"})
        await wait_for_row(http, KEY, "allowed")
        # Four steps (Options, Provision, FolderSync, Sync): three pauses between them.
        assert loop.time() - started >= 0.6
        assert (await state(http))["status"]["slow_motion_s"] == 0.2


async def test_exports_give_mermaid_and_jaeger_for_a_device_and_404_for_none(
    lab: Lab, http: aiohttp.ClientSession
) -> None:
    async with asyncio.timeout(15):
        await post(http, "/api/devices", {"user": "carol", "device_id": "CAROLPHONE01"})
        await wait_for_row(http, "carol/carolphone01", "blocked")
        async with http.get("/api/devices/carol/CAROLPHONE01/mermaid") as response:
            assert response.status == 200
            text = await response.text()
        assert text.startswith("sequenceDiagram\n")
        assert "D->>S: 1. Provision (EAS 16.1)" in text
        assert "S-xD: 8. Provision refused (blocked)" in text
        async with http.get("/api/devices/carol/CAROLPHONE01/jaeger") as response:
            assert response.status == 200
            trace = (await response.json())["data"][0]
        names = [s["operationName"] for s in trace["spans"]]
        assert "8. blocked -> device told" in names
        async with http.get("/api/devices/nobody/NOTHING/jaeger") as response:
            assert response.status == 404
