"""A report's own decision is not pushed back to the gatekeeper that reported it; other
gatekeepers get it, and other records the report changed reach every gatekeeper."""

from __future__ import annotations

import asyncio

import aiohttp

from scenarios.serving import start_site
from simclock import ManualClock
from tests.uem_sim.fakes import push_receiver
from uem_sim import contract
from uem_sim.app import make_app
from uem_sim.config import UemConfig
from uem_sim.contract import AccessState, DecisionMessage, Reason, ReportRequest
from uem_sim.model import DAY

NOW = 1_767_225_600.0
LAB = {
    "users": [{"name": "alice"}],
    "uem": {
        # No periodic compliance check within the test: only the report re-decides records.
        "compliance_check_interval_s": 30 * 86_400,
        "security_policy": {"max_days_out_of_contact": 7},
        "devices": [{"device_id": "ApplGOOD", "user": "alice", "os_version": "17.2"}],
    },
}


async def test_the_reporter_gets_its_decision_in_the_answer_and_others_by_push() -> None:
    clock = ManualClock(NOW)
    app = make_app(UemConfig.from_mapping(LAB), clock=clock, admin_token="t")
    async with (
        asyncio.timeout(10),
        push_receiver() as (gk1, url1),
        push_receiver() as (gk2, url2),
        aiohttp.ClientSession() as http,
    ):
        site = await start_site(app)
        try:

            async def post(path: str, message: contract.Message) -> str:
                async with http.post(site.url + path, data=contract.to_json(message)) as answer:
                    assert answer.status == 200, await answer.text()
                    return await answer.text()

            for gk_id, url in (("gk1", url1), ("gk2", url2)):
                await post(contract.GATEKEEPERS_PATH, contract.RegisterGatekeeper(gk_id, url))

            async def report(device_id: str) -> DecisionMessage:
                request = ReportRequest(
                    gatekeeper_id="gk1", user="alice", device_id=device_id, seen_at=clock.now()
                )
                text = await post(contract.REPORTS_PATH, request)
                return contract.from_json(DecisionMessage, text)

            first = await report("ApplGOOD")
            assert first.state is AccessState.ALLOW
            await asyncio.wait_for(gk2.arrived.wait(), 2.0)
            assert [r.device_id for r in gk2.records()] == ["ApplGOOD"]

            # Eight days on, gk1 reports a new device of the same mailbox: the report also
            # re-decides ApplGOOD (out of contact), which gk1 must hear about by push.
            gk2.arrived.clear()
            await clock.advance(8 * DAY)
            second = await report("D1")
            assert second.state is AccessState.ALLOW
            await asyncio.wait_for(gk1.arrived.wait(), 2.0)
            await asyncio.wait_for(gk2.arrived.wait(), 2.0)
            assert [(r.device_id, r.reasons) for r in gk1.records()] == [
                ("ApplGOOD", Reason.DEVICE_OUT_OF_CONTACT)
            ]
            assert {r.device_id for r in gk2.records()} == {"ApplGOOD", "D1"}
            # gk1's batch covers the skipped first report too: it sees no gap.
            assert gk1.received[0].since == 0
        finally:
            await site.stop()
