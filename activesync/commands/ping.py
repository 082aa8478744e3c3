"""Ping (MS-ASCMD 2.2.1.13): typed request and response bodies on the Ping page.

Responsibility: turn ``<Ping>`` trees into values and back for the phone (builds requests,
reads responses) and the mock Exchange (the opposite). It must not hold a Ping open, track the
cached parameters or judge the heartbeat range: those are the server's decisions, answered with
a status (5 with the allowed HeartbeatInterval, 6 with MaxFolders).

Theory of operation: a request carries HeartbeatInterval (seconds) and Folders/Folder (Id,
Class). Both are optional: a request with no body at all (MS-ASHTTP 2.2.1.1.3) means "same as
last time" and is ``PingRequest(empty_body=True)``, whose ``to_element()`` is None. A response
is Status, then Folders/Folder (changed folder ids, Status 2), MaxFolders (Status 6) or
HeartbeatInterval (Status 5), in the MS-ASCMD 6.34 schema order.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from activesync.commands import fields as f
from activesync.commands.fields import MAX_ID_LEN, MAX_STATUS
from activesync.errors import CommandError
from activesync.wbxml.tree import Element

PAGE: Final = "Ping"


class PingStatus(enum.IntEnum):
    """Ping Status values (MS-ASCMD 2.2.3.177.11); 1xx global values may also appear."""

    #: The heartbeat expired with no changes; ping again.
    EXPIRED = 1
    #: Changes in the folders listed in Folders; sync them.
    CHANGES = 2
    #: The server has no cached parameters for an empty/partial request; send them.
    MISSING_PARAMETERS = 3
    #: Syntax error in the request.
    SYNTAX_ERROR = 4
    #: HeartbeatInterval out of range; the response's HeartbeatInterval is the bound.
    HEARTBEAT_OUT_OF_RANGE = 5
    #: Too many folders; the response's MaxFolders is the limit.
    TOO_MANY_FOLDERS = 6
    #: The folder hierarchy is out of date: FolderSync first.
    FOLDER_SYNC_REQUIRED = 7
    #: Server error; retry.
    SERVER_ERROR = 8


@attrs.frozen
class PingFolder:
    """``<Folder>`` of a Ping request: a folder to watch."""

    #: The folder's ServerId.
    id: str = attrs.field(validator=f.text_rule(PAGE, "Id", max_len=MAX_ID_LEN))
    #: The folder's class: "Email", "Calendar", "Contacts", "Tasks", "Notes" (or "SMS").
    class_: str = attrs.field(validator=f.text_rule(PAGE, "Class", max_len=MAX_ID_LEN))

    def to_element(self) -> Element:
        return f.container(
            PAGE, "Folder", f.leaf(PAGE, "Id", self.id), f.leaf(PAGE, "Class", self.class_)
        )

    @classmethod
    def from_element(cls, el: Element, where: str) -> PingFolder:
        f.reject_unknown(el, [(PAGE, "Id"), (PAGE, "Class")], where)
        return cls(
            f.req_text(el, PAGE, "Id", where, max_len=MAX_ID_LEN),
            f.req_text(el, PAGE, "Class", where, max_len=MAX_ID_LEN),
        )


def _check_empty_body(instance: PingRequest, _attribute: object, value: bool) -> None:
    if value and (instance.heartbeat_interval is not None or instance.folders is not None):
        raise CommandError("an empty Ping body carries no elements; other fields must be unset")


@attrs.frozen(kw_only=True)
class PingRequest:
    """A Ping request; ``PingRequest(empty_body=True)`` reuses the last parameters."""

    #: Seconds to wait for changes; None: the server's cached value.
    heartbeat_interval: int | None = attrs.field(
        default=None, validator=f.int_rule(PAGE, "HeartbeatInterval")
    )
    #: Folders to watch; None when Folders is absent (the server's cached list).
    folders: tuple[PingFolder, ...] | None = None
    #: True for a request without a body.
    empty_body: bool = attrs.field(default=False, validator=_check_empty_body)

    def to_element(self) -> Element | None:
        """The ``<Ping>`` tree, or None for the empty body."""
        if self.empty_body:
            return None
        return f.container(
            PAGE,
            "Ping",
            f.leaf(PAGE, "HeartbeatInterval", self.heartbeat_interval),
            None
            if self.folders is None
            else f.container(PAGE, "Folders", *(x.to_element() for x in self.folders)),
        )

    @classmethod
    def from_element(cls, el: Element | None) -> PingRequest:
        """Read a request; None (no body) gives the empty-body request."""
        if el is None:
            return cls(empty_body=True)
        f.expect_root(el, PAGE, "Ping")
        where = "Ping"
        f.reject_unknown(el, [(PAGE, "HeartbeatInterval"), (PAGE, "Folders")], where)
        folders_el = f.optional(el, PAGE, "Folders", where)
        return cls(
            heartbeat_interval=f.opt_int(el, PAGE, "HeartbeatInterval", where),
            folders=None
            if folders_el is None
            else f.list_of(folders_el, PAGE, "Folder", where, PingFolder.from_element),
        )


@attrs.frozen(kw_only=True)
class PingResponse:
    """A Ping response."""

    #: PingStatus value or a global status.
    status: int = attrs.field(validator=f.int_rule(PAGE, "Status", hi=MAX_STATUS))
    #: With Status 2: ids of the folders that changed; None when Folders is absent.
    folders: tuple[str, ...] | None = attrs.field(
        default=None,
        validator=f.each_text_rule(PAGE, "Folder", max_len=MAX_ID_LEN),
    )
    #: With Status 6: the most folders the server will watch.
    max_folders: int | None = attrs.field(default=None, validator=f.int_rule(PAGE, "MaxFolders"))
    #: With Status 5: the nearest allowed heartbeat interval.
    heartbeat_interval: int | None = attrs.field(
        default=None, validator=f.int_rule(PAGE, "HeartbeatInterval")
    )

    @classmethod
    def expired(cls) -> PingResponse:
        """Status 1: nothing changed during the heartbeat."""
        return cls(status=PingStatus.EXPIRED)

    @classmethod
    def changes(cls, folder_ids: tuple[str, ...]) -> PingResponse:
        """Status 2 with the folders that changed."""
        return cls(status=PingStatus.CHANGES, folders=folder_ids)

    @classmethod
    def heartbeat_out_of_range(cls, allowed: int) -> PingResponse:
        """Status 5 with the nearest allowed HeartbeatInterval."""
        return cls(status=PingStatus.HEARTBEAT_OUT_OF_RANGE, heartbeat_interval=allowed)

    @classmethod
    def too_many_folders(cls, max_folders: int) -> PingResponse:
        """Status 6 with MaxFolders."""
        return cls(status=PingStatus.TOO_MANY_FOLDERS, max_folders=max_folders)

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "Ping",
            f.leaf(PAGE, "Status", int(self.status)),
            None
            if self.folders is None
            else f.container(
                PAGE, "Folders", *(Element(PAGE, "Folder", text=x) for x in self.folders)
            ),
            f.leaf(PAGE, "MaxFolders", self.max_folders),
            f.leaf(PAGE, "HeartbeatInterval", self.heartbeat_interval),
        )

    @classmethod
    def from_element(cls, el: Element) -> PingResponse:
        f.expect_root(el, PAGE, "Ping")
        where = "Ping"
        f.reject_unknown(
            el,
            [
                (PAGE, "Status"),
                (PAGE, "Folders"),
                (PAGE, "MaxFolders"),
                (PAGE, "HeartbeatInterval"),
            ],
            where,
        )
        folders_el = f.optional(el, PAGE, "Folders", where)
        folders: tuple[str, ...] | None = None
        if folders_el is not None:
            f.reject_unknown(folders_el, [(PAGE, "Folder")], f"{where}/Folders")
            folders = tuple(
                f.text_of(x, f"{where}/Folders", max_len=MAX_ID_LEN)
                for x in f.all_named(folders_el, PAGE, "Folder")
            )
        return cls(
            status=f.req_int(el, PAGE, "Status", where, hi=MAX_STATUS),
            folders=folders,
            max_folders=f.opt_int(el, PAGE, "MaxFolders", where),
            heartbeat_interval=f.opt_int(el, PAGE, "HeartbeatInterval", where),
        )
