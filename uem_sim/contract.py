"""The UEM's gatekeeper-facing API: message classes, their JSON codec and the HTTP paths.

Responsibility: define, exactly once, what crosses the wire between a gatekeeper
(``sentry_sim``, MobileIron Standalone Sentry's role) and the UEM (``uem_sim``, MobileIron
Core's role), and check every message at the boundary with errors that name the field.

Must not: import asyncio, aiohttp or any other project module (``sentry_sim`` may import this
module and nothing else of ``uem_sim``; ``tests/test_architecture.py`` checks it). It holds
pure data and pure functions only.

Theory of operation (DESIGN.md section 2):

1. A gatekeeper registers its push URL: ``POST GATEKEEPERS_PATH`` with ``RegisterGatekeeper``;
   the answer is ``GatekeeperRegistered`` carrying the UEM's current change version.
2. For a (user, device) it has not seen, the gatekeeper sends ``POST REPORTS_PATH`` with a
   ``ReportRequest`` and receives a ``DecisionMessage`` (ALLOW / BLOCK / WIPE, the reason
   bitmask, a plain-English explanation and the ActiveSync policy to provision).
3. When a decision changes (posture, admin action, policy change, a freed mailbox slot), the UEM
   POSTs a ``PushMessage`` to every registered push URL within a second. ``since`` is the
   version the batch starts from: a gatekeeper whose last known version is below ``since``
   missed a batch and should resync.
4. At start-up and periodically the gatekeeper resyncs: ``GET RECORDS_PATH?since=N`` returns a
   ``ChangesResponse``; ``full`` is true when the answer is the whole record set (``since`` was
   0, or the UEM cannot answer incrementally, e.g. it restarted with a fresh store), in which
   case the gatekeeper should drop records the answer does not contain.

Each message class has ``to_dict()`` and ``from_dict(data, path="$")``; ``to_json(message)``
and ``from_json(cls, text)`` wrap them. Every decoding failure raises ``ContractError`` whose
message names the JSON path: ``$.records[3].state: expected one of ALLOW, BLOCK, WIPE, got 'OK'``.
Error responses of the UEM are ``ErrorMessage`` (``{"error": ..., "hint": ...}``).
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final, Protocol, Self, TypeVar

import attrs

# --- HTTP paths (relative to the UEM base URL, e.g. ``uem_url`` of the lab's ready file) ---

#: POST a ``ReportRequest``; the answer is a ``DecisionMessage`` (200).
REPORTS_PATH: Final = "/api/v1/sentry/reports"
#: GET with optional ``?since=N`` (N >= 0); the answer is a ``ChangesResponse``.
RECORDS_PATH: Final = "/api/v1/sentry/records"
#: POST a ``RegisterGatekeeper``; the answer is a ``GatekeeperRegistered``.
GATEKEEPERS_PATH: Final = "/api/v1/sentry/gatekeepers"
#: The query parameter of ``RECORDS_PATH``.
SINCE_PARAM: Final = "since"
#: Media type of every request and response body.
CONTENT_TYPE: Final = "application/json"
#: Upper bound on any request body the UEM accepts on these paths.
MAX_REQUEST_BYTES: Final = 64 * 1024

_MAX_NAME = 256
_MAX_DEVICE_ID = 128
_MAX_TEXT = 1024
_MAX_EXPLANATION = 64 * 1024
_MAX_URL = 2048
_MAX_SETTINGS = 200
_SETTING_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ContractError(ValueError):
    """A message that breaks the contract; ``path`` is the JSON path of the offending field."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class Reason(enum.IntFlag):
    """Why a record is blocked or wiped: Ivanti's block-reason bits (activesync-notes 6).

    A decision carries a bitmask: several reasons can apply at once.
    """

    COMPROMISED = 0x1  #: the device is jailbroken or rooted
    OS_VERSION = 0x2  #: OS below the minimum for its platform, or platform not allowed
    HW_VERSION = 0x4  #: device model not allowed
    DATA_PROTECTION = 0x8  #: data protection (encryption) required but off
    POLICY_OUT_OF_DATE = 0x10  #: the device has not applied the current security policy
    DEVICE_OUT_OF_CONTACT = 0x20  #: no MDM check-in for longer than allowed
    APP_CONTROL = 0x40  #: a disallowed app is installed
    PER_MAILBOX_LIMIT = 0x80  #: the mailbox already has its maximum of allowed devices
    AUTO_BLOCK = 0x100  #: not registered with the UEM, and unregistered devices are blocked
    MANUAL = 0x200  #: an administrator blocked or wiped the record


