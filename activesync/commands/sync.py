"""Sync (MS-ASCMD 2.2.1.21): typed request and response bodies on the AirSync page.

Responsibility: turn ``<Sync>`` trees into values and back for both sides: the phone builds
requests and reads responses, the mock Exchange reads requests and builds responses. It must
not hold sync state, choose keys or window items: those are decisions of the mailbox code.

Theory of operation:
- Request: ``Sync`` holds ``Collections`` (each ``Collection`` in the strict order of MS-ASCMD
  2.2.3.29.2: SyncKey, CollectionId, Supported, DeletesAsMoves, GetChanges, WindowSize,
  ConversationMode, Options, Commands), then ``Wait`` or ``HeartbeatInterval``, ``WindowSize``
  and ``Partial``. A request with no body at all is legal (MS-ASHTTP 2.2.1.1.3, MS-ASCMD
  2.2.1.21): the server reuses the previous request; it is ``SyncRequest(empty_body=True)``,
  whose ``to_element()`` is None. Values the server must answer with a Sync status rather than
  a protocol error (Wait out of range -> Status 14, both Wait and HeartbeatInterval -> Status 4)
  are represented as sent: the view checks syntax, the server decides.
- Client commands: Add (ClientId + ApplicationData), Change (ServerId + ApplicationData),
  Delete (ServerId), Fetch (ServerId). Server commands: Add/Change (ServerId +
  ApplicationData), Delete, SoftDelete. ``Responses`` answer client commands (Add with
  ClientId -> ServerId, Change/Delete/Fetch with Status). Commands keep their document order.
- ApplicationData is kept as the ``<AirSync:ApplicationData>`` element, because its content
  depends on the folder class; ``EmailItem`` (``email_item.py``) reads and writes email ones.
- Response: either a top-level ``Status`` (the error form, and ``Limit`` with Status 14) or
  ``Collections``; each collection has SyncKey, CollectionId, Status, MoreAvailable, Commands,
  Responses (the child order listed in MS-ASCMD 2.2.3.29.2).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import ClassVar, Final, Self, TypeVar

import attrs

from activesync.commands import fields as f
from activesync.commands.airsyncbase import PAGE as BASE
from activesync.commands.airsyncbase import BodyPreference
from activesync.commands.fields import MAX_ID_LEN, MAX_STATUS
from activesync.errors import CommandError
from activesync.wbxml.tree import Element

PAGE: Final = "AirSync"

_T = TypeVar("_T")


class SyncStatus(enum.IntEnum):
    """Sync Status values (MS-ASCMD 2.2.3.177.17); 1xx global values may also appear."""

    #: Success.
    SUCCESS = 1
    #: Invalid or mismatched synchronization key: resync the folder from SyncKey 0.
    INVALID_SYNC_KEY = 3
    #: Protocol error (malformed request, both Wait and HeartbeatInterval...).
    PROTOCOL_ERROR = 4
    #: Server error; retry.
    SERVER_ERROR = 5
    #: Error in client/server conversion (bad item data).
    CONVERSION_ERROR = 6
    #: Conflict between client and server changes.
    CONFLICT = 7
    #: Object not found.
    OBJECT_NOT_FOUND = 8
    #: The Sync command cannot be completed; retry.
    CANNOT_COMPLETE = 9
    #: The folder hierarchy changed: FolderSync, then Sync again.
    FOLDER_HIERARCHY_CHANGED = 12
    #: Empty or Partial request without a cached request: send the full request.
    INCOMPLETE_REQUEST = 13
    #: Wait or HeartbeatInterval out of range; Limit gives the bound.
    INVALID_WAIT = 14
    #: Too many collections in the request.
    TOO_MANY_COLLECTIONS = 15
    #: Retry.
    RETRY = 16


class FilterType(enum.IntEnum):
    """``<AirSync:FilterType>`` time windows (MS-ASCMD 2.2.3.68.2)."""

    #: No filter: all items.
    ALL = 0
    #: One day back.
    ONE_DAY = 1
    #: Three days back.
    THREE_DAYS = 2
    #: One week back.
    ONE_WEEK = 3
    #: Two weeks back.
    TWO_WEEKS = 4
    #: One month back.
    ONE_MONTH = 5
    #: Three months back (calendar only).
    THREE_MONTHS = 6
    #: Six months back (calendar only).
    SIX_MONTHS = 7
    #: Incomplete tasks only (tasks only).
    INCOMPLETE_TASKS = 8


def _id_rule(tag: str) -> f.Validator:
    return f.text_rule(PAGE, tag, max_len=MAX_ID_LEN)


def _check_app_data(_instance: object, _attribute: object, value: Element | None) -> None:
    if value is not None and (value.page, value.tag) != (PAGE, "ApplicationData"):
        raise CommandError(
            f"{f.name(PAGE, 'ApplicationData')}: expected that element, "
            f"got {f.name(value.page, value.tag)}"
        )


def _app_data(el: Element, where: str) -> Element | None:
    found = f.optional(el, PAGE, "ApplicationData", where)
    if found is not None and (found.text is not None or found.opaque is not None):
        raise CommandError(f"{where}/ApplicationData: expected a container, got a value")
    return found


# -- Options ---------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SyncOptions:
    """``<AirSync:Options>`` (MS-ASCMD 2.2.3.125.6; GetItemEstimate 2.2.3.125.2 uses the same
    element with Class, FilterType and MaxItems only)."""

    #: Item class these options apply to ("Email", "SMS"...); None for the folder's default.
    class_: str | None = None
    #: Time window (FilterType values 0..8).
    filter_type: int | None = attrs.field(
        default=None, validator=f.int_rule(PAGE, "FilterType", hi=8)
    )
    #: Body preferences, one per body type the client accepts.
    body_preferences: tuple[BodyPreference, ...] = ()
    #: 0: client wins conflicts, 1: server wins (Conflict, MS-ASCMD 2.2.3.34).
    conflict: int | None = attrs.field(default=None, validator=f.int_rule(PAGE, "Conflict", hi=1))
    #: 0 never, 1 S/MIME only, 2 always send MIME (MIMESupport, 2.2.3.110.3).
    mime_support: int | None = attrs.field(
        default=None, validator=f.int_rule(PAGE, "MIMESupport", hi=2)
    )
    #: MIME truncation code 0..8 (MIMETruncation, 2.2.3.111).
    mime_truncation: int | None = attrs.field(
        default=None, validator=f.int_rule(PAGE, "MIMETruncation", hi=8)
    )
    #: Maximum items (MaxItems, 14.0+, recipient information cache).
    max_items: int | None = attrs.field(default=None, validator=f.int_rule(PAGE, "MaxItems"))

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "Options",
            f.leaf(PAGE, "Class", self.class_),
            f.leaf(PAGE, "FilterType", self.filter_type),
            *(bp.to_element() for bp in self.body_preferences),
            f.leaf(PAGE, "Conflict", self.conflict),
            f.leaf(PAGE, "MIMESupport", self.mime_support),
            f.leaf(PAGE, "MIMETruncation", self.mime_truncation),
            f.leaf(PAGE, "MaxItems", self.max_items),
        )

    @classmethod
    def from_element(cls, el: Element, where: str) -> SyncOptions:
        f.reject_unknown(
            el,
            [
                (PAGE, "Class"),
                (PAGE, "FilterType"),
                (BASE, "BodyPreference"),
                (PAGE, "Conflict"),
                (PAGE, "MIMESupport"),
                (PAGE, "MIMETruncation"),
                (PAGE, "MaxItems"),
                # MS-ASAIRS 14.1+ and MS-ASRM: accepted, not modelled.
                (BASE, "BodyPartPreference"),
                ("RightsManagement", "RightsManagementSupport"),
            ],
            where,
        )
        return cls(
            class_=f.opt_text(el, PAGE, "Class", where),
            filter_type=f.opt_int(el, PAGE, "FilterType", where, hi=8),
            body_preferences=tuple(
                BodyPreference.from_element(bp, f"{where}[{i}]")
                for i, bp in enumerate(f.all_named(el, BASE, "BodyPreference"))
            ),
            conflict=f.opt_int(el, PAGE, "Conflict", where, hi=1),
            mime_support=f.opt_int(el, PAGE, "MIMESupport", where, hi=2),
            mime_truncation=f.opt_int(el, PAGE, "MIMETruncation", where, hi=8),
            max_items=f.opt_int(el, PAGE, "MaxItems", where),
        )


# -- Commands ------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ClientAdd:
    """Client ``<Add>``: a new item created on the phone (MS-ASCMD 2.2.3.7.2)."""

    #: Temporary id the client gave the item; the server answers with a ServerId.
    client_id: str = attrs.field(validator=_id_rule("ClientId"))
    #: The item's properties (``<AirSync:ApplicationData>``).
    application_data: Element | None = attrs.field(default=None, validator=_check_app_data)
    #: Item class, when not the folder's default.
    class_: str | None = None

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "Add",
            f.leaf(PAGE, "Class", self.class_),
            f.leaf(PAGE, "ClientId", self.client_id),
            self.application_data,
        )

    @classmethod
    def from_element(cls, el: Element, where: str) -> ClientAdd:
        return cls(
            client_id=f.req_text(el, PAGE, "ClientId", where, max_len=MAX_ID_LEN),
            application_data=_app_data(el, where),
            class_=f.opt_text(el, PAGE, "Class", where),
        )


@attrs.frozen(kw_only=True)
class _ItemWithData:
    """Class, ServerId and ApplicationData under the tag ``TAG``: the shape server Add and
    either side's Change share (MS-ASCMD 2.2.3.7.2, 2.2.3.24); the subclasses differ only in
    the tag, and stay distinct types for the commands' unions."""

    #: The element's tag.
    TAG: ClassVar[str]

    #: The item's id.
    server_id: str = attrs.field(validator=_id_rule("ServerId"))
    #: The item's properties (``<AirSync:ApplicationData>``).
    application_data: Element | None = attrs.field(default=None, validator=_check_app_data)
    #: Item class, when not the folder's default.
    class_: str | None = None

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            self.TAG,
            f.leaf(PAGE, "Class", self.class_),
            f.leaf(PAGE, "ServerId", self.server_id),
            self.application_data,
        )

    @classmethod
    def from_element(cls, el: Element, where: str) -> Self:
        return cls(
            server_id=f.req_text(el, PAGE, "ServerId", where, max_len=MAX_ID_LEN),
            application_data=_app_data(el, where),
            class_=f.opt_text(el, PAGE, "Class", where),
        )


