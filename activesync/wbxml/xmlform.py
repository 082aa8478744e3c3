"""The XML text form of an EAS body, for people: traces, scenario files, the ``wbxml`` CLI.

Responsibility: render an :class:`Element` tree as indented XML in the style of the MS-ASCMD
examples, and read such XML back into the identical tree; raise :class:`XmlFormError` naming the
namespace, tag or attribute (and the line) that has no WBXML meaning. It must not do I/O, must
not resolve DTDs or entities, and bounds its input (size and nesting).

The form:
- Namespaces are code page names with a trailing colon, as Exchange writes them (notes 4.2): the
  root's page is the default namespace (``<Sync xmlns="AirSync:">``); every other page used in
  the tree is declared on the root with its lower-case name as prefix
  (``xmlns:airsyncbase="AirSyncBase:"``) and written ``<airsyncbase:Body>``. On input the colon
  is optional (``xmlns="AirSync"`` works, as in the MS-ASWBXML example) and ``ItemEstimate`` is
  accepted for ``GetItemEstimate``; tag spellings listed as aliases in ``codepages`` are read as
  the current name.
- An element with children is written over several lines; an element without content is
  ``<Tag/>``; text is written inline, exactly (``&``, ``<``, ``>`` and carriage returns escaped).
- Opaque data (OPAQUE, e.g. ComposeMail ``Mime``) is base64 inside an attribute marker:
  ``<Mime opaque="base64">TUlNRS1WZXJzaW9u...</Mime>`` (whitespace inside is ignored on input).
- Text that XML 1.0 cannot carry (an empty string, control characters, U+FFFE/U+FFFF) is written
  as base64 of its UTF-8 bytes with the marker ``text="base64"``: ``<Data text="base64"/>`` is
  the empty string, while ``<Data/>`` is an element without content. EAS uses no attributes, so
  these two markers are the only attributes the form knows.
- On input, whitespace-only text between child elements is ignored (indentation); text in an
  element without children is kept exactly as written, whitespace included. Comments are
  ignored; a DOCTYPE, entity declaration or processing instruction is refused.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from typing import Any, Final
from xml.parsers import expat

from activesync.errors import XmlFormError
from activesync.wbxml.codepages import PAGES, TAGS, page_number, tag_token
from activesync.wbxml.tree import Element

#: Default bound on the XML text accepted by ``from_xml``, in characters (base64 grows 4/3).
DEFAULT_MAX_CHARS: Final = 32 * 1024 * 1024
#: Default bound on nested elements, as for the binary decoder.
DEFAULT_MAX_DEPTH: Final = 64

XML_DECLARATION: Final = '<?xml version="1.0" encoding="utf-8"?>'
_OPAQUE_ATTR: Final = "opaque"
_TEXT_ATTR: Final = "text"
_BASE64: Final = "base64"
_XML_SPACE: Final = " \t\r\n"
# Characters outside XML 1.0's Char production (section 2.2); they cannot appear even escaped.
_NOT_XML_CHAR: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NS_SEPARATOR: Final = " "


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def _utf8_base64(element: Element, text: str) -> str:
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise XmlFormError(
            f"cannot write <{element.page}:{element.tag}>: its text is not valid Unicode at "
            f"character {exc.start} ({exc.reason})"
        ) from None
    return base64.b64encode(raw).decode("ascii")


def _check_known(element: Element) -> int:
    page = page_number(element.page)
    if page is None or tag_token(page, element.tag) is None:
        where = "code page" if page is None else f"tag in code page {page} ({PAGES[page]})"
        raise XmlFormError(
            f"cannot write <{element.page}:{element.tag}>: unknown {where}; the XML form "
            "names only EAS code pages and tags (MS-ASWBXML 2.1.2.1)"
        )
    return page


def _leaf(element: Element) -> tuple[str, str | None]:
    """(attribute text, content or None for ``<Tag/>``) of an element without children."""
    if element.opaque is not None:
        data = base64.b64encode(element.opaque).decode("ascii")
        return f' {_OPAQUE_ATTR}="{_BASE64}"', data or None
    if element.text is not None:
        if element.text == "" or _NOT_XML_CHAR.search(element.text):
            data = _utf8_base64(element, element.text)
            return f' {_TEXT_ATTR}="{_BASE64}"', data or None
        return "", _escape(element.text)
    return "", None


def to_xml(root: Element, *, indent: str = "  ") -> str:
    """Indented XML for ``root`` (XML declaration first, newline last)."""
    root_page = _check_known(root)
    used: set[int] = set()
    for node in root.iter():
        used.add(_check_known(node))
    declarations = [f' xmlns="{PAGES[root_page]}:"'] + [
        f' xmlns:{PAGES[page].lower()}="{PAGES[page]}:"' for page in sorted(used - {root_page})
    ]

    def qname(element: Element) -> str:
        if element.page == PAGES[root_page]:
            return element.tag
        number = page_number(element.page)
        assert number is not None  # checked above
        return f"{PAGES[number].lower()}:{element.tag}"

    lines = [XML_DECLARATION]
    # Explicit stack (not recursion) so a deep hand-built tree cannot hit the recursion limit.
    stack: list[tuple[Element, Iterator[Element]]] = []
    pending: Iterator[Element] = iter((root,))
    while True:
        element = next(pending, None)
        if element is None:
            if not stack:
                break
            closed, pending = stack.pop()
            lines.append(f"{indent * len(stack)}</{qname(closed)}>")
            continue
        pad = indent * len(stack)
        name = qname(element)
        decl = "".join(declarations) if element is root and not stack else ""
        if element.children:
            lines.append(f"{pad}<{name}{decl}>")
            stack.append((element, pending))
            pending = iter(element.children)
            continue
        attr, content = _leaf(element)
        if content is None:
            lines.append(f"{pad}<{name}{decl}{attr}/>")
        else:
            lines.append(f"{pad}<{name}{decl}{attr}>{content}</{name}>")
    return "\n".join(lines) + "\n"


class _Frame:
    __slots__ = ("children", "kind", "line", "page", "tag", "text")

    def __init__(self, page: str, tag: str, kind: str | None, line: int) -> None:
        self.page = page
        self.tag = tag
        self.kind = kind
        self.line = line
        self.children: list[Element] = []
        self.text: list[str] = []


class _Reader:
    """Builds an Element tree from expat's callbacks (namespace processing on)."""

    def __init__(self, parser: expat.XMLParserType, max_depth: int) -> None:
        self.parser = parser
        self.max_depth = max_depth
        self.stack: list[_Frame] = []
        self.root: Element | None = None

    def fail(self, message: str) -> XmlFormError:
        return XmlFormError(f"line {self.parser.CurrentLineNumber}: {message}")

    def start(self, name: str, attributes: dict[str, str]) -> None:
        uri, _, local = name.rpartition(_NS_SEPARATOR)
        if not uri:
            raise self.fail(
                f'<{local}> has no namespace: declare one such as xmlns="AirSync:" '
                "(a code page name, MS-ASWBXML 2.1.2.1)"
            )
        page = page_number(uri.removesuffix(":"))
        if page is None:
            raise self.fail(
                f'unknown namespace "{uri}" on <{local}>: expected a code page name such as '
                f'"AirSync:" or "FolderHierarchy:"'
            )
        token = tag_token(page, local)
        if token is None:
            raise self.fail(
                f'unknown tag <{local}> in namespace "{uri}" (code page {page}, {PAGES[page]})'
            )
        if len(self.stack) + 1 > self.max_depth:
            raise self.fail(f"<{local}> is nested deeper than the limit of {self.max_depth}")
        kind: str | None = None
        for attribute, value in attributes.items():
            if attribute in (_OPAQUE_ATTR, _TEXT_ATTR) and value == _BASE64 and kind is None:
                kind = attribute
                continue
            raise self.fail(
                f'unexpected attribute {attribute.replace(_NS_SEPARATOR, ":")}="{value}" on '
                f"<{local}>: EAS elements have no attributes; the XML form knows only "
                f'opaque="base64" or text="base64", one per element'
            )
        if self.stack and self.stack[-1].kind is not None:
            parent = self.stack[-1]
            raise self.fail(
                f'<{parent.tag} {parent.kind}="base64"> (line {parent.line}) holds base64 data '
                f"and cannot contain <{local}>"
            )
        self.stack.append(
            _Frame(PAGES[page], TAGS[page][token], kind, self.parser.CurrentLineNumber)
        )

    def characters(self, data: str) -> None:
        if self.stack:
            self.stack[-1].text.append(data)

    def end(self, name: str) -> None:
        frame = self.stack.pop()
        text = "".join(frame.text)
        if frame.children:
            if text.strip(_XML_SPACE):
                raise XmlFormError(
                    f"line {frame.line}: <{frame.tag}> mixes text ({text.strip()[:40]!r}) with "
                    "child elements; an EAS element holds one or the other"
                )
            # Typed as Any: tree.py's ``converter=tuple`` leaves mypy an unsolved type variable.
            children: Any = tuple(frame.children)
            element = Element(frame.page, frame.tag, children)
        elif frame.kind is not None:
            element = self._from_base64(frame, text)
        elif text:
            element = Element(frame.page, frame.tag, text=text)
        else:
            element = Element(frame.page, frame.tag)
        if self.stack:
            self.stack[-1].children.append(element)
        else:
            self.root = element

    def _from_base64(self, frame: _Frame, text: str) -> Element:
        compact = "".join(text.split())
        try:
            raw = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise XmlFormError(
                f'line {frame.line}: <{frame.tag} {frame.kind}="base64"> does not hold valid '
                f"base64 ({compact[:40]!r})"
            ) from None
        if frame.kind == _OPAQUE_ATTR:
            return Element(frame.page, frame.tag, opaque=raw)
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise XmlFormError(
                f'line {frame.line}: <{frame.tag} text="base64"> is not UTF-8 text once '
                f"decoded ({exc.reason} at byte {exc.start})"
            ) from None
        return Element(frame.page, frame.tag, text=decoded)

    def refuse_doctype(self, *_args: object) -> None:
        raise self.fail("a DOCTYPE has no place in the XML form (no DTDs, no entities)")

    def refuse_entity(self, *_args: object) -> None:
        raise self.fail("entity declarations are not allowed in the XML form")

    def refuse_pi(self, target: str, _data: str) -> None:
        raise self.fail(f"processing instruction <?{target} ...?> has no WBXML form")


def from_xml(
    text: str, *, max_chars: int = DEFAULT_MAX_CHARS, max_depth: int = DEFAULT_MAX_DEPTH
) -> Element:
    """Read the XML form back into an Element tree; ``XmlFormError`` says what and where."""
    if len(text) > max_chars:
        raise XmlFormError(f"XML text of {len(text)} characters is over the limit of {max_chars}")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise XmlFormError(f"XML text is not valid Unicode at character {exc.start}") from None
    # The text is already decoded: force UTF-8 whatever the XML declaration claims.
    parser = expat.ParserCreate(encoding="utf-8", namespace_separator=_NS_SEPARATOR)
    reader = _Reader(parser, max_depth)
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.characters
    parser.StartDoctypeDeclHandler = reader.refuse_doctype
    parser.EntityDeclHandler = reader.refuse_entity
    parser.ProcessingInstructionHandler = reader.refuse_pi
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise XmlFormError(
            f"line {exc.lineno}, column {exc.offset + 1}: not well-formed XML "
            f"({expat.errors.messages[exc.code]})"
        ) from None
    if reader.root is None:  # pragma: no cover - expat reports "no element found" first
        raise XmlFormError("the XML text holds no element")
    return reader.root
