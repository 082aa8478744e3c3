"""The UEM over real loopback HTTP: concurrency, push, resync, admin auth, persistence."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web

from scenarios.serving import StartedSite, start_site
from simclock import Clock, ManualClock, SystemClock
from uem_sim import contract
from uem_sim.app import make_app
from uem_sim.config import UemConfig
from uem_sim.contract import AccessState, PushMessage, Reason, ReportRequest
from uem_sim.events import EventBus

TOKEN = "s3cret-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
LAB = {
    "users": [{"name": "alice", "email": "alice@example.com"}, {"name": "bob"}],
    "uem": {
        "max_devices_per_mailbox": 2,
        "security_policy": {"min_os_version": {"ios": "17.0"}, "max_days_out_of_contact": 7},
        "devices": [
            {"device_id": "ApplGOOD", "user": "alice", "platform": "ios", "os_version": "17.2"},
        ],
    },
}


@attrs.define
class Uem:
    site: StartedSite
    http: aiohttp.ClientSession
    events: EventBus

    @property
    def url(self) -> str:
        return self.site.url

    async def call(self, method: str, path: str, json: Any = None, **kw: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, json=json, **kw) as response:
            return response.status, await response.json()

    async def report(self, user: str, device_id: str, gatekeeper: str = "gk1") -> dict[str, Any]:
        body = ReportRequest(gatekeeper_id=gatekeeper, user=user, device_id=device_id, seen_at=1.0)
        async with self.http.post(
            self.url + contract.REPORTS_PATH, data=contract.to_json(body)
        ) as response:
            assert response.status == 200, await response.text()
            return await response.json()  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def running_uem(
    lab: Any = None, *, clock: Clock | None = None, state_dir: Path | None = None
) -> AsyncIterator[Uem]:
    config = UemConfig.from_mapping(LAB if lab is None else lab)
    if state_dir is not None:
        config = attrs.evolve(config, state_dir=str(state_dir))
    events = EventBus(strict=True)
    app = make_app(config, clock=clock or SystemClock(), admin_token=TOKEN, events=events)
    site = await start_site(app)
    try:
        async with aiohttp.ClientSession() as http:
            yield Uem(site, http, events)
    finally:
        await site.stop()


@attrs.define
class FakeGatekeeper:
    """A tiny aiohttp app standing in for Sentry's push listener (port 9090's role)."""

    received: list[PushMessage] = attrs.field(factory=list)
    arrived: asyncio.Event = attrs.field(factory=asyncio.Event)
    failures_left: int = 0

    async def push(self, request: web.Request) -> web.Response:
        if self.failures_left > 0:
            self.failures_left -= 1
            return web.Response(status=503)
        self.received.append(contract.from_json(PushMessage, await request.read()))
        self.arrived.set()
        return web.Response(status=204)

    def records(self) -> list[contract.DecisionMessage]:
        return [r for m in self.received for r in m.records]


@contextlib.asynccontextmanager
async def fake_gatekeeper(failures: int = 0) -> AsyncIterator[tuple[FakeGatekeeper, str]]:
    gk = FakeGatekeeper(failures_left=failures)
    app = web.Application()
    app.router.add_post("/uem/push", gk.push)
    site = await start_site(app)
    try:
        yield gk, f"{site.url}/uem/push"
    finally:
        await site.stop()


async def test_twenty_concurrent_first_reports_for_one_mailbox_allow_exactly_the_limit() -> None:
    async with asyncio.timeout(10), running_uem() as uem:
        answers = await asyncio.gather(*(uem.report("bob", f"Dev{i:02d}") for i in range(20)))
        states = [a["state"] for a in answers]
        assert states.count("ALLOW") == 2
        blocked = [a for a in answers if a["state"] == "BLOCK"]
        assert all(a["reason_names"] == ["PER_MAILBOX_LIMIT"] for a in blocked)
        status, view = await uem.call("GET", "/api/v1/eas/devices", headers=ADMIN)
        assert status == 200
        assert view["counts"]["unregistered_allowed"] == 2
        assert view["counts"]["unregistered_blocked"] == 18


async def test_concurrent_reports_under_different_spellings_share_the_limit() -> None:
    async with asyncio.timeout(10), running_uem() as uem:
        users = ["alice", "CORP\\alice", "alice@example.com", "ALICE"]
        answers = await asyncio.gather(*(uem.report(users[i % 4], f"Phone{i}") for i in range(12)))
        assert [a["state"] for a in answers].count("ALLOW") == 2
        assert {a["user"] for a in answers} == {"alice"}


async def test_admin_block_is_pushed_to_a_registered_gatekeeper_within_a_second() -> None:
    async with asyncio.timeout(10), fake_gatekeeper() as (gk, push_url), running_uem() as uem:
        status, registered = await uem.call(
            "POST", contract.GATEKEEPERS_PATH, {"gatekeeper_id": "gk1", "push_url": push_url}
        )
        assert status == 200
        assert registered["gatekeeper_id"] == "gk1"
        first = await uem.report("alice", "ApplGOOD")
        assert first["state"] == "ALLOW"
        assert first["registered"] is True

        status, _ = await uem.call(
            "POST",
            "/api/v1/eas/devices/alice/ApplGOOD/actions",
            {"action": "block", "note": "lost"},
            headers=ADMIN,
        )
        assert status == 200
        await asyncio.wait_for(gk.arrived.wait(), 1.0)
        # The first decision came back in the answer to gk1's report: it is not pushed to gk1.
        assert len(gk.received) == 1
        last = gk.received[-1]
        assert last.gatekeeper_id == "gk1"
        assert [(r.device_id, r.state, r.reasons) for r in last.records] == [
            ("ApplGOOD", AccessState.BLOCK, Reason.MANUAL)
        ]
        assert last.since < last.version == last.records[0].record_version


async def test_push_is_retried_until_the_gatekeeper_answers() -> None:
    async with (
        asyncio.timeout(10),
        fake_gatekeeper(failures=2) as (gk, push_url),
        running_uem() as uem,
    ):
        failures: list[object] = []
        uem.events.subscribe(
            lambda e: failures.append(e) if type(e).__name__ == "PushFailed" else None
        )
        await uem.call(
            "POST", contract.GATEKEEPERS_PATH, {"gatekeeper_id": "gk1", "push_url": push_url}
        )
        # Reported by another gatekeeper: gk1 gets both decisions pushed.
        await uem.report("bob", "D1", gatekeeper="gk2")
        await uem.report("bob", "D2", gatekeeper="gk2")
        await asyncio.wait_for(gk.arrived.wait(), 3.0)
        assert len(failures) == 2
        assert {r.device_id for r in gk.records()} == {"D1", "D2"}


async def test_posture_change_via_check_in_is_pushed() -> None:
    async with asyncio.timeout(10), fake_gatekeeper() as (gk, push_url), running_uem() as uem:
        await uem.report("alice", "ApplGOOD")
        await uem.call(
            "POST", contract.GATEKEEPERS_PATH, {"gatekeeper_id": "gk1", "push_url": push_url}
        )
        status, body = await uem.call(
            "POST",
            "/api/v1/mdm/checkin",
            {"user": "alice", "device_id": "ApplGOOD", "compromised": True},
        )
        assert status == 200
        assert body["enrolled"] is False
        assert body["decision"]["reason_names"] == ["COMPROMISED"]
        await asyncio.wait_for(gk.arrived.wait(), 1.0)
        assert gk.records()[-1].reasons == Reason.COMPROMISED


async def test_resync_since_a_version_returns_only_later_changes() -> None:
    async with asyncio.timeout(10), running_uem() as uem:
        await uem.report("bob", "D1")
        status, full = await uem.call("GET", contract.RECORDS_PATH)
        assert status == 200
        snapshot = contract.ChangesResponse.from_dict(full)
        assert snapshot.full
        assert [r.device_id for r in snapshot.records] == ["D1"]

        await uem.report("bob", "D2")
        await uem.call(
            "POST", "/api/v1/eas/devices/bob/D1/actions", {"action": "remove"}, headers=ADMIN
        )
        status, body = await uem.call(
            "GET", f"{contract.RECORDS_PATH}?{contract.SINCE_PARAM}={snapshot.version}"
        )
        changes = contract.ChangesResponse.from_dict(body)
        assert not changes.full
        assert [(r.device_id, r.removed) for r in changes.records] == [
            ("D2", False),
            ("D1", True),
        ]
        status, body = await uem.call("GET", f"{contract.RECORDS_PATH}?since=abc")
        assert status == 400
        assert "since" in body["error"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"X-Admin-Token": TOKEN.upper()},
    ],
)
async def test_admin_routes_refuse_a_missing_or_wrong_token(headers: dict[str, str]) -> None:
    async with asyncio.timeout(10), running_uem() as uem:
        for path in ("/api/v1/eas/devices", "/api/v1/admin/users", "/api/v1/admin/policy"):
            status, body = await uem.call("GET", path, headers=headers)
            assert status == 401
            assert "admin token" in body["error"]
            assert "Bearer" in body["hint"]


async def test_admin_token_works_as_bearer_or_x_admin_token() -> None:
    async with asyncio.timeout(10), running_uem() as uem:
        for headers in (ADMIN, {"X-Admin-Token": TOKEN}):
            status, body = await uem.call("GET", "/api/v1/admin/users", headers=headers)
            assert status == 200
            assert [u["name"] for u in body["users"]] == ["alice", "bob"]


def test_admin_token_is_compared_with_hmac_compare_digest() -> None:
    source = (Path(__file__).parents[2] / "labauth" / "middleware.py").read_text(encoding="utf-8")
    assert "hmac.compare_digest(" in source
    assert "presented == expected" not in source


async def test_bad_bodies_get_400_naming_the_field() -> None:
    async with asyncio.timeout(10), running_uem() as uem:
        cases = [
            (
                contract.REPORTS_PATH,
                {"gatekeeper_id": "g", "user": "u", "seen_at": 1},
                "$.device_id",
            ),
            (
                "/api/v1/admin/devices",
                {"user": "bob", "device_id": "X", "os_version": 17},
                "os_version",
            ),
            ("/api/v1/admin/users", {"name": "carol", "mail": "c@x"}, "mail: unknown key"),
            ("/api/v1/eas/devices/bob/X/actions", {"action": "nuke"}, "action: expected one of"),
        ]
        for path, body, fragment in cases:
            status, answer = await uem.call("POST", path, body, headers=ADMIN)
            assert status == 400, (path, answer)
            assert fragment in answer["error"], answer
        async with uem.http.post(uem.url + contract.REPORTS_PATH, data=b"{nope") as response:
            assert response.status == 400
            assert "not valid JSON" in (await response.json())["error"]
        status, answer = await uem.call("GET", "/api/v1/nothing-here")
        assert status == 404
        assert answer["error"] == "Not Found"
        status, answer = await uem.call("GET", "/api/v1/eas/devices/bob/NOPE", headers=ADMIN)
        assert status == 404
        assert "no ActiveSync record" in answer["error"]


async def test_registry_crud_policy_change_and_explain() -> None:
    async with asyncio.timeout(10), running_uem() as uem:
        status, _ = await uem.call(
            "POST",
            "/api/v1/admin/users",
            {"name": "carol", "email": "carol@example.com"},
            headers=ADMIN,
        )
        assert status == 201
        status, _ = await uem.call("POST", "/api/v1/admin/users", {"name": "carol"}, headers=ADMIN)
        assert status == 409
        status, device = await uem.call(
            "POST",
            "/api/v1/admin/devices",
            {
                "user": "carol@example.com",
                "device_id": "AndrC",
                "platform": "android",
                "os_version": "14",
            },
            headers=ADMIN,
        )
        assert status == 201
        assert device["mailbox"] == "carol"
        assert (await uem.report("carol", "AndrC"))["registered"] is True

        status, policy = await uem.call(
            "PATCH",
            "/api/v1/admin/policy",
            {
                "security_policy": {"min_os_version": {"android": "15"}},
                "activesync_policy": {"DevicePasswordEnabled": False},
            },
            headers=ADMIN,
        )
        assert status == 200
        assert policy["security_policy"]["version"] == 2
        assert policy["activesync_policy"]["version"] == 2

        status, explained = await uem.call(
            "GET", "/api/v1/eas/devices/carol/AndrC/explain", headers=ADMIN
        )
        assert explained["state"] == "BLOCK"
        assert explained["reason_names"] == ["OS_VERSION"]
        assert "14 is below 15" in explained["explanation"]
        rule = next(r for r in explained["trace"] if r["rule"] == "minimum OS version for android")
        assert rule["inputs"] == {"os_version": "14", "minimum": "15"}
        assert explained["activesync_policy"]["settings"] == {"DevicePasswordEnabled": False}

        status, _ = await uem.call("DELETE", "/api/v1/admin/devices/carol/AndrC", headers=ADMIN)
        assert status == 200
        status, view = await uem.call("GET", "/api/v1/eas/devices/carol/AndrC", headers=ADMIN)
        assert view["group"] == "unregistered_allowed"


async def test_compliance_check_on_a_virtual_clock_blocks_a_device_out_of_contact() -> None:
    clock = ManualClock()
    async with (
        asyncio.timeout(10),
        fake_gatekeeper() as (gk, push_url),
        running_uem(clock=clock) as uem,
    ):
        await uem.report("alice", "ApplGOOD")
        await uem.call(
            "POST", contract.GATEKEEPERS_PATH, {"gatekeeper_id": "gk1", "push_url": push_url}
        )
        await clock.advance(8 * 86_400)
        await asyncio.wait_for(gk.arrived.wait(), 1.0)
        assert [r.reasons for r in gk.records()] == [Reason.DEVICE_OUT_OF_CONTACT]


async def test_state_survives_a_restart_with_a_state_dir(tmp_path: Path) -> None:
    async with asyncio.timeout(10):
        async with running_uem(state_dir=tmp_path) as uem:
            await uem.report("bob", "D1")
            await uem.report("bob", "D2")
            await uem.report("bob", "D3")
            await uem.call(
                "POST",
                "/api/v1/eas/devices/bob/D1/actions",
                {"action": "wipe", "note": "stolen"},
                headers=ADMIN,
            )
            await uem.call("POST", "/api/v1/admin/users", {"name": "dave"}, headers=ADMIN)
            await uem.call(
                "POST",
                contract.GATEKEEPERS_PATH,
                {"gatekeeper_id": "gk9", "push_url": "http://127.0.0.1:9/x"},
            )
            _, before = await uem.call("GET", contract.RECORDS_PATH)
        async with running_uem(lab={}, state_dir=tmp_path) as uem:
            _, after = await uem.call("GET", contract.RECORDS_PATH)
            assert after == before
            _, d1 = await uem.call("GET", "/api/v1/eas/devices/bob/D1", headers=ADMIN)
            assert d1["state"] == "WIPE"
            assert d1["override"]["note"] == "stolen"
            _, users = await uem.call("GET", "/api/v1/admin/users", headers=ADMIN)
            assert "dave" in [u["name"] for u in users["users"]]
            _, gks = await uem.call("GET", "/api/v1/admin/gatekeepers", headers=ADMIN)
            assert [g["gatekeeper_id"] for g in gks["gatekeepers"]] == ["gk9"]
            by_email = await uem.report("alice@example.com", "ApplGOOD")
            assert by_email["user"] == "alice"
            assert by_email["registered"] is True
            fourth = await uem.report("bob", "D4")
            assert fourth["state"] == "BLOCK"
            assert fourth["record_version"] > before["version"]
    assert (tmp_path / "uem.sqlite3").exists()
