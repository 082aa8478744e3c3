"""Decode an EAS WBXML 1.3 body (MS-ASWBXML) into an :class:`Element` tree, whole or streamed.

Responsibility: turn bytes into a tree or a :class:`WbxmlError` that says what is wrong and at
which byte. It must not do I/O, must not trust lengths or nesting it has not checked, and must
never raise anything but ``WbxmlError`` on bad input (no IndexError, no UnicodeDecodeError).

Theory of operation (wsproto's ``Buffer`` idea): :class:`WbxmlDecoder` keeps the bytes it has
been fed and a committed position. It parses one unit at a time (the header, a tag, END,
SWITCH_PAGE + page, STR_I + string + NUL, OPAQUE + length + data) into local variables and
commits the unit only when all its bytes are there; when input runs out mid-unit it rolls back to
the unit's first byte and waits for the next ``feed``. Errors are checked in byte order, so every
way of cutting the input into chunks gives the same tree or the same error message.

What the decoder accepts, and why:
- Header ``03 01 6A 00`` (MS-ASWBXML 2.1.2, notes 4.1): WBXML 1.3, public id 1 ("unknown"),
  charset MIBenum 106 (UTF-8), string table length 0. A non-zero string table is rejected:
  nothing in an EAS body may refer to one (STR_T, LITERAL and attributes are not used, R655/R656),
  so a table means the sender is not speaking MS-ASWBXML, and skipping it would hide that.
- Body tokens: SWITCH_PAGE (pages 0..25), END, STR_I (UTF-8), OPAQUE, and tag bytes without the
  attribute bit. ENTITY, LITERAL*, EXT*, PI and STR_T are rejected by name.
- The decoder starts on page 0; SWITCH_PAGE holds until the next switch (END does not restore).
- An element holds children, text (several STR_I are joined) or opaque data (several OPAQUE are
  joined); mixing them is an error because :class:`Element` cannot represent it. A tag with the
  content bit and nothing before its END decodes as an empty element.
- Exactly one root element; bytes after its end are an error. Bounds: ``max_depth`` nested
  elements (root = 1) and ``max_size`` bytes in total.
"""

from __future__ import annotations

import enum
from typing import Any, Final

from activesync.errors import WbxmlError
from activesync.wbxml.codepages import PAGES, TAGS
from activesync.wbxml.tree import Element

#: Default bound on nested elements; real EAS bodies stay under 12 (Sync with Calendar data).
DEFAULT_MAX_DEPTH: Final = 64
#: Default bound on a body's size: 16 MiB, room for large ItemOperations attachments.
DEFAULT_MAX_SIZE: Final = 16 * 1024 * 1024

# MS-ASWBXML 1.6 / WBXML 1.3 section 7: global tokens.
SWITCH_PAGE: Final = 0x00
END: Final = 0x01
STR_I: Final = 0x03
OPAQUE: Final = 0xC3
_UNSUPPORTED_GLOBALS: Final[dict[int, str]] = {
    0x02: "ENTITY",
    0x04: "LITERAL",
    0x40: "EXT_I_0",
    0x41: "EXT_I_1",
    0x42: "EXT_I_2",
    0x43: "PI",
    0x44: "LITERAL_C",
    0x80: "EXT_T_0",
    0x81: "EXT_T_1",
    0x82: "EXT_T_2",
    0x83: "STR_T",
    0x84: "LITERAL_A",
    0xC0: "EXT_0",
    0xC1: "EXT_1",
    0xC2: "EXT_2",
    0xC4: "LITERAL_AC",
}
_VERSION_1_3: Final = 0x03
_PUBLIC_ID_UNKNOWN: Final = 0x01
_CHARSET_UTF8: Final = 106
_CONTENT_BIT: Final = 0x40
_ATTRIBUTE_BIT: Final = 0x80
_TOKEN_MASK: Final = 0x3F
_MB_MAX_BYTES: Final = 5  # 5 x 7 bits cover 32 bits
_MB_MAX_VALUE: Final = 0xFFFFFFFF


class _Incomplete(Exception):
    """Internal: the current unit needs bytes that have not arrived yet (roll back)."""


