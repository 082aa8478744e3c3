"""Hypothesis strategies for Element trees built from the real EAS code pages (WBXML tests)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from activesync.wbxml import PAGES, TAGS, Element

#: Every (page name, tag name) the decoder can produce, legacy tokens included.
PAGE_TAGS: list[tuple[str, str]] = [
    (PAGES[page], tag) for page in range(len(PAGES)) for tag in TAGS[page].values()
]

# Inline strings cannot hold NUL (STR_I is NUL-terminated); surrogates are not Unicode text.
texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)


def _leaf(name: tuple[str, str], content: str | bytes | None) -> Element:
    if isinstance(content, bytes):
        return Element(name[0], name[1], opaque=content)
    return Element(name[0], name[1], text=content)


def _branch(name: tuple[str, str], children: list[Element]) -> Element:
    kids: Any = tuple(children)
    return Element(name[0], name[1], kids)


leaves = st.builds(
    _leaf, st.sampled_from(PAGE_TAGS), st.one_of(st.none(), texts, st.binary(max_size=60))
)

#: Trees mixing pages (so SWITCH_PAGE appears), text, opaque data, empty tags and nesting.
trees = st.recursive(
    leaves,
    lambda children: st.builds(
        _branch, st.sampled_from(PAGE_TAGS), st.lists(children, min_size=1, max_size=4)
    ),
    max_leaves=25,
)
