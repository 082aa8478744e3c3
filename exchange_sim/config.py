"""The mock Exchange's settings, read from the lab config (or any mapping) and validated.

Responsibility: turn the top-level ``users`` list and the ``exchange:`` section of a lab file
into a frozen ``ExchangeConfig``, with every value checked and every error naming the file, the
key path, what was expected and what arrived (``lab.yaml: exchange.heartbeat_min_s: expected
an integer 1..3540, got 'soon'``). It must not open files or start anything; the CLI reads the
YAML and hands the mapping over. Sections that belong to other actors (``uem``, ``sentry``) are
ignored; unknown keys inside ``exchange`` are errors, because a typo there would otherwise be a
silently ignored setting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from activesync.commands.provision import ProvisionDoc
from activesync.errors import ActiveSyncError
from activesync.versions import ALL_VERSIONS, ProtocolVersion


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message says where and why."""


#: MS-ASCMD 2.2.3.88.1 leaves the heartbeat range to the server ("implementation-specific").
#: 60..3540 seconds is the range commonly quoted for Exchange (not verified against a build);
#: it is configurable.
DEFAULT_HEARTBEAT_MIN_S: Final = 60
DEFAULT_HEARTBEAT_MAX_S: Final = 3540

#: A policy that looks like a typical corporate default: a 4-digit PIN, locking after 15 min.
DEFAULT_ACTIVESYNC_POLICY: Final[dict[str, object]] = {
    "DevicePasswordEnabled": True,
    "AlphanumericDevicePasswordRequired": False,
    "MinDevicePasswordLength": 4,
    "MaxInactivityTimeDeviceLock": 900,
    "MaxDevicePasswordFailedAttempts": 10,
    "AllowSimpleDevicePassword": True,
    "RequireDeviceEncryption": False,
    "AttachmentsEnabled": True,
}


def default_policy() -> ProvisionDoc:
    """The EASProvisionDoc served when the config names none."""
    return ProvisionDoc.from_mapping(DEFAULT_ACTIVESYNC_POLICY, source="default policy")


@attrs.frozen
class UserConfig:
    """One mailbox user: login name, SMTP address and password."""

    name: str
    email: str
    password: str = attrs.field(repr=False)


@attrs.frozen(kw_only=True)
class ExchangeConfig:
    """Everything the mock Exchange needs to run."""

    users: tuple[UserConfig, ...]
    #: Messages put in every Inbox at start-up.
    seed_messages_per_mailbox: int = 5
    #: Seed of the deterministic seeded mail.
    seed: int = 1
    #: The versions OPTIONS advertises and requests may use, oldest first.
    protocol_versions: tuple[ProtocolVersion, ...] = ALL_VERSIONS
    #: MS-ASPROV: demand a policy key on every command but Ping/OPTIONS.
    provisioning_required: bool = True
    #: MS-ASPROV 2.2.2.53: answer Status 165 when a 14.1+ Provision lacks DeviceInformation.
    require_device_information: bool = True
    #: The EASProvisionDoc sent in phase 1 of Provision.
    activesync_policy: ProvisionDoc = attrs.field(factory=default_policy)
    heartbeat_min_s: int = DEFAULT_HEARTBEAT_MIN_S
    heartbeat_max_s: int = DEFAULT_HEARTBEAT_MAX_S
    #: Ping Status 6 above this many folders (MS-ASCMD MaxFolders).
    ping_max_folders: int = 200
    #: Largest request body accepted; bigger bodies get HTTP 413.
    max_request_bytes: int = 10 * 1024 * 1024
    #: The Basic auth realm in ``WWW-Authenticate``.
    realm: str = "sentry-sim Exchange"
    #: The ``MS-Server-ActiveSync`` response header (MS-ASHTTP 2.2.2.1.2).
    server_build: str = "15.01.2507.006"

    @property
    def highest_version(self) -> ProtocolVersion:
        return max(self.protocol_versions)

    def user(self, name: str) -> UserConfig | None:
        """The user with this login name or SMTP address (case-insensitive)."""
        key = name.lower()
        for user in self.users:
            if user.name.lower() == key or user.email.lower() == key:
                return user
        return None

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], *, source: str = "config") -> ExchangeConfig:
        """Read ``users`` and ``exchange`` from a lab-config mapping."""
        if not isinstance(mapping, Mapping):
            raise ConfigError(
                f"{source}: expected a mapping at the top level, got {_kind(mapping)}"
            )
        users = _users(mapping.get("users"), source)
        section = mapping.get("exchange", {})
        if section is None:
            section = {}
        if not isinstance(section, Mapping):
            raise ConfigError(f"{source}: exchange: expected a mapping, got {_kind(section)}")
        unknown = sorted(str(k) for k in section if k not in _EXCHANGE_KEYS)
        if unknown:
            raise ConfigError(
                f"{source}: exchange.{unknown[0]}: unknown setting; expected one of "
                f"{', '.join(sorted(_EXCHANGE_KEYS))}"
            )

        def where(key: str) -> str:
            return f"{source}: exchange.{key}"

        versions = _versions(section, where)
        hb_min = _int(section, "heartbeat_min_s", DEFAULT_HEARTBEAT_MIN_S, 1, 3540, where)
        hb_max = _int(section, "heartbeat_max_s", DEFAULT_HEARTBEAT_MAX_S, 1, 3540, where)
        if hb_min > hb_max:
            raise ConfigError(
                f"{where('heartbeat_min_s')}: must not exceed heartbeat_max_s ({hb_max}), "
                f"got {hb_min}"
            )
        return cls(
            users=users,
            seed_messages_per_mailbox=_int(
                section, "seed_messages_per_mailbox", 5, 0, 10_000, where
            ),
            seed=_int(section, "seed", 1, 0, 2**31 - 1, where),
            protocol_versions=versions,
            provisioning_required=_bool(section, "provisioning_required", True, where),
            require_device_information=_bool(section, "require_device_information", True, where),
            activesync_policy=_policy(section.get("activesync_policy"), where("activesync_policy")),
            heartbeat_min_s=hb_min,
            heartbeat_max_s=hb_max,
            ping_max_folders=_int(section, "ping_max_folders", 200, 1, 10_000, where),
            max_request_bytes=_int(
                section, "max_request_bytes", 10 * 1024 * 1024, 1024, 1024**3, where
            ),
            realm=_text(section, "realm", "sentry-sim Exchange", where),
            server_build=_text(section, "server_build", "15.01.2507.006", where),
        )


