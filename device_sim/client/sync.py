"""The Sync command: one folder's round, its request, and merging the items it brings.

Responsibility: build a Sync round for one folder from its sync key, read the answer into a
verdict (the new key and the items now held, another round, a resync, or a failure), and merge
server changes into the items held. It must not change the phone: the facade applies the
verdict.

Theory of operation (MS-ASCMD 2.2.1.21, 3.1.5.3): a folder never synced gets an initial round
with SyncKey 0 and nothing else, which only yields a key; then GetChanges rounds bring Adds,
Changes and Deletes, ``WINDOW_SIZE`` at a time, while the server says MoreAvailable. The phone
runs another round after the initial one and after MoreAvailable, at most
``MAX_SYNC_ROUNDS`` per folder and step. Status 3 restarts the folder from 0; Status 12 fetches
the hierarchy again first. An empty answer means no changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import attrs

from activesync.commands.email_item import EmailItem
from activesync.commands.sync import (
    ItemChange,
    ItemDelete,
    ItemSoftDelete,
    ServerAdd,
    SyncCollectionRequest,
    SyncCollectionResponse,
    SyncRequest,
    SyncResponse,
    SyncStatus,
)
from activesync.errors import ActiveSyncError
from activesync.wbxml.tree import Element
from device_sim.client.exchanges import MAX_SYNC_ROUNDS, SyncOp
from device_sim.client.framing import post
from device_sim.client.memory import Folder, Item
from device_sim.client.results import Outcome
from device_sim.client.states import Event
from device_sim.client.verdicts import (
    Advance,
    Fail,
    FolderSynced,
    Proceed,
    Reaction,
    Resync,
    Verdict,
)
from device_sim.wire import DeviceIdentity, HttpRequest

#: Items asked for per Sync round (MS-ASCMD 2.2.3.199: the server caps it at 512).
WINDOW_SIZE: Final = 100


@attrs.frozen
class Merge:
    """Items held after a round of server changes, and how many of each kind came."""

    items: Mapping[str, Item]
    added: int
    changed: int
    deleted: int


def sync_request(
    identity: DeviceIdentity, policy_key: int, folder_id: str, sync_key: str
) -> HttpRequest:
    """One Sync round of ``folder_id`` from ``sync_key``."""
    if sync_key == "0":
        # MS-ASCMD 3.1.5.3: the initial Sync of a folder carries only SyncKey 0 and the id.
        collection = SyncCollectionRequest(sync_key="0", collection_id=folder_id)
    else:
        collection = SyncCollectionRequest(
            sync_key=sync_key,
            collection_id=folder_id,
            deletes_as_moves=True,
            get_changes=True,
            window_size=WINDOW_SIZE,
        )
    body = SyncRequest(collections=(collection,)).to_element()
    assert body is not None
    return post(identity, "Sync", body, policy_key=policy_key)


def read_sync(
    op: SyncOp,
    root: Element | None,
    *,
    folders: Mapping[str, Folder],
    sync_key: str,
    held: Mapping[str, Item],
    rounds: int,
) -> Verdict:
    """Read a Sync answer for ``op`` (its global status already handled).

    ``sync_key`` and ``held`` are the folder's key and items before this round; ``rounds`` is
    how many rounds of the folder this step has run before.
    """
    folder = folders.get(op.folder_id)
    name = folder.display_name if folder else op.folder_id
    no_changes = Verdict(
        Advance(None, "no changes", {"items": 0}), events=(Event.COMMAND_ACCEPTED,)
    )
    if root is None:
        # MS-ASCMD 2.2.1.21: an empty Sync response means no changes.
        return no_changes
    answer = SyncResponse.from_element(root)
    if answer.status is not None and answer.status != SyncStatus.SUCCESS:
        return Verdict(_status_reaction(op, answer.status, name))
    collection = _collection_for(answer, op.folder_id)
    if collection is None:
        return no_changes
    if collection.status != SyncStatus.SUCCESS:
        return Verdict(_status_reaction(op, collection.status, name))
    first = sync_key == "0"
    merge = merge_changes(held, collection)
    rounds += 1
    again = first or collection.more_available
    parts = [f"Status {collection.status}"]
    if first:
        parts.append("initial sync")
    else:
        parts.append(f"{merge.added} new item{'s' if merge.added != 1 else ''}")
        if merge.changed:
            parts.append(f"{merge.changed} changed")
        if merge.deleted:
            parts.append(f"{merge.deleted} deleted")
    parts.append(f"sync key {collection.sync_key}")
    if collection.more_available:
        parts.append("more available")
    details: dict[str, object] = {
        "folder": name,
        "folder_id": op.folder_id,
        "items": merge.added,
        "changed": merge.changed,
        "deleted": merge.deleted,
        "held": len(merge.items),
        "sync_key": collection.sync_key,
        "subjects": [
            item.subject for item in _new_items(merge.items, collection) if item.subject is not None
        ],
    }
    accepted = (Event.COMMAND_ACCEPTED,)
    synced = (
        FolderSynced(
            folder_id=op.folder_id, sync_key=collection.sync_key, items=merge.items, rounds=rounds
        ),
    )
    if again and rounds < MAX_SYNC_ROUNDS:
        another = Proceed(
            code=collection.status,
            outcome=Outcome.OK,
            summary="  ".join(parts),
            ops=(SyncOp(op.folder_id),),
            details=details,
        )
        return Verdict(another, events=accepted, facts=synced)
    if again:
        parts.append(f"stopping after {MAX_SYNC_ROUNDS} rounds")
    return Verdict(
        Advance(collection.status, "  ".join(parts), details), events=accepted, facts=synced
    )


def merge_changes(held: Mapping[str, Item], collection: SyncCollectionResponse) -> Merge:
    """``held`` with the collection's Adds, Changes and Deletes applied, in order."""
    items = dict(held)
    added = changed = deleted = 0
    for command in collection.commands or ():
        if isinstance(command, ServerAdd):
            items[command.server_id] = _item(command.server_id, command.application_data)
            added += 1
        elif isinstance(command, ItemChange):
            old = items.get(command.server_id)
            new = _item(command.server_id, command.application_data)
            if old is not None:
                # A Change carries only what changed: keep what it leaves out.
                new = Item(
                    server_id=old.server_id,
                    subject=new.subject if new.subject is not None else old.subject,
                    sender=new.sender if new.sender is not None else old.sender,
                    read=new.read if new.read is not None else old.read,
                )
            items[command.server_id] = new
            changed += 1
        elif isinstance(command, ItemDelete | ItemSoftDelete):
            items.pop(command.server_id, None)
            deleted += 1
    return Merge(items, added, changed, deleted)


