"""The UEM's exception family: input it cannot accept and things that do not exist.

A denial (BLOCK, WIPE) is a decision, never one of these. Each error carries the HTTP status
and a hint saying what to do; the app's one error middleware turns it into
``{"error": ..., "hint": ...}``. Cores raise these; they never build HTTP responses.
"""

from __future__ import annotations


class UemError(Exception):
    """Input the UEM cannot serve, with the HTTP status and a hint for the caller."""

    http_status = 400

    def __init__(self, message: str, *, hint: str = "", http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if http_status is not None:
            self.http_status = http_status


class ConfigError(UemError):
    """A lab config or admin request body that breaks the schema; names file and key path."""

    def __init__(self, source: str, path: str, problem: str, *, hint: str = "") -> None:
        super().__init__(f"{source}: {path}: {problem}", hint=hint)
        self.source = source
        self.path = path
        self.problem = problem


class NotFound(UemError):
    """The user, device or record named does not exist."""

    http_status = 404


class Conflict(UemError):
    """The thing to create already exists."""

    http_status = 409
