"""What the core hands the shell after each exchange: the action to take and the result told.

Responsibility: the values that leave the core: the next action (``Send``, ``Backoff``,
``Done``, ``Halt``), the one-word ``Outcome``, why a device is blocked (``Block``) and the
``StepResult`` that carries them with a summary for people and details for programs. It must
not decide anything: the facade (``device.py``) builds these values.

Theory of operation: an action is a command to the imperative shell, in the manner of
mitmproxy's layer commands: ``Send`` and ``Backoff`` keep the step going, ``Done`` ends it and
``Halt`` ends the device's run. ``StepResult.to_json`` is the one place their JSON form is
written (``--json``, event logs, load-test records).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs

from device_sim.client.states import DeviceState
from device_sim.wire import HttpRequest


@attrs.frozen
class Send:
    """Send ``request`` next; the step goes on."""

    request: HttpRequest


@attrs.frozen
class Backoff:
    """Wait ``seconds`` (the server is busy), then send ``request`` again."""

    seconds: float
    request: HttpRequest


@attrs.frozen
class Done:
    """The step is over; ``succeeded`` says whether it did what it set out to do."""

    succeeded: bool


@attrs.frozen
class Halt:
    """The device cannot go on (blocked, wiped, refused credentials)."""

    state: DeviceState


Action = Send | Backoff | Done | Halt


class Outcome(enum.Enum):
    """What one exchange came to, in one word."""

    #: The server answered as hoped.
    OK = "ok"
    #: The server asked for (re-)provisioning; the phone provisions and retries.
    REPROVISION = "reprovision"
    #: The folder or hierarchy state was stale; the phone resyncs and retries.
    RESYNC = "resync"
    #: The server is busy; the phone waits and retries.
    BACKOFF = "backoff"
    #: The server refused this device.
    BLOCKED = "blocked"
    #: The server asked for a wipe; the phone fetches the directive.
    WIPE_REQUESTED = "wipe-requested"
    #: The phone acknowledged the wipe and erased the account.
    WIPED = "wiped"
    #: The server refused the credentials.
    AUTH_FAILED = "auth-failed"
    #: Anything else that went wrong.
    FAILED = "failed"


class BlockKind(enum.Enum):
    """Why the server refused the device."""

    #: 129 DeviceIsBlockedForThisUser.
    BLOCKED = "blocked"
    #: 177 MaximumDevicesReached.
    DEVICE_LIMIT = "device-limit"
    #: HTTP 403 (the only form below 14.0, and 177 at 14.0).
    FORBIDDEN = "forbidden"
    #: 126 UserDisabledForSync.
    USER_DISABLED = "user-disabled"
    #: 130 AccessDenied / 131 AccountDisabled.
    ACCESS_DENIED = "access-denied"


@attrs.frozen
class Block:
    """Why a device is BLOCKED: the code as received and what it means."""

    #: The EAS status (129, 177, ...) or the HTTP status (403).
    code: int
    #: Which kind of refusal.
    kind: BlockKind
    #: One line for people.
    meaning: str
    #: The HTTP status of the refusing response.
    http_status: int


@attrs.frozen(kw_only=True)
class StepResult:
    """One HTTP exchange, told for people and for programs."""

    #: The step this exchange belongs to ("Provision", "Sync"...).
    step: str
    #: The EAS command of the exchange ("OPTIONS", "Provision", "Sync"...).
    command: str
    #: What the exchange was, e.g. "Provision (acknowledge)" or "Sync Inbox".
    label: str
    #: One-word outcome.
    outcome: Outcome
    #: The result in plain words: "Status 1  6 folders  sync key 1".
    summary: str
    #: HTTP status of the response.
    http_status: int
    #: The EAS status read from the body (None when there was none).
    eas_status: int | None
    #: Machine-readable facts (items received, sync key, policy key...).
    details: Mapping[str, object]
    #: What the shell does next.
    action: Action

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict (for ``--json`` and event logs)."""
        action: dict[str, object] = {"kind": type(self.action).__name__.lower()}
        if isinstance(self.action, Backoff):
            action["seconds"] = self.action.seconds
        elif isinstance(self.action, Done):
            action["succeeded"] = self.action.succeeded
        elif isinstance(self.action, Halt):
            action["state"] = self.action.state.value
        return {
            "step": self.step,
            "command": self.command,
            "label": self.label,
            "outcome": self.outcome.value,
            "summary": self.summary,
            "http_status": self.http_status,
            "eas_status": self.eas_status,
            "details": dict(self.details),
            "action": action,
        }
