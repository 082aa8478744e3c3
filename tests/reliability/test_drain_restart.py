"""The gatekeeper restarted under load, as real processes: SIGTERM drains and flushes, SIGKILL
loses nothing that was flushed, and the persisted outbox delivers an unanswered report.

``sentry-sim exchange``, ``sentry-sim uem`` and ``sentry-sim sentry --state-dir`` run as
subprocesses (tests/reliability/conftest.py). Phones connect through the gatekeeper with the
device simulator; the load in flight is raw FolderSyncs, counted request by request. No timing
is asserted: every wait is a bounded poll for a state, with generous limits.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from device_sim.client import DeviceClient, FolderSync, Options, Provision, Sync
from device_sim.shell import AiohttpTransport, DeviceRunner
from device_sim.wire import DeviceIdentity
from simclock import SystemClock
from tests.reliability.processes import EAS_PATH, Actor, Stack, basic, folder_sync_body

#: Lab users and devices of scenarios/labs/default.yaml, with the state the UEM decides.
PHONES = {
    ("alice", "ALICEIPHONE01", "iPhone"): "allowed",
    ("dave", "DAVEIPHONE01", "iPhone"): "allowed",
    ("dave", "DAVEIPAD01", "iPad"): "allowed",
    ("bob", "BOBPIXEL01", "Android"): "blocked",  # compromised
    ("carol", "CAROLPHONE01", "iPhone"): "blocked",  # unregistered: auto-blocked
}
ALLOWED = [key for key, state in PHONES.items() if state == "allowed"]
#: Requests held in flight (at Exchange) when the signal arrives.
IN_FLIGHT = 9


async def connect(stack: Stack, sentry: Actor, user: str, device_id: str, kind: str) -> int:
    """A phone's first connection; returns its policy key (0 if it was refused one)."""
    identity = DeviceIdentity(
        user=user, password=f"{user}-pass", device_id=device_id, device_type=kind
    )
    client = DeviceClient(identity)
    runner = DeviceRunner(
        client,
        AiohttpTransport(stack.session, sentry.ready["sentry_url"]),
        SystemClock(),
        request_timeout=20.0,
    )
    await runner.run_script((Options(), Provision(), FolderSync(), Sync()))
    return client.policy_key


async def folder_sync(
    stack: Stack, sentry: Actor, user: str, device_id: str, kind: str, key: int
) -> int:
    """One FolderSync on a fresh connection; the HTTP status, or raises the client error."""
    url = (
        f"{sentry.ready['sentry_url']}{EAS_PATH}?Cmd=FolderSync&User={user}"
        f"&DeviceId={device_id}&DeviceType={kind}"
    )
    headers = {
        "Authorization": basic(user, f"{user}-pass"),
        "MS-ASProtocolVersion": "16.1",
        "Content-Type": "application/vnd.ms-sync.wbxml",
        "X-MS-PolicyKey": str(key),
    }
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(url, data=folder_sync_body(), headers=headers) as response,
    ):
        await response.read()
        return response.status


async def poll(what: str, probe: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    """Wait until ``probe()`` is true (bounded; the message says what never happened)."""
    try:
        async with asyncio.timeout(within):
            # Another process changes the state: polling over its admin API is the honest wait.
            while not await probe():  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"within {within:g} s: {what}") from None


async def record(stack: Stack, sentry: Actor, user: str, device_id: str) -> dict[str, Any] | None:
    status, data = await stack.admin(
        "GET", f"{sentry.ready['sentry_admin_url']}/api/devices/{user}/{device_id}"
    )
    return data if status == 200 else None


async def states(stack: Stack, sentry: Actor) -> dict[tuple[str, str], str | None]:
    out: dict[tuple[str, str], str | None] = {}
    for user, device_id, _ in PHONES:
        found = await record(stack, sentry, user, device_id)
        out[(user, device_id)] = None if found is None else found["state"]
    return out


async def events(stack: Stack, sentry: Actor, kind: str) -> list[dict[str, Any]]:
    status, data = await stack.admin(
        "GET", f"{sentry.ready['sentry_admin_url']}/api/events?limit=1000"
    )
    assert status == 200, data
    items = data["events"] if isinstance(data, dict) else data
    return [e for e in items if e.get("event") == kind]


async def connect_all(stack: Stack, sentry: Actor) -> dict[tuple[str, str, str], int]:
    keys = {}
    for user, device_id, kind in PHONES:
        keys[(user, device_id, kind)] = await connect(stack, sentry, user, device_id, kind)
    expected = {(u, d): s for (u, d, _), s in PHONES.items()}
    seen: list[object] = []

    async def decided() -> bool:
        seen[:] = [await states(stack, sentry)]
        return seen[0] == expected

    try:
        await poll(f"every phone decided as {expected}", decided)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen {seen}") from None
    return keys


