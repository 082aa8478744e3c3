"""The dashboard's control requests: JSON bodies validated into values, or a located error.

Responsibility: check every body the page (or a script) POSTs to a control endpoint, bounded,
and say exactly which field is wrong (``request body: $.os_version: expected a version like
"17.1", got 17``). It must not act on anything: the app turns the values into lab calls.

Theory of operation: one ``parse_*`` per endpoint takes the decoded JSON and returns a frozen
value; a ``ControlError`` carries the field and the HTTP status (400 unless said otherwise),
which the app's error middleware turns into ``{"error", "field", "hint"}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

import attrs

#: Largest control body accepted, in bytes.
MAX_BODY: Final = 16 * 1024
#: EAS protocol versions a simulated phone can speak.
VERSIONS: Final = ("2.5", "12.0", "12.1", "14.0", "14.1", "16.0", "16.1")
#: Platforms a registered device can have.
PLATFORMS: Final = ("ios", "android", "windows")
#: UEM admin actions (docs/admin-api.md).
ACTIONS: Final = ("allow", "block", "wipe", "remove", "clear")
#: Longest virtual-clock jump accepted at once (30 days).
MAX_ADVANCE_S: Final = 30 * 86400.0
#: Longest slow-motion pause between a phone's steps.
MAX_SLOW_S: Final = 10.0
_DEVICE_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_USER: Final = re.compile(r"[A-Za-z0-9._@\\-]{1,64}")
_OS_VERSION: Final = re.compile(r"\d{1,4}(\.\d{1,4}){0,3}")


class ControlError(ValueError):
    """A control request that cannot be carried out; ``field`` names the culprit."""

    def __init__(self, message: str, *, field: str = "", hint: str = "", status: int = 400):
        super().__init__(message)
        self.message = message
        self.field = field
        self.hint = hint
        self.status = status

    def to_json(self) -> dict[str, str]:
        body = {"error": self.message}
        if self.field:
            body["field"] = self.field
        if self.hint:
            body["hint"] = self.hint
        return body


def _show(value: object) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(field: str, expected: str, got: object, hint: str = "") -> ControlError:
    return ControlError(
        f"request body: $.{field}: expected {expected}, got {_show(got)}", field=field, hint=hint
    )


def decode_body(raw: bytes) -> Mapping[str, Any]:
    """The request body as a JSON object (empty body: ``{}``)."""
    if len(raw) > MAX_BODY:
        raise ControlError(f"request body: {len(raw)} bytes, more than the {MAX_BODY} allowed")
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ControlError(f"request body: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ControlError(f"request body: expected a JSON object, got {_show(data)}")
    return data


def _only(body: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in body:
        if key not in allowed:
            raise ControlError(
                f"request body: $.{key}: unknown field; expected one of {', '.join(allowed)}",
                field=str(key),
            )


def _string(body: Mapping[str, Any], field: str, pattern: re.Pattern[str], expected: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _fail(field, expected, value)
    return value


def _choice(body: Mapping[str, Any], field: str, choices: tuple[str, ...], default: str) -> str:
    value = body.get(field, default)
    if not isinstance(value, str) or value not in choices:
        raise _fail(field, "one of " + ", ".join(choices), value)
    return value


def _flag(body: Mapping[str, Any], field: str, default: bool) -> bool:
    value = body.get(field, default)
    if not isinstance(value, bool):
        raise _fail(field, "true or false", value)
    return value


def _number(body: Mapping[str, Any], field: str, low: float, high: float) -> float:
    value = body.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _fail(field, f"a number from {low:g} to {high:g}", value)
    return float(value)


def user_name(value: str, field: str = "user") -> str:
    if not _USER.fullmatch(value):
        raise _fail(field, "a user name (letters, digits, . _ @ -)", value)
    return value


def device_id(value: str, field: str = "device_id") -> str:
    if not _DEVICE_ID.fullmatch(value):
        raise _fail(field, "an EAS device id (1-64 letters, digits, _ or -)", value)
    return value


@attrs.frozen(kw_only=True)
class Posture:
    """What the trainer gives a device registered at the UEM."""

    platform: str = "ios"
    os_version: str = "17.4"
    compromised: bool = False
    data_protection: bool = True


@attrs.frozen(kw_only=True)
class AddDevice:
    """``POST /api/devices``: a phone (registered at the UEM first, or not) that connects."""

    user: str
    device_id: str
    version: str = "16.1"
    #: Register the device at the UEM with this posture first (None: an unregistered phone).
    register: Posture | None = None


ADD_KEYS: Final = (
    "user",
    "device_id",
    "version",
    "registered",
    "platform",
    "os_version",
    "compromised",
    "data_protection",
)


def parse_add_device(body: Mapping[str, Any]) -> AddDevice:
    _only(body, ADD_KEYS)
    user = user_name(_string(body, "user", _USER, "a lab user name such as alice"))
    ident = device_id(_string(body, "device_id", _DEVICE_ID, "an EAS device id like PHONE01"))
    version = _choice(body, "version", VERSIONS, "16.1")
    register: Posture | None = None
    if _flag(body, "registered", False):
        os_version = body.get("os_version", "17.4")
        if not isinstance(os_version, str) or not _OS_VERSION.fullmatch(os_version):
            raise _fail("os_version", 'a version like "17.4"', os_version)
        register = Posture(
            platform=_choice(body, "platform", PLATFORMS, "ios"),
            os_version=os_version,
            compromised=_flag(body, "compromised", False),
            data_protection=_flag(body, "data_protection", True),
        )
    else:
        posture_keys = [k for k in ("platform", "os_version", "compromised") if k in body]
        if posture_keys:
            raise ControlError(
                f"request body: $.{posture_keys[0]}: a posture needs registered: true "
                "(an unregistered phone has no MDM posture)",
                field=posture_keys[0],
            )
    return AddDevice(user=user, device_id=ident, version=version, register=register)


@attrs.frozen(kw_only=True)
class PostureChange:
    """``POST /api/devices/{user}/{device_id}/posture``: fields to change (None: unchanged)."""

    compromised: bool | None = None
    os_version: str | None = None
    data_protection: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in attrs.asdict(self).items() if v is not None}


def parse_posture(body: Mapping[str, Any]) -> PostureChange:
    _only(body, ("compromised", "os_version", "data_protection"))
    if not body:
        raise ControlError(
            "request body: expected at least one of compromised, os_version, data_protection",
            field="compromised",
        )
    os_version = body.get("os_version")
    if os_version is not None and (
        not isinstance(os_version, str) or not _OS_VERSION.fullmatch(os_version)
    ):
        raise _fail("os_version", 'a version like "17.4"', os_version)
    return PostureChange(
        compromised=_flag(body, "compromised", False) if "compromised" in body else None,
        os_version=os_version,
        data_protection=_flag(body, "data_protection", True) if "data_protection" in body else None,
    )


@attrs.frozen(kw_only=True)
class AdminAction:
    """``POST /api/devices/{user}/{device_id}/action``."""

    action: str
    note: str = ""


def parse_action(body: Mapping[str, Any]) -> AdminAction:
    _only(body, ("action", "note"))
    if "action" not in body:
        raise _fail("action", "one of " + ", ".join(ACTIONS), None)
    action = _choice(body, "action", ACTIONS, "")
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > 200:
        raise _fail("note", "text of at most 200 characters", note)
    return AdminAction(action=action, note=note or "from the dashboard")


def parse_uem_state(body: Mapping[str, Any]) -> bool:
    """``POST /api/uem``: ``{"state": "down" | "up"}``; True means up."""
    _only(body, ("state",))
    return _choice(body, "state", ("down", "up"), "") == "up"


def parse_advance(body: Mapping[str, Any]) -> float:
    """``POST /api/clock``: ``{"advance_s": seconds}``."""
    _only(body, ("advance_s",))
    return _number(body, "advance_s", 0.001, MAX_ADVANCE_S)


def parse_slow_motion(body: Mapping[str, Any]) -> float:
    """``POST /api/slow-motion``: ``{"pause_s": seconds}`` (0 turns it off)."""
    _only(body, ("pause_s",))
    return _number(body, "pause_s", 0.0, MAX_SLOW_S)
