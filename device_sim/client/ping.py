"""The Ping command: the long poll on folders, and what the phone does with its answer.

Responsibility: build a Ping request for known folders and read the answer into a verdict: no
changes, changes (sync those folders next), a heartbeat to retry with, a hierarchy to refetch,
or a failure. It must not change the phone: the facade applies the verdict.

Theory of operation (MS-ASCMD 2.2.1.13): the server holds the request for the heartbeat and
answers Status 1 (nothing changed) or Status 2 with the changed folders, which the phone syncs
in the same step, as real phones do before pinging again. Status 5 gives the heartbeat range
the server allows: the phone retries once with it (counted against the step's resync bound).
Status 7 means the hierarchy is out of date: FolderSync, then Ping again. Ping carries no
policy key (MS-ASPROV 3.1.5.1).
"""

from __future__ import annotations

from collections.abc import Mapping

from activesync.commands.ping import PingFolder, PingRequest, PingResponse, PingStatus
from activesync.wbxml.tree import Element
from device_sim.client.exchanges import MAX_RESYNCS, PingOp, SyncOp
from device_sim.client.framing import post
from device_sim.client.memory import Folder
from device_sim.client.results import Outcome
from device_sim.client.states import Event
from device_sim.client.verdicts import Advance, Fail, Proceed, Resync, Verdict
from device_sim.wire import DeviceIdentity, HttpRequest


def ping_request(
    identity: DeviceIdentity, op: PingOp, folders: Mapping[str, Folder]
) -> HttpRequest:
    """A Ping on the folders of ``op`` the phone still knows."""
    watched = tuple(
        PingFolder(fid, folders[fid].ping_class) for fid in op.folder_ids if fid in folders
    )
    ping = PingRequest(heartbeat_interval=op.heartbeat, folders=watched)
    # MS-ASPROV 3.1.5.1: Ping carries no policy key.
    return post(identity, "Ping", ping.to_element(), policy_key=None)


def read_ping(
    op: PingOp, root: Element | None, *, folders: Mapping[str, Folder], resyncs: int
) -> Verdict:
    """Read a Ping answer (its global status already handled).

    ``resyncs`` is how many resyncs the step has used, which bounds heartbeat retries.
    """
    if root is None:
        return Verdict(Fail(None, "empty Ping response"))
    answer = PingResponse.from_element(root)
    code = answer.status
    accepted = (Event.COMMAND_ACCEPTED,)
    if code == PingStatus.EXPIRED:
        return Verdict(
            Advance(
                code,
                f"Status 1  no changes within the {op.heartbeat} s heartbeat",
                {"changed_folders": []},
            ),
            events=accepted,
        )
    if code == PingStatus.CHANGES:
        changed = [fid for fid in answer.folders or () if fid in folders]
        names = [folders[fid].display_name for fid in changed]
        sync_them = Proceed(
            code=code,
            outcome=Outcome.OK,
            summary=f"Status 2  changes in {', '.join(names) or 'unknown folders'}",
            ops=tuple(SyncOp(fid) for fid in changed),
            details={"changed_folders": names},
            sending_suffix=": syncing",
        )
        return Verdict(sync_them, events=accepted)
    if code == PingStatus.HEARTBEAT_OUT_OF_RANGE and answer.heartbeat_interval is not None:
        if resyncs >= MAX_RESYNCS:
            return Verdict(Fail(code, "Status 5 heartbeat out of range, again"))
        allowed = answer.heartbeat_interval
        retry = Proceed(
            code=code,
            outcome=Outcome.RESYNC,
            summary=f"Status 5  heartbeat {op.heartbeat} s out of range: retrying with {allowed} s",
            ops=(PingOp(allowed, op.folder_ids),),
            counts_as_resync=True,
        )
        return Verdict(retry)
    if code == PingStatus.FOLDER_SYNC_REQUIRED:
        return Verdict(
            Resync(
                code=code,
                why="Status 7  folder hierarchy out of date: FolderSync, then Ping again",
                folder_id=None,
                refetch_hierarchy=True,
            )
        )
    return Verdict(Fail(code, f"Ping Status {code}"))