@attrs.frozen(kw_only=True)
class ServerAdd(_ItemWithData):
    """Server ``<Add>``: an item the phone must create (MS-ASCMD 2.2.3.7.2)."""

    TAG: ClassVar[str] = "Add"


@attrs.frozen(kw_only=True)
class ItemChange(_ItemWithData):
    """``<Change>`` from either side: new property values of an item (MS-ASCMD 2.2.3.24)."""

    TAG: ClassVar[str] = "Change"


@attrs.frozen(kw_only=True)
class ItemDelete:
    """``<Delete>`` from either side (MS-ASCMD 2.2.3.42.2)."""

    #: The item's id.
    server_id: str = attrs.field(validator=_id_rule("ServerId"))
    #: Item class, when not the folder's default.
    class_: str | None = None

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "Delete",
            f.leaf(PAGE, "Class", self.class_),
            f.leaf(PAGE, "ServerId", self.server_id),
        )

    @classmethod
    def from_element(cls, el: Element, where: str) -> ItemDelete:
        return cls(
            server_id=f.req_text(el, PAGE, "ServerId", where, max_len=MAX_ID_LEN),
            class_=f.opt_text(el, PAGE, "Class", where),
        )


@attrs.frozen
class _ItemRef:
    """Only a ServerId under the tag ``TAG``: server SoftDelete and client Fetch."""

    #: The element's tag.
    TAG: ClassVar[str]

    #: The item's id.
    server_id: str = attrs.field(validator=_id_rule("ServerId"))

    def to_element(self) -> Element:
        return f.container(PAGE, self.TAG, f.leaf(PAGE, "ServerId", self.server_id))

    @classmethod
    def from_element(cls, el: Element, where: str) -> Self:
        return cls(f.req_text(el, PAGE, "ServerId", where, max_len=MAX_ID_LEN))