def _status_reaction(op: SyncOp, code: int, name: str) -> Reaction:
    if code == SyncStatus.INVALID_SYNC_KEY:
        return Resync(
            code=code,
            why=f"{name}: Status 3 invalid sync key: resyncing the folder from 0",
            folder_id=op.folder_id,
        )
    if code == SyncStatus.FOLDER_HIERARCHY_CHANGED:
        return Resync(
            code=code,
            why=f"{name}: Status 12 hierarchy changed: FolderSync, then Sync again",
            folder_id=None,
            refetch_hierarchy=True,
        )
    return Fail(code, f"{name}: Sync Status {code}")


def _collection_for(answer: SyncResponse, folder_id: str) -> SyncCollectionResponse | None:
    for collection in answer.collections or ():
        if collection.collection_id == folder_id:
            return collection
    return None


def _new_items(held: Mapping[str, Item], collection: SyncCollectionResponse) -> list[Item]:
    return [
        held[c.server_id]
        for c in collection.commands or ()
        if isinstance(c, ServerAdd) and c.server_id in held
    ]


def _item(server_id: str, data: Element | None) -> Item:
    if data is None:
        return Item(server_id=server_id)
    try:
        mail = EmailItem.from_container(data, "ApplicationData")
    except ActiveSyncError:
        return Item(server_id=server_id)
    return Item(server_id=server_id, subject=mail.subject, sender=mail.from_, read=mail.read)
