"""WBXML 1.3 as EAS uses it (MS-ASWBXML): code pages, codec, element tree, XML text form.

- ``encode(root) -> bytes`` and ``decode(data) -> Element`` (or the streaming ``WbxmlDecoder``)
  translate between bodies and :class:`Element` trees; both raise ``WbxmlError`` (EAS status
  102) with the byte position of the problem.
- ``to_xml``/``from_xml`` give the people-facing XML form (``XmlFormError`` on bad input).
- ``PAGES`` and the look-ups ``page_number``/``page_name``/``tag_name``/``tag_token`` expose the
  26 code pages.
"""

from __future__ import annotations

from activesync.wbxml.codepages import (
    LEGACY_TOKENS,
    PAGES,
    TAGS,
    page_name,
    page_number,
    tag_name,
    tag_token,
)
from activesync.wbxml.decoder import DecoderState, WbxmlDecoder, decode
from activesync.wbxml.encoder import HEADER, encode
from activesync.wbxml.tree import E, Element
from activesync.wbxml.xmlform import from_xml, to_xml

__all__ = [
    "HEADER",
    "LEGACY_TOKENS",
    "PAGES",
    "TAGS",
    "DecoderState",
    "E",
    "Element",
    "WbxmlDecoder",
    "decode",
    "encode",
    "from_xml",
    "page_name",
    "page_number",
    "tag_name",
    "tag_token",
    "to_xml",
]
