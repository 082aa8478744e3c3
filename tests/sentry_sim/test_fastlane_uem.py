"""The fast lane in uem policy mode: the key check holds, keys are swapped, demands handed over.

In front of the mock Exchange with ``provisioning_required``, a phone provisions with the
gatekeeper (full path), then syncs: the hot path forwards with the upstream's key in place of
the gatekeeper's; the upstream's first demand is handed to the full path, which provisions
with the upstream and replays; a wrong key never takes the hot path.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from activesync.commands.folder_sync import FolderSyncRequest
from activesync.commands.provision import ProvisionRequest
from activesync.versions import ProtocolVersion
from activesync.wbxml import decode, encode
from exchange_sim.app import STATE
from exchange_sim.app import make_app as make_exchange_app
from exchange_sim.config import ExchangeConfig
from scenarios.cli_sentry import RunningSentry
from scenarios.serving import StartedSite, start_site
from simclock import ManualClock
from tests.sentry_sim.fakes import StartSentry, headers, query
from tests.sentry_sim.test_uem_policy_mode import provision

LAB = {
    "users": [{"name": "alice", "email": "alice@example.com", "password": "pw"}],
    "exchange": {"provisioning_required": True, "seed_messages_per_mailbox": 2, "seed": 3},
}
AUTH = {"Authorization": "Basic YWxpY2U6cHc="}  # alice:pw
FOLDER_SYNC = encode(FolderSyncRequest("0").to_element())


@pytest.fixture
async def exchange() -> AsyncIterator[StartedSite]:
    app = make_exchange_app(ExchangeConfig.from_mapping(LAB), clock=ManualClock(1_000.0))
    site = await start_site(app)
    yield site
    await site.stop()


async def provisioned_key(session: aiohttp.ClientSession, url: str) -> int:
    v = ProtocolVersion.V14_1
    first = await provision(session, url, ProvisionRequest.initial(v), "14.1", **AUTH)
    assert first.policy_key_value is not None
    ack = ProvisionRequest.acknowledgement(v, first.policy_key_value)
    second = await provision(session, url, ack, "14.1", **AUTH)
    assert second.policy_key_value is not None
    return second.policy_key_value


async def folder_sync(session: aiohttp.ClientSession, url: str, key: int) -> tuple[int, bytes]:
    async with session.post(
        url + query(cmd="FolderSync"),
        data=FOLDER_SYNC,
        headers=headers("14.1", **AUTH, **{"X-MS-PolicyKey": str(key)}),
    ) as r:
        return r.status, await r.read()


async def test_hot_path_swaps_keys_and_hands_the_upstreams_demand_to_the_full_path(
    start_sentry: StartSentry, exchange: StartedSite
) -> None:
    running: RunningSentry = await start_sentry(
        upstream_url=exchange.url, activesync_policy_mode="uem"
    )
    assert running.lane is not None
    async with asyncio.timeout(15), aiohttp.ClientSession() as session:
        key = await provisioned_key(session, running.url)
        status, body = await folder_sync(session, running.url, key)
        assert status == 200
        assert decode(body).child_text("Status") == "1"
        handed_over = running.lane.forwarded
        status, body = await folder_sync(session, running.url, key)
        assert status == 200
        assert decode(body).child_text("Status") == "1"
    # The first FolderSync met the upstream's demand and was answered by the full path's
    # replay; the second took the hot path with the upstream's key.
    assert handed_over == 0
    assert running.lane.forwarded == 1
    upstream_key = running.sentry.upstream_keys.get("alice/dev1")
    assert upstream_key is not None
    assert upstream_key != key
    kinds = [e.kind for e in running.sentry.bus.recent(200)]
    assert kinds.count("upstream_provisioned") == 1
    machine = exchange.runner.app[STATE].provisioning.machine("alice", "DEV1")
    assert machine.final_key == upstream_key


async def test_wrong_or_missing_key_never_takes_the_hot_path(
    start_sentry: StartSentry, exchange: StartedSite
) -> None:
    running: RunningSentry = await start_sentry(
        upstream_url=exchange.url, activesync_policy_mode="uem"
    )
    assert running.lane is not None
    async with asyncio.timeout(15), aiohttp.ClientSession() as session:
        key = await provisioned_key(session, running.url)
        status, body = await folder_sync(session, running.url, key + 1)
        assert status == 200
        assert decode(body).child_text("Status") == "144"  # InvalidPolicyKey, from the gatekeeper
        # Not byte for byte the expected key: the full path judges it (11 digits: no key, 142).
        async with session.post(
            running.url + query(cmd="FolderSync"),
            data=FOLDER_SYNC,
            headers=headers("14.1", **AUTH, **{"X-MS-PolicyKey": f"{key:011d}"}),
        ) as r:
            assert r.status == 200
            assert decode(await r.read()).child_text("Status") == "142"
    assert running.lane.forwarded == 0
