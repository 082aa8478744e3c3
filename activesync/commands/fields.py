"""Reading and writing the typed leaves of command trees, with errors that name the element.

Responsibility: the small vocabulary every command view in this package uses to turn an
``Element`` leaf into an ``int``/``str``/``bool``/``bytes`` (and back), checking the shape the
MS-ASCMD element tables give (container vs leaf, integer vs string, empty tag) and raising
``CommandError`` with the element's path, what was expected and what arrived.

It must not know any command: paths and tag names come from the caller. It does no I/O.

Theory of operation: a view calls ``expect_root`` on the tree it was handed, then walks it with
``required``/``optional``/``text_of``/``int_of`` and friends, passing the path of the parent
(``"Sync/Collections/Collection[1]"``) so every message says where the problem is. Builders go
the other way: ``leaf`` writes a value (integers in decimal, MS-ASDTYPE 2.6), ``flag`` writes an
empty tag, ``container`` drops ``None`` children so optional fields simply vanish.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, TypeVar

from activesync.errors import CommandError
from activesync.wbxml.tree import E, Element

#: MS-ASDTYPE 2.6 integers travel as decimal strings; we accept an optional sign only where the
#: caller allows negatives (MaxEmailBodyTruncationSize-like fields), never spaces or "+".
_INT_RE: Final = re.compile(r"-?[0-9]{1,20}")

#: Largest unsigned 32-bit value: the bound for counts, sizes and intervals on the wire.
UINT32_MAX: Final = 0xFFFF_FFFF

#: SyncKey, CollectionId, ServerId, ClientId, ParentId and Ping folder ids are strings of up to
#: 64 characters (MS-ASCMD 2.2.3.181, 2.2.3.30, 2.2.3.166, 2.2.3.28.3, 2.2.3.132.2, 2.2.3.86).
MAX_ID_LEN: Final = 64
#: Command and global statuses are small integers (MS-ASCMD 2.2.2 ends below 200).
MAX_STATUS: Final = 999

_T = TypeVar("_T")

#: The shape of an attrs field validator.
Validator = Callable[[Any, Any, Any], None]


def name(page: str, tag: str) -> str:
    """The element as people read it in messages: ``<AirSync:SyncKey>``."""
    return f"<{page}:{tag}>"


def expect_root(el: Element, page: str, tag: str, where: str = "") -> None:
    """Raise unless ``el`` is ``<page:tag>`` (the command's root, or the container a nested
    view was handed, then ``where`` says where it sits)."""
    if el.page != page or el.tag != tag:
        what = f"{where}: expected element" if where else "expected root element"
        raise CommandError(f"{what} {name(page, tag)}, got {name(el.page, el.tag)}")


def optional(parent: Element, page: str, tag: str, where: str) -> Element | None:
    """The only child ``<page:tag>`` of ``parent``, or None; a repeated child is an error."""
    found: Element | None = None
    for c in parent.children:
        if c.tag == tag and c.page == page:
            if found is not None:
                raise CommandError(f"{where}: {name(page, tag)} may appear once, found it twice")
            found = c
    return found


def required(parent: Element, page: str, tag: str, where: str) -> Element:
    """The only child ``<page:tag>`` of ``parent``; missing is an error naming both."""
    found = optional(parent, page, tag, where)
    if found is None:
        raise CommandError(f"{where}: missing required element {name(page, tag)}")
    return found


def all_named(parent: Element, page: str, tag: str) -> Iterator[Element]:
    """Every child ``<page:tag>`` of ``parent`` in document order."""
    for c in parent.children:
        if c.tag == tag and c.page == page:
            yield c


def text_of(el: Element, where: str, *, max_len: int | None = None) -> str:
    """The string value of a leaf; an empty tag reads as ``""``.

    Opaque content is accepted when it is UTF-8: some servers send string leaves as OPAQUE.
    """
    path = f"{where}/{el.tag}"
    if el.children:
        raise CommandError(f"{path}: expected a string value, got child elements")
    if el.opaque is not None:
        try:
            value = el.opaque.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CommandError(f"{path}: expected UTF-8 text, got undecodable bytes") from exc
    else:
        value = el.text or ""
    if max_len is not None and len(value) > max_len:
        raise CommandError(f"{path}: expected at most {max_len} characters, got {len(value)}")
    return value


def int_of(el: Element, where: str, *, lo: int = 0, hi: int = UINT32_MAX) -> int:
    """The integer value of a leaf (MS-ASDTYPE 2.6), checked against ``lo..hi``."""
    path = f"{where}/{el.tag}"
    raw = text_of(el, where)
    if not _INT_RE.fullmatch(raw):
        raise CommandError(f"{path}: expected an integer, got {raw!r}")
    value = int(raw)
    if not lo <= value <= hi:
        raise CommandError(f"{path}: expected an integer in {lo}..{hi}, got {value}")
    return value


def bool_of(el: Element, where: str) -> bool:
    """A boolean leaf (MS-ASDTYPE 2.1): "1"/"0"; an empty tag means true (GetChanges,
    DeletesAsMoves are sent as bare tags by most clients, MS-ASCMD 2.2.3.84)."""
    if el.is_empty:
        return True
    raw = text_of(el, where)
    if raw in ("1", "true"):
        return True
    if raw in ("0", "false"):
        return False
    raise CommandError(f"{where}/{el.tag}: expected a boolean 0 or 1, got {raw!r}")


def opaque_of(el: Element, where: str) -> bytes:
    """Binary content of a leaf (OPAQUE); inline text is taken as its UTF-8 bytes."""
    if el.children:
        raise CommandError(f"{where}/{el.tag}: expected opaque data, got child elements")
    if el.opaque is not None:
        return el.opaque
    return (el.text or "").encode("utf-8")


def expect_empty(el: Element, where: str) -> None:
    """Raise unless ``el`` is an empty tag (``<MoreAvailable/>``, ``<Partial/>``)."""
    if not el.is_empty:
        raise CommandError(f"{where}/{el.tag}: expected an empty element, got content")


def opt_text(
    parent: Element, page: str, tag: str, where: str, *, max_len: int | None = None
) -> str | None:
    """Text of an optional leaf child, or None when absent."""
    el = optional(parent, page, tag, where)
    return None if el is None else text_of(el, where, max_len=max_len)


def req_text(
    parent: Element, page: str, tag: str, where: str, *, max_len: int | None = None
) -> str:
    """Text of a required leaf child."""
    return text_of(required(parent, page, tag, where), where, max_len=max_len)


def opt_int(
    parent: Element, page: str, tag: str, where: str, *, lo: int = 0, hi: int = UINT32_MAX
) -> int | None:
    """Integer of an optional leaf child, or None when absent."""
    el = optional(parent, page, tag, where)
    return None if el is None else int_of(el, where, lo=lo, hi=hi)


def req_int(
    parent: Element, page: str, tag: str, where: str, *, lo: int = 0, hi: int = UINT32_MAX
) -> int:
    """Integer of a required leaf child."""
    return int_of(required(parent, page, tag, where), where, lo=lo, hi=hi)


def opt_bool(parent: Element, page: str, tag: str, where: str) -> bool | None:
    """Boolean of an optional leaf child, or None when absent."""
    el = optional(parent, page, tag, where)
    return None if el is None else bool_of(el, where)


def has_flag(parent: Element, page: str, tag: str, where: str) -> bool:
    """True when the empty-tag child ``<page:tag/>`` is present (it must carry no content)."""
    el = optional(parent, page, tag, where)
    if el is None:
        return False
    expect_empty(el, where)
    return True


def list_of(
    container: Element, page: str, item: str, where: str, read: Callable[[Element, str], _T]
) -> tuple[_T, ...]:
    """The ``<page:item>`` children of a list container (``Collections``, ``Folders``), each
    read by ``read`` with its own path ``where/Container/Item[i]``; any other child is an error.
    ``where`` is the path of the container's parent."""
    path = f"{where}/{container.tag}"
    reject_unknown(container, [(page, item)], path)
    return tuple(
        read(c, f"{path}/{item}[{i}]") for i, c in enumerate(all_named(container, page, item))
    )


