"""Mutated request bodies only ever raise the protocol layer's own error, never a crash."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from activesync.commands.folder_sync import FolderSyncRequest
from activesync.commands.get_item_estimate import EstimateCollection, GetItemEstimateRequest
from activesync.commands.item_operations import FetchRequest, ItemOperationsRequest
from activesync.commands.ping import PingFolder, PingRequest
from activesync.commands.provision import ProvisionRequest
from activesync.commands.settings import SettingsRequest
from activesync.commands.sync import SyncCollectionRequest, SyncRequest
from activesync.errors import ActiveSyncError
from activesync.versions import ProtocolVersion
from activesync.wbxml import Element, decode, encode
from exchange_sim import commands as cmd
from exchange_sim.config import ExchangeConfig
from exchange_sim.mailbox import INBOX_ID, MailStore
from exchange_sim.policy import ProvisioningBook

CONFIG = ExchangeConfig.from_mapping(
    {"users": [{"name": "alice", "email": "alice@example.com", "password": "p"}]}
)
CTX = cmd.DeviceContext(
    user="alice", device_id="FUZZ", device_type="SP", version=ProtocolVersion.V14_1
)


def wbxml(element: Element | None) -> bytes:
    assert element is not None
    return encode(element)


VALID = [
    encode(FolderSyncRequest("0").to_element()),
    wbxml(
        SyncRequest(
            collections=(SyncCollectionRequest(sync_key="1", collection_id=INBOX_ID),)
        ).to_element()
    ),
    wbxml(
        PingRequest(heartbeat_interval=60, folders=(PingFolder(INBOX_ID, "Email"),)).to_element()
    ),
    encode(SettingsRequest(user_information=True).to_element()),
    encode(
        GetItemEstimateRequest((EstimateCollection(sync_key="1", collection_id="5"),)).to_element()
    ),
    encode(
        ItemOperationsRequest(
            operations=(FetchRequest(collection_id="5", server_id="5:1"),)
        ).to_element()
    ),
    encode(ProvisionRequest.initial(ProtocolVersion.V14_0).to_element()),
]


def run_pure(body: bytes) -> None:
    store = MailStore.for_users([("alice", "alice@example.com")])
    store.seed(3, seed=1, now=0.0)
    mailbox = store.mailbox("alice")
    assert mailbox is not None
    element = decode(body)
    root = element.tag
    if root == "FolderSync":
        cmd.handle_folder_sync(mailbox, CTX, FolderSyncRequest.from_element(element))
    elif root == "Sync":
        cmd.handle_sync(
            mailbox, CTX, SyncRequest.from_element(element), remembered=None, config=CONFIG, now=0.0
        )
    elif root == "Ping":
        cmd.plan_ping(mailbox, CTX, PingRequest.from_element(element), CONFIG)
    elif root == "Settings":
        cmd.handle_settings(mailbox, CTX, SettingsRequest.from_element(element)).to_element()
    elif root == "GetItemEstimate":
        cmd.handle_get_item_estimate(mailbox, CTX, GetItemEstimateRequest.from_element(element))
    elif root == "ItemOperations":
        cmd.handle_item_operations(mailbox, CTX, ItemOperationsRequest.from_element(element))
    elif root == "Provision":
        book = ProvisioningBook(CONFIG.activesync_policy)
        book.provision("alice", "FUZZ", ProvisionRequest.from_element(element), CTX.version)


@settings(max_examples=300)
@given(st.sampled_from(VALID), st.data())
def test_mutated_bodies_raise_only_activesync_errors(valid: bytes, data: st.DataObject) -> None:
    body = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(4, len(body) - 1))
        body[position] = data.draw(st.integers(0, 255))
    # Anything but the protocol layer's own error (a crash, a ValueError...) fails the test.
    with contextlib.suppress(ActiveSyncError):
        run_pure(bytes(body))


@given(st.sampled_from(VALID))
def test_valid_bodies_are_handled(valid: bytes) -> None:
    run_pure(valid)
