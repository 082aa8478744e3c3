"""The exchanges inside a step: what each one is, how a step is planned, and its bounds.

Responsibility: the exchange values (``OptionsOp``, ``ProvisionOp``, ``AckOp``...), the plan
of a step as a queue of them, the resolution of folder names into exchanges once the hierarchy
is known, and the per-step book-keeping (``Run``) with its bounds. It must not build requests
or read responses: the command modules do, and the facade (``device.py``) drives the queue.

Theory of operation: ``plan`` turns a step into a short queue; Sync and Ping start with a
placeholder (``ResolveSync``/``ResolvePing``) because the folders they name may be unknown
until a FolderSync has run, so a FolderSync goes first when a name is not known yet.
``expand`` replaces placeholders at the head of the queue with real exchanges. Readers react by
replacing the head (a second Provision phase, another Sync round, a retried Ping), and the
``MAX_*`` bounds end a step that would otherwise loop on a misbehaving server.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Final

import attrs

from device_sim.client.memory import Folder, folder_named
from device_sim.client.steps import (
    FolderSync,
    Options,
    Ping,
    Provision,
    SendMail,
    Settings,
    Step,
    Sync,
)
from device_sim.wire import HttpRequest

#: Bounds per step, so a misbehaving server ends a step instead of looping it.
MAX_EXCHANGES: Final = 64
MAX_REPROVISIONS: Final = 2
MAX_BACKOFFS: Final = 5
MAX_RESYNCS: Final = 2
#: Sync rounds per folder while the server says MoreAvailable.
MAX_SYNC_ROUNDS: Final = 20


@attrs.frozen
class OptionsOp:
    """``OPTIONS``: ask which versions and commands the server has."""


@attrs.frozen
class ProvisionOp:
    """Provision phase 1 (fetch the policy), or the empty Provision that fetches a wipe."""

    #: True after Status 140: the empty ``<Provision/>`` that fetches the wipe directive.
    wipe_fetch: bool = False


@attrs.frozen
class AckOp:
    """Provision phase 2: acknowledge the policy with the temporary key."""

    temporary_key: str


@attrs.frozen
class WipeAckOp:
    """Acknowledge a RemoteWipe (or AccountOnlyRemoteWipe) directive."""

    account_only: bool


@attrs.frozen
class FolderSyncOp:
    """One FolderSync from the phone's hierarchy sync key."""


@attrs.frozen
class SyncOp:
    """One Sync round of one folder."""

    folder_id: str


@attrs.frozen
class PingOp:
    """One Ping on known folders."""

    heartbeat: int
    folder_ids: tuple[str, ...]


@attrs.frozen
class SendMailOp:
    """Send one message under a client id unique to this phone."""

    mail: SendMail
    client_id: str


@attrs.frozen
class SettingsOp:
    """One Settings request carrying DeviceInformation."""


@attrs.frozen
class ResolveSync:
    """Placeholder: turn folder names into ``SyncOp``s once the hierarchy is known."""

    names: tuple[str, ...]


@attrs.frozen
class ResolvePing:
    """Placeholder: turn folder names into a ``PingOp`` once the hierarchy is known."""

    heartbeat: int
    names: tuple[str, ...]


Op = (
    OptionsOp
    | ProvisionOp
    | AckOp
    | WipeAckOp
    | FolderSyncOp
    | SyncOp
    | PingOp
    | SendMailOp
    | SettingsOp
    | ResolveSync
    | ResolvePing
)


@attrs.define
class Run:
    """Book-keeping of the step in flight."""

    step: Step
    queue: collections.deque[Op]
    exchanges: int = 0
    reprovisions: int = 0
    backoffs: int = 0
    resyncs: int = 0
    sync_rounds: dict[str, int] = attrs.field(factory=dict)
    #: Whether any exchange of the step failed (so the step as a whole did not succeed).
    failed: bool = False
    #: The request last sent (a back-off sends it again as it was).
    last_request: HttpRequest | None = None


def plan(
    step: Options | Provision | FolderSync | Sync | Ping | Settings,
    folders: Mapping[str, Folder],
) -> list[Op]:
    """The exchanges of ``step`` (SendMail is planned by the facade: it numbers messages)."""
    if isinstance(step, Options):
        return [OptionsOp()]
    if isinstance(step, Provision):
        return [ProvisionOp()]
    if isinstance(step, FolderSync):
        return [FolderSyncOp()]
    if isinstance(step, Settings):
        return [SettingsOp()]
    names = step.folders or ("Inbox",)
    resolve: Op = (
        ResolveSync(names) if isinstance(step, Sync) else ResolvePing(step.heartbeat, names)
    )
    if all(folder_named(folders, n) is not None for n in names):
        return [resolve]
    # A phone that does not know a folder refreshes its hierarchy first.
    return [FolderSyncOp(), resolve]


def expand(queue: collections.deque[Op], folders: Mapping[str, Folder]) -> str | None:
    """Replace placeholders at the head of ``queue``; a problem message if one fails."""
    while queue and isinstance(queue[0], ResolveSync | ResolvePing):
        head = queue.popleft()
        assert isinstance(head, ResolveSync | ResolvePing)
        found = [folder_named(folders, n) for n in head.names]
        missing = [n for n, f in zip(head.names, found, strict=True) if f is None]
        if missing:
            known = ", ".join(sorted(f.display_name for f in folders.values())) or "none"
            return f"no folder named {', '.join(missing)} (known: {known})"
        ids = tuple(f.server_id for f in found if f is not None)
        if isinstance(head, ResolveSync):
            queue.extendleft(reversed([SyncOp(i) for i in ids]))
        else:
            queue.appendleft(PingOp(head.heartbeat, ids))
    return None


def command_of(op: Op) -> str:
    """The EAS command an exchange runs."""
    if isinstance(op, OptionsOp):
        return "OPTIONS"
    if isinstance(op, ProvisionOp | AckOp | WipeAckOp):
        return "Provision"
    if isinstance(op, FolderSyncOp):
        return "FolderSync"
    if isinstance(op, SyncOp | ResolveSync):
        return "Sync"
    if isinstance(op, PingOp | ResolvePing):
        return "Ping"
    if isinstance(op, SendMailOp):
        return "SendMail"
    return "Settings"


def label_of(op: Op, folders: Mapping[str, Folder]) -> str:
    """What an exchange is, for people: "Provision (acknowledge)", "Sync Inbox"..."""
    if isinstance(op, ProvisionOp):
        return "Provision (wipe fetch)" if op.wipe_fetch else "Provision"
    if isinstance(op, AckOp):
        return "Provision (acknowledge)"
    if isinstance(op, WipeAckOp):
        return "Provision (wipe acknowledge)"
    if isinstance(op, SyncOp):
        folder = folders.get(op.folder_id)
        return f"Sync {folder.display_name if folder else op.folder_id}"
    return command_of(op)