async def test_sigterm_answers_every_request_in_flight_exits_0_and_flushes_the_list(
    stack: Stack,
) -> None:
    async with asyncio.timeout(90):
        sentry = await stack.start_sentry()
        keys = await connect_all(stack, sentry)
        # Steady traffic first: every allowed phone syncs its folders a few times.
        steady = [
            folder_sync(stack, sentry, *phone, keys[phone]) for phone in ALLOWED for _ in range(3)
        ]
        assert set(await asyncio.gather(*steady)) == {200}
        # Then hold IN_FLIGHT FolderSyncs at Exchange, and stop the gatekeeper meanwhile.
        await stack.exchange_faults(
            "PUT", {"scope": {"command": "FolderSync"}, "latency": {"fixed_s": 2.0}}
        )
        held = [
            asyncio.create_task(folder_sync(stack, sentry, *phone, keys[phone]))
            for phone in (ALLOWED * IN_FLIGHT)[:IN_FLIGHT]
        ]

        async def all_held() -> bool:
            view = await stack.exchange_faults("GET")
            return bool(view["stats"]["matched_per_rule"][0] >= IN_FLIGHT)

        await poll(f"{IN_FLIGHT} FolderSyncs held at Exchange", all_held)
        sentry.process.send_signal(signal.SIGTERM)
        answers = await asyncio.gather(*held, return_exceptions=True)
        assert answers == [200] * IN_FLIGHT, f"cut off or refused: {answers}"
        assert await sentry.wait_exit() == 0, sentry.output()
        assert "Traceback" not in sentry.output()
        await stack.exchange_faults("DELETE")

        # The UEM goes away: the restarted gatekeeper can only know what it flushed.
        assert await stack.uem.terminate() == 0
        again = await stack.start_sentry()
        loaded = await events(stack, again, "device_list_loaded")
        assert loaded
        assert loaded[-1]["records"] == len(PHONES)
        assert await states(stack, again) == {(u, d): s for (u, d, _), s in PHONES.items()}
        assert await events(stack, again, "report_sent") == []
        # The decisions are served from the reloaded list: an allowed phone syncs.
        alice = ALLOWED[0]
        assert await folder_sync(stack, again, *alice, keys[alice]) == 200
        assert await again.terminate() == 0


async def test_sigkill_reloads_the_last_flush_and_sends_the_unanswered_report(
    stack: Stack,
) -> None:
    async with asyncio.timeout(90):
        sentry = await stack.start_sentry()
        keys = await connect_all(stack, sentry)

        async def flushed() -> bool:
            persisted = await events(stack, sentry, "device_list_persisted")
            return any(e["records"] == len(PHONES) for e in persisted)

        await poll("a flush of every decided record", flushed)
        # Erin's phone first connects while the UEM holds every report: its report stays in
        # the outbox, unanswered, when the gatekeeper is killed.
        await stack.uem_faults(
            "PUT", {"scope": {"path_prefix": "/api/v1/sentry/reports"}, "hang": {"max_s": 60}}
        )
        erin = asyncio.create_task(connect(stack, sentry, "erin", "ERINIPHONE01", "iPhone"))

        async def queued() -> bool:
            status, stats = await stack.admin(
                "GET", f"{sentry.ready['sentry_admin_url']}/api/stats"
            )
            if status != 200 or int(stats["outbox_pending"]) < 1:
                return False
            # Its first attempt is held at the UEM: the outbox row was written before it.
            view = await stack.uem_faults("GET")
            return bool(view["stats"]["matched_per_rule"][0] >= 1)

        await poll("erin's report in the outbox and its attempt held at the UEM", queued)
        sentry.process.send_signal(signal.SIGKILL)
        assert await sentry.wait_exit() == -signal.SIGKILL
        await asyncio.gather(erin, return_exceptions=True)  # its connection died with it
        await stack.uem_faults("DELETE")
        uem_view = stack.uem.ready["uem_admin_url"] + "/api/v1/eas/devices/erin/ERINIPHONE01"
        status, _ = await stack.admin("GET", uem_view)
        assert status == 404, "the UEM must not have the report before the restart"

        again = await stack.start_sentry()
        loaded = await events(stack, again, "device_list_loaded")
        assert loaded
        assert loaded[-1]["records"] == len(PHONES)
        assert loaded[-1]["pending_reports"] >= 1

        async def reported() -> bool:
            status, view = await stack.admin("GET", uem_view)
            return status == 200 and view.get("state") == "ALLOW"

        await poll("erin's report delivered to the UEM after the restart", reported)

        async def erin_allowed() -> bool:
            found = await record(stack, again, "erin", "ERINIPHONE01")
            return found is not None and found["state"] == "allowed"

        await poll("the gatekeeper caching the UEM's answer for erin", erin_allowed)
        reloaded = await states(stack, again)
        assert reloaded == {(u, d): s for (u, d, _), s in PHONES.items()}
        alice = ALLOWED[0]
        assert await folder_sync(stack, again, *alice, keys[alice]) == 200
        assert await again.terminate() == 0