_EXCHANGE_KEYS: Final = frozenset(
    {
        "seed_messages_per_mailbox",
        "seed",
        "server_version",
        "protocol_versions",
        "provisioning_required",
        "require_device_information",
        "activesync_policy",
        "heartbeat_min_s",
        "heartbeat_max_s",
        "ping_max_folders",
        "max_request_bytes",
        "realm",
        "server_build",
    }
)


def _kind(value: object) -> str:
    return f"{type(value).__name__} {value!r}"[:80]


def _users(raw: object, source: str) -> tuple[UserConfig, ...]:
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes) or not raw:
        raise ConfigError(
            f"{source}: users: expected a list of users with name, email and password, "
            f"got {'nothing' if raw is None else _kind(raw)}"
        )
    users: list[UserConfig] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        path = f"{source}: users[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{path}: expected a mapping with name, email, password")
        values = {}
        for key in ("name", "email", "password"):
            value = entry.get(key)
            if not isinstance(value, str) or not value:
                raise ConfigError(
                    f"{path}.{key}: expected a non-empty string, "
                    f"got {'nothing' if value is None else _kind(value)}"
                )
            values[key] = value
        if "@" not in values["email"]:
            raise ConfigError(f"{path}.email: expected an SMTP address, got {values['email']!r}")
        for ident in (values["name"].lower(), values["email"].lower()):
            if ident in seen:
                raise ConfigError(f"{path}: {ident!r} names two users")
            seen.add(ident)
        users.append(UserConfig(values["name"], values["email"], values["password"]))
    return tuple(users)


def _int(
    section: Mapping[str, Any],
    key: str,
    default: int,
    lo: int,
    hi: int,
    where: Any,
) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{where(key)}: expected an integer {lo}..{hi}, got {_kind(value)}")
    return value


def _bool(section: Mapping[str, Any], key: str, default: bool, where: Any) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where(key)}: expected true or false, got {_kind(value)}")
    return value


def _text(section: Mapping[str, Any], key: str, default: str, where: Any) -> str:
    value = section.get(key, default)
    if not isinstance(value, str) or not value or len(value) > 200 or not value.isprintable():
        raise ConfigError(f"{where(key)}: expected a short printable string, got {_kind(value)}")
    return value


def _version(value: object, path: str) -> ProtocolVersion:
    text = str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
    if not isinstance(text, str):
        raise ConfigError(f'{path}: expected a protocol version like "14.1", got {_kind(value)}')
    try:
        return ProtocolVersion.from_text(text, where=path)
    except ActiveSyncError as exc:
        raise ConfigError(exc.message) from None


def _versions(section: Mapping[str, Any], where: Any) -> tuple[ProtocolVersion, ...]:
    if "protocol_versions" in section and "server_version" in section:
        raise ConfigError(
            f"{where('protocol_versions')}: give protocol_versions or server_version, not both"
        )
    if "protocol_versions" in section:
        raw = section["protocol_versions"]
        if not isinstance(raw, Sequence) or isinstance(raw, str | bytes) or not raw:
            raise ConfigError(
                f"{where('protocol_versions')}: expected a list of versions, got {_kind(raw)}"
            )
        found = {_version(v, f"{where('protocol_versions')}[{i}]") for i, v in enumerate(raw)}
        return tuple(sorted(found))
    if "server_version" in section:
        highest = _version(section["server_version"], where("server_version"))
        return tuple(v for v in ALL_VERSIONS if v <= highest)
    return ALL_VERSIONS


def _policy(raw: object, where: str) -> ProvisionDoc:
    if raw is None:
        return default_policy()
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{where}: expected a mapping of EASProvisionDoc settings, got {_kind(raw)}"
        )
    try:
        return ProvisionDoc.from_mapping(raw, source=where)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
