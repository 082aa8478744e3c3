"""Fault injection in the mock UEM over real loopback HTTP: admin API and every fault kind."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs
import pytest

from labfaults import (
    FAULT_HEADER,
    FaultControl,
    FaultPlan,
    FaultState,
    FaultSwitch,
    RequestFacts,
)
from scenarios.serving import StartedSite, start_site
from simclock import ManualClock
from uem_sim import contract
from uem_sim.app import make_app
from uem_sim.config import UemConfig
from uem_sim.faults import FAULTS, FAULTS_PATH

TOKEN = "fault-test-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
LAB = {"users": [{"name": "alice", "email": "alice@example.com"}], "uem": {}}
REPORTS = {"path_prefix": contract.REPORTS_PATH}


@attrs.define
class Uem:
    site: StartedSite
    http: aiohttp.ClientSession
    control: FaultControl

    async def call(
        self, method: str, path: str, json: Any = None, *, token: bool = True
    ) -> tuple[int, Any]:
        headers = ADMIN if token else {}
        async with self.http.request(
            method, self.site.url + path, json=json, headers=headers
        ) as response:
            return response.status, await response.json()

    async def faults(self, plan: Any) -> dict[str, Any]:
        status, body = await self.call("PUT", FAULTS_PATH, plan)
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    async def report(self, device_id: str = "ApplX1") -> aiohttp.ClientResponse:
        body = contract.ReportRequest(
            gatekeeper_id="gk1", user="alice", device_id=device_id, seen_at=1.0
        )
        async with self.http.post(
            self.site.url + contract.REPORTS_PATH, data=contract.to_json(body)
        ) as response:
            await response.read()
            return response


@contextlib.asynccontextmanager
async def running_uem(**session: Any) -> AsyncIterator[Uem]:
    # A virtual clock: faults wait in real time whatever the app's clock (docs/faults.md).
    app = make_app(UemConfig.from_mapping(LAB), clock=ManualClock(), admin_token=TOKEN)
    site = await start_site(app, shutdown_timeout=0.5)
    try:
        async with aiohttp.ClientSession(**session) as http:
            yield Uem(site, http, app[FAULTS])
    finally:
        await site.stop()


async def test_the_app_holds_a_fault_switch_a_scenario_step_can_drive() -> None:
    async with asyncio.timeout(10), running_uem() as uem:
        switch: FaultSwitch = uem.control
        switch.set_mapping({"down": True}, "scenario.yaml: steps[0]")
        assert switch.down
        status, shown = await uem.call("GET", FAULTS_PATH)
        assert (status, shown["plan"]) == (200, switch.describe()["plan"])
        switch.clear()
        assert (await uem.report()).status == 200


async def test_fault_admin_needs_the_admin_token() -> None:
    async with asyncio.timeout(10), running_uem() as uem:
        status, body = await uem.call("PUT", FAULTS_PATH, {"down": True}, token=False)
        assert status == 401
        assert "admin token" in body["error"]
        assert not uem.control.active


@pytest.mark.parametrize(
    ("plan", "field"),
    [
        ({"error_rate": {"rate": 1.5}}, "error_rate.rate"),
        ({"latency": {"fixd_s": 1}}, "latency.fixd_s"),
        ({"down": True, "scope": {"command": "Sync"}}, "scope.command"),
        ({"rules": [{"hang": True}, {"fail_after": {"n": "three"}}]}, "rules[1].fail_after.n"),
        ("down", ""),
    ],
)
async def test_invalid_plan_is_refused_naming_the_field(plan: Any, field: str) -> None:
    async with asyncio.timeout(10), running_uem() as uem:
        status, body = await uem.call("PUT", FAULTS_PATH, plan)
        assert status == 400
        assert body["error"].startswith(f"PUT {FAULTS_PATH}: {field}")
        assert "docs/faults.md" in body["hint"]
        assert not uem.control.active


async def test_put_get_delete_round_trip() -> None:
    plan = {"seed": 3, "scope": REPORTS, "error_rate": {"rate": 0.5, "status": 500}}
    async with asyncio.timeout(10), running_uem() as uem:
        shown = await uem.faults(plan)
        assert shown["active"] is True
        assert FaultPlan.from_mapping(shown["plan"]) == FaultPlan.from_mapping(plan)
        status, got = await uem.call("GET", FAULTS_PATH)
        assert (status, got["plan"]) == (200, shown["plan"])
        status, cleared = await uem.call("DELETE", FAULTS_PATH)
        assert (status, cleared["active"]) == (200, False)


async def test_latency_delays_at_least_the_fixed_time() -> None:
    async with asyncio.timeout(10), running_uem() as uem:
        await uem.faults({"scope": REPORTS, "latency": {"fixed_s": 0.25, "jitter_s": 0.05}})
        started = time.monotonic()
        response = await uem.report()
        assert response.status == 200
        assert time.monotonic() - started >= 0.25


async def test_seeded_error_rate_fails_the_reports_the_core_says() -> None:
    plan = {"seed": 42, "scope": REPORTS, "error_rate": {"rate": 0.5, "status": 502}}
    oracle = FaultState.start(FaultPlan.from_mapping(plan))
    facts = RequestFacts("POST", contract.REPORTS_PATH)
    expected = [oracle.decide(facts).status or 200 for _ in range(16)]
    async with asyncio.timeout(20), running_uem() as uem:
        await uem.faults(plan)
        got = []
        for i in range(16):
            response = await uem.report(f"ApplX{i}")
            got.append(response.status)
            if response.status == 502:
                assert response.headers[FAULT_HEADER].startswith("error_rate 0.5")
        assert got == expected
        assert {200, 502} <= set(got)
        # Out of scope: the admin API answers normally.
        status, _ = await uem.call("GET", "/api/v1/admin/users")
        assert status == 200


async def test_injected_error_has_the_uem_error_shape() -> None:
    async with asyncio.timeout(10), running_uem() as uem:
        await uem.faults({"scope": REPORTS, "error_rate": {"rate": 1, "status": 503}})
        async with uem.http.post(uem.site.url + contract.REPORTS_PATH, data=b"{}") as response:
            body = await response.json()
        assert response.status == 503
        assert body["error"].startswith("injected fault: error_rate 1")
        assert FAULTS_PATH in body["hint"]


async def test_fail_after_n_reports() -> None:
    async with asyncio.timeout(10), running_uem() as uem:
        await uem.faults({"scope": REPORTS, "fail_after": {"n": 2, "status": 500}})
        statuses = [(await uem.report(f"ApplF{i}")).status for i in range(4)]
        assert statuses == [200, 200, 500, 500]
        _, shown = await uem.call("GET", FAULTS_PATH)
        assert shown["stats"]["matched_per_rule"] == [4]


async def test_hang_holds_reports_until_the_fault_is_deleted() -> None:
    async with asyncio.timeout(10), running_uem() as uem:
        await uem.faults({"scope": REPORTS, "hang": {"max_s": 30}})
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await uem.report("ApplH1")
        held = asyncio.ensure_future(uem.report("ApplH2"))
        await asyncio.sleep(0.1)
        assert not held.done()
        status, _ = await uem.call("DELETE", FAULTS_PATH)
        assert status == 200
        assert (await held).status == 200


async def test_down_drops_connections_but_not_the_fault_admin_route() -> None:
    async with asyncio.timeout(10), running_uem() as uem:
        await uem.faults({"down": True})
        assert uem.control.down
        with pytest.raises(aiohttp.ClientConnectionError):
            await uem.report()
        with pytest.raises(aiohttp.ClientConnectionError):
            await uem.call("GET", "/api/v1/admin/users")
        status, shown = await uem.call("GET", FAULTS_PATH)
        assert status == 200
        assert shown["stats"]["injected"]["drop"] >= 2
        await uem.call("DELETE", FAULTS_PATH)
        assert (await uem.report()).status == 200