class DecoderState(enum.Enum):
    """Where a :class:`WbxmlDecoder` is in the document."""

    #: Waiting for the complete 4-byte (or longer, multi-byte integers) header.
    HEADER = "header"
    #: Inside the body: before the root element or inside it.
    BODY = "body"
    #: The root element has ended; any further byte is an error.
    DONE = "done"
    #: A ``WbxmlError`` was raised; the decoder refuses further input.
    FAILED = "failed"


class _Open:
    """An element whose END has not been seen yet."""

    __slots__ = ("children", "opaque", "page", "tag", "text")

    def __init__(self, page: str, tag: str) -> None:
        self.page = page
        self.tag = tag
        self.children: list[Element] = []
        self.text: list[str] | None = None
        self.opaque: list[bytes] | None = None

    def close(self) -> Element:
        text = None if self.text is None else "".join(self.text)
        opaque = None if self.opaque is None else b"".join(self.opaque)
        # Typed as Any: tree.py's ``converter=tuple`` leaves mypy an unsolved type variable.
        children: Any = tuple(self.children)
        return Element(self.page, self.tag, children, text, opaque)

    @property
    def label(self) -> str:
        return f"<{self.page}:{self.tag}>"


def _page_label(page: int) -> str:
    return f"code page {page} ({PAGES[page]})"


