"""The steps a script asks a phone for: one value per EAS command the phone can run.

Responsibility: name each step and hold its parameters (folders, heartbeat, the message to
send), checked where they are built. It must not plan exchanges or build requests: the facade
(``device.py``) turns a step into exchanges (``exchanges.py``).

Theory of operation: steps are frozen attrs values with a class-level ``name`` (the EAS command
they stand for), so scripts, scenario files and the dashboard can hold, compare and print them.
``Step`` is their union.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import attrs


def _names(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError(f"folders: expected a sequence of folder names, got the string {value!r}")
    return tuple(value)


@attrs.frozen
class Options:
    """``OPTIONS /Microsoft-Server-ActiveSync``: which versions and commands the server has."""

    name: ClassVar[str] = "OPTIONS"


@attrs.frozen
class Provision:
    """Both Provision phases: fetch the policy, apply it, acknowledge, keep the final key."""

    name: ClassVar[str] = "Provision"


@attrs.frozen
class FolderSync:
    """Fetch the folder hierarchy (from SyncKey 0 the first time, then incrementally)."""

    name: ClassVar[str] = "FolderSync"


@attrs.frozen
class Sync:
    """Sync folders (display names or ServerIds; the Inbox when none are named).

    A folder never synced gets the initial SyncKey 0 round, then GetChanges rounds until the
    server has nothing more (MoreAvailable). Unknown names trigger a FolderSync first.
    """

    folders: tuple[str, ...] = attrs.field(default=(), converter=_names)
    name: ClassVar[str] = "Sync"


@attrs.frozen
class Ping:
    """Ping (long poll) on folders (the Inbox when none are named) for ``heartbeat`` seconds.

    When the server reports changes, the phone syncs the changed folders in the same step, as
    real phones do before pinging again.
    """

    heartbeat: int = 60
    folders: tuple[str, ...] = attrs.field(default=(), converter=_names)
    name: ClassVar[str] = "Ping"


@attrs.frozen(kw_only=True)
class SendMail:
    """Send one message (ComposeMail WBXML from 14.0, raw MIME below)."""

    to: str
    subject: str
    body: str = ""
    save_in_sent: bool = True
    name: ClassVar[str] = "SendMail"


@attrs.frozen
class Settings:
    """Settings: report DeviceInformation (what 12.1/14.0 phones do instead of in Provision)."""

    name: ClassVar[str] = "Settings"


#: Any step a script may hold.
Step = Options | Provision | FolderSync | Sync | Ping | SendMail | Settings
