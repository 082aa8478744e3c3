"""FolderSync (MS-ASCMD 2.2.1.5): typed request and response bodies on the FolderHierarchy page.

Responsibility: turn ``<FolderSync>`` trees into values and back, for both sides (the mock
Exchange parses requests and builds responses; the simulated phone does the opposite). It must
not keep folder state or pick sync keys: that is the mailbox's job.

Theory of operation: the request is one ``SyncKey`` ("0" asks for the whole hierarchy). The
response carries ``Status``, the new ``SyncKey`` and ``Changes``: a ``Count`` followed by
``Update``, ``Delete`` and ``Add`` entries (MS-ASCMD 6.13 FolderSyncResponse schema order).
A failed FolderSync (and the 14.0+ error form of a global status, activesync-notes 3.3) is a
response holding only ``Status``.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from activesync.commands import fields as f
from activesync.commands.fields import MAX_ID_LEN, MAX_STATUS
from activesync.commands.folder_types import FolderType
from activesync.errors import CommandError
from activesync.wbxml.tree import Element

PAGE: Final = "FolderHierarchy"


class FolderSyncStatus(enum.IntEnum):
    """FolderSync Status values (MS-ASCMD 2.2.3.177.4); 1xx global values may also appear."""

    #: Success.
    SUCCESS = 1
    #: Server error; retry later.
    SERVER_ERROR = 6
    #: Synchronization key mismatch or invalid: the client must start again with SyncKey 0.
    INVALID_SYNC_KEY = 9
    #: Incorrectly formatted request.
    BAD_REQUEST = 10
    #: Unknown error.
    UNKNOWN_ERROR = 11
    #: Code unknown.
    CODE_UNKNOWN = 12


def _folder_type(value: int | FolderType) -> FolderType:
    try:
        return FolderType(value)
    except ValueError as exc:
        raise CommandError(
            f"{f.name(PAGE, 'Type')}: expected a folder type 1..19, got {value}"
        ) from exc


@attrs.frozen
class FolderSyncRequest:
    """``<FolderSync><SyncKey>…</SyncKey></FolderSync>``."""

    #: "0" for the initial hierarchy sync, else the key of the last response.
    sync_key: str = attrs.field(validator=f.text_rule(PAGE, "SyncKey", max_len=MAX_ID_LEN))

    def to_element(self) -> Element:
        return f.container(PAGE, "FolderSync", f.leaf(PAGE, "SyncKey", self.sync_key))

    @classmethod
    def from_element(cls, el: Element) -> FolderSyncRequest:
        f.expect_root(el, PAGE, "FolderSync")
        f.reject_unknown(el, [(PAGE, "SyncKey")], "FolderSync")
        return cls(f.req_text(el, PAGE, "SyncKey", "FolderSync", max_len=MAX_ID_LEN))


@attrs.frozen
class FolderEntry:
    """One folder in an ``Add`` or ``Update`` (ServerId, ParentId, DisplayName, Type)."""

    #: The folder's id, unique in the mailbox.
    server_id: str = attrs.field(validator=f.text_rule(PAGE, "ServerId", max_len=MAX_ID_LEN))
    #: The parent folder's id; "0" for a top-level folder.
    parent_id: str = attrs.field(validator=f.text_rule(PAGE, "ParentId", max_len=MAX_ID_LEN))
    #: Name shown to the user.
    display_name: str = attrs.field(validator=attrs.validators.instance_of(str))
    #: What the folder holds.
    type: FolderType = attrs.field(converter=_folder_type)

    def to_element(self, tag: str) -> Element:
        return f.container(
            PAGE,
            tag,
            f.leaf(PAGE, "ServerId", self.server_id),
            f.leaf(PAGE, "ParentId", self.parent_id),
            f.leaf(PAGE, "DisplayName", self.display_name),
            f.leaf(PAGE, "Type", int(self.type)),
        )

    @classmethod
    def from_element(cls, el: Element, where: str) -> FolderEntry:
        return cls(
            server_id=f.req_text(el, PAGE, "ServerId", where, max_len=MAX_ID_LEN),
            parent_id=f.req_text(el, PAGE, "ParentId", where, max_len=MAX_ID_LEN),
            display_name=f.req_text(el, PAGE, "DisplayName", where),
            type=_folder_type(f.req_int(el, PAGE, "Type", where, hi=255)),
        )


def _check_count(instance: FolderChanges, _attribute: object, value: int | None) -> None:
    total = len(instance.updates) + len(instance.deletes) + len(instance.adds)
    if value is not None and value != total:
        # MS-ASCMD 2.2.3.33: Count is the number of Add, Delete and Update elements.
        raise CommandError(
            f"{f.name(PAGE, 'Count')}: says {value} changes but Changes holds {total}"
        )


@attrs.frozen(kw_only=True)
class FolderChanges:
    """``<Changes>``: folders added, updated and deleted since the request's SyncKey."""

    #: Folders changed (renamed, moved).
    updates: tuple[FolderEntry, ...] = ()
    #: Server ids of deleted folders.
    deletes: tuple[str, ...] = attrs.field(
        default=(),
        validator=f.each_text_rule(PAGE, "ServerId", max_len=MAX_ID_LEN),
    )
    #: New folders.
    adds: tuple[FolderEntry, ...] = ()
    #: The Count element as sent (None when absent); must equal the number of entries.
    count: int | None = attrs.field(default=None, validator=_check_count)

    @classmethod
    def of(
        cls,
        *,
        adds: tuple[FolderEntry, ...] = (),
        updates: tuple[FolderEntry, ...] = (),
        deletes: tuple[str, ...] = (),
    ) -> FolderChanges:
        """Changes with the Count filled in, as a server sends them."""
        return cls(
            adds=adds,
            updates=updates,
            deletes=deletes,
            count=len(adds) + len(updates) + len(deletes),
        )

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "Changes",
            f.leaf(PAGE, "Count", self.count),
            *(u.to_element("Update") for u in self.updates),
            *(f.container(PAGE, "Delete", f.leaf(PAGE, "ServerId", sid)) for sid in self.deletes),
            *(a.to_element("Add") for a in self.adds),
        )

    @classmethod
    def from_element(cls, el: Element, where: str) -> FolderChanges:
        path = f"{where}/Changes"
        f.reject_unknown(
            el, [(PAGE, "Count"), (PAGE, "Update"), (PAGE, "Delete"), (PAGE, "Add")], path
        )
        return cls(
            count=f.opt_int(el, PAGE, "Count", path),
            updates=tuple(
                FolderEntry.from_element(u, f"{path}/Update[{i}]")
                for i, u in enumerate(f.all_named(el, PAGE, "Update"))
            ),
            deletes=tuple(
                f.req_text(d, PAGE, "ServerId", f"{path}/Delete[{i}]", max_len=MAX_ID_LEN)
                for i, d in enumerate(f.all_named(el, PAGE, "Delete"))
            ),
            adds=tuple(
                FolderEntry.from_element(a, f"{path}/Add[{i}]")
                for i, a in enumerate(f.all_named(el, PAGE, "Add"))
            ),
        )


