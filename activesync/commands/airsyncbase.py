"""AirSyncBase pieces shared by several commands: ``BodyPreference`` (what the client wants)
and ``Body`` (what the server sends), MS-ASAIRS 2.2.2.

Responsibility: typed views of these two containers, used inside Sync Options, ItemOperations
Options and item data (``EmailItem``). They must not decide
anything (truncation is the mock server's job); they only read and write the elements.

Theory of operation: like every view in ``activesync.commands``: frozen attrs values whose
validators state the wire rules, ``to_element()`` writes the spec's element order, and
``from_element()`` reads children by name (order-tolerant) and raises ``CommandError`` naming
the element on malformed input.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from activesync.commands import fields as f
from activesync.errors import CommandError
from activesync.wbxml.tree import Element

PAGE: Final = "AirSyncBase"


class BodyType(enum.IntEnum):
    """MS-ASAIRS 2.2.2.22.1 (Type in Body/BodyPreference)."""

    #: Plain text.
    PLAIN = 1
    #: HTML.
    HTML = 2
    #: Rich Text Format.
    RTF = 3
    #: The whole MIME message.
    MIME = 4


def _body_type(value: int | BodyType) -> BodyType:
    try:
        return BodyType(value)
    except ValueError as exc:
        raise CommandError(
            f"{f.name(PAGE, 'Type')}: expected a body type 1..4 (plain, HTML, RTF, MIME), "
            f"got {value}"
        ) from exc


@attrs.frozen
class BodyPreference:
    """``<airsyncbase:BodyPreference>`` (MS-ASAIRS 2.2.2.7): the body form the client asks for."""

    #: Requested body type.
    type: BodyType = attrs.field(converter=_body_type)
    #: Truncate bodies longer than this many bytes (uint32), or None for no truncation asked.
    truncation_size: int | None = attrs.field(
        default=None, validator=f.int_rule(PAGE, "TruncationSize")
    )
    #: True: send the whole body or nothing if it would be truncated (AllOrNone, boolean).
    all_or_none: bool | None = None
    #: Characters of plain-text preview wanted, 0..255 (Preview, 14.0+).
    preview: int | None = attrs.field(default=None, validator=f.int_rule(PAGE, "Preview", hi=255))

    def to_element(self) -> Element:
        # MS-ASAIRS 2.2.2.7: Type, TruncationSize, AllOrNone, Preview.
        return f.container(
            PAGE,
            "BodyPreference",
            f.leaf(PAGE, "Type", int(self.type)),
            f.leaf(PAGE, "TruncationSize", self.truncation_size),
            f.leaf(PAGE, "AllOrNone", self.all_or_none),
            f.leaf(PAGE, "Preview", self.preview),
        )

    @classmethod
    def from_element(cls, el: Element, where: str = "") -> BodyPreference:
        path = f"{where}/BodyPreference" if where else "BodyPreference"
        f.expect_root(el, PAGE, "BodyPreference", where)
        return cls(
            type=_body_type(f.req_int(el, PAGE, "Type", path, hi=255)),
            truncation_size=f.opt_int(el, PAGE, "TruncationSize", path),
            all_or_none=f.opt_bool(el, PAGE, "AllOrNone", path),
            preview=f.opt_int(el, PAGE, "Preview", path, hi=255),
        )


@attrs.frozen(kw_only=True)
class Body:
    """``<airsyncbase:Body>`` (MS-ASAIRS 2.2.2.9): an item's body as the server sends it."""

    #: The body type of ``data``.
    type: BodyType = attrs.field(converter=_body_type)
    #: Size in bytes of the whole body on the server (before truncation), when told.
    estimated_data_size: int | None = attrs.field(
        default=None, validator=f.int_rule(PAGE, "EstimatedDataSize")
    )
    #: True when ``data`` was truncated.
    truncated: bool | None = None
    #: The (possibly truncated) body; None when only the size is sent.
    data: str | None = None
    #: Plain-text preview (14.0+), at most 255 characters.
    preview: str | None = attrs.field(
        default=None, validator=f.text_rule(PAGE, "Preview", max_len=255)
    )

    def to_element(self) -> Element:
        # MS-ASAIRS 2.2.2.9: Type, EstimatedDataSize, Truncated, Data, Part, Preview.
        return f.container(
            PAGE,
            "Body",
            f.leaf(PAGE, "Type", int(self.type)),
            f.leaf(PAGE, "EstimatedDataSize", self.estimated_data_size),
            f.leaf(PAGE, "Truncated", self.truncated),
            f.leaf(PAGE, "Data", self.data),
            f.leaf(PAGE, "Preview", self.preview),
        )

    @classmethod
    def from_element(cls, el: Element, where: str = "") -> Body:
        path = f"{where}/Body" if where else "Body"
        f.expect_root(el, PAGE, "Body", where)
        return cls(
            type=_body_type(f.req_int(el, PAGE, "Type", path, hi=255)),
            estimated_data_size=f.opt_int(el, PAGE, "EstimatedDataSize", path),
            truncated=f.opt_bool(el, PAGE, "Truncated", path),
            data=f.opt_text(el, PAGE, "Data", path),
            preview=f.opt_text(el, PAGE, "Preview", path, max_len=255),
        )
