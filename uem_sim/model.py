"""The UEM's values: users, MDM-registered devices and their posture, ActiveSync records,
policies and admin overrides.

Responsibility: immutable attrs values and the small pure functions that belong to them
(mailbox identity, version comparison). Must not: do I/O, read a clock, or know about HTTP;
serialization lives in ``store.py`` (SQLite) and ``contract.py`` (gatekeeper wire format).

Theory of operation: a *mailbox* is one user's identity, the lower-cased login name of a
configured user (``alice``). Devices and gatekeepers may name the user as ``alice``,
``CORP\\alice`` or ``alice@example.com``; ``mailbox_identity`` maps all of them to ``alice``.
A ``RegisteredDevice`` is an MDM enrolment keyed by (mailbox, EAS DeviceId); an ``EasRecord``
is what gatekeepers reported for (mailbox, DeviceId), linked to the registered device with the
same key when there is one.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Container, Iterable, Mapping
from types import MappingProxyType
from typing import Final

import attrs

from uem_sim.contract import AccessState, ActiveSyncPolicy, SettingValue

_VERSION = re.compile(r"\d{1,6}(\.\d{1,6}){0,3}")

#: The record key everywhere: (mailbox, EAS DeviceId).
RecordKey = tuple[str, str]


def is_version(text: str) -> bool:
    """True for dotted numeric versions like ``17``, ``17.1`` or ``14.2.1``."""
    return bool(_VERSION.fullmatch(text))


def version_tuple(text: str) -> tuple[int, ...]:
    """``"17.1"`` -> ``(17, 1)``; trailing zeros dropped so ``17`` == ``17.0``."""
    parts = [int(p) for p in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def strip_domain(raw: str) -> str:
    """``CORP\\alice`` -> ``alice``; the NetBIOS domain prefix is not part of the identity."""
    return raw.rsplit("\\", 1)[-1]


@attrs.frozen
class User:
    """A user and their mailbox. ``name`` is the login; ``mailbox`` the canonical identity."""

    name: str
    email: str = ""
    password: str = attrs.field(default="", repr=False)

    @property
    def mailbox(self) -> str:
        return self.name.lower()


def mailbox_identity(raw: str, mailboxes: Container[str], emails: Mapping[str, str]) -> str:
    """Map any spelling of a user to its mailbox identity.

    ``mailboxes`` holds the known mailbox identities and ``emails`` maps lower-cased email
    addresses to them. ``CORP\\alice``, ``ALICE`` and ``alice@example.com`` (when a user has
    that email) all give ``alice``. An unknown user keeps its spelling, lower-cased and without
    the domain prefix, so its records still group by mailbox.
    """
    plain = strip_domain(raw.strip()).lower()
    if plain in mailboxes:
        return plain
    return emails.get(plain, plain)


def _frozen_str_map(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType({k.lower(): v for k, v in value.items()})


def _optional_frozenset(value: Iterable[str] | None) -> frozenset[str] | None:
    return None if value is None else frozenset(v.lower() for v in value)


def _lower(value: str) -> str:
    return value.lower()


def _lower_frozenset(value: Iterable[str]) -> frozenset[str]:
    return frozenset(v.lower() for v in value)


@attrs.frozen(kw_only=True)
class Posture:
    """What the device agent (Mobile@Work's role) reports about the device at check-in."""

    platform: str = attrs.field(converter=_lower)
    os_version: str = attrs.field(validator=attrs.validators.matches_re(_VERSION))
    model: str = ""
    compromised: bool = False
    data_protection: bool = True
    apps: frozenset[str] = attrs.field(default=frozenset(), converter=_lower_frozenset)


@attrs.frozen(kw_only=True)
class RegisteredDevice:
    """An MDM-enrolled device: keyed by (mailbox, EAS DeviceId), with its compliance posture.

    ``applied_policy_version`` is the security policy version the device last applied; it is
    behind ``SecurityPolicy.version`` until the device checks in after a policy change.
    """

    device_id: str
    mailbox: str
    posture: Posture
    last_check_in: float
    applied_policy_version: int
    enrolled_at: float

    @property
    def key(self) -> RecordKey:
        return (self.mailbox, self.device_id)


class OverrideAction(enum.Enum):
    """An administrator's standing instruction for one record."""

    ALLOW = "allow"  #: allow despite compliance violations and auto-block (not the limit)
    BLOCK = "block"  #: block (reason MANUAL)
    WIPE = "wipe"  #: wipe the device at its next Provision (reason MANUAL)


class AdminAction(enum.Enum):
    """What the admin API accepts for a record."""

    ALLOW = "allow"
    BLOCK = "block"
    WIPE = "wipe"
    REMOVE = "remove"  #: forget the record; its slot is freed; next access is a first access
    CLEAR = "clear"  #: drop any override and let the policy decide


@attrs.frozen
class Override:
    """An admin override with the note the admin gave and when."""

    action: OverrideAction
    note: str
    at: float


@attrs.frozen
class RuleResult:
    """One rule of a decision, with the inputs it read and its outcome (for ``explain``)."""

    rule: str
    outcome: str  #: "pass", "violated", "skipped" or "overridden"
    reason: int  #: the reason bit this rule contributes when violated (0 for none)
    inputs: tuple[tuple[str, str], ...]
    detail: str


@attrs.frozen(kw_only=True)
class EasRecord:
    """One user x device as gatekeepers reported it, with the UEM's current decision."""

    mailbox: str
    device_id: str
    aliases: tuple[str, ...] = ()
    device_type: str = ""
    protocol_version: str = ""
    user_agent: str = ""
    model: str = ""
    gatekeeper_ids: tuple[str, ...] = ()
    first_seen: float
    last_seen: float
    seq: int  #: arrival order across the UEM: first come, first served for mailbox slots
    registered: bool = False
    state: AccessState = AccessState.BLOCK
    reasons: int = 0
    explanation: str = ""
    trace: tuple[RuleResult, ...] = ()
    decided_at: float = 0.0
    version: int = 0
    override: Override | None = None
    removed: bool = False

    @property
    def key(self) -> RecordKey:
        return (self.mailbox, self.device_id)


DAY: Final = 86_400.0


@attrs.frozen(kw_only=True)
class SecurityPolicy:
    """The MDM security policy every registered device is checked against.

    ``None`` for a list means "any"; ``version`` grows on every change (the device must apply
    it: see POLICY_OUT_OF_DATE).
    """

    block_compromised: bool = True
    min_os_version: Mapping[str, str] = attrs.field(
        factory=lambda: MappingProxyType({}), converter=_frozen_str_map
    )
    require_data_protection: bool = False
    max_days_out_of_contact: float | None = None
    allowed_platforms: frozenset[str] | None = attrs.field(
        default=None, converter=_optional_frozenset
    )
    allowed_models: frozenset[str] | None = attrs.field(default=None, converter=_optional_frozenset)
    blocked_apps: frozenset[str] = attrs.field(default=frozenset(), converter=_lower_frozenset)
    block_policy_out_of_date: bool = False
    version: int = 1


#: A small, realistic EASProvisionDoc (MS-ASPROV 2.2.2.27) used when the lab sets none.
DEFAULT_ACTIVESYNC_SETTINGS: Final[Mapping[str, SettingValue]] = MappingProxyType(
    {
        "DevicePasswordEnabled": True,
        "AlphanumericDevicePasswordRequired": False,
        "MinDevicePasswordLength": 4,
        "MaxInactivityTimeDeviceLock": 900,
        "MaxDevicePasswordFailedAttempts": 10,
        "RequireDeviceEncryption": False,
        "AllowSimpleDevicePassword": True,
    }
)


@attrs.frozen(kw_only=True)
class UemPolicy:
    """Everything the UEM decides with, besides the device itself."""

    security: SecurityPolicy = attrs.field(factory=SecurityPolicy)
    max_devices_per_mailbox: int | None = None
    auto_block_unregistered: bool = False
    activesync: ActiveSyncPolicy = attrs.field(
        factory=lambda: ActiveSyncPolicy(1, DEFAULT_ACTIVESYNC_SETTINGS)
    )