@attrs.frozen(kw_only=True)
class FolderSyncResponse:
    """``<FolderSync>`` response: Status, then SyncKey and Changes on success."""

    #: FolderSyncStatus value, or a global 1xx status.
    status: int = attrs.field(validator=f.int_rule(PAGE, "Status", hi=MAX_STATUS))
    #: The new hierarchy sync key (absent on failure).
    sync_key: str | None = attrs.field(
        default=None, validator=f.text_rule(PAGE, "SyncKey", max_len=MAX_ID_LEN)
    )
    #: The changes (absent on failure).
    changes: FolderChanges | None = None

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "FolderSync",
            f.leaf(PAGE, "Status", self.status),
            f.leaf(PAGE, "SyncKey", self.sync_key),
            None if self.changes is None else self.changes.to_element(),
        )

    @classmethod
    def from_element(cls, el: Element) -> FolderSyncResponse:
        f.expect_root(el, PAGE, "FolderSync")
        where = "FolderSync"
        f.reject_unknown(el, [(PAGE, "Status"), (PAGE, "SyncKey"), (PAGE, "Changes")], where)
        changes = f.optional(el, PAGE, "Changes", where)
        return cls(
            status=f.req_int(el, PAGE, "Status", where, hi=MAX_STATUS),
            sync_key=f.opt_text(el, PAGE, "SyncKey", where, max_len=MAX_ID_LEN),
            changes=None if changes is None else FolderChanges.from_element(changes, where),
        )
