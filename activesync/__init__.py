"""The Exchange ActiveSync wire protocol, sans-I/O.

No sockets, no asyncio: request lines, WBXML bodies, command views, status codes and the
per-version rules, as pure functions over bytes and attrs values. Every actor uses it.
"""

from __future__ import annotations

from activesync.errors import ActiveSyncError, CommandError, QueryError, WbxmlError, XmlFormError
from activesync.wbxml.tree import E, Element

__all__ = [
    "ActiveSyncError",
    "CommandError",
    "E",
    "Element",
    "QueryError",
    "WbxmlError",
    "XmlFormError",
]
