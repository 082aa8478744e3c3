"""ItemOperations (MS-ASCMD 2.2.1.10, 12.0+): typed Fetch request and response bodies.

Responsibility: turn ``<ItemOperations>`` trees into values and back for the phone and the mock
Exchange, with Fetch modelled (mailbox items and attachments). EmptyFolderContents and Move
operations are carried verbatim as elements, in order, so a request holding them still parses
and a server can answer each in turn. It must not look items up.

Theory of operation: operations run in document order and each gets its own result
(MS-ASCMD 2.2.1.10). A Fetch names a ``Store`` ("Mailbox"), then ``airsync:CollectionId`` and
``airsync:ServerId`` (or ``search:LongId``, or ``airsyncbase:FileReference`` for an attachment),
then ``Options`` (BodyPreference, MIMESupport...). The response is the top-level ``Status``
then ``Response`` with one result per operation; a Fetch result is Status, CollectionId,
ServerId, Class and ``Properties`` (the item's fields: ``EmailItem.to_properties()``), in the
MS-ASCMD 6.28 schema order.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Final, TypeVar

import attrs

from activesync.commands import fields as f
from activesync.commands.airsyncbase import PAGE as BASE
from activesync.commands.airsyncbase import BodyPreference
from activesync.commands.fields import MAX_ID_LEN, MAX_STATUS
from activesync.errors import CommandError
from activesync.wbxml.tree import Element

PAGE: Final = "ItemOperations"
AIRSYNC: Final = "AirSync"
SEARCH: Final = "Search"
#: LongId is a string of up to 256 characters (MS-ASCMD 2.2.3.98.1).
MAX_LONG_ID_LEN: Final = 256
_T = TypeVar("_T")
#: The Store value for mailbox items (MS-ASCMD 2.2.3.178.2).
MAILBOX: Final = "Mailbox"


class ItemOperationsStatus(enum.IntEnum):
    """ItemOperations Status values (MS-ASCMD 2.2.3.177.8), the ones a mailbox fetch meets."""

    #: Success.
    SUCCESS = 1
    #: Protocol error: malformed or invalid request.
    PROTOCOL_ERROR = 2
    #: Server error.
    SERVER_ERROR = 3
    #: Object not found (unknown CollectionId/ServerId/FileReference).
    OBJECT_NOT_FOUND = 6
    #: Byte range invalid or too large.
    INVALID_RANGE = 8
    #: Store unknown or unsupported.
    UNKNOWN_STORE = 9
    #: Attachment or attachment id invalid.
    INVALID_ATTACHMENT = 15
    #: Access to the resource denied.
    ACCESS_DENIED = 16


def _id(page: str, tag: str, max_len: int = MAX_ID_LEN) -> f.Validator:
    return f.text_rule(page, tag, max_len=max_len)


@attrs.frozen(kw_only=True)
class FetchOptions:
    """``<Options>`` of a Fetch: body preferences and MIME support; other options verbatim."""

    #: airsyncbase:BodyPreference, one per body type accepted.
    body_preferences: tuple[BodyPreference, ...] = ()
    #: airsync:MIMESupport 0..2.
    mime_support: int | None = attrs.field(
        default=None, validator=f.int_rule(AIRSYNC, "MIMESupport", hi=2)
    )
    #: Schema, Range, UserName, Password, BodyPartPreference... kept as sent.
    extra: tuple[Element, ...] = ()

    def __attrs_post_init__(self) -> None:
        for el in self.extra:
            if (el.page, el.tag) in ((BASE, "BodyPreference"), (AIRSYNC, "MIMESupport")):
                raise CommandError(
                    f"FetchOptions.extra must not hold {f.name(el.page, el.tag)}: it has a field"
                )

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "Options",
            *self.extra,
            f.leaf(AIRSYNC, "MIMESupport", self.mime_support),
            *(bp.to_element() for bp in self.body_preferences),
        )

    @classmethod
    def from_element(cls, el: Element, where: str) -> FetchOptions:
        path = f"{where}/Options"
        return cls(
            body_preferences=tuple(
                BodyPreference.from_element(bp, f"{path}[{i}]")
                for i, bp in enumerate(f.all_named(el, BASE, "BodyPreference"))
            ),
            mime_support=f.opt_int(el, AIRSYNC, "MIMESupport", path, hi=2),
            extra=tuple(
                c
                for c in el.children
                if (c.page, c.tag) not in ((BASE, "BodyPreference"), (AIRSYNC, "MIMESupport"))
            ),
        )


@attrs.frozen(kw_only=True)
class FetchRequest:
    """A ``<Fetch>`` operation."""

    #: "Mailbox" for mailbox items and attachments.
    store: str = attrs.field(default=MAILBOX, validator=_id(PAGE, "Store", 256))
    #: The folder (airsync:CollectionId).
    collection_id: str | None = attrs.field(default=None, validator=_id(AIRSYNC, "CollectionId"))
    #: The item (airsync:ServerId).
    server_id: str | None = attrs.field(default=None, validator=_id(AIRSYNC, "ServerId"))
    #: A Search result (search:LongId) instead of CollectionId/ServerId.
    long_id: str | None = attrs.field(
        default=None, validator=_id(SEARCH, "LongId", MAX_LONG_ID_LEN)
    )
    #: An attachment (airsyncbase:FileReference).
    file_reference: str | None = attrs.field(
        default=None, validator=_id(BASE, "FileReference", 256)
    )
    #: Options; None when absent.
    options: FetchOptions | None = None

    def to_element(self) -> Element:
        # MS-ASCMD 4.x examples: Store, CollectionId, ServerId, Options.
        return f.container(
            PAGE,
            "Fetch",
            f.leaf(PAGE, "Store", self.store),
            f.leaf(SEARCH, "LongId", self.long_id),
            f.leaf(AIRSYNC, "CollectionId", self.collection_id),
            f.leaf(AIRSYNC, "ServerId", self.server_id),
            f.leaf(BASE, "FileReference", self.file_reference),
            None if self.options is None else self.options.to_element(),
        )

    @classmethod
    def from_element(cls, el: Element, where: str) -> FetchRequest:
        f.reject_unknown(
            el,
            [
                (PAGE, "Store"),
                (SEARCH, "LongId"),
                (AIRSYNC, "CollectionId"),
                (AIRSYNC, "ServerId"),
                (BASE, "FileReference"),
                (PAGE, "Options"),
            ],
            where,
        )
        options = f.optional(el, PAGE, "Options", where)
        return cls(
            store=f.req_text(el, PAGE, "Store", where, max_len=256),
            long_id=f.opt_text(el, SEARCH, "LongId", where, max_len=MAX_LONG_ID_LEN),
            collection_id=f.opt_text(el, AIRSYNC, "CollectionId", where, max_len=MAX_ID_LEN),
            server_id=f.opt_text(el, AIRSYNC, "ServerId", where, max_len=MAX_ID_LEN),
            file_reference=f.opt_text(el, BASE, "FileReference", where, max_len=256),
            options=None if options is None else FetchOptions.from_element(options, where),
        )


#: The operations this package keeps as raw elements (the simulator runs only Fetch).
_RAW_OPS: Final = ((PAGE, "EmptyFolderContents"), (PAGE, "Move"))


def _ops_rule(where: str) -> f.Validator:
    """An attrs validator: a tuple (or None) of typed Fetch values and raw ``_RAW_OPS``."""

    def check(_instance: object, _attribute: object, value: tuple[object, ...] | None) -> None:
        for op in value or ():
            if isinstance(op, Element) and (op.page, op.tag) not in _RAW_OPS:
                raise CommandError(
                    f"{where}: expected Fetch, EmptyFolderContents or Move, "
                    f"got {f.name(op.page, op.tag)}"
                )

    return check


def _read_ops(
    el: Element, where: str, read_fetch: Callable[[Element, str], _T]
) -> tuple[_T | Element, ...]:
    """The children of ``el`` in order: Fetch through ``read_fetch``, the others raw."""
    f.reject_unknown(el, [(PAGE, "Fetch"), *_RAW_OPS], where)
    return tuple(
        read_fetch(c, f"{where}/Fetch[{i}]") if c.tag == "Fetch" else c
        for i, c in enumerate(el.children)
    )


@attrs.frozen
class ItemOperationsRequest:
    """``<ItemOperations>``: operations in the order the server must run them."""

    #: Fetch operations, and EmptyFolderContents/Move ones as raw elements.
    operations: tuple[FetchRequest | Element, ...] = attrs.field(
        validator=_ops_rule("ItemOperations")
    )

    @property
    def fetches(self) -> tuple[FetchRequest, ...]:
        """Only the Fetch operations."""
        return tuple(op for op in self.operations if isinstance(op, FetchRequest))

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "ItemOperations",
            *(op.to_element() if isinstance(op, FetchRequest) else op for op in self.operations),
        )

    @classmethod
    def from_element(cls, el: Element) -> ItemOperationsRequest:
        f.expect_root(el, PAGE, "ItemOperations")
        where = "ItemOperations"
        operations = _read_ops(el, where, FetchRequest.from_element)
        if not operations:
            raise CommandError(f"{where}: expected at least one Fetch, EmptyFolderContents or Move")
        return cls(operations)


@attrs.frozen(kw_only=True)
class FetchResult:
    """A ``<Fetch>`` inside the response's ``Response``."""

    #: ItemOperationsStatus of this fetch.
    status: int = attrs.field(validator=f.int_rule(PAGE, "Status", hi=MAX_STATUS))
    #: The folder, echoed.
    collection_id: str | None = attrs.field(default=None, validator=_id(AIRSYNC, "CollectionId"))
    #: The item, echoed.
    server_id: str | None = attrs.field(default=None, validator=_id(AIRSYNC, "ServerId"))
    #: The Search result, echoed.
    long_id: str | None = attrs.field(
        default=None, validator=_id(SEARCH, "LongId", MAX_LONG_ID_LEN)
    )
    #: The item's class ("Email").
    class_: str | None = attrs.field(default=None, validator=_id(AIRSYNC, "Class"))
    #: The attachment, echoed.
    file_reference: str | None = attrs.field(
        default=None, validator=_id(BASE, "FileReference", 256)
    )
    #: ``<ItemOperations:Properties>`` with the item's fields; None when absent.
    properties: Element | None = None

    def __attrs_post_init__(self) -> None:
        if self.properties is not None and (self.properties.page, self.properties.tag) != (
            PAGE,
            "Properties",
        ):
            raise CommandError(
                f"FetchResult.properties: expected {f.name(PAGE, 'Properties')}, "
                f"got {f.name(self.properties.page, self.properties.tag)}"
            )

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "Fetch",
            f.leaf(PAGE, "Status", self.status),
            f.leaf(AIRSYNC, "CollectionId", self.collection_id),
            f.leaf(AIRSYNC, "ServerId", self.server_id),
            f.leaf(SEARCH, "LongId", self.long_id),
            f.leaf(AIRSYNC, "Class", self.class_),
            f.leaf(BASE, "FileReference", self.file_reference),
            self.properties,
        )

    @classmethod
    def from_element(cls, el: Element, where: str) -> FetchResult:
        f.reject_unknown(
            el,
            [
                (PAGE, "Status"),
                (AIRSYNC, "CollectionId"),
                (AIRSYNC, "ServerId"),
                (SEARCH, "LongId"),
                (AIRSYNC, "Class"),
                (BASE, "FileReference"),
                (PAGE, "Properties"),
            ],
            where,
        )
        props = f.optional(el, PAGE, "Properties", where)
        if props is not None and (props.text is not None or props.opaque is not None):
            raise CommandError(f"{where}/Properties: expected a container, got a value")
        return cls(
            status=f.req_int(el, PAGE, "Status", where, hi=MAX_STATUS),
            collection_id=f.opt_text(el, AIRSYNC, "CollectionId", where, max_len=MAX_ID_LEN),
            server_id=f.opt_text(el, AIRSYNC, "ServerId", where, max_len=MAX_ID_LEN),
            long_id=f.opt_text(el, SEARCH, "LongId", where, max_len=MAX_LONG_ID_LEN),
            class_=f.opt_text(el, AIRSYNC, "Class", where, max_len=MAX_ID_LEN),
            file_reference=f.opt_text(el, BASE, "FileReference", where, max_len=256),
            properties=props,
        )