@attrs.frozen
class ItemSoftDelete(_ItemRef):
    """Server ``<SoftDelete>``: the item left the FilterType window (MS-ASCMD 2.2.3.170)."""

    TAG: ClassVar[str] = "SoftDelete"


@attrs.frozen
class ItemFetch(_ItemRef):
    """Client ``<Fetch>``: send this item's full data (MS-ASCMD 2.2.3.67.2)."""

    TAG: ClassVar[str] = "Fetch"


#: What a client may put in Commands.
ClientCommand = ClientAdd | ItemChange | ItemDelete | ItemFetch
#: What a server may put in Commands.
ServerCommand = ServerAdd | ItemChange | ItemDelete | ItemSoftDelete


#: Reads one item element; the path it is given names the element itself.
_Reader = Callable[[Element, str], _T]

#: Tag -> view of every command a client may send, and of every one a server may send.
_CLIENT_COMMANDS: Final[dict[str, _Reader[ClientCommand]]] = {
    "Add": ClientAdd.from_element,
    "Change": ItemChange.from_element,
    "Delete": ItemDelete.from_element,
    "Fetch": ItemFetch.from_element,
}
_SERVER_COMMANDS: Final[dict[str, _Reader[ServerCommand]]] = {
    "Add": ServerAdd.from_element,
    "Change": ItemChange.from_element,
    "Delete": ItemDelete.from_element,
    "SoftDelete": ItemSoftDelete.from_element,
}


