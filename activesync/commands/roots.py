"""Every EAS command: its name, base64 code, request root element and supported versions.

Responsibility: the one table of commands (MS-ASCMD 2.2.1.x, notes 3.1) that the request-line
parser, the error answers and the OPTIONS response read. It must not parse bodies or decide
access; it only knows names, codes, roots and version ranges.

Theory of operation: ``COMMANDS`` lists ``CommandInfo`` values in the order Exchange writes the
OPTIONS ``MS-ASProtocolCommands`` header (MS-ASHTTP 2.2.4 example, plus Find for 16.1).
``root_for(command, version)`` answers which (code page, tag) a minimal error body uses; it is
None for commands with no XML body at that version (GetAttachment, the 2.5 legacy commands,
and SendMail/SmartReply/SmartForward below 14.0, which send MIME).
"""

from __future__ import annotations

from typing import Final

import attrs

from activesync.errors import QueryError
from activesync.versions import ProtocolVersion

_V = ProtocolVersion


@attrs.frozen
class CommandInfo:
    """One command of MS-ASCMD 2.2.1."""

    #: Canonical name as in ``Cmd=`` (``"FolderSync"``).
    name: str
    #: MS-ASHTTP 2.2.1.1.1.1.2 base64 command code; None for commands without one.
    code: int | None
    #: (code page, tag) of the XML request/response root; None when the command has no XML body.
    root: tuple[str, str] | None
    #: Oldest version that has the command.
    min_version: ProtocolVersion = _V.V2_5
    #: Newest version that has the command.
    max_version: ProtocolVersion = _V.V16_1
    #: Version from which the XML root applies (ComposeMail commands send MIME below 14.0).
    root_since: ProtocolVersion = _V.V2_5

    def supports(self, version: ProtocolVersion) -> bool:
        """Whether a client of ``version`` may send this command."""
        return self.min_version <= version <= self.max_version


#: In the order of the OPTIONS ``MS-ASProtocolCommands`` header (MS-ASHTTP 2.2.4 example; Find
#: appended for 16.1, R245). GetHierarchy is 2.5-12.1 (MS-ASCMD 2.2.1.8); the three *Collection
#: commands exist only in the legacy list, so they get the same range (an assumption: no source
#: names their range). GetAttachment is 2.5-12.1 (MS-ASCMD 2.2.1.7); ItemOperations and Settings
#: start at 12.0; Find is 16.1 only (MS-ASCMD 2.2.1.2).
COMMANDS: Final[tuple[CommandInfo, ...]] = (
    CommandInfo("Sync", 0, ("AirSync", "Sync")),
    CommandInfo("SendMail", 1, ("ComposeMail", "SendMail"), root_since=_V.V14_0),
    CommandInfo("SmartForward", 2, ("ComposeMail", "SmartForward"), root_since=_V.V14_0),
    CommandInfo("SmartReply", 3, ("ComposeMail", "SmartReply"), root_since=_V.V14_0),
    CommandInfo("GetAttachment", 4, None, max_version=_V.V12_1),
    CommandInfo("GetHierarchy", None, None, max_version=_V.V12_1),
    CommandInfo("CreateCollection", None, None, max_version=_V.V12_1),
    CommandInfo("DeleteCollection", None, None, max_version=_V.V12_1),
    CommandInfo("MoveCollection", None, None, max_version=_V.V12_1),
    CommandInfo("FolderSync", 9, ("FolderHierarchy", "FolderSync")),
    CommandInfo("FolderCreate", 10, ("FolderHierarchy", "FolderCreate")),
    CommandInfo("FolderDelete", 11, ("FolderHierarchy", "FolderDelete")),
    CommandInfo("FolderUpdate", 12, ("FolderHierarchy", "FolderUpdate")),
    CommandInfo("MoveItems", 13, ("Move", "MoveItems")),
    CommandInfo("GetItemEstimate", 14, ("GetItemEstimate", "GetItemEstimate")),
    CommandInfo("MeetingResponse", 15, ("MeetingResponse", "MeetingResponse")),
    CommandInfo("Search", 16, ("Search", "Search")),
    CommandInfo("Settings", 17, ("Settings", "Settings"), min_version=_V.V12_0),
    CommandInfo("Ping", 18, ("Ping", "Ping")),
    CommandInfo("ItemOperations", 19, ("ItemOperations", "ItemOperations"), min_version=_V.V12_0),
    CommandInfo("Provision", 20, ("Provision", "Provision")),
    CommandInfo("ResolveRecipients", 21, ("ResolveRecipients", "ResolveRecipients")),
    CommandInfo("ValidateCert", 22, ("ValidateCert", "ValidateCert")),
    # Notes 1.5: 23 comes from the ITS client's enum, which it writes as the command byte.
    CommandInfo("Find", 23, ("Find", "Find"), min_version=_V.V16_1),
)

