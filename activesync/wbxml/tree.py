"""The element tree every EAS body is decoded to and encoded from.

An ``Element`` is a frozen value: a code page (namespace) name, a tag name, and exactly one kind
of content: child elements, inline text, opaque bytes, or nothing (an empty tag such as
``<MoreAvailable/>``). EAS never mixes text and children in one element (MS-ASWBXML 2.1.3).

The codec (``decoder``/``encoder``) and the XML text form translate between bytes and this tree;
typed command views in ``activesync.commands`` read and build trees with the helpers below.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import attrs


def _as_children(children: Iterable[Element]) -> tuple[Element, ...]:
    return tuple(children)


@attrs.frozen
class Element:
    """One WBXML element, e.g. ``Element("AirSync", "SyncKey", text="0")``."""

    #: Code page name as in MS-ASWBXML 2.1.2.1 ("AirSync", "FolderHierarchy", "Provision"...).
    page: str
    #: Tag name within that page ("Sync", "Status"...).
    tag: str
    #: Child elements; empty for a leaf.
    children: tuple[Element, ...] = attrs.field(default=(), converter=_as_children)
    #: Inline string content (STR_I), or None.
    text: str | None = None
    #: Opaque content (OPAQUE), or None.
    opaque: bytes | None = None

    def __attrs_post_init__(self) -> None:
        kinds = (bool(self.children), self.text is not None, self.opaque is not None)
        if sum(kinds) > 1:
            raise ValueError(
                f"<{self.page}:{self.tag}> may hold children, text or opaque data, not several"
            )

    @property
    def is_empty(self) -> bool:
        """True for an element with no content at all (encoded as the bare token)."""
        return not self.children and self.text is None and self.opaque is None

    def child(self, tag: str, page: str | None = None) -> Element | None:
        """The first direct child called ``tag`` (in ``page``, or in any page when None)."""
        for c in self.children:
            if c.tag == tag and (page is None or c.page == page):
                return c
        return None

    def children_named(self, tag: str, page: str | None = None) -> Iterator[Element]:
        """Every direct child called ``tag`` (in ``page``, or in any page when None)."""
        for c in self.children:
            if c.tag == tag and (page is None or c.page == page):
                yield c

    def find(self, path: str) -> Element | None:
        """Follow a ``/``-separated path of tag names through direct children."""
        node: Element | None = self
        for part in path.split("/"):
            if node is None:
                return None
            node = node.child(part)
        return node

    def child_text(self, tag: str, default: str | None = None) -> str | None:
        """The text of the first child called ``tag``; ``default`` when absent or not text."""
        c = self.child(tag)
        if c is None or c.text is None:
            return default
        return c.text

    def iter(self) -> Iterator[Element]:
        """This element and every descendant, depth first, in document order."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


def E(page: str, tag: str, *children: Element, text: str | int | None = None) -> Element:
    """Build an element tersely: ``E("AirSync", "Sync", E("AirSync", "SyncKey", text=0))``.

    Integers are written in decimal, as MS-ASDTYPE sends every integer as an inline string.
    """
    return Element(page, tag, children, None if text is None else str(text))
