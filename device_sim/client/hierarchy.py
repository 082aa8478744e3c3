"""The FolderSync command: fetching the folder hierarchy and reading the changes.

Responsibility: build the FolderSync request from the phone's hierarchy sync key and read the
answer into a verdict: the folders now known, the ones deleted and the new key, or a resync
from 0, or a failure. It must not change the phone: the facade applies the verdict.

Theory of operation (MS-ASCMD 2.2.1.5): the first FolderSync sends SyncKey 0 and gets every
folder as an Add; later ones send the last key and get Adds, Updates and Deletes. Status 9
means the phone's hierarchy key is stale: the phone forgets its hierarchy and starts from 0.
"""

from __future__ import annotations

from collections.abc import Mapping

from activesync.commands.folder_sync import FolderSyncRequest, FolderSyncResponse, FolderSyncStatus
from activesync.wbxml.tree import Element
from device_sim.client.framing import post
from device_sim.client.memory import Folder
from device_sim.client.states import Event
from device_sim.client.verdicts import Advance, Fail, HierarchyChanged, Resync, Verdict
from device_sim.wire import DeviceIdentity, HttpRequest


def folder_sync_request(identity: DeviceIdentity, policy_key: int, sync_key: str) -> HttpRequest:
    """A FolderSync from the hierarchy key ``sync_key``."""
    return post(
        identity, "FolderSync", FolderSyncRequest(sync_key).to_element(), policy_key=policy_key
    )


def read_folder_sync(root: Element | None, folders: Mapping[str, Folder]) -> Verdict:
    """Read a FolderSync answer (its global status already handled) against ``folders``."""
    if root is None:
        return Verdict(Fail(None, "empty FolderSync response"))
    answer = FolderSyncResponse.from_element(root)
    if answer.status == FolderSyncStatus.INVALID_SYNC_KEY:
        return Verdict(
            Resync(
                code=answer.status,
                why="Status 9 invalid hierarchy sync key: starting over from 0",
                folder_id=None,
            )
        )
    if answer.status != FolderSyncStatus.SUCCESS or answer.sync_key is None:
        return Verdict(Fail(answer.status, f"FolderSync Status {answer.status}"))
    after = dict(folders)
    added = 0
    deleted: tuple[str, ...] = ()
    changes = answer.changes
    if changes is not None:
        for entry in (*changes.adds, *changes.updates):
            after[entry.server_id] = Folder(
                entry.server_id, entry.parent_id, entry.display_name, entry.type
            )
        added = len(changes.adds)
        deleted = tuple(changes.deletes)
        for server_id in deleted:
            after.pop(server_id, None)
    count = len(after)
    return Verdict(
        Advance(
            answer.status,
            f"Status 1  {count} folder{'s' if count != 1 else ''}  sync key {answer.sync_key}",
            {"folders": count, "folders_added": added, "sync_key": answer.sync_key},
        ),
        events=(Event.COMMAND_ACCEPTED,),
        facts=(HierarchyChanged(answer.sync_key, after, deleted),),
    )
