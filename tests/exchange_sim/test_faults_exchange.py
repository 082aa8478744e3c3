"""Fault injection in the mock Exchange over real loopback HTTP: EAS-aware and generic faults."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from exchange_client import Lab, Phone
from hypothesis import given
from hypothesis import strategies as st

from activesync.answers import status_answer
from activesync.commands.folder_sync import FolderSyncRequest, FolderSyncResponse
from activesync.commands.provision import DeviceInformation, ProvisionRequest, ProvisionResponse
from activesync.errors import WbxmlError
from activesync.status import Status
from activesync.versions import ProtocolVersion
from activesync.wbxml import E, decode, encode
from exchange_sim.faults import EAS_KEYS, FAULTS_PATH, ExchangeFaults, corrupt_wbxml
from labfaults import FAULT_HEADER, FaultError, FaultSwitch

PROVISION_STATUS_142 = Status.DeviceNotProvisioned


async def set_faults(lab: Lab, plan: Any) -> dict[str, Any]:
    status, body = await lab.admin("PUT", FAULTS_PATH, json=plan)
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def initial_provision(version: str) -> bytes:
    v = ProtocolVersion.from_text(version)
    info = (
        DeviceInformation(model="TestPhone", os="TestOS 1") if v >= ProtocolVersion.V14_1 else None
    )
    return encode(ProvisionRequest.initial(v, info).to_element())


async def test_fault_admin_api_needs_the_token(lab: Lab) -> None:
    async with asyncio.timeout(10):
        async with lab.session.put(lab.url + FAULTS_PATH, json={"down": True}) as response:
            assert response.status == 401
        status, shown = await lab.admin("GET", FAULTS_PATH)
        assert (status, shown["active"]) == (200, False)


@pytest.mark.parametrize(
    ("plan", "field"),
    [
        ({}, "expected at least one fault"),
        ({"sync_status": {"status": 1}}, "sync_status.status"),
        ({"sync_status": {"count": 2}}, "sync_status.status"),
        ({"corrupt_wbxml": {"command": "SendMail"}}, "corrupt_wbxml.command"),
        ({"corrupt_wbxml": {"command": "FolderSync", "count": 0}}, "corrupt_wbxml.count"),
        ({"provision_449_on": 0}, "provision_449_on"),
        ({"provision_449_on": {"nth": 1, "always_449": "yes"}}, "provision_449_on.always_449"),
        ({"down": True, "scope": {"command": "Sinc"}}, "scope.command"),
        ({"provision_449_on": 1, "seed": -1}, "seed"),
    ],
)
async def test_invalid_plan_is_refused_naming_the_field(lab: Lab, plan: Any, field: str) -> None:
    async with asyncio.timeout(10):
        status, body = await lab.admin("PUT", FAULTS_PATH, json=plan)
        assert status == 400
        assert body["error"].startswith(f"PUT {FAULTS_PATH}: ")
        assert field in body["error"]


@pytest.mark.parametrize("version", ["12.1", "14.0", "14.1", "16.1"])
async def test_nth_provision_is_told_to_provision_again_per_version(lab: Lab, version: str) -> None:
    phone = lab.phone(version=version)
    expected = status_answer("Provision", PROVISION_STATUS_142, version)
    async with asyncio.timeout(10):
        await set_faults(lab, {"provision_449_on": 2})
        first = await phone.post("Provision", initial_provision(version))
        assert first.status == 200
        second = await phone.post("Provision", initial_provision(version))
        assert (second.status, second.body) == (expected.http_status, expected.body)
        assert "Provision answered" in second.headers[FAULT_HEADER]
        if ProtocolVersion.from_text(version) < ProtocolVersion.V14_0:
            assert (second.status, second.body) == (449, b"")
        else:
            response = ProvisionResponse.from_element(decode(second.body))
            assert response.status == PROVISION_STATUS_142
        # One-shot: the third goes through, and the phone can provision.
        assert await phone.provision() > 0
        _, shown = await lab.admin("GET", FAULTS_PATH)
        assert shown["eas"]["stats"]["provisions_seen"] == 4


async def test_always_449_sends_449_to_a_14_1_client(lab: Lab) -> None:
    phone = lab.phone(version="14.1")
    async with asyncio.timeout(10):
        await set_faults(lab, {"provision_449_on": {"nth": 1, "always_449": True}})
        reply = await phone.post("Provision", initial_provision("14.1"))
        assert (reply.status, reply.body) == (449, b"")


@pytest.mark.parametrize(("status", "version"), [(12, "14.1"), (110, "14.1"), (110, "12.1")])
async def test_sync_status_answers_the_next_k_syncs(lab: Lab, status: int, version: str) -> None:
    phone = lab.phone(version=version)
    expected = status_answer("Sync", status, version)
    async with asyncio.timeout(10):
        await phone.provision()
        # An empty Sync with nothing remembered is normally Status 13 (MS-ASCMD 2.2.3.177.17).
        normal = await phone.post("Sync")
        await set_faults(lab, {"sync_status": {"status": status, "count": 2}})
        for _ in range(2):
            reply = await phone.post("Sync")
            assert (reply.status, reply.body) == (expected.http_status, expected.body)
        after = await phone.post("Sync")
        assert (after.status, after.body) == (normal.status, normal.body)


async def test_corrupt_wbxml_breaks_the_clients_decoder_once(lab: Lab) -> None:
    phone = lab.phone()
    request = FolderSyncRequest("0").to_element()
    async with asyncio.timeout(10):
        await phone.provision()
        await set_faults(lab, {"corrupt_wbxml": {"command": "FolderSync", "count": 1}})
        broken = await phone.post("FolderSync", request)
        assert broken.status == 200
        assert broken.headers[FAULT_HEADER] == "FolderSync: corrupted WBXML token"
        with pytest.raises(WbxmlError, match="unknown WBXML token"):
            decode(broken.body)
        whole = FolderSyncResponse.from_element(await phone.command("FolderSync", request))
        assert whole.status == 1


def test_corrupt_wbxml_keeps_length_and_changes_one_byte() -> None:
    body = encode(E("FolderHierarchy", "FolderSync", E("FolderHierarchy", "Status", text=1)))
    corrupted = corrupt_wbxml(body)
    assert corrupted is not None
    assert len(corrupted) == len(body)
    assert sum(a != b for a, b in zip(body, corrupted, strict=True)) == 1
    with pytest.raises(WbxmlError):
        decode(corrupted)
    assert corrupt_wbxml(b"") is None


async def test_error_rate_scoped_to_sync_spares_other_commands(lab: Lab) -> None:
    phone = lab.phone()
    async with asyncio.timeout(10):
        await phone.provision()
        await set_faults(lab, {"scope": {"command": "Sync"}, "error_rate": {"rate": 1}})
        reply = await phone.post("Sync")
        assert reply.status == 503
        assert reply.body.startswith(b"injected fault: error_rate 1")
        folders = await phone.post("FolderSync", FolderSyncRequest("0").to_element())
        assert folders.status == 200


async def test_latency_runs_in_real_time_on_a_manual_clock(lab: Lab) -> None:
    phone = lab.phone()
    async with asyncio.timeout(10):
        await phone.provision()
        await set_faults(lab, {"scope": {"command": "FolderSync"}, "latency": 0.2})
        started, before = time.monotonic(), lab.clock.now()
        reply = await phone.post("FolderSync", FolderSyncRequest("0").to_element())
        assert reply.status == 200
        assert time.monotonic() - started >= 0.2
        assert lab.clock.now() == before


async def test_hang_on_the_device_endpoint_until_delete(lab: Lab) -> None:
    phone = lab.phone()
    async with asyncio.timeout(10):
        await phone.provision()
        await set_faults(lab, {"hang": True, "scope": {"command": "FolderSync"}})
        held = asyncio.ensure_future(phone.post("FolderSync", FolderSyncRequest("0").to_element()))
        await asyncio.sleep(0.2)
        assert not held.done()
        status, _ = await lab.admin("DELETE", FAULTS_PATH)
        assert status == 200
        assert (await held).status == 200


async def test_down_drops_device_connections_while_admin_faults_answers(lab: Lab) -> None:
    phone = lab.phone()
    async with asyncio.timeout(10):
        await set_faults(lab, {"down": True})
        with pytest.raises(aiohttp.ClientConnectionError):
            await phone.post("Provision", initial_provision("14.1"))
        status, shown = await lab.admin("GET", FAULTS_PATH)
        assert status == 200
        assert shown["stats"]["injected"]["drop"] >= 1
        await lab.admin("DELETE", FAULTS_PATH)
        assert await phone.provision() > 0


async def test_generic_and_eas_faults_in_one_plan(lab: Lab) -> None:
    phone: Phone = lab.phone(version="12.1")
    async with asyncio.timeout(10):
        shown = await set_faults(
            lab,
            {
                "rules": [{"scope": {"command": "Ping"}, "fail_after": 0}],
                "provision_449_on": 1,
            },
        )
        assert shown["plan"]["rules"][0]["fail_after"] == {"n": 0, "status": 503}
        assert shown["plan"]["provision_449_on"] == {"nth": 1, "always_449": False}
        # The GET view's plan is accepted back as it is.
        again = await set_faults(lab, shown["plan"])
        assert again["plan"] == shown["plan"]
        reply = await phone.post("Provision", initial_provision("12.1"))
        assert reply.status == 449
        _, shown = await lab.admin("GET", FAULTS_PATH)
        assert shown["eas"]["stats"]["provisions_seen"] == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
plan_keys = st.sampled_from(
    [*sorted(EAS_KEYS), "seed", "down", "error_rate", "rules", "scope", "command", "count", "nth"]
)


@given(st.one_of(json_values, st.dictionaries(plan_keys, json_values, max_size=4)))
def test_any_mapping_reads_or_raises_fault_error_only(mapping: object) -> None:
    faults = ExchangeFaults()
    switch: FaultSwitch = faults  # what the scenario runner types against
    try:
        faults.set_mapping(mapping)
    except FaultError:
        assert not switch.active
        return
    assert switch.active