#: Every bit the contract knows; others are rejected.
ALL_REASONS: Final[int] = sum(r.value for r in Reason)


#: (bit, name) of every reason, in bit order (read once: enum member access is slow).
_REASON_BITS: Final = tuple((r.value, r.name) for r in Reason if r.name is not None)
#: ``reason_names`` of every mask of known bits, filled as masks are met (at most 1,024).
_NAMES_OF: Final[dict[int, tuple[str, ...]]] = {}


def reason_names(mask: int) -> tuple[str, ...]:
    """The names of the bits set in ``mask``, in bit order: ``0x81`` -> (COMPROMISED, PER_...)."""
    names = _NAMES_OF.get(mask)
    if names is None:
        names = tuple(name for bit, name in _REASON_BITS if mask & bit)
        if 0 <= mask <= ALL_REASONS:
            # Every decision carries a mask; caching bounds the work to one walk per mask.
            _NAMES_OF[mask] = names
    return names


class AccessState(enum.Enum):
    """What the gatekeeper must do with a record's requests."""

    ALLOW = "ALLOW"  #: proxy to Exchange, provisioning the ActiveSync policy
    BLOCK = "BLOCK"  #: refuse (HTTP 403, or Status 129 / 177 from 14.0 / 14.1)
    WIPE = "WIPE"  #: answer Provision with RemoteWipe; refuse everything else


SettingValue = str | int | bool


