"""The Provision command (MS-ASPROV): requests, responses and the EASProvisionDoc policy.

Responsibility: typed views of Provision bodies for both sides. A server reads a
``ProvisionRequest`` (initial request, acknowledgement, remote-wipe fetch or acknowledgement)
and builds a ``ProvisionResponse``; a simulated device builds requests and reads responses.
``ProvisionDoc`` is the EASProvisionDoc policy with every setting of MS-ASPROV 2.2.2 (notes 2.4),
validated from configuration (``from_mapping``) and from the wire (``from_element``). The
``settings:DeviceInformation`` a 14.1+ request carries is ``activesync.commands.settings``'s
view, re-exported here. It must not keep policy-key state (``activesync.provisioning`` does)
nor do I/O.

Theory of operation: ``SETTINGS`` is the data table of the policy (token order, type, range,
default, versions); ``ProvisionDoc`` holds one value per setting in that order, so validation,
encoding and decoding are loops over the table rather than forty hand-written fields. Defaults
are the permissive values of Exchange's default mailbox policy (no password, everything
allowed), so a policy file need only name what it restricts. Empty values (``None``) become
empty tags, which MS-ASPROV uses for "no limit" (3.2.5.1.1, R652).
"""

from __future__ import annotations

import difflib
import enum
import unicodedata
from collections.abc import Iterator, Mapping
from typing import Final, Literal

import attrs

from activesync.commands.fields import (
    expect_root,
    int_of,
    optional,
    reject_unknown,
    required,
    text_of,
)
from activesync.commands.settings import DeviceInformation as DeviceInformation
from activesync.errors import CommandError
from activesync.query import parse_policy_key
from activesync.status import PolicyStatus, ProvisionStatus
from activesync.versions import ProtocolVersion
from activesync.wbxml.tree import E, Element

_V = ProtocolVersion
_P: Final = "Provision"
_S: Final = "Settings"

#: MS-ASPROV 2.2.2.43: the PolicyType for 12.0 and later.
EAS_POLICY_TYPE: Final = "MS-EAS-Provisioning-WBXML"
#: MS-ASPROV 2.2.2.43: the PolicyType for 2.5 (R971).
WAP_POLICY_TYPE: Final = "MS-WAP-Provisioning-XML"

#: A setting's value: bool, int, None (empty tag) or a list of strings.
Value = bool | int | None | tuple[str, ...]

_UINT32_MAX: Final = 0xFFFF_FFFF


def policy_type_for(version: ProtocolVersion) -> str:
    """The PolicyType a client of ``version`` must request (MS-ASPROV 2.2.2.43)."""
    return WAP_POLICY_TYPE if version < _V.V12_0 else EAS_POLICY_TYPE


