"""Encode an :class:`Element` tree as an EAS WBXML 1.3 body (MS-ASWBXML).

Responsibility: produce the exact bytes an Exchange server or EAS client produces for a tree, or
raise :class:`WbxmlError` naming the element that cannot be encoded. It must not do I/O and must
not emit anything EAS does not use (no string table, attributes, entities or extensions).

Theory of operation: the header ``03 01 6A 00`` (version 1.3, public id "unknown", UTF-8, no
string table; notes 4.1), then a depth-first walk with an explicit stack (so deep trees cannot
exhaust Python's recursion limit). The encoder tracks the current code page exactly as the
decoder does: it starts on page 0 and emits ``SWITCH_PAGE`` only when an element's page differs
from the last one switched to (END does not restore a page). Per element (notes 4.1):

- empty: the bare token, e.g. ``<MoreAvailable/>`` -> ``14``;
- text: ``token|0x40, STR_I, utf-8 bytes, 00, END``; text containing NUL cannot be carried;
- opaque: ``token|0x40, OPAQUE, mb_u_int32 length, bytes, END``;
- children: ``token|0x40``, the children, ``END``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from activesync.errors import WbxmlError
from activesync.wbxml.codepages import PAGES, page_number, tag_token
from activesync.wbxml.tree import Element

#: The 4 header bytes of every EAS WBXML body (MS-ASWBXML 2.1.2, notes 4.1).
HEADER: Final = b"\x03\x01\x6a\x00"

_SWITCH_PAGE: Final = 0x00
_END: Final = 0x01
_STR_I: Final = 0x03
_OPAQUE: Final = 0xC3
_CONTENT_BIT: Final = 0x40
_MB_MAX_VALUE: Final = 0xFFFFFFFF


def mb_uint32(value: int) -> bytes:
    """WBXML's multi-byte unsigned integer: 7 bits per byte, most significant first."""
    if not 0 <= value <= _MB_MAX_VALUE:
        raise WbxmlError(f"{value} does not fit a WBXML mb_u_int32 (0..{_MB_MAX_VALUE})")
    out = bytearray([value & 0x7F])
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.reverse()
    return bytes(out)


def _token_of(element: Element) -> tuple[int, int]:
    page = page_number(element.page)
    if page is None:
        raise WbxmlError(
            f"cannot encode <{element.page}:{element.tag}>: unknown code page {element.page!r} "
            f"(EAS pages are {', '.join(PAGES)})"
        )
    token = tag_token(page, element.tag)
    if token is None:
        raise WbxmlError(
            f"cannot encode <{element.page}:{element.tag}>: unknown tag {element.tag!r} in "
            f"code page {page} ({PAGES[page]})"
        )
    return page, token


def _text_bytes(element: Element, text: str) -> bytes:
    if "\x00" in text:
        raise WbxmlError(
            f"cannot encode <{element.page}:{element.tag}>: its text contains a NUL character, "
            "which an inline string (STR_I, NUL-terminated) cannot carry"
        )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise WbxmlError(
            f"cannot encode <{element.page}:{element.tag}>: its text is not valid Unicode "
            f"at character {exc.start} ({exc.reason})"
        ) from None


def encode(root: Element) -> bytes:
    """The WBXML bytes of ``root`` (header included)."""
    out = bytearray(HEADER)
    current_page = 0
    # Each level is an iterator over the children still to write; the bottom level holds the
    # root alone and has no END of its own.
    stack: list[Iterator[Element]] = [iter((root,))]
    while stack:
        element = next(stack[-1], None)
        if element is None:
            stack.pop()
            if stack:
                out.append(_END)
            continue
        page, token = _token_of(element)
        if page != current_page:
            out += bytes((_SWITCH_PAGE, page))
            current_page = page
        if element.children:
            out.append(token | _CONTENT_BIT)
            stack.append(iter(element.children))
        elif element.text is not None:
            out.append(token | _CONTENT_BIT)
            out.append(_STR_I)
            out += _text_bytes(element, element.text)
            out += bytes((0x00, _END))
        elif element.opaque is not None:
            out.append(token | _CONTENT_BIT)
            out.append(_OPAQUE)
            out += mb_uint32(len(element.opaque))
            out += element.opaque
            out.append(_END)
        else:
            out.append(token)
    return bytes(out)
