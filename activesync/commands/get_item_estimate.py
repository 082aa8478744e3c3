"""GetItemEstimate (MS-ASCMD 2.2.1.9): typed request and response bodies.

Responsibility: turn ``<GetItemEstimate>`` trees into values and back for the phone and the
mock Exchange. It must not count items: that is the mailbox's job.

Theory of operation: the request lists up to 300 collections. Its shape depends on the protocol
version (MS-ASCMD 2.2.3.29.1, 2.2.3.68.1):
- 14.0+: ``airsync:SyncKey`` (first), ``CollectionId``, ``airsync:ConversationMode``,
  ``airsync:Options`` (Class, FilterType, MaxItems; up to two, e.g. Email and SMS);
- 2.5-12.1: ``Class`` (GetItemEstimate page), ``CollectionId``, ``airsync:FilterType``,
  ``airsync:SyncKey``.
``EstimateCollection`` holds either (``options``/``conversation_mode`` or the ``legacy_*``
fields) and writes the matching order. The response has one ``Response`` per collection:
Status, then Collection (CollectionId, Estimate); a failed request is the top-level Status.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from activesync.commands import fields as f
from activesync.commands.fields import MAX_ID_LEN, MAX_STATUS
from activesync.commands.sync import PAGE as AIRSYNC
from activesync.commands.sync import SyncOptions
from activesync.errors import CommandError
from activesync.wbxml.tree import Element

PAGE: Final = "GetItemEstimate"
#: MS-ASCMD 2.2.3.29.1: at most 300 Collection elements.
MAX_COLLECTIONS: Final = 300


class GetItemEstimateStatus(enum.IntEnum):
    """GetItemEstimate Status values (MS-ASCMD 2.2.3.177.7)."""

    #: Success.
    SUCCESS = 1
    #: A collection was invalid or not specified.
    INVALID_COLLECTION = 2
    #: The sync state was not primed: Sync the folder (SyncKey 0) first.
    SYNC_STATE_NOT_PRIMED = 3
    #: The SyncKey does not match the server's.
    INVALID_SYNC_KEY = 4


@attrs.frozen(kw_only=True)
class EstimateCollection:
    """One ``<Collection>`` of a request, in its 14.0+ or its 2.5-12.1 shape."""

    #: The collection's current sync key (from the last Sync response).
    sync_key: str = attrs.field(validator=f.text_rule(AIRSYNC, "SyncKey", max_len=MAX_ID_LEN))
    #: The folder's ServerId.
    collection_id: str = attrs.field(
        validator=f.text_rule(PAGE, "CollectionId", max_len=MAX_ID_LEN)
    )
    #: 14.0+: airsync:ConversationMode.
    conversation_mode: bool | None = None
    #: 14.0+: airsync:Options (Class, FilterType, MaxItems), at most two.
    options: tuple[SyncOptions, ...] = ()
    #: 2.5-12.1: GetItemEstimate Class of the collection ("Email"...).
    legacy_class: str | None = None
    #: 2.5-12.1: airsync:FilterType directly in Collection.
    legacy_filter_type: int | None = attrs.field(
        default=None, validator=f.int_rule(AIRSYNC, "FilterType", hi=8)
    )

    def __attrs_post_init__(self) -> None:
        if len(self.options) > 2:
            raise CommandError(
                f"{f.name(AIRSYNC, 'Options')}: at most 2 per Collection (MS-ASCMD 2.2.3.125.2), "
                f"got {len(self.options)}"
            )
        modern = self.conversation_mode is not None or bool(self.options)
        legacy = self.legacy_class is not None or self.legacy_filter_type is not None
        if modern and legacy:
            raise CommandError(
                "GetItemEstimate Collection: Class/FilterType (2.5-12.1) and "
                "Options/ConversationMode (14.0+) cannot be mixed"
            )

    @property
    def is_legacy(self) -> bool:
        """True when this collection is in the 2.5-12.1 shape."""
        return self.legacy_class is not None or self.legacy_filter_type is not None

    def to_element(self) -> Element:
        if self.is_legacy:
            return f.container(
                PAGE,
                "Collection",
                f.leaf(PAGE, "Class", self.legacy_class),
                f.leaf(PAGE, "CollectionId", self.collection_id),
                f.leaf(AIRSYNC, "FilterType", self.legacy_filter_type),
                f.leaf(AIRSYNC, "SyncKey", self.sync_key),
            )
        # MS-ASCMD 2.2.3.181.3: SyncKey is the first child in 14.0+.
        return f.container(
            PAGE,
            "Collection",
            f.leaf(AIRSYNC, "SyncKey", self.sync_key),
            f.leaf(PAGE, "CollectionId", self.collection_id),
            f.leaf(AIRSYNC, "ConversationMode", self.conversation_mode),
            *(o.to_element() for o in self.options),
        )

    @classmethod
    def from_element(cls, el: Element, where: str) -> EstimateCollection:
        f.reject_unknown(
            el,
            [
                (AIRSYNC, "SyncKey"),
                (PAGE, "CollectionId"),
                (AIRSYNC, "ConversationMode"),
                (AIRSYNC, "Options"),
                (PAGE, "Class"),
                (AIRSYNC, "FilterType"),
            ],
            where,
        )
        return cls(
            sync_key=f.req_text(el, AIRSYNC, "SyncKey", where, max_len=MAX_ID_LEN),
            collection_id=f.req_text(el, PAGE, "CollectionId", where, max_len=MAX_ID_LEN),
            conversation_mode=f.opt_bool(el, AIRSYNC, "ConversationMode", where),
            options=tuple(
                SyncOptions.from_element(o, f"{where}/Options[{i}]")
                for i, o in enumerate(f.all_named(el, AIRSYNC, "Options"))
            ),
            legacy_class=f.opt_text(el, PAGE, "Class", where),
            legacy_filter_type=f.opt_int(el, AIRSYNC, "FilterType", where, hi=8),
        )


@attrs.frozen
class GetItemEstimateRequest:
    """``<GetItemEstimate><Collections>…</Collections></GetItemEstimate>``."""

    #: The collections to estimate, 1..300.
    collections: tuple[EstimateCollection, ...] = attrs.field()

    def __attrs_post_init__(self) -> None:
        if not 1 <= len(self.collections) <= MAX_COLLECTIONS:
            raise CommandError(
                f"GetItemEstimate/Collections: expected 1..{MAX_COLLECTIONS} "
                f"{f.name(PAGE, 'Collection')} elements, got {len(self.collections)}"
            )

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "GetItemEstimate",
            f.container(PAGE, "Collections", *(c.to_element() for c in self.collections)),
        )

    @classmethod
    def from_element(cls, el: Element) -> GetItemEstimateRequest:
        f.expect_root(el, PAGE, "GetItemEstimate")
        where = "GetItemEstimate"
        f.reject_unknown(el, [(PAGE, "Collections")], where)
        colls = f.required(el, PAGE, "Collections", where)
        return cls(f.list_of(colls, PAGE, "Collection", where, EstimateCollection.from_element))


@attrs.frozen(kw_only=True)
class EstimateResponse:
    """One ``<Response>``: Status and, on success, Collection (CollectionId, Estimate)."""

    #: GetItemEstimateStatus.
    status: int = attrs.field(validator=f.int_rule(PAGE, "Status", hi=MAX_STATUS))
    #: The folder; None when the Collection element is absent.
    collection_id: str | None = attrs.field(
        default=None, validator=f.text_rule(PAGE, "CollectionId", max_len=MAX_ID_LEN)
    )
    #: Items the next Sync would bring.
    estimate: int | None = attrs.field(default=None, validator=f.int_rule(PAGE, "Estimate"))
    #: 2.5-12.1: the collection's Class.
    class_: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.collection_id is None and (self.estimate is not None or self.class_ is not None):
            raise CommandError(
                f"GetItemEstimate/Response/Collection: {f.name(PAGE, 'Estimate')} and "
                f"{f.name(PAGE, 'Class')} need a {f.name(PAGE, 'CollectionId')}"
            )

    def to_element(self) -> Element:
        collection = None
        if self.collection_id is not None:
            collection = f.container(
                PAGE,
                "Collection",
                f.leaf(PAGE, "Class", self.class_),
                f.leaf(PAGE, "CollectionId", self.collection_id),
                f.leaf(PAGE, "Estimate", self.estimate),
            )
        return f.container(PAGE, "Response", f.leaf(PAGE, "Status", self.status), collection)

    @classmethod
    def from_element(cls, el: Element, where: str) -> EstimateResponse:
        f.reject_unknown(el, [(PAGE, "Status"), (PAGE, "Collection")], where)
        coll = f.optional(el, PAGE, "Collection", where)
        status = f.req_int(el, PAGE, "Status", where, hi=MAX_STATUS)
        if coll is None:
            return cls(status=status)
        cpath = f"{where}/Collection"
        f.reject_unknown(coll, [(PAGE, "Class"), (PAGE, "CollectionId"), (PAGE, "Estimate")], cpath)
        return cls(
            status=status,
            collection_id=f.req_text(coll, PAGE, "CollectionId", cpath, max_len=MAX_ID_LEN),
            estimate=f.opt_int(coll, PAGE, "Estimate", cpath),
            class_=f.opt_text(coll, PAGE, "Class", cpath),
        )


@attrs.frozen(kw_only=True)
class GetItemEstimateResponse:
    """A response: a top-level Status (failure form) and/or one Response per collection."""

    #: Request-level status (error form), or None.
    status: int | None = attrs.field(
        default=None, validator=f.int_rule(PAGE, "Status", hi=MAX_STATUS)
    )
    #: Per-collection results.
    responses: tuple[EstimateResponse, ...] = ()

    def to_element(self) -> Element:
        return f.container(
            PAGE,
            "GetItemEstimate",
            f.leaf(PAGE, "Status", self.status),
            *(r.to_element() for r in self.responses),
        )

    @classmethod
    def from_element(cls, el: Element) -> GetItemEstimateResponse:
        f.expect_root(el, PAGE, "GetItemEstimate")
        where = "GetItemEstimate"
        f.reject_unknown(el, [(PAGE, "Status"), (PAGE, "Response")], where)
        return cls(
            status=f.opt_int(el, PAGE, "Status", where, hi=MAX_STATUS),
            responses=tuple(
                EstimateResponse.from_element(r, f"{where}/Response[{i}]")
                for i, r in enumerate(f.all_named(el, PAGE, "Response"))
            ),
        )