# --- field readers: each names the JSON path and says what it expected ---


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _object(data: object, path: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ContractError(path, f"expected a JSON object, got {type(data).__name__}")
    return data


def _field(obj: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in obj:
        raise ContractError(f"{path}.{key}", "missing (required field)")
    return obj[key]


def _str(
    obj: Mapping[str, Any],
    key: str,
    path: str,
    *,
    max_len: int = _MAX_NAME,
    min_len: int = 0,
    default: str | None = None,
) -> str:
    where = f"{path}.{key}"
    if key not in obj and default is not None:
        return default
    value = _field(obj, key, path)
    return _check_str(value, where, max_len=max_len, min_len=min_len)


def _check_str(value: object, where: str, *, max_len: int, min_len: int = 0) -> str:
    if not isinstance(value, str):
        raise ContractError(where, f"expected a string, got {_describe(value)}")
    if not min_len <= len(value) <= max_len:
        raise ContractError(where, f"expected {min_len} to {max_len} characters, got {len(value)}")
    if max_len <= _MAX_URL and _CONTROL.search(value):
        raise ContractError(where, f"control characters are not allowed, got {_describe(value)}")
    return value


def _int(obj: Mapping[str, Any], key: str, path: str, *, minimum: int = 0) -> int:
    value = _field(obj, key, path)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ContractError(f"{path}.{key}", f"expected an integer, got {_describe(value)}")
    if value < minimum:
        raise ContractError(f"{path}.{key}", f"expected an integer >= {minimum}, got {value}")
    return value


def _float(obj: Mapping[str, Any], key: str, path: str) -> float:
    value = _field(obj, key, path)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ContractError(
            f"{path}.{key}",
            f"expected a finite number (seconds since the epoch), got {_describe(value)}",
        )
    return float(value)


def _bool(obj: Mapping[str, Any], key: str, path: str, *, default: bool | None = None) -> bool:
    if key not in obj and default is not None:
        return default
    value = _field(obj, key, path)
    if not isinstance(value, bool):
        raise ContractError(f"{path}.{key}", f"expected true or false, got {_describe(value)}")
    return value


def _list(obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = _field(obj, key, path)
    if not isinstance(value, list):
        raise ContractError(f"{path}.{key}", f"expected a JSON array, got {_describe(value)}")
    return value


# --- validators shared by the constructors (they double as hypothesis strategies' bounds) ---


def _nonempty(max_len: int) -> Any:
    return attrs.validators.and_(
        attrs.validators.instance_of(str),
        attrs.validators.max_len(max_len),
        attrs.validators.min_len(1),
    )


def _bounded(max_len: int) -> Any:
    return attrs.validators.and_(
        attrs.validators.instance_of(str), attrs.validators.max_len(max_len)
    )


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _decision_tuple(value: Iterable[DecisionMessage]) -> tuple[DecisionMessage, ...]:
    return tuple(value)


def _freeze_settings(value: Mapping[str, SettingValue]) -> Mapping[str, SettingValue]:
    return MappingProxyType(dict(value))


def _valid_setting_value(value: object, where: str) -> SettingValue:
    if isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return _check_str(value, where, max_len=_MAX_TEXT)
    raise ContractError(where, f"expected a string, integer or boolean, got {_describe(value)}")


def _check_settings(_inst: object, _attr: object, value: Mapping[str, SettingValue]) -> None:
    if len(value) > _MAX_SETTINGS:
        raise ContractError("settings", f"at most {_MAX_SETTINGS} settings, got {len(value)}")
    for name, setting in value.items():
        if not isinstance(name, str) or not _SETTING_NAME.fullmatch(name):
            raise ContractError(
                f"settings.{name}",
                "expected an EASProvisionDoc setting name like DevicePasswordEnabled",
            )
        _valid_setting_value(setting, f"settings.{name}")


@attrs.frozen
class ActiveSyncPolicy:
    """The EASProvisionDoc the gatekeeper provisions (MS-ASPROV 2.2.2.27), versioned.

    ``version`` grows by one on every change, so a gatekeeper can see that a provisioned
    device holds an old policy and make it re-provision.
    """

    version: int = attrs.field(validator=attrs.validators.ge(1))
    settings: Mapping[str, SettingValue] = attrs.field(
        converter=_freeze_settings, validator=_check_settings
    )

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "settings": dict(self.settings)}

    @classmethod
    def from_dict(cls, data: object, path: str = "$") -> Self:
        obj = _object(data, path)
        version = _int(obj, "version", path, minimum=1)
        raw = _object(_field(obj, "settings", path), f"{path}.settings")
        # Every decision carries the policy and it rarely changes: the last one decoded is
        # reused when the input is the same, type for type (``1 == True`` must not match).
        last = _LAST_POLICY.get(cls)
        if last is not None and last[0] == version and _same_settings(last[1], raw):
            return last[2]  # type: ignore[return-value]
        if len(raw) > _MAX_SETTINGS:
            raise ContractError(
                f"{path}.settings", f"at most {_MAX_SETTINGS} settings, got {len(raw)}"
            )
        settings: dict[str, SettingValue] = {}
        for name, value in raw.items():
            where = f"{path}.settings.{name}"
            if not _SETTING_NAME.fullmatch(name):
                raise ContractError(where, "expected a setting name like DevicePasswordEnabled")
            settings[name] = _valid_setting_value(value, where)
        policy = cls(version=version, settings=settings)
        _LAST_POLICY[cls] = (version, dict(raw), policy)
        return policy


#: The last ``ActiveSyncPolicy`` each class decoded: (version, raw settings, policy).
_LAST_POLICY: Final[dict[type[ActiveSyncPolicy], tuple[int, dict[str, Any], ActiveSyncPolicy]]] = {}


def _same_settings(known: Mapping[str, Any], raw: Mapping[str, Any]) -> bool:
    if len(known) != len(raw):
        return False
    for name, value in raw.items():
        if name not in known:
            return False
        other = known[name]
        if type(other) is not type(value) or other != value:
            return False
    return True


@attrs.frozen(kw_only=True)
class ReportRequest:
    """A gatekeeper reports a (user, device) it has seen; the UEM answers with its decision.

    ``user`` is the user as the device presented it (``alice``, ``CORP\\alice`` or
    ``alice@example.com``); the UEM maps it to one mailbox. ``seen_at`` is the gatekeeper's
    clock reading of the request that triggered the report.
    """

    gatekeeper_id: str = attrs.field(validator=_nonempty(_MAX_NAME))
    user: str = attrs.field(validator=_nonempty(_MAX_NAME))
    device_id: str = attrs.field(validator=_nonempty(_MAX_DEVICE_ID))
    device_type: str = attrs.field(default="", validator=_bounded(_MAX_NAME))
    protocol_version: str = attrs.field(default="", validator=_bounded(16))
    user_agent: str = attrs.field(default="", validator=_bounded(_MAX_TEXT))
    model: str = attrs.field(default="", validator=_bounded(_MAX_NAME))
    seen_at: float = attrs.field(converter=float)
    correlation_id: str = attrs.field(default="", validator=_bounded(_MAX_NAME))

    def to_dict(self) -> dict[str, Any]:
        return {
            "gatekeeper_id": self.gatekeeper_id,
            "user": self.user,
            "device_id": self.device_id,
            "device_type": self.device_type,
            "protocol_version": self.protocol_version,
            "user_agent": self.user_agent,
            "model": self.model,
            "seen_at": self.seen_at,
            "correlation_id": self.correlation_id,
        }

    @classmethod
    def from_dict(cls, data: object, path: str = "$") -> Self:
        obj = _object(data, path)
        return cls(
            gatekeeper_id=_str(obj, "gatekeeper_id", path, min_len=1),
            user=_str(obj, "user", path, min_len=1),
            device_id=_str(obj, "device_id", path, min_len=1, max_len=_MAX_DEVICE_ID),
            device_type=_str(obj, "device_type", path, default=""),
            protocol_version=_str(obj, "protocol_version", path, max_len=16, default=""),
            user_agent=_str(obj, "user_agent", path, max_len=_MAX_TEXT, default=""),
            model=_str(obj, "model", path, default=""),
            seen_at=_float(obj, "seen_at", path),
            correlation_id=_str(obj, "correlation_id", path, default=""),
        )


def _check_mask(_inst: object, _attr: object, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value & ~ALL_REASONS:
        raise ContractError("reasons", f"expected a bitmask of known reasons, got {value!r}")


@attrs.frozen(kw_only=True)
class DecisionMessage:
    """The UEM's decision for one record (one user x one device).

    ``user`` is the canonical mailbox identity; ``aliases`` are every spelling of the user the
    UEM has seen reported for this record (``CORP\\alice``, ``alice@example.com``), so a
    gatekeeper can match its own keys. ``removed`` means the administrator removed the record:
    forget it; the device's next request is a first access again. ``record_version`` is the
    UEM's change version at which this decision was made (monotonic across all records).
    """

    user: str = attrs.field(validator=_nonempty(_MAX_NAME))
    device_id: str = attrs.field(validator=_nonempty(_MAX_DEVICE_ID))
    state: AccessState = attrs.field(validator=attrs.validators.instance_of(AccessState))
    reasons: int = attrs.field(validator=_check_mask)
    explanation: str = attrs.field(validator=_bounded(_MAX_EXPLANATION))
    activesync_policy: ActiveSyncPolicy = attrs.field(
        validator=attrs.validators.instance_of(ActiveSyncPolicy)
    )
    record_version: int = attrs.field(validator=attrs.validators.ge(1))
    decided_at: float = attrs.field(converter=float)
    registered: bool = attrs.field(validator=attrs.validators.instance_of(bool))
    removed: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    aliases: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)

    @property
    def reason_names(self) -> tuple[str, ...]:
        return reason_names(self.reasons)

    @property
    def key(self) -> tuple[str, str]:
        return (self.user, self.device_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "device_id": self.device_id,
            "state": self.state.value,
            "reasons": self.reasons,
            "reason_names": list(self.reason_names),
            "explanation": self.explanation,
            "activesync_policy": self.activesync_policy.to_dict(),
            "record_version": self.record_version,
            "decided_at": self.decided_at,
            "registered": self.registered,
            "removed": self.removed,
            "aliases": list(self.aliases),
        }

    @classmethod
    def from_dict(cls, data: object, path: str = "$") -> Self:
        obj = _object(data, path)
        raw_state = _field(obj, "state", path)
        try:
            state = AccessState(raw_state)
        except ValueError:
            choices = ", ".join(s.value for s in AccessState)
            raise ContractError(
                f"{path}.state", f"expected one of {choices}, got {_describe(raw_state)}"
            ) from None
        reasons = _int(obj, "reasons", path)
        if reasons & ~ALL_REASONS:
            raise ContractError(
                f"{path}.reasons",
                f"unknown reason bits 0x{reasons & ~ALL_REASONS:x} in 0x{reasons:x}",
            )
        if "reason_names" in obj:
            names = obj["reason_names"]
            if names != list(reason_names(reasons)):
                raise ContractError(
                    f"{path}.reason_names",
                    f"expected {list(reason_names(reasons))} for reasons 0x{reasons:x}, "
                    f"got {_describe(names)}",
                )
        aliases = tuple(
            _check_str(a, f"{path}.aliases[{i}]", max_len=_MAX_NAME, min_len=1)
            for i, a in enumerate(_list(obj, "aliases", path) if "aliases" in obj else [])
        )
        return cls(
            user=_str(obj, "user", path, min_len=1),
            device_id=_str(obj, "device_id", path, min_len=1, max_len=_MAX_DEVICE_ID),
            state=state,
            reasons=reasons,
            explanation=_str(obj, "explanation", path, max_len=_MAX_EXPLANATION),
            activesync_policy=ActiveSyncPolicy.from_dict(
                _field(obj, "activesync_policy", path), f"{path}.activesync_policy"
            ),
            record_version=_int(obj, "record_version", path, minimum=1),
            decided_at=_float(obj, "decided_at", path),
            registered=_bool(obj, "registered", path),
            removed=_bool(obj, "removed", path, default=False),
            aliases=aliases,
        )


def _decisions(obj: Mapping[str, Any], path: str) -> tuple[DecisionMessage, ...]:
    return tuple(
        DecisionMessage.from_dict(item, f"{path}.records[{i}]")
        for i, item in enumerate(_list(obj, "records", path))
    )


@attrs.frozen(kw_only=True)
class ChangesResponse:
    """Answer to ``GET RECORDS_PATH?since=N``: records changed after version N.

    ``version`` is the UEM's current change version (use it as the next ``since``). ``full``
    means ``records`` is the complete set: drop any cached record it does not contain.
    Removed records appear (with ``removed`` true) only in incremental answers.
    """

    version: int = attrs.field(validator=attrs.validators.ge(0))
    records: tuple[DecisionMessage, ...] = attrs.field(converter=_decision_tuple)
    full: bool = attrs.field(validator=attrs.validators.instance_of(bool))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "records": [r.to_dict() for r in self.records],
            "full": self.full,
        }

    @classmethod
    def from_dict(cls, data: object, path: str = "$") -> Self:
        obj = _object(data, path)
        return cls(
            version=_int(obj, "version", path),
            records=_decisions(obj, path),
            full=_bool(obj, "full", path),
        )


def _check_url(_inst: object, _attr: object, value: str) -> None:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ContractError("push_url", f"expected an http:// or https:// URL, got {value!r}")


@attrs.frozen
class RegisterGatekeeper:
    """A gatekeeper asks to be pushed decision changes at ``push_url`` (as Core reaches
    Sentry on its port 9090). Registering again with the same id replaces the URL."""

    gatekeeper_id: str = attrs.field(validator=_nonempty(_MAX_NAME))
    push_url: str = attrs.field(validator=[_nonempty(_MAX_URL), _check_url])

    def to_dict(self) -> dict[str, Any]:
        return {"gatekeeper_id": self.gatekeeper_id, "push_url": self.push_url}

    @classmethod
    def from_dict(cls, data: object, path: str = "$") -> Self:
        obj = _object(data, path)
        url = _str(obj, "push_url", path, min_len=1, max_len=_MAX_URL)
        if not url.startswith(("http://", "https://")):
            raise ContractError(
                f"{path}.push_url", f"expected an http:// or https:// URL, got {_describe(url)}"
            )
        return cls(gatekeeper_id=_str(obj, "gatekeeper_id", path, min_len=1), push_url=url)


@attrs.frozen
class GatekeeperRegistered:
    """Answer to ``RegisterGatekeeper``: the UEM's current change version."""

    gatekeeper_id: str = attrs.field(validator=_nonempty(_MAX_NAME))
    version: int = attrs.field(validator=attrs.validators.ge(0))

    def to_dict(self) -> dict[str, Any]:
        return {"gatekeeper_id": self.gatekeeper_id, "version": self.version}

    @classmethod
    def from_dict(cls, data: object, path: str = "$") -> Self:
        obj = _object(data, path)
        return cls(
            gatekeeper_id=_str(obj, "gatekeeper_id", path, min_len=1),
            version=_int(obj, "version", path),
        )


@attrs.frozen(kw_only=True)
class PushMessage:
    """Changed decisions pushed to a gatekeeper's ``push_url`` (HTTP POST, answer 2xx).

    The batch covers versions ``since`` (exclusive) to ``version`` (inclusive). A gatekeeper
    whose last seen version is below ``since`` missed changes and should resync with
    ``GET RECORDS_PATH?since=<its version>``.
    """

    gatekeeper_id: str = attrs.field(validator=_nonempty(_MAX_NAME))
    since: int = attrs.field(validator=attrs.validators.ge(0))
    version: int = attrs.field(validator=attrs.validators.ge(0))
    records: tuple[DecisionMessage, ...] = attrs.field(converter=_decision_tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gatekeeper_id": self.gatekeeper_id,
            "since": self.since,
            "version": self.version,
            "records": [r.to_dict() for r in self.records],
        }

    @classmethod
    def from_dict(cls, data: object, path: str = "$") -> Self:
        obj = _object(data, path)
        since = _int(obj, "since", path)
        version = _int(obj, "version", path)
        if version < since:
            raise ContractError(f"{path}.version", f"expected >= since ({since}), got {version}")
        return cls(
            gatekeeper_id=_str(obj, "gatekeeper_id", path, min_len=1),
            since=since,
            version=version,
            records=_decisions(obj, path),
        )


@attrs.frozen
class ErrorMessage:
    """Every error response of the UEM: what went wrong and what to do about it."""

    error: str = attrs.field(validator=_bounded(_MAX_EXPLANATION))
    hint: str = attrs.field(default="", validator=_bounded(_MAX_EXPLANATION))

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.error, "hint": self.hint}

    @classmethod
    def from_dict(cls, data: object, path: str = "$") -> Self:
        obj = _object(data, path)
        return cls(
            error=_str(obj, "error", path, max_len=_MAX_EXPLANATION),
            hint=_str(obj, "hint", path, max_len=_MAX_EXPLANATION, default=""),
        )