def _read_items(el: Element, where: str, readers: Mapping[str, _Reader[_T]]) -> tuple[_T, ...]:
    """Every child of ``el`` (Commands, Responses) through the reader for its tag, in order."""
    out: list[_T] = []
    for i, c in enumerate(el.children):
        reader = readers.get(c.tag) if c.page == PAGE else None
        if reader is None:
            tags = list(readers)
            raise CommandError(
                f"{where}: expected {', '.join(tags[:-1])} or {tags[-1]}, "
                f"got {f.name(c.page, c.tag)}"
            )
        out.append(reader(c, f"{where}/{c.tag}[{i}]"))
    return tuple(out)


# -- Request -----------------------------------------------------------------------------------


def _bare_bool(tag: str, value: bool | None) -> Element | None:
    # Clients send GetChanges/DeletesAsMoves as bare tags for true (MS-ASCMD 4.10 examples);
    # false must be spelled out.
    if value is None:
        return None
    return Element(PAGE, tag) if value else Element(PAGE, tag, text="0")


@attrs.frozen(kw_only=True)
class SyncCollectionRequest:
    """One ``<Collection>`` of a Sync request."""

    #: "0" for the folder's initial sync, else the last key the server gave.
    sync_key: str = attrs.field(validator=_id_rule("SyncKey"))
    #: The folder's ServerId (from FolderSync).
    collection_id: str = attrs.field(validator=_id_rule("CollectionId"))
    #: Supported (contacts/calendar ghosting), kept verbatim.
    supported: Element | None = None
    #: True (default on the server): deleted items go to Deleted Items.
    deletes_as_moves: bool | None = None
    #: Ask the server for its changes.
    get_changes: bool | None = None
    #: Maximum changes to return for this collection (the server caps it at 512).
    window_size: int | None = attrs.field(default=None, validator=f.int_rule(PAGE, "WindowSize"))
    #: Expand results to whole conversations (14.0+).
    conversation_mode: bool | None = None
    #: Options, one per item class.
    options: tuple[SyncOptions, ...] = ()
    #: Client changes; None when the Commands element is absent.
    commands: tuple[ClientCommand, ...] | None = None

    def to_element(self) -> Element:
        # MS-ASCMD 2.2.3.29.2: strict order.
        return f.container(
            PAGE,
            "Collection",
            f.leaf(PAGE, "SyncKey", self.sync_key),
            f.leaf(PAGE, "CollectionId", self.collection_id),
            self.supported,
            _bare_bool("DeletesAsMoves", self.deletes_as_moves),
            _bare_bool("GetChanges", self.get_changes),
            f.leaf(PAGE, "WindowSize", self.window_size),
            f.leaf(PAGE, "ConversationMode", self.conversation_mode),
            *(o.to_element() for o in self.options),
            None
            if self.commands is None
            else f.container(PAGE, "Commands", *(c.to_element() for c in self.commands)),
        )

    @classmethod
    def from_element(cls, el: Element, where: str) -> SyncCollectionRequest:
        f.reject_unknown(
            el,
            [
                (PAGE, t)
                for t in (
                    "SyncKey",
                    "CollectionId",
                    "Supported",
                    "DeletesAsMoves",
                    "GetChanges",
                    "WindowSize",
                    "ConversationMode",
                    "Options",
                    "Commands",
                )
            ],
            where,
        )
        commands = f.optional(el, PAGE, "Commands", where)
        return cls(
            sync_key=f.req_text(el, PAGE, "SyncKey", where, max_len=MAX_ID_LEN),
            collection_id=f.req_text(el, PAGE, "CollectionId", where, max_len=MAX_ID_LEN),
            supported=f.optional(el, PAGE, "Supported", where),
            deletes_as_moves=f.opt_bool(el, PAGE, "DeletesAsMoves", where),
            get_changes=f.opt_bool(el, PAGE, "GetChanges", where),
            window_size=f.opt_int(el, PAGE, "WindowSize", where),
            conversation_mode=f.opt_bool(el, PAGE, "ConversationMode", where),
            options=tuple(
                SyncOptions.from_element(o, f"{where}/Options[{i}]")
                for i, o in enumerate(f.all_named(el, PAGE, "Options"))
            ),
            commands=None
            if commands is None
            else _read_items(commands, f"{where}/Commands", _CLIENT_COMMANDS),
        )


