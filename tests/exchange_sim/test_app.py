"""The mock Exchange over real loopback sockets: transport, auth, provisioning, every command."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from exchange_client import LAB, Lab, Phone, basic, start_lab

from activesync.commands.airsyncbase import BodyPreference, BodyType
from activesync.commands.email_item import EmailItem
from activesync.commands.folder_sync import FolderSyncRequest, FolderSyncResponse
from activesync.commands.get_item_estimate import (
    EstimateCollection,
    GetItemEstimateRequest,
    GetItemEstimateResponse,
)
from activesync.commands.item_operations import (
    FetchOptions,
    FetchRequest,
    FetchResult,
    ItemOperationsRequest,
    ItemOperationsResponse,
)
from activesync.commands.ping import PingFolder, PingRequest, PingResponse
from activesync.commands.provision import ProvisionRequest, ProvisionResponse
from activesync.commands.send_mail import SendMailRequest
from activesync.commands.settings import (
    DeviceInformation,
    SettingsRequest,
    SettingsResponse,
)
from activesync.commands.sync import (
    ClientCommand,
    ItemChange,
    ServerAdd,
    SyncCollectionRequest,
    SyncOptions,
    SyncRequest,
    SyncResponse,
)
from activesync.versions import ProtocolVersion
from activesync.wbxml import E, Element
from exchange_sim.mailbox import INBOX_ID, SENT_ITEMS_ID

ENDPOINT = "/Microsoft-Server-ActiveSync"


async def folder_sync(phone: Phone, key: str = "0") -> FolderSyncResponse:
    element = await phone.command("FolderSync", FolderSyncRequest(key).to_element())
    return FolderSyncResponse.from_element(element)


async def sync(
    phone: Phone,
    key: str,
    window: int | None = None,
    *,
    options: tuple[SyncOptions, ...] = (),
    commands: tuple[ClientCommand, ...] | None = None,
) -> SyncResponse:
    collection = SyncCollectionRequest(
        sync_key=key,
        collection_id=INBOX_ID,
        window_size=window,
        options=options,
        commands=commands,
    )
    element = await phone.command("Sync", SyncRequest(collections=(collection,)).to_element())
    return SyncResponse.from_element(element)


async def primed_key(phone: Phone) -> str:
    response = await sync(phone, "0")
    assert response.collections is not None
    return response.collections[0].sync_key


async def inbox_count(lab: Lab, user: str) -> int:
    status, summary = await lab.admin("GET", f"/admin/mailboxes/{user}")
    assert status == 200
    return int(next(f["items"] for f in summary["folders"] if f["id"] == INBOX_ID))


# --- transport and auth ------------------------------------------------------------------------


async def test_options_advertises_versions_and_commands(lab: Lab) -> None:
    async with asyncio.timeout(5):
        headers = {"Authorization": basic("alice", "alice-pass")}
        async with lab.session.options(f"{lab.url}{ENDPOINT}", headers=headers) as response:
            assert response.status == 200
            assert response.headers["MS-ASProtocolVersions"] == "2.5,12.0,12.1,14.0,14.1,16.0,16.1"
            commands = response.headers["MS-ASProtocolCommands"].split(",")
            assert {"Sync", "FolderSync", "Provision", "Ping", "ItemOperations"} <= set(commands)
            assert response.headers["Allow"] == "OPTIONS,POST"
            assert "MS-Server-ActiveSync" in response.headers


async def test_options_without_credentials_gets_401_with_basic_challenge(lab: Lab) -> None:
    async with asyncio.timeout(5):
        async with lab.session.options(f"{lab.url}{ENDPOINT}") as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith('Basic realm="')


@pytest.mark.parametrize("password", ["wrong", ""])
async def test_wrong_password_gets_401(lab: Lab, password: str) -> None:
    async with asyncio.timeout(5):
        reply = await lab.phone(password=password).post(
            "FolderSync", FolderSyncRequest("0").to_element()
        )
        assert reply.status == 401
        assert "WWW-Authenticate" in reply.headers
        assert b"unknown user or wrong password" in reply.body


async def test_domain_backslash_user_and_email_login_both_authenticate(lab: Lab) -> None:
    async with asyncio.timeout(5):
        for login in ("CORP\\alice", "alice@example.com"):
            phone = lab.phone(user=login, device_id="DOMAINTEST")
            await phone.provision()
            assert (await folder_sync(phone)).status == 1


async def test_query_naming_another_user_is_refused_with_403(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone(user="bob", login="alice", password="alice-pass")
        reply = await phone.post("FolderSync", FolderSyncRequest("0").to_element())
        assert reply.status == 403
        assert b"credentials are for alice" in reply.body


async def test_bad_query_gets_400_with_a_reason(lab: Lab) -> None:
    async with asyncio.timeout(5):
        headers = {"Authorization": basic("alice", "alice-pass")}
        url = f"{lab.url}{ENDPOINT}?Cmd=FolderSync&User=alice&DeviceType=SP"
        async with lab.session.post(url, headers=headers, data=b"x") as response:
            assert response.status == 400
            text = await response.text()
            assert "DeviceId" in text
            assert response.headers["X-SentrySim-Error"]


async def test_unknown_command_is_not_supported(lab: Lab) -> None:
    async with asyncio.timeout(5):
        old = lab.phone(version="12.1", device_id="OLD1")
        await old.provision()
        reply = await old.post("Search", E("Search", "Search"))
        assert reply.status == 501
        new = lab.phone(version="14.1", device_id="NEW1")
        await new.provision()
        element = (await new.post("Search", E("Search", "Search"))).element()
        assert element.child_text("Status") == "137"


async def test_malformed_wbxml_below_14_gets_400_with_a_reason(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone(version="12.1")
        await phone.provision()
        reply = await phone.post("FolderSync", b"\x03\x01\x6a\x00\x00\x07\x56\x52\x03")
        assert reply.status == 400
        assert b"WBXML" in reply.body or b"wbxml" in reply.body.lower()


async def test_malformed_wbxml_from_14_gets_status_102_in_the_body(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone(version="14.1")
        await phone.provision()
        reply = await phone.post("FolderSync", b"\x03\x01\x6a\x00\x00\x07\x56\x52\x03")
        element = reply.element()
        assert (element.page, element.tag, element.child_text("Status")) == (
            "FolderHierarchy",
            "FolderSync",
            "102",
        )
        assert reply.headers["X-SentrySim-Error"]


async def test_missing_body_is_a_clear_error(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone(version="12.1")
        await phone.provision()
        reply = await phone.post("FolderSync", None)
        assert reply.status == 400
        assert b"needs a WBXML body" in reply.body


async def test_wrong_root_element_gets_status_103_from_14(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone(version="16.1")
        await phone.provision()
        element = (await phone.post("FolderSync", E("AirSync", "Sync"))).element()
        assert element.child_text("Status") == "103"


async def test_oversized_body_gets_413() -> None:
    lab_config = {**LAB, "exchange": {"max_request_bytes": 2048}}
    site, _clock = await start_lab(lab_config)
    try:
        async with asyncio.timeout(5), aiohttp.ClientSession() as session:
            phone = Phone(session, site.url, version="14.1")
            await phone.provision()
            reply = await phone.post("FolderSync", b"\x00" * 4096)
            assert reply.status == 413
            assert b"exceeds the limit of 2048" in reply.body
    finally:
        await site.stop()


# --- provisioning ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["12.1", "14.0", "14.1", "16.1"])
async def test_two_phase_provision_then_commands_pass(lab: Lab, version: str) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone(version=version, device_id=f"P{version.replace('.', '')}")
        final = await phone.provision()
        assert final != 0
        assert (await folder_sync(phone)).status == 1


async def test_initial_provision_response_carries_the_policy_and_a_temporary_key(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone(version="14.0")
        element = await phone.command(
            "Provision", ProvisionRequest.initial(ProtocolVersion.V14_0).to_element()
        )
        response = ProvisionResponse.from_element(element)
        assert (response.status, response.policy_status) == (1, 1)
        assert response.doc is not None
        assert response.doc["DevicePasswordEnabled"] is True
        assert response.policy_key_value not in (None, 0)


@pytest.mark.parametrize("version", ["12.1", "14.0"])
async def test_unprovisioned_device_is_told_per_version(lab: Lab, version: str) -> None:
    async with asyncio.timeout(5):
        reply = await lab.phone(version=version).post(
            "FolderSync", FolderSyncRequest("0").to_element()
        )
        if version == "12.1":
            assert reply.status == 449
            assert reply.body == b""
        else:
            element = reply.element()
            assert (element.tag, element.child_text("Status")) == ("FolderSync", "142")


@pytest.mark.parametrize("version", ["12.1", "14.1"])
async def test_wrong_policy_key_is_told_per_version(lab: Lab, version: str) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone(version=version)
        final = await phone.provision()
        phone.policy_key = final ^ 0x5A5A
        reply = await phone.post("FolderSync", FolderSyncRequest("0").to_element())
        if version == "12.1":
            assert reply.status == 449
        else:
            assert reply.element().child_text("Status") == "144"


async def test_acknowledging_the_wrong_key_gets_policy_status_5(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone(version="14.0")
        first = ProvisionResponse.from_element(
            await phone.command(
                "Provision", ProvisionRequest.initial(ProtocolVersion.V14_0).to_element()
            )
        )
        assert first.policy_key_value is not None
        wrong = (first.policy_key_value + 1) % 2**32 or 1
        ack = ProvisionRequest.acknowledgement(ProtocolVersion.V14_0, wrong)
        response = ProvisionResponse.from_element(
            await phone.command("Provision", ack.to_element())
        )
        assert response.policy_status == 5
        assert response.policy_key is None


async def test_14_1_provision_without_device_information_gets_165(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone(version="14.1")
        element = await phone.command(
            "Provision", ProvisionRequest.initial(ProtocolVersion.V14_1).to_element()
        )
        assert ProvisionResponse.from_element(element).status == 165


async def test_ping_needs_no_policy_key(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone(version="14.1")
        element = await phone.command("Ping", PingRequest(heartbeat_interval=5).to_element())
        # Not 142: Ping is exempt (MS-ASPROV 3.1.5.1); it fails on its own terms (no folders).
        assert PingResponse.from_element(element).status == 3


# --- FolderSync, Sync, GetItemEstimate, ItemOperations -----------------------------------------


async def test_folder_sync_lists_the_hierarchy_then_no_changes(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone()
        await phone.provision()
        first = await folder_sync(phone)
        assert first.changes is not None
        names = {a.display_name for a in first.changes.adds}
        assert {"Inbox", "Sent Items", "Deleted Items", "Drafts", "Outbox"} <= names
        assert first.sync_key is not None
        again = await folder_sync(phone, first.sync_key)
        assert again.changes is not None
        assert again.changes.count == 0
        assert (await folder_sync(phone, "bogus")).status == 9


async def test_sync_initial_then_windowed_with_more_available(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone()
        await phone.provision()
        key = await primed_key(phone)
        counts, more = [], []
        for _ in range(3):
            response = await sync(phone, key, window=2)
            assert response.collections is not None
            (collection,) = response.collections
            assert collection.status == 1
            counts.append(len(collection.commands or ()))
            more.append(collection.more_available)
            key = collection.sync_key
        assert counts == [2, 2, 1]
        assert more == [True, True, False]


async def test_sync_sends_email_properties_and_the_asked_body(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone()
        await phone.provision()
        key = await primed_key(phone)
        options = SyncOptions(body_preferences=(BodyPreference(BodyType.PLAIN, 10),))
        response = await sync(phone, key, window=1, options=(options,))
        assert response.collections is not None
        (add,) = response.collections[0].commands or ()
        assert isinstance(add, ServerAdd)
        assert isinstance(add.application_data, Element)
        item = EmailItem.from_application_data(add.application_data)
        assert item.subject
        assert item.to == "alice@example.com"
        assert item.body is not None
        assert item.body.truncated is True
        assert item.body.data is not None
        assert len(item.body.data.encode()) <= 10


async def test_stale_sync_key_gets_status_3(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone()
        await phone.provision()
        response = await sync(phone, "9999")
        assert response.collections is not None
        assert response.collections[0].status == 3


async def test_client_change_marks_read_and_other_device_sees_it(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone(device_id="PHONEA")
        tablet = lab.phone(device_id="TABLETB")
        await phone.provision()
        await tablet.provision()
        key_a = (await sync(phone, await primed_key(phone))).collections
        key_b = (await sync(tablet, await primed_key(tablet))).collections
        assert key_a is not None
        assert key_b is not None
        first = (key_a[0].commands or ())[0]
        change = ItemChange(
            server_id=first.server_id,
            application_data=E("AirSync", "ApplicationData", E("Email", "Read", text=1)),
        )
        result = await sync(phone, key_a[0].sync_key, commands=(change,))
        assert result.collections is not None
        assert result.collections[0].status == 1
        seen = await sync(tablet, key_b[0].sync_key)
        assert seen.collections is not None
        (update,) = seen.collections[0].commands or ()
        assert isinstance(update, ItemChange)
        assert update.server_id == first.server_id


async def test_get_item_estimate_counts_what_the_next_sync_brings(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone()
        await phone.provision()
        key = await primed_key(phone)
        request = GetItemEstimateRequest(
            (EstimateCollection(sync_key=key, collection_id=INBOX_ID),)
        )
        response = GetItemEstimateResponse.from_element(
            await phone.command("GetItemEstimate", request.to_element())
        )
        (only,) = response.responses
        assert (only.status, only.estimate) == (1, 5)


async def test_item_operations_fetches_an_item_by_collection_and_server_id(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone()
        await phone.provision()
        request = ItemOperationsRequest(
            operations=(
                FetchRequest(
                    collection_id=INBOX_ID,
                    server_id=f"{INBOX_ID}:1",
                    options=FetchOptions(body_preferences=(BodyPreference(BodyType.MIME),)),
                ),
                FetchRequest(collection_id=INBOX_ID, server_id=f"{INBOX_ID}:999"),
            )
        )
        response = ItemOperationsResponse.from_element(
            await phone.command("ItemOperations", request.to_element())
        )
        assert response.status == 1
        assert response.results is not None
        found, missing = response.results
        assert isinstance(found, FetchResult)
        assert isinstance(missing, FetchResult)
        assert found.status == 1
        assert found.properties is not None
        item = EmailItem.from_properties(found.properties)
        assert item.body is not None
        assert item.body.type == BodyType.MIME
        assert item.body.data is not None
        assert "Subject:" in item.body.data
        assert missing.status == 6


# --- Settings, SendMail ------------------------------------------------------------------------


async def test_settings_stores_device_information_and_returns_the_address(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone(version="14.0")
        await phone.provision()
        request = SettingsRequest(
            device_information=DeviceInformation(model="Pixel 8", os="Android 14"),
            user_information=True,
        )
        response = SettingsResponse.from_element(
            await phone.command("Settings", request.to_element())
        )
        assert response.status == 1
        assert response.device_information_status == 1
        assert response.user_information is not None
        assert response.user_information.email_addresses is not None
        assert response.user_information.email_addresses.smtp_addresses == ("alice@example.com",)
        status, summary = await lab.admin("GET", "/admin/mailboxes/alice")
        assert status == 200
        (device,) = summary["devices"]
        assert device["device_information"]["Model"] == "Pixel 8"


async def test_send_mail_14_delivers_to_another_user_and_keeps_a_copy(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone(version="14.1")
        await phone.provision()
        before = await inbox_count(lab, "bob")
        mime = (
            b"From: alice@example.com\r\nTo: Bob <bob@example.com>\r\nSubject: Hi\r\n\r\nHello\r\n"
        )
        request = SendMailRequest(client_id="msg-1", mime=mime, save_in_sent_items=True)
        reply = await phone.post("SendMail", request.to_element())
        # MS-ASCMD 2.2.1.17: success is an empty 200.
        assert (reply.status, reply.body) == (200, b"")
        assert await inbox_count(lab, "bob") == before + 1
        _, summary = await lab.admin("GET", "/admin/mailboxes/alice")
        sent = next(f for f in summary["folders"] if f["id"] == SENT_ITEMS_ID)
        assert sent["items"] == 1
        again = await phone.post("SendMail", request.to_element())
        assert again.element().child_text("Status") == "118"


async def test_send_mail_12_1_takes_raw_mime(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone(version="12.1")
        await phone.provision()
        before = await inbox_count(lab, "bob")
        mime = b"To: bob@example.com\r\nSubject: Old style\r\n\r\nHello\r\n"
        reply = await phone.post("SendMail", mime, content_type="message/rfc822", save_in_sent=True)
        assert (reply.status, reply.body) == (200, b"")
        assert await inbox_count(lab, "bob") == before + 1


async def test_send_mail_without_recipients_is_refused(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone(version="14.1")
        await phone.provision()
        request = SendMailRequest(client_id="m2", mime=b"Subject: nobody\r\n\r\nx\r\n")
        reply = await phone.post("SendMail", request.to_element())
        assert reply.element().child_text("Status") == "119"


# --- Ping --------------------------------------------------------------------------------------


def ping_body(heartbeat: int = 120) -> Element | None:
    return PingRequest(
        heartbeat_interval=heartbeat, folders=(PingFolder(INBOX_ID, "Email"),)
    ).to_element()


async def wait_until_held(lab: Lab, sleepers: int = 1) -> None:
    # The ManualClock has no event for "someone sleeps now"; poll its count briefly.
    while lab.clock.pending_sleepers < sleepers:  # noqa: ASYNC110
        await asyncio.sleep(0.005)


async def test_ping_is_woken_by_mail_injected_through_the_admin_api(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone()
        await phone.provision()
        await sync(phone, await primed_key(phone), window=100)
        held = asyncio.create_task(phone.command("Ping", ping_body()))
        await wait_until_held(lab)
        assert not held.done()
        status, result = await lab.admin(
            "POST", "/admin/mail", json={"to": "alice", "subject": "Wake up", "body": "now"}
        )
        assert (status, result["delivered_to"]) == (200, ["alice"])
        response = PingResponse.from_element(await held)
        assert (response.status, response.folders) == (2, (INBOX_ID,))


async def test_ping_expires_at_the_heartbeat_with_status_1(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone()
        await phone.provision()
        await sync(phone, await primed_key(phone), window=100)
        held = asyncio.create_task(phone.command("Ping", ping_body(120)))
        await wait_until_held(lab)
        await lab.clock.advance(119)
        assert not held.done()
        await lab.clock.advance(1)
        assert PingResponse.from_element(await held).status == 1


async def test_empty_ping_reuses_the_last_parameters(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone()
        await phone.provision()
        await sync(phone, await primed_key(phone), window=100)
        first = asyncio.create_task(phone.command("Ping", ping_body(60)))
        await wait_until_held(lab)
        await lab.clock.advance(60)
        assert PingResponse.from_element(await first).status == 1
        second = asyncio.create_task(phone.command("Ping", None))
        await wait_until_held(lab)
        await lab.clock.advance(60)
        assert PingResponse.from_element(await second).status == 1


async def test_ping_with_unsynced_changes_answers_at_once(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone()
        await phone.provision()
        await primed_key(phone)
        response = PingResponse.from_element(await phone.command("Ping", ping_body()))
        assert (response.status, response.folders) == (2, (INBOX_ID,))


@pytest.mark.parametrize(("heartbeat", "allowed"), [(10, 60), (4000, 3540)])
async def test_ping_heartbeat_out_of_bounds_gets_status_5(
    lab: Lab, heartbeat: int, allowed: int
) -> None:
    async with asyncio.timeout(5):
        response = PingResponse.from_element(
            await lab.phone().command("Ping", ping_body(heartbeat))
        )
        assert (response.status, response.heartbeat_interval) == (5, allowed)


async def test_many_held_pings_do_not_starve_other_requests(lab: Lab) -> None:
    async with asyncio.timeout(10):
        phones = [lab.phone(device_id=f"HOLD{i}") for i in range(20)]
        # Never-synced folders are compared with the Ping's own baseline, so these all hold.
        held = [asyncio.create_task(p.command("Ping", ping_body())) for p in phones]
        await wait_until_held(lab, len(phones))
        other = lab.phone(device_id="BUSY")
        await other.provision()
        assert (await folder_sync(other)).status == 1
        await lab.clock.advance(120)
        statuses = {PingResponse.from_element(await h).status for h in held}
        assert statuses == {1}


# --- admin API ---------------------------------------------------------------------------------


async def test_admin_api_needs_the_token(lab: Lab) -> None:
    async with asyncio.timeout(5):
        async with lab.session.get(f"{lab.url}/admin/mailboxes") as response:
            assert response.status == 401
        status, _ = await lab.admin("GET", "/admin/mailboxes/nobody")
        assert status == 404
        status, listing = await lab.admin("GET", "/admin/mailboxes")
        assert status == 200
        assert [m["user"] for m in listing["mailboxes"]] == ["alice", "bob"]


async def test_admin_mail_with_bad_json_is_a_clear_400(lab: Lab) -> None:
    async with asyncio.timeout(5):
        headers = {"Authorization": "Bearer test-admin-token"}
        async with lab.session.post(
            f"{lab.url}/admin/mail", headers=headers, data=b"{not json"
        ) as response:
            assert response.status == 400
            assert "not JSON" in await response.text()


async def test_admin_wipe_makes_the_device_provision_and_wipe(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone(version="14.1", device_id="LOSTPHONE")
        await phone.provision()
        status, result = await lab.admin("POST", "/admin/mailboxes/alice/devices/LOSTPHONE/wipe")
        assert (status, result["state"]) == (200, "wipe-pending")
        refused = await phone.command("FolderSync", FolderSyncRequest("0").to_element())
        assert refused.child_text("Status") == "140"
        directive = ProvisionResponse.from_element(
            await phone.command("Provision", ProvisionRequest.wipe_fetch().to_element())
        )
        assert directive.remote_wipe is True
        done = ProvisionResponse.from_element(
            await phone.command("Provision", ProvisionRequest.wipe_ack(1).to_element())
        )
        assert done.status == 1


async def test_sync_wait_out_of_range_gets_status_14_with_the_limit(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone()
        await phone.provision()
        collection = SyncCollectionRequest(sync_key="0", collection_id=INBOX_ID)
        request = SyncRequest(collections=(collection,), wait=90)
        response = SyncResponse.from_element(await phone.command("Sync", request.to_element()))
        assert (response.status, response.limit) == (14, 59)


async def test_empty_sync_without_a_previous_request_gets_status_13(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone()
        await phone.provision()
        response = SyncResponse.from_element(await phone.command("Sync", None))
        assert response.status == 13


async def test_empty_sync_reuses_the_last_collections_with_their_latest_keys(lab: Lab) -> None:
    async with asyncio.timeout(5):
        phone = lab.phone()
        await phone.provision()
        await sync(phone, await primed_key(phone), window=2)
        response = SyncResponse.from_element(await phone.command("Sync", None))
        assert response.collections is not None
        (collection,) = response.collections
        assert collection.status == 1
        assert len(collection.commands or ()) == 2
