"""The seven EAS protocol versions as an ordered type.

Responsibility: name the versions MS-ASHTTP allows (2.5, 12.0, 12.1, 14.0, 14.1, 16.0, 16.1;
MS-ASHTTP 2.2.1.1.2.6), order them, and translate between their three wire forms: the header
text (``MS-ASProtocolVersion: 14.0``), the base64 query byte (version x 10, MS-ASHTTP
2.2.1.1.1.1) and the enum member. It must not decide what a version means for a command or a
status: ``status.py`` and ``commands/roots.py`` do that.

Theory of operation: ``ProtocolVersion`` is an ``IntEnum`` whose value is the base64 byte
(25, 120, 121, 140, 141, 160, 161), so members compare in protocol order and ``from_byte`` is a
lookup. Anything else is a ``QueryError`` carrying HTTP 400 and MS-ASCMD status 138
VersionNotSupported, the pair Exchange answers when a request names a version it does not serve.
"""

from __future__ import annotations

import enum
from typing import Final

from activesync.errors import QueryError

#: MS-ASCMD 2.2.2: VersionNotSupported. Kept as a plain int here because ``status.py`` imports
#: this module (it needs the versions for its per-version rule).
_VERSION_NOT_SUPPORTED: Final = 138


class ProtocolVersion(enum.IntEnum):
    """One EAS protocol version; the value is the base64 query's version byte."""

    #: Exchange 2003 SP2 era; plain-text queries only, policies as MS-WAP-Provisioning-XML.
    V2_5 = 25
    #: Exchange 2007; plain-text queries only.
    V12_0 = 120
    #: Exchange 2007 SP1; the first version allowed to use the base64 query.
    V12_1 = 121
    #: Exchange 2010; global statuses move into the body (HTTP 200 + Status).
    V14_0 = 140
    #: Exchange 2010 SP1 / 2013; Provision must carry DeviceInformation.
    V14_1 = 141
    #: Exchange 2016.
    V16_0 = 160
    #: Exchange 2016 CU / 2019; Find, AccountOnlyRemoteWipe.
    V16_1 = 161

    @property
    def text(self) -> str:
        """The header form, e.g. ``"14.0"``."""
        return f"{self.value // 10}.{self.value % 10}"

    @property
    def byte(self) -> int:
        """The base64 query's version byte, e.g. 140."""
        return int(self.value)

    @property
    def allows_base64_query(self) -> bool:
        """MS-ASHTTP 2.2.1.1.1.1: the base64 form is for 12.1 and later only."""
        return self >= ProtocolVersion.V12_1

    @classmethod
    def from_text(cls, text: str, *, where: str = "MS-ASProtocolVersion") -> ProtocolVersion:
        """The version named by a header value such as ``"14.1"``; anything else is an error."""
        found = _BY_TEXT.get(text.strip())
        if found is None:
            raise QueryError(
                f"{where}: expected one of {', '.join(_BY_TEXT)}, got {text[:40]!r}",
                http_status=400,
                eas_status=_VERSION_NOT_SUPPORTED,
            )
        return found

    @classmethod
    def from_byte(cls, value: int, *, where: str = "base64 query byte 0") -> ProtocolVersion:
        """The version named by a base64 query's version byte (121, 140, ...)."""
        try:
            return cls(value)
        except ValueError:
            raise QueryError(
                f"{where}: expected a protocol version byte "
                f"({', '.join(str(v.value) for v in cls)}), got {value}",
                http_status=400,
                eas_status=_VERSION_NOT_SUPPORTED,
            ) from None

    @classmethod
    def coerce(cls, value: ProtocolVersion | str) -> ProtocolVersion:
        """Accept a member or its text form (for callers that hold configuration strings)."""
        if isinstance(value, ProtocolVersion):
            return value
        return cls.from_text(value, where="protocol version")

    def __str__(self) -> str:
        return self.text


_BY_TEXT: Final[dict[str, ProtocolVersion]] = {v.text: v for v in ProtocolVersion}

#: Every version, oldest first.
ALL_VERSIONS: Final[tuple[ProtocolVersion, ...]] = tuple(ProtocolVersion)

#: The newest version (MS-ASHTTP 2.2.1.1.2.6).
NEWEST: Final = ProtocolVersion.V16_1


def versions_header(highest: ProtocolVersion = NEWEST) -> str:
    """The OPTIONS ``MS-ASProtocolVersions`` value of a server serving up to ``highest``
    (MS-ASHTTP 2.2.2.1.2.x: comma-separated, oldest first)."""
    return ",".join(v.text for v in ProtocolVersion if v <= highest)