@attrs.frozen
class Setting:
    """One EASProvisionDoc element (MS-ASPROV 2.2.2.x; tokens in MS-ASWBXML 2.1.2.1.15)."""

    #: Element name on the wire (``"RequireDeviceEncryption"``).
    name: str
    #: ``"bool"`` ("0"/"1"), ``"int"`` (decimal, maybe empty) or ``"list"`` (container).
    kind: Literal["bool", "int", "list"]
    #: Value when the policy does not name it.
    default: Value
    #: First protocol version that has it.
    since: ProtocolVersion = _V.V12_0
    #: Last protocol version that has it (two were dropped in 16.1).
    until: ProtocolVersion = _V.V16_1
    #: Integer range (inclusive) for ``"int"``.
    lo: int = 0
    hi: int = _UINT32_MAX
    #: For enumerated integers, the allowed values.
    choices: tuple[int, ...] = ()
    #: Whether the value may be empty (None), meaning "no limit".
    empty_ok: bool = False
    #: Child tag of a ``"list"`` setting.
    item: str = ""
    #: What the value means, for messages and docs.
    meaning: str = ""

    @property
    def snake_name(self) -> str:
        """``RequireDeviceEncryption`` -> ``require_device_encryption``."""
        out: list[str] = []
        for i, ch in enumerate(self.name):
            prev = self.name[i - 1] if i else ""
            nxt = self.name[i + 1] if i + 1 < len(self.name) else ""
            if ch.isupper() and i and (prev.islower() or (nxt.islower() and prev.isupper())):
                out.append("_")
            out.append(ch.lower())
        return "".join(out)

    def expected(self) -> str:
        """What a valid value looks like, for error messages."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "list":
            return f"a list of {self.item} strings"
        if self.choices:
            text = "one of " + ", ".join(str(c) for c in self.choices)
        else:
            text = f"an integer {self.lo}..{self.hi}"
        return text + (" or null (empty: no limit)" if self.empty_ok else "")

    def applies_to(self, version: ProtocolVersion) -> bool:
        """Whether the setting exists in ``version``."""
        return self.since <= version <= self.until

    def check(self, value: object) -> str | None:
        """Why ``value`` is not valid for this setting, or None when it is."""
        if self.kind == "bool":
            return None if isinstance(value, bool) else "not a boolean"
        if self.kind == "list":
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                return "not a list of strings"
            if any(not v or len(v) > 256 or _has_control(v) for v in value):
                return "an item is empty, longer than 256 characters or has control characters"
            return None
        if value is None:
            return None if self.empty_ok else "empty, and this setting needs a value"
        if isinstance(value, bool) or not isinstance(value, int):
            return "not an integer"
        if self.choices and value not in self.choices:
            return "not one of the allowed values"
        if not self.lo <= value <= self.hi:
            return "out of range"
        return None


def _has_control(text: str) -> bool:
    # Unicode "C*" categories: control, format, surrogate, private use, unassigned. None of them
    # belongs in an application name or hash, and NUL cannot travel in an inline string.
    return any(unicodedata.category(ch).startswith("C") for ch in text)


def _b(name: str, default: bool, since: ProtocolVersion = _V.V12_0, meaning: str = "") -> Setting:
    return Setting(name, "bool", default, since=since, meaning=meaning)


#: Every EASProvisionDoc setting in token order (notes 2.4).
SETTINGS: Final[tuple[Setting, ...]] = (
    _b("DevicePasswordEnabled", False, meaning="a device password is required"),
    _b("AlphanumericDevicePasswordRequired", False),
    _b("RequireStorageCardEncryption", False, _V.V12_1),
    _b("PasswordRecoveryEnabled", False),
    _b("AttachmentsEnabled", True),
    Setting(
        "MinDevicePasswordLength",
        "int",
        None,
        lo=1,
        hi=16,
        empty_ok=True,
        meaning="minimum password length; empty or 1 = no minimum",
    ),
    Setting(
        "MaxInactivityTimeDeviceLock",
        "int",
        None,
        empty_ok=True,
        meaning="seconds before the device locks; empty = none, >= 9999 = unlimited",
    ),
    Setting(
        "MaxDevicePasswordFailedAttempts",
        "int",
        None,
        lo=4,
        hi=16,
        empty_ok=True,
        until=_V.V16_0,
        meaning="failed unlocks before wipe/lock; empty = no limit",
    ),
    Setting(
        "MaxAttachmentSize",
        "int",
        None,
        empty_ok=True,
        meaning="largest attachment in bytes; empty = no limit",
    ),
    _b("AllowSimpleDevicePassword", True),
    Setting(
        "DevicePasswordExpiration",
        "int",
        None,
        empty_ok=True,
        meaning="days before the password expires; empty or 0 = never",
    ),
    Setting("DevicePasswordHistory", "int", 0, meaning="passwords remembered; 0 = none"),
    _b("AllowStorageCard", True, _V.V12_1),
    _b("AllowCamera", True, _V.V12_1),
    _b("RequireDeviceEncryption", False, _V.V12_1),
    _b("AllowUnsignedApplications", True, _V.V12_1),
    _b("AllowUnsignedInstallationPackages", True, _V.V12_1),
    Setting(
        "MinDevicePasswordComplexCharacters",
        "int",
        1,
        since=_V.V12_1,
        lo=1,
        hi=4,
        meaning="character groups a password must use",
    ),
    _b("AllowWiFi", True, _V.V12_1),
    _b("AllowTextMessaging", True, _V.V12_1),
    _b("AllowPOPIMAPEmail", True, _V.V12_1),
    Setting(
        "AllowBluetooth",
        "int",
        2,
        since=_V.V12_1,
        choices=(0, 1, 2),
        meaning="0 = off, 1 = hands-free only, 2 = allowed",
    ),
    _b("AllowIrDA", True, _V.V12_1),
    _b("RequireManualSyncWhenRoaming", False, _V.V12_1),
    _b("AllowDesktopSync", True, _V.V12_1),
    Setting(
        "MaxCalendarAgeFilter",
        "int",
        0,
        since=_V.V12_1,
        until=_V.V16_0,
        choices=(0, 4, 5, 6, 7),
        meaning="0 = all, 4 = 2 weeks, 5 = 1 month, 6 = 3 months, 7 = 6 months",
    ),
    _b("AllowHTMLEmail", True, _V.V12_1),
    Setting(
        "MaxEmailAgeFilter",
        "int",
        0,
        since=_V.V12_1,
        choices=(0, 1, 2, 3, 4, 5),
        meaning="0 = all, 1 = 1 day, 2 = 3 days, 3 = 1 week, 4 = 2 weeks, 5 = 1 month",
    ),
    Setting(
        "MaxEmailBodyTruncationSize",
        "int",
        -1,
        since=_V.V12_1,
        lo=-1,
        hi=2**31 - 1,
        meaning="-1 = no truncation, 0 = headers only, > 0 = size",
    ),
    Setting(
        "MaxEmailHTMLBodyTruncationSize",
        "int",
        -1,
        since=_V.V12_1,
        lo=-1,
        hi=2**31 - 1,
        meaning="-1 = no truncation, 0 = headers only, > 0 = size",
    ),
    _b("RequireSignedSMIMEMessages", False, _V.V12_1),
    _b("RequireEncryptedSMIMEMessages", False, _V.V12_1),
    Setting(
        "RequireSignedSMIMEAlgorithm",
        "int",
        0,
        since=_V.V12_1,
        choices=(0, 1),
        meaning="0 = SHA1, 1 = MD5",
    ),
    Setting(
        "RequireEncryptionSMIMEAlgorithm",
        "int",
        0,
        since=_V.V12_1,
        choices=(0, 1, 2, 3, 4),
        meaning="0 = 3DES, 1 = DES, 2 = RC2-128, 3 = RC2-64, 4 = RC2-40",
    ),
    Setting(
        "AllowSMIMEEncryptionAlgorithmNegotiation",
        "int",
        2,
        since=_V.V12_1,
        choices=(0, 1, 2),
        meaning="0 = no, 1 = strong algorithms only, 2 = any",
    ),
    _b("AllowSMIMESoftCerts", True, _V.V12_1),
    _b("AllowBrowser", True, _V.V12_1),
    _b("AllowConsumerEmail", True, _V.V12_1),
    _b("AllowRemoteDesktop", True, _V.V12_1),
    _b("AllowInternetSharing", True, _V.V12_1),
    Setting(
        "UnapprovedInROMApplicationList",
        "list",
        (),
        since=_V.V12_1,
        item="ApplicationName",
        meaning="in-ROM applications that may not run",
    ),
    Setting(
        "ApprovedApplicationList",
        "list",
        (),
        since=_V.V12_1,
        item="Hash",
        meaning="SHA-1 hashes of applications that may run",
    ),
)

_INDEX: Final[dict[str, int]] = {s.name: i for i, s in enumerate(SETTINGS)}
_LOOKUP: Final[dict[str, str]] = {
    key: s.name
    for s in SETTINGS
    for key in (s.name.lower(), s.snake_name, s.name.lower().replace("_", ""))
}


def _lookup(name: str) -> str | None:
    return _LOOKUP.get(name.lower()) or _LOOKUP.get(name.lower().replace("_", ""))


@attrs.frozen
class ProvisionDoc:
    """An EASProvisionDoc: one value per ``SETTINGS`` entry, in the same order."""

    values: tuple[Value, ...] = attrs.field(default=tuple(s.default for s in SETTINGS))

    def __attrs_post_init__(self) -> None:
        if len(self.values) != len(SETTINGS):
            raise ValueError(f"expected {len(SETTINGS)} values, got {len(self.values)}")
        for setting, value in zip(SETTINGS, self.values, strict=True):
            problem = setting.check(value)
            if problem is not None:
                raise ValueError(f"{setting.name}: expected {setting.expected()}, got {value!r}")

    def __getitem__(self, name: str) -> Value:
        return self.values[_INDEX[name]]

    def items(self) -> Iterator[tuple[Setting, Value]]:
        """(setting, value) pairs in token order."""
        return zip(SETTINGS, self.values, strict=True)

    def replace(self, **changes: Value) -> ProvisionDoc:
        """A copy with the named settings (wire names) changed; values are checked."""
        values = list(self.values)
        for name, value in changes.items():
            if name not in _INDEX:
                raise KeyError(f"unknown EASProvisionDoc setting {name!r}")
            values[_INDEX[name]] = value
        return ProvisionDoc(tuple(values))

    @property
    def non_defaults(self) -> dict[str, Value]:
        """The settings that differ from the defaults (what the policy actually restricts)."""
        return {s.name: v for s, v in self.items() if v != s.default}

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, object], source: str = "lab.yaml: uem.activesync_policy"
    ) -> ProvisionDoc:
        """Read a policy from configuration: wire names (``AllowCamera``) or snake_case
        (``allow_camera``); unnamed settings keep their defaults. Raises ``ValueError`` with
        ``source.field: expected ..., got ...`` on any unknown name or bad value."""
        if not isinstance(mapping, Mapping):
            raise ValueError(
                f"{source}: expected a mapping of settings, got {type(mapping).__name__}"
            )
        values = [s.default for s in SETTINGS]
        seen: dict[str, str] = {}
        for key, raw in mapping.items():
            where = f"{source}.{key}"
            if not isinstance(key, str):
                raise ValueError(f"{source}: setting names must be strings, got {key!r}")
            name = _lookup(key)
            if name is None:
                close = difflib.get_close_matches(key, [s.name for s in SETTINGS], n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ValueError(f"{where}: unknown EASProvisionDoc setting{hint}")
            if name in seen:
                raise ValueError(f"{where}: {name} is already set by {seen[name]!r}")
            seen[name] = key
            setting = SETTINGS[_INDEX[name]]
            values[_INDEX[name]] = _value_from_config(setting, raw, where)
        return cls(tuple(values))

    def to_mapping(self) -> dict[str, object]:
        """Wire name -> plain value (lists as lists), for JSON and YAML."""
        return {s.name: list(v) if isinstance(v, tuple) else v for s, v in self.items()}

    def to_element(self, version: ProtocolVersion | None = None) -> Element:
        """``<EASProvisionDoc>`` with every setting ``version`` knows (all when None)."""
        children: list[Element] = []
        for setting, value in self.items():
            if version is not None and not setting.applies_to(version):
                continue
            if setting.kind == "list":
                assert isinstance(value, tuple)
                children.append(E(_P, setting.name, *(E(_P, setting.item, text=v) for v in value)))
            elif value is None:
                children.append(Element(_P, setting.name))
            elif isinstance(value, bool):
                children.append(E(_P, setting.name, text="1" if value else "0"))
            else:
                assert isinstance(value, int)
                children.append(E(_P, setting.name, text=value))
        return E(_P, "EASProvisionDoc", *children)

    @classmethod
    def from_element(
        cls, el: Element, where: str = "Provision/Policies/Policy/Data"
    ) -> ProvisionDoc:
        """Read ``<EASProvisionDoc>``; absent settings keep their defaults, empty tags mean
        "no limit" (or the default for settings that cannot be empty, R652)."""
        expect_root(el, _P, "EASProvisionDoc", where)
        path = f"{where}/EASProvisionDoc"
        values = [s.default for s in SETTINGS]
        seen: set[str] = set()
        for child in el.children:
            index = _INDEX.get(child.tag)
            if child.page != _P or index is None:
                raise CommandError(f"{path}: unknown policy setting <{child.page}:{child.tag}>")
            if child.tag in seen:
                raise CommandError(f"{path}: <{child.tag}> may appear once, found it twice")
            seen.add(child.tag)
            values[index] = _value_from_wire(SETTINGS[index], child, path)
        return cls(tuple(values))


def _value_from_config(setting: Setting, raw: object, where: str) -> Value:
    value: object = raw
    if setting.kind == "bool" and isinstance(raw, int) and not isinstance(raw, bool):
        value = {0: False, 1: True}.get(raw, raw)
    if setting.kind == "list" and isinstance(raw, list):
        value = tuple(raw)
    problem = setting.check(value)
    if problem is not None:
        raise ValueError(f"{where}: expected {setting.expected()}, got {raw!r} ({problem})")
    assert value is None or isinstance(value, bool | int | tuple)
    return value


def _value_from_wire(setting: Setting, el: Element, where: str) -> Value:
    if setting.kind == "list":
        if el.text is not None or el.opaque is not None:
            raise CommandError(f"{where}/{el.tag}: expected <{setting.item}> children, got text")
        items: list[str] = []
        for child in el.children:
            if child.page != _P or child.tag != setting.item:
                raise CommandError(
                    f"{where}/{el.tag}: expected <{setting.item}> children, got <{child.tag}>"
                )
            item = text_of(child, f"{where}/{el.tag}", max_len=256)
            if not item or _has_control(item):
                raise CommandError(
                    f"{where}/{el.tag}/{setting.item}: expected 1-256 printable characters, "
                    f"got {item[:40]!r}"
                )
            items.append(item)
        return tuple(items)
    if el.is_empty:
        return None if setting.empty_ok else setting.default
    if setting.kind == "bool":
        raw = text_of(el, where)
        if raw not in ("0", "1"):
            raise CommandError(f"{where}/{el.tag}: expected 0 or 1, got {raw[:20]!r}")
        return raw == "1"
    value = int_of(el, where, lo=setting.lo, hi=setting.hi)
    if setting.choices and value not in setting.choices:
        raise CommandError(f"{where}/{el.tag}: expected {setting.expected()}, got {value}")
    return value


# --- requests --------------------------------------------------------------------------------


class RequestKind(enum.Enum):
    """What a Provision request asks for (MS-ASPROV 3.1.5.1)."""

    #: Phase 1: ask for the policy (PolicyType, maybe DeviceInformation).
    INITIAL = "initial"
    #: Phase 2: acknowledge the temporary key (PolicyKey + Status).
    ACKNOWLEDGEMENT = "acknowledgement"
    #: An empty ``<Provision/>``: fetch the remote-wipe directive after a 140.
    WIPE_FETCH = "wipe-fetch"
    #: ``<RemoteWipe><Status>``: the device reports its wipe.
    WIPE_ACK = "wipe-ack"
    #: ``<AccountOnlyRemoteWipe><Status>`` (16.1): the account-only wipe report.
    ACCOUNT_WIPE_ACK = "account-wipe-ack"


@attrs.frozen(kw_only=True)
class ProvisionRequest:
    """One Provision request body, classified."""

    kind: RequestKind
    #: PolicyType (None when an initial request left it out: the server answers Status 2).
    policy_type: str | None = None
    #: PolicyKey text of an acknowledgement (a string of up to 64 characters, MS-ASPROV 2.2.2.42).
    policy_key: str | None = None
    #: Policy/Status of an acknowledgement (1-4) or wipe Status (1-2).
    status: int | None = None
    #: settings:DeviceInformation of an initial request (required from 14.1).
    device_information: DeviceInformation | None = None

    @property
    def policy_key_value(self) -> int | None:
        """The acknowledged key as a uint32, or None when it is not one."""
        return parse_policy_key(self.policy_key)

    @classmethod
    def initial(
        cls,
        version: ProtocolVersion,
        device_information: DeviceInformation | None = None,
    ) -> ProvisionRequest:
        """Phase 1 for ``version`` (the right PolicyType; DeviceInformation if given)."""
        return cls(
            kind=RequestKind.INITIAL,
            policy_type=policy_type_for(version),
            device_information=device_information,
        )

    @classmethod
    def acknowledgement(
        cls, version: ProtocolVersion, policy_key: int | str, status: int = 1
    ) -> ProvisionRequest:
        """Phase 2: acknowledge ``policy_key`` with Policy/Status ``status`` (1 = applied)."""
        return cls(
            kind=RequestKind.ACKNOWLEDGEMENT,
            policy_type=policy_type_for(version),
            policy_key=str(policy_key),
            status=status,
        )

    @classmethod
    def wipe_fetch(cls) -> ProvisionRequest:
        """The empty ``<Provision/>`` a device sends after Status 140 (R622)."""
        return cls(kind=RequestKind.WIPE_FETCH)

    @classmethod
    def wipe_ack(cls, status: int = 1, *, account_only: bool = False) -> ProvisionRequest:
        """Report a wipe: 1 succeeded, 2 failed."""
        kind = RequestKind.ACCOUNT_WIPE_ACK if account_only else RequestKind.WIPE_ACK
        return cls(kind=kind, status=status)

    def to_element(self) -> Element:
        """The request body."""
        if self.kind in (RequestKind.WIPE_ACK, RequestKind.ACCOUNT_WIPE_ACK):
            tag = "RemoteWipe" if self.kind is RequestKind.WIPE_ACK else "AccountOnlyRemoteWipe"
            return E(_P, "Provision", E(_P, tag, E(_P, "Status", text=self.status)))
        if self.kind is RequestKind.WIPE_FETCH:
            return Element(_P, "Provision")
        children: list[Element] = []
        if self.device_information is not None:
            children.append(self.device_information.to_element())
        policy: list[Element] = []
        if self.policy_type is not None:
            policy.append(E(_P, "PolicyType", text=self.policy_type))
        if self.kind is RequestKind.ACKNOWLEDGEMENT:
            # MS-ASPROV 2.2.2.41: PolicyKey comes before Status.
            policy.append(E(_P, "PolicyKey", text=self.policy_key))
            policy.append(E(_P, "Status", text=self.status))
        children.append(E(_P, "Policies", E(_P, "Policy", *policy)))
        return E(_P, "Provision", *children)

    @classmethod
    def from_element(cls, el: Element) -> ProvisionRequest:
        """Classify and read a Provision request; ``CommandError`` for a broken body."""
        expect_root(el, _P, "Provision")
        where = "Provision"
        reject_unknown(
            el,
            [
                (_S, "DeviceInformation"),
                (_P, "Policies"),
                (_P, "RemoteWipe"),
                (_P, "AccountOnlyRemoteWipe"),
            ],
            where,
        )
        for tag, kind in (
            ("RemoteWipe", RequestKind.WIPE_ACK),
            ("AccountOnlyRemoteWipe", RequestKind.ACCOUNT_WIPE_ACK),
        ):
            wipe = optional(el, _P, tag, where)
            if wipe is None:
                continue
            if len(el.children) != 1:
                raise CommandError(f"{where}: <{tag}> must be the only child of a wipe report")
            reject_unknown(wipe, [(_P, "Status")], f"{where}/{tag}")
            status = int_of(
                required(wipe, _P, "Status", f"{where}/{tag}"), f"{where}/{tag}", lo=1, hi=2
            )
            return cls(kind=kind, status=status)
        info_el = optional(el, _S, "DeviceInformation", where)
        info = None if info_el is None else DeviceInformation.from_element(info_el, where)
        policies = optional(el, _P, "Policies", where)
        if policies is None:
            if info is None:
                return cls(kind=RequestKind.WIPE_FETCH)
            return cls(kind=RequestKind.INITIAL, device_information=info)
        policy, path, policy_type = _read_policy(
            policies, where, ("PolicyType", "PolicyKey", "Status")
        )
        key_el = optional(policy, _P, "PolicyKey", path)
        if key_el is None:
            if optional(policy, _P, "Status", path) is not None:
                raise CommandError(
                    f"{path}: <Status> without <PolicyKey>; an acknowledgement "
                    "needs both (MS-ASPROV 2.2.2.41)"
                )
            return cls(kind=RequestKind.INITIAL, policy_type=policy_type, device_information=info)
        key = text_of(key_el, path, max_len=64)
        status = int_of(required(policy, _P, "Status", path), path, lo=1, hi=4)
        return cls(
            kind=RequestKind.ACKNOWLEDGEMENT,
            policy_type=policy_type,
            policy_key=key,
            status=status,
            device_information=info,
        )


def precheck(
    request: ProvisionRequest,
    version: ProtocolVersion,
    *,
    require_device_information: bool = True,
) -> ProvisionResponse | None:
    """The refusal a server gives before touching policy state, or None when there is none.

    - an initial request without PolicyType: Provision Status 2 (MS-ASCMD 3.1.5.1);
    - a PolicyType that is not the one for ``version``: Policy Status 3 (MS-ASPROV 2.2.2.54.1);
    - 14.1+ initial request without DeviceInformation: Status 165 (MS-ASPROV 2.2.2.53), unless
      ``require_device_information`` is off (a server that is lenient like older Exchange).
    """
    if request.kind not in (RequestKind.INITIAL, RequestKind.ACKNOWLEDGEMENT):
        return None
    if request.policy_type is None:
        return ProvisionResponse.failure(ProvisionStatus.ProtocolError)
    if request.policy_type != policy_type_for(version):
        return ProvisionResponse.policy_failure(request.policy_type, PolicyStatus.UnknownPolicyType)
    if (
        require_device_information
        and request.kind is RequestKind.INITIAL
        and version >= _V.V14_1
        and request.device_information is None
    ):
        return ProvisionResponse.failure(ProvisionStatus.DeviceInformationRequired)
    return None


# --- responses -------------------------------------------------------------------------------

#: Data of a 2.5 policy (MS-WAP-Provisioning-XML). The simulator sends an empty document: 2.5
#: devices are modelled for the request line and status rules, not for WAP policy content.
EMPTY_WAP_DOC: Final = "<wap-provisioningdoc></wap-provisioningdoc>"


@attrs.frozen(kw_only=True)
class ProvisionResponse:
    """One Provision response body (server builds it, device reads it)."""

    #: Provision/Status (1 success, 2 protocol error, 3 server error, 139/141/145/165).
    status: int
    #: Policy/PolicyType, when the response has a Policy.
    policy_type: str | None = None
    #: Policy/Status (1 success, 2 no policy, 3 unknown type, 4 corrupt, 5 wrong key).
    policy_status: int | None = None
    #: Policy/PolicyKey: temporary key in phase 1, final key in phase 2.
    policy_key: str | None = None
    #: The policy (phase 1 of 12.0+).
    doc: ProvisionDoc | None = None
    #: The policy as WAP XML text (phase 1 of 2.5).
    wap_doc: str | None = None
    #: ``<RemoteWipe/>``: the device must wipe itself.
    remote_wipe: bool = False
    #: ``<AccountOnlyRemoteWipe/>`` (16.1): wipe only this account.
    account_only_remote_wipe: bool = False
    #: settings:DeviceInformation/Status when the request carried DeviceInformation.
    device_information_status: int | None = None

    @property
    def policy_key_value(self) -> int | None:
        """The issued key as a uint32, or None."""
        return parse_policy_key(self.policy_key)

    @classmethod
    def initial(
        cls,
        *,
        version: ProtocolVersion,
        policy_key: int,
        doc: ProvisionDoc,
        device_information_sent: bool = False,
    ) -> ProvisionResponse:
        """Phase 1: Status 1, the policy and the temporary key (MS-ASPROV 3.2.5.1.1)."""
        wap = version < _V.V12_0
        return cls(
            status=ProvisionStatus.Success,
            policy_type=policy_type_for(version),
            policy_status=PolicyStatus.Success,
            policy_key=str(policy_key),
            doc=None if wap else doc,
            wap_doc=EMPTY_WAP_DOC if wap else None,
            device_information_status=1 if device_information_sent else None,
        )

    @classmethod
    def acknowledged(cls, *, version: ProtocolVersion, policy_key: int) -> ProvisionResponse:
        """Phase 2 accepted: Status 1 and the final key, no Data (MS-ASPROV 2.2.2.24.1)."""
        return cls(
            status=ProvisionStatus.Success,
            policy_type=policy_type_for(version),
            policy_status=PolicyStatus.Success,
            policy_key=str(policy_key),
        )

    @classmethod
    def wrong_key(cls, *, version: ProtocolVersion) -> ProvisionResponse:
        """Phase 2 with a key that is not the temporary one: Policy Status 5 (3.2.5.1.2.1)."""
        return cls.policy_failure(policy_type_for(version), PolicyStatus.WrongPolicyKey)

    @classmethod
    def policy_failure(cls, policy_type: str, policy_status: int) -> ProvisionResponse:
        """Provision Status 1 with a failing Policy/Status (2 no policy, 3 unknown type...)."""
        return cls(
            status=ProvisionStatus.Success, policy_type=policy_type, policy_status=policy_status
        )

    @classmethod
    def failure(cls, status: int) -> ProvisionResponse:
        """Only a Provision/Status (2 protocol error, 3 server error, 165...)."""
        return cls(status=status)

    @classmethod
    def wipe_directive(
        cls, *, version: ProtocolVersion, account_only: bool = False
    ) -> ProvisionResponse:
        """``<Status>1</Status><RemoteWipe/>`` (or ``<AccountOnlyRemoteWipe/>``, 16.1 only)."""
        if account_only and version < _V.V16_1:
            raise ValueError(f"AccountOnlyRemoteWipe exists only in 16.1, not in {version.text}")
        return cls(
            status=ProvisionStatus.Success,
            remote_wipe=not account_only,
            account_only_remote_wipe=account_only,
        )

    @classmethod
    def wipe_acknowledged(
        cls, *, version: ProtocolVersion, succeeded: bool, account_only: bool = False
    ) -> ProvisionResponse:
        """Reply to a wipe report: Status 1 on success; on failure Status 2 and the directive
        again (MS-ASPROV 3.2.5.1.2.2, the spec and Exchange 2013+ behaviour)."""
        if succeeded:
            return cls(status=ProvisionStatus.Success)
        again = cls.wipe_directive(version=version, account_only=account_only)
        return attrs.evolve(again, status=ProvisionStatus.ProtocolError)

    def to_element(self) -> Element:
        """The response body."""
        children: list[Element] = []
        if self.device_information_status is not None:
            children.append(
                E(_S, "DeviceInformation", E(_S, "Status", text=self.device_information_status))
            )
        children.append(E(_P, "Status", text=self.status))
        if self.policy_type is not None or self.policy_status is not None:
            policy: list[Element] = []
            if self.policy_type is not None:
                policy.append(E(_P, "PolicyType", text=self.policy_type))
            if self.policy_status is not None:
                policy.append(E(_P, "Status", text=self.policy_status))
            if self.policy_key is not None:
                policy.append(E(_P, "PolicyKey", text=self.policy_key))
            if self.doc is not None:
                policy.append(E(_P, "Data", self.doc.to_element()))
            elif self.wap_doc is not None:
                policy.append(E(_P, "Data", text=self.wap_doc))
            children.append(E(_P, "Policies", E(_P, "Policy", *policy)))
        if self.remote_wipe:
            children.append(Element(_P, "RemoteWipe"))
        if self.account_only_remote_wipe:
            children.append(Element(_P, "AccountOnlyRemoteWipe"))
        return E(_P, "Provision", *children)

    @classmethod
    def from_element(cls, el: Element) -> ProvisionResponse:
        """Read a Provision response (the simulated device's side)."""
        expect_root(el, _P, "Provision")
        where = "Provision"
        reject_unknown(
            el,
            [
                (_S, "DeviceInformation"),
                (_P, "Status"),
                (_P, "Policies"),
                (_P, "RemoteWipe"),
                (_P, "AccountOnlyRemoteWipe"),
            ],
            where,
        )
        status = int_of(required(el, _P, "Status", where), where)
        info_status: int | None = None
        info = optional(el, _S, "DeviceInformation", where)
        if info is not None:
            info_status = int_of(
                required(info, _S, "Status", f"{where}/DeviceInformation"),
                f"{where}/DeviceInformation",
            )
        remote_wipe = _empty_flag(el, "RemoteWipe", where)
        account_wipe = _empty_flag(el, "AccountOnlyRemoteWipe", where)
        policies = optional(el, _P, "Policies", where)
        if policies is None:
            return cls(
                status=status,
                remote_wipe=remote_wipe,
                account_only_remote_wipe=account_wipe,
                device_information_status=info_status,
            )
        policy, path, policy_type = _read_policy(
            policies, where, ("PolicyType", "Status", "PolicyKey", "Data")
        )
        status_el = optional(policy, _P, "Status", path)
        key_el = optional(policy, _P, "PolicyKey", path)
        data = optional(policy, _P, "Data", path)
        doc: ProvisionDoc | None = None
        wap: str | None = None
        if data is not None:
            doc_el = optional(data, _P, "EASProvisionDoc", f"{path}/Data")
            if doc_el is not None:
                doc = ProvisionDoc.from_element(doc_el, f"{path}/Data")
            else:
                wap = text_of(data, path, max_len=65536)
        return cls(
            status=status,
            policy_type=policy_type,
            policy_status=None if status_el is None else int_of(status_el, path),
            policy_key=None if key_el is None else text_of(key_el, path, max_len=64),
            doc=doc,
            wap_doc=wap,
            remote_wipe=remote_wipe,
            account_only_remote_wipe=account_wipe,
            device_information_status=info_status,
        )


def _read_policy(
    policies: Element, where: str, allowed: tuple[str, ...]
) -> tuple[Element, str, str | None]:
    """The one ``Policies/Policy`` of a request or response (MS-ASPROV 2.2.2.40/2.2.2.41), its
    path and its PolicyType; children not in ``allowed`` are an error."""
    reject_unknown(policies, [(_P, "Policy")], f"{where}/Policies")
    policy = required(policies, _P, "Policy", f"{where}/Policies")
    path = f"{where}/Policies/Policy"
    reject_unknown(policy, [(_P, tag) for tag in allowed], path)
    type_el = optional(policy, _P, "PolicyType", path)
    return policy, path, None if type_el is None else text_of(type_el, path, max_len=256)


def _empty_flag(parent: Element, tag: str, where: str) -> bool:
    el = optional(parent, _P, tag, where)
    if el is None:
        return False
    if not el.is_empty:
        raise CommandError(f"{where}/{tag}: expected an empty element (a directive), got content")
    return True