def _check_empty_body(instance: SyncRequest, _attribute: object, value: bool) -> None:
    unset = (
        instance.collections is None
        and instance.wait is None
        and instance.heartbeat_interval is None
        and instance.window_size is None
        and not instance.partial
    )
    if value and not unset:
        raise CommandError("an empty Sync body carries no elements; other fields must be unset")


@attrs.frozen(kw_only=True)
class SyncRequest:
    """A Sync request; ``SyncRequest(empty_body=True)`` is the body-less form."""

    #: The collections to sync; None when Collections is absent (Partial requests).
    collections: tuple[SyncCollectionRequest, ...] | None = None
    #: Minutes to hold the request if nothing changed (12.1+); range is the server's call.
    wait: int | None = attrs.field(default=None, validator=f.int_rule(PAGE, "Wait"))
    #: Seconds to hold the request if nothing changed (14.0+).
    heartbeat_interval: int | None = attrs.field(
        default=None, validator=f.int_rule(PAGE, "HeartbeatInterval")
    )
    #: Maximum changes over all collections.
    window_size: int | None = attrs.field(default=None, validator=f.int_rule(PAGE, "WindowSize"))
    #: The request lists only some collections; the rest come from the server's cache.
    partial: bool = False
    #: True for a request without a body (reuse the cached request).
    empty_body: bool = attrs.field(default=False, validator=_check_empty_body)

    def to_element(self) -> Element | None:
        """The ``<Sync>`` tree, or None for the empty body."""
        if self.empty_body:
            return None
        return f.container(
            PAGE,
            "Sync",
            None
            if self.collections is None
            else f.container(PAGE, "Collections", *(c.to_element() for c in self.collections)),
            f.leaf(PAGE, "Wait", self.wait),
            f.leaf(PAGE, "HeartbeatInterval", self.heartbeat_interval),
            f.leaf(PAGE, "WindowSize", self.window_size),
            f.flag(PAGE, "Partial", self.partial),
        )

    @classmethod
    def from_element(cls, el: Element | None) -> SyncRequest:
        """Read a request; None (no body) gives the empty-body request."""
        if el is None:
            return cls(empty_body=True)
        f.expect_root(el, PAGE, "Sync")
        where = "Sync"
        f.reject_unknown(
            el,
            [
                (PAGE, t)
                for t in ("Collections", "Wait", "HeartbeatInterval", "WindowSize", "Partial")
            ],
            where,
        )
        colls = f.optional(el, PAGE, "Collections", where)
        return cls(
            collections=None
            if colls is None
            else f.list_of(colls, PAGE, "Collection", where, SyncCollectionRequest.from_element),
            wait=f.opt_int(el, PAGE, "Wait", where),
            heartbeat_interval=f.opt_int(el, PAGE, "HeartbeatInterval", where),
            window_size=f.opt_int(el, PAGE, "WindowSize", where),
            partial=f.has_flag(el, PAGE, "Partial", where),
        )


