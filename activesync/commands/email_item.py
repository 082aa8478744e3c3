"""The typed view of one email message's properties (MS-ASEMAIL 2.2.2 + AirSyncBase Body).

Responsibility: read and write the Email-page properties the simulator cares about (Subject,
From, To, Cc, DateReceived, Read, Importance, MessageClass, DisplayTo) and the AirSyncBase Body
inside an item container: ``<AirSync:ApplicationData>`` in Sync and
``<ItemOperations:Properties>`` in ItemOperations Fetch. It must not decide what a mailbox holds.

Theory of operation: every property is optional, because a client's Sync Change carries only what
changed (often just ``<email:Read>``). Children we do not model (Flag, ContentClass, Categories,
other classes' properties...) are kept verbatim in ``extra`` and written back after ours, so a
view read from a real server and written again loses nothing. Order inside ApplicationData is
free (MS-ASCMD 6.45/6.46 use an unbounded xs:choice); we write the order of the MS-ASEMAIL
examples.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Final

import attrs

from activesync.commands import fields as f
from activesync.commands.airsyncbase import PAGE as BASE
from activesync.commands.airsyncbase import Body
from activesync.errors import CommandError
from activesync.wbxml.tree import Element

PAGE: Final = "Email"

#: MS-ASDTYPE 2.3: dateTime as "2009-07-29T19:25:37.817Z" (UTC, milliseconds optional).
_DATETIME_RE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,3})?Z"
)

#: The (page, tag) pairs this view models; anything else goes to ``extra``.
_MODELLED: Final = frozenset(
    {
        (PAGE, "To"),
        (PAGE, "Cc"),
        (PAGE, "From"),
        (PAGE, "Subject"),
        (PAGE, "DateReceived"),
        (PAGE, "DisplayTo"),
        (PAGE, "Importance"),
        (PAGE, "Read"),
        (PAGE, "MessageClass"),
        (BASE, "Body"),
    }
)


def eas_datetime(moment: dt.datetime) -> str:
    """``moment`` in the MS-ASDTYPE 2.3 form, e.g. ``2009-07-29T19:25:37.817Z`` (UTC)."""
    if moment.tzinfo is None:
        raise ValueError("eas_datetime needs an aware datetime (EAS dates are UTC)")
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _check_date(_instance: object, _attribute: object, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not _DATETIME_RE.fullmatch(value):
        raise CommandError(
            f"{f.name(PAGE, 'DateReceived')}: expected a date like 2009-07-29T19:25:37.817Z, "
            f"got {value!r}"
        )


def _check_extra(_instance: object, _attribute: object, value: tuple[Element, ...]) -> None:
    for el in value:
        if (el.page, el.tag) in _MODELLED:
            raise CommandError(
                f"EmailItem.extra must not hold {f.name(el.page, el.tag)}: it has its own field"
            )


@attrs.frozen(kw_only=True)
class EmailItem:
    """One message's properties; every field optional (a Change sends only what changed)."""

    #: Recipients as the To header (comma-separated addresses), MS-ASEMAIL 2.2.2.79.
    to: str | None = None
    #: Cc header, MS-ASEMAIL 2.2.2.16.
    cc: str | None = None
    #: From header, MS-ASEMAIL 2.2.2.31.
    from_: str | None = None
    #: Subject, MS-ASEMAIL 2.2.2.74.
    subject: str | None = None
    #: When the server received the message (MS-ASDTYPE 2.3 form), MS-ASEMAIL 2.2.2.24.
    date_received: str | None = attrs.field(default=None, validator=_check_date)
    #: Display names of the To recipients, MS-ASEMAIL 2.2.2.28.
    display_to: str | None = None
    #: 0 low, 1 normal, 2 high (MS-ASEMAIL 2.2.2.38).
    importance: int | None = attrs.field(
        default=None, validator=f.int_rule(PAGE, "Importance", hi=2)
    )
    #: Read flag (MS-ASEMAIL 2.2.2.58).
    read: bool | None = None
    #: Message class, e.g. "IPM.Note" (MS-ASEMAIL 2.2.2.47).
    message_class: str | None = None
    #: The AirSyncBase body.
    body: Body | None = None
    #: Children this view does not model, kept verbatim.
    extra: tuple[Element, ...] = attrs.field(default=(), validator=_check_extra)

    def to_container(self, page: str, tag: str) -> Element:
        """These properties inside ``<page:tag>`` (ApplicationData or Properties)."""
        return f.container(
            page,
            tag,
            f.leaf(PAGE, "To", self.to),
            f.leaf(PAGE, "Cc", self.cc),
            f.leaf(PAGE, "From", self.from_),
            f.leaf(PAGE, "Subject", self.subject),
            f.leaf(PAGE, "DateReceived", self.date_received),
            f.leaf(PAGE, "DisplayTo", self.display_to),
            f.leaf(PAGE, "Importance", self.importance),
            f.leaf(PAGE, "Read", self.read),
            None if self.body is None else self.body.to_element(),
            f.leaf(PAGE, "MessageClass", self.message_class),
            *self.extra,
        )

    def to_application_data(self) -> Element:
        """``<AirSync:ApplicationData>`` for a Sync Add/Change/Fetch."""
        return self.to_container("AirSync", "ApplicationData")

    def to_properties(self) -> Element:
        """``<ItemOperations:Properties>`` for an ItemOperations Fetch response."""
        return self.to_container("ItemOperations", "Properties")

    @classmethod
    def from_container(cls, el: Element, where: str = "") -> EmailItem:
        """Read the properties from any item container (ApplicationData, Properties)."""
        path = f"{where}/{el.tag}" if where else el.tag
        if el.text is not None or el.opaque is not None:
            raise CommandError(f"{path}: expected a container of item properties, got a value")
        body_el = f.optional(el, BASE, "Body", path)
        date = f.opt_text(el, PAGE, "DateReceived", path)
        if date is not None and not _DATETIME_RE.fullmatch(date):
            raise CommandError(
                f"{path}/DateReceived: expected a date like 2009-07-29T19:25:37.817Z, got {date!r}"
            )
        return cls(
            to=f.opt_text(el, PAGE, "To", path),
            cc=f.opt_text(el, PAGE, "Cc", path),
            from_=f.opt_text(el, PAGE, "From", path),
            subject=f.opt_text(el, PAGE, "Subject", path),
            date_received=date,
            display_to=f.opt_text(el, PAGE, "DisplayTo", path),
            importance=f.opt_int(el, PAGE, "Importance", path, hi=2),
            read=f.opt_bool(el, PAGE, "Read", path),
            message_class=f.opt_text(el, PAGE, "MessageClass", path),
            body=None if body_el is None else Body.from_element(body_el, path),
            extra=tuple(c for c in el.children if (c.page, c.tag) not in _MODELLED),
        )

    @classmethod
    def from_application_data(cls, el: Element, where: str = "") -> EmailItem:
        """Read ``<AirSync:ApplicationData>``."""
        f.expect_root(el, "AirSync", "ApplicationData", where)
        return cls.from_container(el, where)

    @classmethod
    def from_properties(cls, el: Element, where: str = "") -> EmailItem:
        """Read ``<ItemOperations:Properties>``."""
        f.expect_root(el, "ItemOperations", "Properties", where)
        return cls.from_container(el, where)
