"""The one exception family of the ActiveSync layer.

A denial is a result, not an exception; these are for input that is malformed or cannot be
served. Each error carries the answer to give (h11's ``error_status_hint`` idea): the HTTP
status and, where the protocol has one, the EAS global status (MS-ASCMD 2.2.2). Shells map
them to responses in one middleware; cores never build HTTP responses themselves.
"""

from __future__ import annotations


class ActiveSyncError(Exception):
    """Input that cannot be served, with the answer a server should give."""

    def __init__(
        self, message: str, *, http_status: int = 400, eas_status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.eas_status = eas_status

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, http_status={self.http_status}, "
            f"eas_status={self.eas_status})"
        )


class QueryError(ActiveSyncError):
    """A request line or header that breaks MS-ASHTTP (bad base64, bad DeviceId, unknown Cmd)."""


class WbxmlError(ActiveSyncError):
    """A WBXML body that cannot be decoded or encoded (MS-ASCMD status 102 InvalidWBXML)."""

    def __init__(
        self, message: str, *, http_status: int = 400, eas_status: int | None = 102
    ) -> None:
        super().__init__(message, http_status=http_status, eas_status=eas_status)


class XmlFormError(ActiveSyncError):
    """The people-facing XML text form could not be read (or names an unknown tag)."""


class CommandError(ActiveSyncError):
    """A well-formed body that breaks a command's rules (MS-ASCMD status 103 InvalidXML)."""

    def __init__(
        self, message: str, *, http_status: int = 400, eas_status: int | None = 103
    ) -> None:
        super().__init__(message, http_status=http_status, eas_status=eas_status)