# -- Response ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class AddResponse:
    """``<Responses><Add>``: the outcome of a client Add."""

    #: The client's temporary id.
    client_id: str = attrs.field(validator=_id_rule("ClientId"))
    #: SyncStatus of the add.
    status: int = attrs.field(validator=f.int_rule(PAGE, "Status", hi=MAX_STATUS))
    #: The id the server gave the new item (absent on failure).
    server_id: str | None = attrs.field(default=None, validator=_id_rule("ServerId"))
    #: Item class, when not the folder's default.
    class_: str | None = None

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "Add",
            f.leaf(PAGE, "Class", self.class_),
            f.leaf(PAGE, "ClientId", self.client_id),
            f.leaf(PAGE, "ServerId", self.server_id),
            f.leaf(PAGE, "Status", self.status),
        )

    @classmethod
    def from_element(cls, el: Element, where: str) -> AddResponse:
        return cls(
            client_id=f.req_text(el, PAGE, "ClientId", where, max_len=MAX_ID_LEN),
            status=f.req_int(el, PAGE, "Status", where, hi=MAX_STATUS),
            server_id=f.opt_text(el, PAGE, "ServerId", where, max_len=MAX_ID_LEN),
            class_=f.opt_text(el, PAGE, "Class", where),
        )


@attrs.frozen(kw_only=True)
class ChangeResponse:
    """``<Responses><Change>``: a failed client Change (success is not reported)."""

    #: The item's id.
    server_id: str = attrs.field(validator=_id_rule("ServerId"))
    #: SyncStatus of the change.
    status: int = attrs.field(validator=f.int_rule(PAGE, "Status", hi=MAX_STATUS))
    #: Item class, when not the folder's default.
    class_: str | None = None

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "Change",
            f.leaf(PAGE, "Class", self.class_),
            f.leaf(PAGE, "ServerId", self.server_id),
            f.leaf(PAGE, "Status", self.status),
        )

    @classmethod
    def from_element(cls, el: Element, where: str) -> ChangeResponse:
        return cls(
            server_id=f.req_text(el, PAGE, "ServerId", where, max_len=MAX_ID_LEN),
            status=f.req_int(el, PAGE, "Status", where, hi=MAX_STATUS),
            class_=f.opt_text(el, PAGE, "Class", where),
        )


@attrs.frozen(kw_only=True)
class DeleteResponse:
    """``<Responses><Delete>``: a failed client Delete."""

    #: The item's id.
    server_id: str = attrs.field(validator=_id_rule("ServerId"))
    #: SyncStatus of the delete.
    status: int = attrs.field(validator=f.int_rule(PAGE, "Status", hi=MAX_STATUS))

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "Delete",
            f.leaf(PAGE, "ServerId", self.server_id),
            f.leaf(PAGE, "Status", self.status),
        )

    @classmethod
    def from_element(cls, el: Element, where: str) -> DeleteResponse:
        return cls(
            server_id=f.req_text(el, PAGE, "ServerId", where, max_len=MAX_ID_LEN),
            status=f.req_int(el, PAGE, "Status", where, hi=MAX_STATUS),
        )


@attrs.frozen(kw_only=True)
class FetchResponse:
    """``<Responses><Fetch>``: the data of an item the client fetched."""

    #: SyncStatus of the fetch.
    status: int = attrs.field(validator=f.int_rule(PAGE, "Status", hi=MAX_STATUS))
    #: The item's id.
    server_id: str | None = attrs.field(default=None, validator=_id_rule("ServerId"))
    #: The item's properties.
    application_data: Element | None = attrs.field(default=None, validator=_check_app_data)

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "Fetch",
            f.leaf(PAGE, "ServerId", self.server_id),
            f.leaf(PAGE, "Status", self.status),
            self.application_data,
        )

    @classmethod
    def from_element(cls, el: Element, where: str) -> FetchResponse:
        return cls(
            status=f.req_int(el, PAGE, "Status", where, hi=MAX_STATUS),
            server_id=f.opt_text(el, PAGE, "ServerId", where, max_len=MAX_ID_LEN),
            application_data=_app_data(el, where),
        )


#: What a server may put in Responses.
ItemResponse = AddResponse | ChangeResponse | DeleteResponse | FetchResponse

_RESPONSES: Final[dict[str, _Reader[ItemResponse]]] = {
    "Add": AddResponse.from_element,
    "Change": ChangeResponse.from_element,
    "Delete": DeleteResponse.from_element,
    "Fetch": FetchResponse.from_element,
}