class Message(Protocol):
    """What every message class of this module offers."""

    def to_dict(self) -> dict[str, Any]: ...


class _Decodable(Protocol):
    @classmethod
    def from_dict(cls, data: object, path: str = "$") -> Self: ...


M = TypeVar("M", bound=_Decodable)


def to_json(message: Message) -> str:
    """Encode a message as compact JSON text."""
    return json.dumps(message.to_dict(), separators=(",", ":"), ensure_ascii=False)


def from_json(cls: type[M], text: str | bytes) -> M:
    """Decode ``text`` as a ``cls`` message; malformed input raises ``ContractError`` only."""
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ContractError("$", f"not valid JSON ({exc})") from None
    try:
        return cls.from_dict(data)
    except ContractError:
        raise
    except (TypeError, ValueError) as exc:  # an attrs validator's own complaint
        raise ContractError("$", str(exc)) from None


__all__ = [
    "ALL_REASONS",
    "CONTENT_TYPE",
    "GATEKEEPERS_PATH",
    "MAX_REQUEST_BYTES",
    "RECORDS_PATH",
    "REPORTS_PATH",
    "SINCE_PARAM",
    "AccessState",
    "ActiveSyncPolicy",
    "ChangesResponse",
    "ContractError",
    "DecisionMessage",
    "ErrorMessage",
    "GatekeeperRegistered",
    "Message",
    "PushMessage",
    "Reason",
    "RegisterGatekeeper",
    "ReportRequest",
    "SettingValue",
    "from_json",
    "reason_names",
    "to_json",
]
