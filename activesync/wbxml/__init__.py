"""WBXML 1.3 as EAS uses it (MS-ASWBXML): code pages, codec, element tree, XML text form."""

from __future__ import annotations

from activesync.wbxml.tree import E, Element

__all__ = ["E", "Element"]