@attrs.frozen(kw_only=True)
class SyncCollectionResponse:
    """One ``<Collection>`` of a Sync response."""

    #: The new sync key for this folder.
    sync_key: str = attrs.field(validator=_id_rule("SyncKey"))
    #: The folder's ServerId.
    collection_id: str = attrs.field(validator=_id_rule("CollectionId"))
    #: SyncStatus for this collection.
    status: int = attrs.field(validator=f.int_rule(PAGE, "Status", hi=MAX_STATUS))
    #: Item class (2.5/12.x servers echo it).
    class_: str | None = None
    #: More changes wait on the server beyond this window.
    more_available: bool = False
    #: Server changes; None when Commands is absent.
    commands: tuple[ServerCommand, ...] | None = None
    #: Answers to the client's commands; None when Responses is absent.
    responses: tuple[ItemResponse, ...] | None = None

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "Collection",
            f.leaf(PAGE, "Class", self.class_),
            f.leaf(PAGE, "SyncKey", self.sync_key),
            f.leaf(PAGE, "CollectionId", self.collection_id),
            f.leaf(PAGE, "Status", self.status),
            f.flag(PAGE, "MoreAvailable", self.more_available),
            None
            if self.commands is None
            else f.container(PAGE, "Commands", *(c.to_element() for c in self.commands)),
            None
            if self.responses is None
            else f.container(PAGE, "Responses", *(r.to_element() for r in self.responses)),
        )

    @classmethod
    def from_element(cls, el: Element, where: str) -> SyncCollectionResponse:
        f.reject_unknown(
            el,
            [
                (PAGE, t)
                for t in (
                    "Class",
                    "SyncKey",
                    "CollectionId",
                    "Status",
                    "MoreAvailable",
                    "Commands",
                    "Responses",
                )
            ],
            where,
        )
        commands = f.optional(el, PAGE, "Commands", where)
        responses = f.optional(el, PAGE, "Responses", where)
        return cls(
            sync_key=f.req_text(el, PAGE, "SyncKey", where, max_len=MAX_ID_LEN),
            collection_id=f.req_text(el, PAGE, "CollectionId", where, max_len=MAX_ID_LEN),
            status=f.req_int(el, PAGE, "Status", where, hi=MAX_STATUS),
            class_=f.opt_text(el, PAGE, "Class", where),
            more_available=f.has_flag(el, PAGE, "MoreAvailable", where),
            commands=None
            if commands is None
            else _read_items(commands, f"{where}/Commands", _SERVER_COMMANDS),
            responses=None
            if responses is None
            else _read_items(responses, f"{where}/Responses", _RESPONSES),
        )


@attrs.frozen(kw_only=True)
class SyncResponse:
    """A Sync response: a top-level Status (error form, with Limit for Status 14) and/or
    Collections (MS-ASCMD 2.2.3.180: Limit and Collections are mutually exclusive)."""

    #: Request-level SyncStatus or global status; None on the normal success form.
    status: int | None = attrs.field(
        default=None, validator=f.int_rule(PAGE, "Status", hi=MAX_STATUS)
    )
    #: With Status 14: the bound the Wait/HeartbeatInterval broke.
    limit: int | None = attrs.field(default=None, validator=f.int_rule(PAGE, "Limit"))
    #: Per-collection results; None when Collections is absent.
    collections: tuple[SyncCollectionResponse, ...] | None = None

    def __attrs_post_init__(self) -> None:
        if self.limit is not None and self.collections is not None:
            raise CommandError("Sync response: Limit and Collections are mutually exclusive")

    @classmethod
    def error(cls, status: int, *, limit: int | None = None) -> SyncResponse:
        """The request-level failure form ``<Sync><Status>N</Status></Sync>``."""
        return cls(status=status, limit=limit)

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "Sync",
            f.leaf(PAGE, "Status", self.status),
            f.leaf(PAGE, "Limit", self.limit),
            None
            if self.collections is None
            else f.container(PAGE, "Collections", *(c.to_element() for c in self.collections)),
        )

    @classmethod
    def from_element(cls, el: Element) -> SyncResponse:
        f.expect_root(el, PAGE, "Sync")
        where = "Sync"
        f.reject_unknown(el, [(PAGE, "Status"), (PAGE, "Limit"), (PAGE, "Collections")], where)
        colls = f.optional(el, PAGE, "Collections", where)
        return cls(
            status=f.opt_int(el, PAGE, "Status", where, hi=MAX_STATUS),
            limit=f.opt_int(el, PAGE, "Limit", where),
            collections=None
            if colls is None
            else f.list_of(colls, PAGE, "Collection", where, SyncCollectionResponse.from_element),
        )