@attrs.frozen(kw_only=True)
class ItemOperationsResponse:
    """The response: overall Status, then one result per operation inside ``Response``."""

    #: Overall ItemOperationsStatus (or a global status).
    status: int = attrs.field(validator=f.int_rule(PAGE, "Status", hi=MAX_STATUS))
    #: Results in operation order (Fetch typed, the others raw); None when Response is absent.
    results: tuple[FetchResult | Element, ...] | None = attrs.field(
        default=None,
        validator=_ops_rule("ItemOperations/Response"),
    )

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "ItemOperations",
            f.leaf(PAGE, "Status", self.status),
            None
            if self.results is None
            else f.container(
                PAGE,
                "Response",
                *(r.to_element() if isinstance(r, FetchResult) else r for r in self.results),
            ),
        )

    @classmethod
    def from_element(cls, el: Element) -> ItemOperationsResponse:
        f.expect_root(el, PAGE, "ItemOperations")
        where = "ItemOperations"
        f.reject_unknown(el, [(PAGE, "Status"), (PAGE, "Response")], where)
        resp = f.optional(el, PAGE, "Response", where)
        return cls(
            status=f.req_int(el, PAGE, "Status", where, hi=MAX_STATUS),
            results=None
            if resp is None
            else _read_ops(resp, f"{where}/Response", FetchResult.from_element),
        )