def reject_unknown(parent: Element, allowed: Iterable[tuple[str, str]], where: str) -> None:
    """Raise on a child that is not one of ``allowed`` (page, tag) pairs.

    Used only where MS-ASCMD lists a closed set of children and an unknown one would be silently
    lost (command lists); item data (ApplicationData) stays open to tags we do not model.
    """
    known = set(allowed)
    for c in parent.children:
        if (c.page, c.tag) not in known:
            raise CommandError(f"{where}: unexpected element {name(c.page, c.tag)}")


def leaf(page: str, tag: str, value: str | int | bool | None) -> Element | None:
    """A leaf element for ``value`` (bools as "1"/"0", ints in decimal), None for None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return Element(page, tag, text="1" if value else "0")
    return Element(page, tag, text=str(value))


def opaque_leaf(page: str, tag: str, value: bytes | None) -> Element | None:
    """An OPAQUE leaf (MS-ASWBXML 2.1.3: Mime, attachment data), None for None."""
    return None if value is None else Element(page, tag, opaque=value)


def flag(page: str, tag: str, present: bool) -> Element | None:
    """An empty-tag element when ``present`` (``<Partial/>``), else None."""
    return Element(page, tag) if present else None


def container(page: str, tag: str, *children: Element | None) -> Element:
    """A container of the non-None ``children``, in the order given."""
    return E(page, tag, *(c for c in children if c is not None))


def text_rule(page: str, tag: str, *, max_len: int) -> Validator:
    """An attrs validator: a ``str`` (or None) of at most ``max_len`` characters."""

    def check(_instance: object, _attribute: object, value: object) -> None:
        if value is None:
            return
        if not isinstance(value, str):
            raise CommandError(f"{name(page, tag)}: expected a string, got {type(value).__name__}")
        if len(value) > max_len:
            raise CommandError(
                f"{name(page, tag)}: expected at most {max_len} characters, got {len(value)}"
            )

    return check


def int_rule(page: str, tag: str, *, lo: int = 0, hi: int = UINT32_MAX) -> Validator:
    """An attrs validator: an ``int`` (or None) within ``lo..hi`` (bools are refused)."""

    def check(_instance: object, _attribute: object, value: object) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise CommandError(
                f"{name(page, tag)}: expected an integer, got {type(value).__name__}"
            )
        if not lo <= value <= hi:
            raise CommandError(f"{name(page, tag)}: expected an integer in {lo}..{hi}, got {value}")

    return check


def each_text_rule(page: str, tag: str, *, max_len: int) -> Validator:
    """An attrs validator: a tuple (or None) of strings, each at most ``max_len`` characters."""
    one = text_rule(page, tag, max_len=max_len)

    def check(instance: object, attribute: object, value: object) -> None:
        if value is None:
            return
        if not isinstance(value, tuple):
            raise CommandError(f"{name(page, tag)}: expected a tuple of strings")
        for item in value:
            if item is None:
                raise CommandError(f"{name(page, tag)}: expected a string, got None")
            one(instance, attribute, item)

    return check