class WbxmlDecoder:
    """Streaming decoder: ``feed`` chunks as they arrive, ``close`` at the end of input.

    ``feed`` returns the root :class:`Element` once the document is complete (``None`` before);
    ``close`` returns it too, or raises ``WbxmlError`` if the input ended early. Any error
    leaves the decoder in ``DecoderState.FAILED``.
    """

    def __init__(
        self, *, max_depth: int = DEFAULT_MAX_DEPTH, max_size: int = DEFAULT_MAX_SIZE
    ) -> None:
        if max_depth < 1 or max_size < 1:
            raise ValueError("max_depth and max_size must be positive")
        self.max_depth = max_depth
        self.max_size = max_size
        self.state = DecoderState.HEADER
        self._buf = bytearray()
        self._pos = 0  # committed position in _buf
        self._base = 0  # absolute offset of _buf[0] (bytes already parsed and dropped)
        self._received = 0  # total bytes accepted so far
        self._page = 0
        self._stack: list[_Open] = []
        self._root: Element | None = None
        self._nul_scan_from = 0  # STR_I: where to resume looking for the terminating NUL
        self._error: WbxmlError | None = None

    @property
    def result(self) -> Element | None:
        """The decoded root once the document is complete, else None."""
        return self._root

    def feed(self, data: bytes | bytearray | memoryview) -> Element | None:
        """Parse as much of ``data`` as possible; return the root once the document is whole."""
        if self.state is DecoderState.FAILED:
            raise WbxmlError(f"the decoder already failed: {self._error}")
        chunk = bytes(data)
        if not chunk:
            return self._root
        try:
            allowed = self.max_size - self._received
            within, excess = chunk[:allowed], chunk[allowed:]
            if within:
                self._accept(within)
            if excess:
                if self.state is DecoderState.DONE:
                    raise WbxmlError(self._trailing_message(self._base + len(self._buf)))
                raise WbxmlError(
                    f"WBXML body larger than the limit of {self.max_size} bytes "
                    f"(byte {self.max_size} and beyond refused)"
                )
        except WbxmlError as exc:
            self.state = DecoderState.FAILED
            self._error = exc
            raise
        return self._root

    def close(self) -> Element:
        """Signal the end of input: the root element, or an error saying where input stopped."""
        if self.state is DecoderState.FAILED:
            raise WbxmlError(f"the decoder already failed: {self._error}")
        if self._root is not None:
            return self._root
        end = self._base + len(self._buf)
        if self.state is DecoderState.HEADER:
            where = "in the header (expected 03 01 6A 00)"
        elif self._stack:
            where = f"inside {self._stack[-1].label} ({len(self._stack)} element(s) still open)"
        else:
            where = "before the root element"
        error = WbxmlError(f"truncated WBXML body: input ended at byte {end} {where}")
        self.state = DecoderState.FAILED
        self._error = error
        raise error

    # -- parsing -------------------------------------------------------------------------------

    def _accept(self, chunk: bytes) -> None:
        if self.state is DecoderState.DONE:
            raise WbxmlError(self._trailing_message(self._base + len(self._buf)))
        self._buf += chunk
        self._received += len(chunk)
        try:
            if self.state is DecoderState.HEADER:
                self._parse_header()
                self.state = DecoderState.BODY
            while self.state is DecoderState.BODY and self._pos < len(self._buf):
                self._parse_unit()
        except _Incomplete:
            pass
        # Drop what is parsed so memory holds only the unit in progress.
        if self._pos:
            del self._buf[: self._pos]
            self._base += self._pos
            self._nul_scan_from = max(0, self._nul_scan_from - self._pos)
            self._pos = 0

    def _read_mb_uint32(self, pos: int, what: str) -> tuple[int, int]:
        """A WBXML mb_u_int32 at ``pos``: (value, position after it)."""
        buf = self._buf
        value = 0
        for i in range(_MB_MAX_BYTES):
            if pos + i >= len(buf):
                raise _Incomplete
            byte = buf[pos + i]
            value = (value << 7) | (byte & 0x7F)
            if value > _MB_MAX_VALUE:
                break
            if not byte & 0x80:
                return value, pos + i + 1
        raise WbxmlError(
            f"mb_u_int32 overflow in the {what} at byte {self._base + pos}: "
            "more than 32 bits (at most 5 bytes)"
        )

    def _parse_header(self) -> None:
        buf = self._buf
        if not buf:
            raise _Incomplete
        if buf[0] != _VERSION_1_3:
            raise WbxmlError(
                f"unsupported WBXML version 0x{buf[0]:02X} at byte 0: "
                "expected 0x03 (WBXML 1.3, MS-ASWBXML 2.1.2)"
            )
        public_id, pos = self._read_mb_uint32(1, "public identifier")
        if public_id != _PUBLIC_ID_UNKNOWN:
            raise WbxmlError(
                f"unexpected WBXML public identifier {public_id} at byte 1: expected 1 "
                '("unknown", as EAS sends)'
            )
        charset_at = pos
        charset, pos = self._read_mb_uint32(pos, "charset")
        if charset != _CHARSET_UTF8:
            raise WbxmlError(
                f"unsupported WBXML charset MIBenum {charset} at byte {charset_at}: "
                "expected 106 (UTF-8)"
            )
        table_at = pos
        table_length, pos = self._read_mb_uint32(pos, "string table length")
        if table_length != 0:
            raise WbxmlError(
                f"WBXML string table of {table_length} bytes at byte {table_at}: "
                "expected length 0 (EAS bodies never use a string table, MS-ASWBXML 2.1.2)"
            )
        self._pos = pos

    def _parse_unit(self) -> None:
        buf = self._buf
        start = self._pos
        at = self._base + start
        byte = buf[start]

        if byte == SWITCH_PAGE:
            if start + 1 >= len(buf):
                raise _Incomplete
            page = buf[start + 1]
            if page >= len(PAGES):
                raise WbxmlError(
                    f"SWITCH_PAGE to unknown code page {page} at byte {at}: "
                    f"EAS defines pages 0-{len(PAGES) - 1}"
                )
            self._page = page
            self._pos = start + 2
        elif byte == END:
            if not self._stack:
                raise WbxmlError(f"END token at byte {at} with no open element")
            element = self._stack.pop().close()
            self._pos = start + 1
            self._attach(element)
        elif byte == STR_I:
            self._parse_inline_string(start, at)
        elif byte == OPAQUE:
            self._parse_opaque(start, at)
        elif byte in _UNSUPPORTED_GLOBALS:
            raise WbxmlError(
                f"unsupported WBXML global token 0x{byte:02X} "
                f"({_UNSUPPORTED_GLOBALS[byte]}) at byte {at}: EAS uses only SWITCH_PAGE, END, "
                "STR_I, OPAQUE and tags (MS-ASWBXML 2.1.3)"
            )
        else:
            self._parse_tag(byte, start, at)

    def _parse_tag(self, byte: int, start: int, at: int) -> None:
        if byte & _ATTRIBUTE_BIT:
            raise WbxmlError(
                f"tag byte 0x{byte:02X} at byte {at} has the attribute bit (0x80) set: "
                "EAS never uses attributes (MS-ASWBXML 2.1.3)"
            )
        token = byte & _TOKEN_MASK
        tag = TAGS[self._page].get(token)
        if tag is None:
            raise WbxmlError(
                f"unknown WBXML token 0x{token:02X} (tag byte 0x{byte:02X}) in "
                f"{_page_label(self._page)} at byte {at}"
            )
        page = PAGES[self._page]
        depth = len(self._stack) + 1
        if depth > self.max_depth:
            raise WbxmlError(
                f"<{page}:{tag}> at byte {at} is nested {depth} deep: the limit is {self.max_depth}"
            )
        if self._stack:
            parent = self._stack[-1]
            if parent.text is not None or parent.opaque is not None:
                raise WbxmlError(
                    f"{parent.label} mixes content and child elements: <{page}:{tag}> at "
                    f"byte {at} follows its {'text' if parent.text is not None else 'opaque data'}"
                )
        self._pos = start + 1
        if byte & _CONTENT_BIT:
            self._stack.append(_Open(page, tag))
        else:
            self._attach(Element(page, tag))

    def _attach(self, element: Element) -> None:
        if self._stack:
            self._stack[-1].children.append(element)
        else:
            self._root = element
            self.state = DecoderState.DONE
            if self._pos < len(self._buf):
                raise WbxmlError(self._trailing_message(self._base + self._pos))

    def _content_target(self, at: int, kind: str) -> _Open:
        if not self._stack:
            raise WbxmlError(f"{kind} at byte {at} outside any element")
        target = self._stack[-1]
        if target.children:
            raise WbxmlError(
                f"{target.label} mixes child elements and content: {kind} at byte {at}"
            )
        return target

    def _parse_inline_string(self, start: int, at: int) -> None:
        target = self._content_target(at, "inline string (STR_I)")
        if target.opaque is not None:
            raise WbxmlError(
                f"{target.label} mixes opaque data and text: inline string at byte {at}"
            )
        buf = self._buf
        nul = buf.find(b"\x00", max(start + 1, self._nul_scan_from))
        if nul < 0:
            self._nul_scan_from = len(buf)
            raise _Incomplete
        self._nul_scan_from = 0
        raw = bytes(buf[start + 1 : nul])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WbxmlError(
                f"invalid UTF-8 in the inline string of {target.label} at byte "
                f"{at + 1 + exc.start}: {exc.reason}"
            ) from None
        if target.text is None:
            target.text = []
        target.text.append(text)
        self._pos = nul + 1

    def _parse_opaque(self, start: int, at: int) -> None:
        target = self._content_target(at, "opaque data (OPAQUE)")
        if target.text is not None:
            raise WbxmlError(f"{target.label} mixes text and opaque data: OPAQUE at byte {at}")
        length, data_at = self._read_mb_uint32(start + 1, "OPAQUE length")
        if self._base + data_at + length > self.max_size:
            # Refuse at once rather than buffer up to 4 GiB that the limit forbids anyway.
            raise WbxmlError(
                f"OPAQUE at byte {at} announces {length} bytes, beyond the limit of "
                f"{self.max_size} bytes for the body"
            )
        end = data_at + length
        if end > len(self._buf):
            raise _Incomplete
        if target.opaque is None:
            target.opaque = []
        target.opaque.append(bytes(self._buf[data_at:end]))
        self._pos = end

    def _trailing_message(self, at: int) -> str:
        root = self._root
        name = f"<{root.page}:{root.tag}>" if root is not None else "the root element"
        return f"trailing bytes after the end of the document at byte {at} (after {name})"


def decode(
    data: bytes | bytearray | memoryview,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_size: int = DEFAULT_MAX_SIZE,
) -> Element:
    """Decode a complete WBXML body; raise ``WbxmlError`` (with a byte position) if it is bad."""
    decoder = WbxmlDecoder(max_depth=max_depth, max_size=max_size)
    decoder.feed(data)
    return decoder.close()