#: The name OPTIONS requests carry in ``EasRequest.command`` (Exchange's CommandType.Options).
OPTIONS: Final = "Options"

_BY_LOWER_NAME: Final[dict[str, CommandInfo]] = {c.name.lower(): c for c in COMMANDS}
_BY_CODE: Final[dict[int, CommandInfo]] = {c.code: c for c in COMMANDS if c.code is not None}

#: Command names, OPTIONS order.
COMMAND_NAMES: Final[tuple[str, ...]] = tuple(c.name for c in COMMANDS)

#: Every (code page, tag) that is some command's root, for tests and tools.
ROOTS: Final[tuple[tuple[str, str], ...]] = tuple(c.root for c in COMMANDS if c.root is not None)


def _unknown_command(what: str) -> QueryError:
    # Exchange answers a Cmd it has no command object for with HTTP 501 NotImplemented and
    # status 137 CommandNotSupported (EXDEC Handler.BeginProcessRequest), which is also the
    # MS-ASCMD 2.2.2 pairing for 137 (501). A 400 would tell the client its request is malformed,
    # but the syntax is fine: the server just does not implement that command.
    return QueryError(
        f"{what}; expected one of {', '.join(COMMAND_NAMES)}",
        http_status=501,
        eas_status=137,
    )


def command_info(name: str) -> CommandInfo:
    """The command called ``name`` (case-insensitive, as IIS reads ``Cmd=``)."""
    found = _BY_LOWER_NAME.get(name.lower())
    if found is None:
        raise _unknown_command(f"Cmd: unknown command {name[:40]!r}")
    return found


def command_by_code(code: int) -> CommandInfo:
    """The command with base64 command code ``code`` (MS-ASHTTP 2.2.1.1.1.1.2)."""
    found = _BY_CODE.get(code)
    if found is None:
        raise _unknown_command(f"base64 query byte 1: unknown command code {code}")
    return found


def canonical_name(name: str) -> str:
    """``"foldersync"`` -> ``"FolderSync"``; OPTIONS stays ``"Options"``."""
    if name.lower() == OPTIONS.lower():
        return OPTIONS
    return command_info(name).name


def root_for(command: str, version: ProtocolVersion) -> tuple[str, str] | None:
    """(code page, tag) of ``command``'s XML root at ``version``, or None when it has none."""
    if command == OPTIONS:
        return None
    info = command_info(command)
    if info.root is None or version < info.root_since:
        return None
    return info.root


def require_supported(command: str, version: ProtocolVersion) -> None:
    """Raise unless a client of ``version`` may send ``command``.

    Exchange answers a command outside its version range with HTTP 400 and status 138
    VersionNotSupported (EXDEC ``Handler``: ``Version < cmd.MinVersion || > cmd.MaxVersion``).
    """
    if command == OPTIONS:
        return
    info = command_info(command)
    if not info.supports(version):
        raise QueryError(
            f"Cmd={info.name}: not available in protocol version {version.text}; expected a "
            f"version from {info.min_version.text} to {info.max_version.text}",
            http_status=400,
            eas_status=138,
        )


def commands_header(highest: ProtocolVersion = _V.V16_1) -> str:
    """The OPTIONS ``MS-ASProtocolCommands`` value of a server serving up to ``highest``.

    Legacy commands stay listed (the MS-ASHTTP 2.2.4 example of a 14.0 server lists them);
    commands newer than ``highest`` (Find) are left out.
    """
    return ",".join(c.name for c in COMMANDS if c.min_version <= highest)
