"""What a phone remembers from the server: folders, items, the policy it applied.

Responsibility: the values the phone keeps between steps (``Folder``, ``Item``,
``AppliedPolicy``) and the lookups over them (a folder by name, the Inbox). It must not change
what the phone holds: the facade (``device.py``) owns the mutable maps and applies the facts
the command readers report.

Theory of operation: every value is frozen; the phone's memory is plain dicts of these values
on ``DeviceClient`` (folders by ServerId, items by folder and item ServerId), passed into the
pure functions here as read-only mappings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import attrs

from activesync.commands.folder_types import FolderType
from activesync.commands.provision import ProvisionDoc

_CLASS_BY_TYPE: Final[Mapping[FolderType, str]] = {
    FolderType.CALENDAR: "Calendar",
    FolderType.USER_CALENDAR: "Calendar",
    FolderType.CONTACTS: "Contacts",
    FolderType.USER_CONTACTS: "Contacts",
    FolderType.TASKS: "Tasks",
    FolderType.USER_TASKS: "Tasks",
    FolderType.NOTES: "Notes",
    FolderType.USER_NOTES: "Notes",
}


@attrs.frozen
class Folder:
    """A folder as the phone knows it from FolderSync."""

    server_id: str
    parent_id: str
    display_name: str
    type: FolderType

    @property
    def ping_class(self) -> str:
        """The Ping/Sync class of the folder (MS-ASCMD 2.2.3.27.3)."""
        return _CLASS_BY_TYPE.get(self.type, "Email")


@attrs.frozen(kw_only=True)
class Item:
    """An item the phone holds (mail: subject and sender)."""

    server_id: str
    subject: str | None = None
    sender: str | None = None
    read: bool | None = None


@attrs.frozen(kw_only=True)
class AppliedPolicy:
    """The policy the phone applied in its last Provision."""

    #: The EASProvisionDoc as received (None when the server sent no EAS document).
    doc: ProvisionDoc | None
    #: The settings that restrict something (differ from the permissive defaults).
    restrictions: Mapping[str, object]
    #: The Policy/Status the phone acknowledged with (1 applied ... 4 third party).
    ack_status: int
    #: When it was applied.
    applied_at: float


def inbox(folders: Mapping[str, Folder]) -> Folder | None:
    """The first folder of type Inbox, or None."""
    for folder in folders.values():
        if folder.type == FolderType.INBOX:
            return folder
    return None


def folder_named(folders: Mapping[str, Folder], name: str) -> Folder | None:
    """A folder by ServerId or display name (case-insensitive); None when unknown.

    "Inbox" also finds the folder of type Inbox whatever the server calls it.
    """
    if name in folders:
        return folders[name]
    lowered = name.lower()
    for folder in folders.values():
        if folder.display_name.lower() == lowered:
            return folder
    if lowered == "inbox":
        return inbox(folders)
    return None
