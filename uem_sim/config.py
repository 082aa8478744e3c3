"""The UEM's configuration: the ``users`` and ``uem`` sections of the lab YAML, validated.

Responsibility: turn a plain mapping (already loaded from YAML or JSON) into ``UemConfig``
and the model values, or fail with a ``ConfigError`` naming the file and the key path:
``lab.yaml: uem.devices[2].os_version: expected a version like "17.1", got 17``. The admin
API reuses the same readers for request bodies (``source="request body"``), so the lab file
and the API accept exactly the same fields. Must not: read files or touch the network.

Recognised keys (all optional except where noted)::

    users: [{name (required), email, password}]
    uem:
      auto_block_unregistered: bool            (default false)
      max_devices_per_mailbox: int >= 1 | null (default null: no limit)
      compliance_check_interval_s: number > 0  (default 300)
      state_dir: path                          (default none: SQLite in memory)
      security_policy:
        block_compromised: bool (true), require_data_protection: bool (false),
        block_policy_out_of_date: bool (false), max_days_out_of_contact: number | null,
        min_os_version: {platform: "17.1"}, allowed_platforms: [..] | null,
        allowed_models: [..] | null, blocked_apps: [..]
      activesync_policy: {EASProvisionDoc setting name: str | int | bool}
      devices: [{device_id, user (required), platform, os_version (required), model,
                 compromised, data_protection, apps, last_check_in_days_ago}]
      tls:                                     (docs/tls.md, "UEM TLS")
        api:                                   the API port (gatekeepers report, devices check in)
          enabled: bool                        (false: plain HTTP)
          min_version: "1.2" | "1.3"           ("1.2"; 1.0 and 1.1 are refused, RFC 8996)
          max_version: null | "1.2" | "1.3"    (null: the newest the ssl module speaks)
          ciphers: null | OpenSSL cipher string (TLS 1.2 suites; null: Python's defaults)
          certificate: null                    (null: the in-process lab supplies one)
            | {pkcs12: path, password_env: VAR} (password_env optional)
            | {cert_chain: path, key: path}    (PEM: leaf first, then its CAs)
        admin:                                 the admin port: the same keys
      outgoing_tls:                            the UEM's own calls (pushes to gatekeepers)
        selected_ciphers: [suite names]        (ordered; IANA or OpenSSL names; default:
                                                uem_sim.outgoing_tls)
        disabled_ciphers: [suite names]        (a known suite in neither list is disabled)
        protocols: ["TLSv1.2"]                 (the only value: 1.0/1.1/1.3 cannot be added,
                                                1.2 cannot be left out)
        trust: path | null                     (PEM roots for outgoing calls; null: the lab's
                                                root in the lab, else the system store)

Paths are kept as written; a relative one is joined to ``base_dir`` when ``from_mapping`` is
given one (``sentry-sim uem --config`` gives the config file's folder). ``uem_sim.tls`` reads
the files and reports a missing or unreadable one with the same file-and-key message.
"""

from __future__ import annotations

import json
import math
import os
import re
import ssl
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from activesync.commands.provision import ProvisionDoc
from labpki import ListenerTls, PemFiles, Pkcs12File, PkiError, tls_version
from uem_sim.contract import ActiveSyncPolicy, SettingValue
from uem_sim.errors import ConfigError
from uem_sim.model import (
    DEFAULT_ACTIVESYNC_SETTINGS,
    Posture,
    SecurityPolicy,
    UemPolicy,
    User,
    is_version,
    strip_domain,
)
from uem_sim.outgoing_tls import OutgoingTlsError, OutgoingTlsSettings

_NAME = re.compile(r"[^\s\\]{1,256}")
_DEVICE_ID = re.compile(r"[^\s]{1,128}")
_SETTING = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")
_MAX_ITEMS: Final = 10_000


def show(value: object) -> str:
    """A value as the user wrote it: ``17``, ``"abc"``, ``true``, ``null``."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@attrs.frozen
class Reader:
    """Field readers that report errors against ``source`` and a key path."""

    source: str

    def fail(self, path: str, problem: str, hint: str = "") -> ConfigError:
        return ConfigError(self.source, path, problem, hint=hint)

    def mapping(
        self, value: object, path: str, allowed: Sequence[str] | None = None
    ) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping, got {show(value)}")
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    raise self.fail(
                        f"{path}.{key}" if path else str(key),
                        "unknown key",
                        hint=f"expected one of: {', '.join(allowed)}",
                    )
        return value

    def sequence(self, value: object, path: str) -> Sequence[Any]:
        if not isinstance(value, list | tuple):
            raise self.fail(path, f"expected a list, got {show(value)}")
        if len(value) > _MAX_ITEMS:
            raise self.fail(path, f"expected at most {_MAX_ITEMS} items, got {len(value)}")
        return value

    def string(
        self, value: object, path: str, pattern: re.Pattern[str] | None = None, what: str = ""
    ) -> str:
        if not isinstance(value, str):
            raise self.fail(
                path, f"expected a string{what and ' (' + what + ')'}, got {show(value)}"
            )
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(path, f"expected {what or 'a valid value'}, got {show(value)}")
        if len(value) > 1024:
            raise self.fail(path, f"expected at most 1024 characters, got {len(value)}")
        return value

    def boolean(self, value: object, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {show(value)}")
        return value

    def integer(self, value: object, path: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(path, f"expected an integer >= {minimum}, got {show(value)}")
        return value

    def number(self, value: object, path: str, *, positive: bool = False) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.fail(path, f"expected a number, got {show(value)}")
        if value < 0 or (positive and value == 0):
            raise self.fail(
                path, f"expected a number {'>' if positive else '>='} 0, got {show(value)}"
            )
        return float(value)

    def version(self, value: object, path: str) -> str:
        if not isinstance(value, str) or not is_version(value):
            hint = "quote it in YAML so 17.10 stays 17.10" if isinstance(value, int | float) else ""
            raise self.fail(path, f'expected a version like "17.1", got {show(value)}', hint=hint)
        return value

    def strings(self, value: object, path: str) -> list[str]:
        return [self.string(v, f"{path}[{i}]") for i, v in enumerate(self.sequence(value, path))]


USER_KEYS: Final = ("name", "email", "password")


def parse_user(reader: Reader, value: object, path: str) -> User:
    obj = reader.mapping(value, path, USER_KEYS)
    if "name" not in obj:
        raise reader.fail(f"{path}.name", "missing (every user needs a login name)")
    name = reader.string(obj["name"], f"{path}.name", _NAME, "a login name without spaces or \\")
    email = reader.string(obj.get("email", ""), f"{path}.email")
    if email and "@" not in email:
        raise reader.fail(
            f"{path}.email", f"expected an address like alice@example.com, got {show(email)}"
        )
    password = reader.string(obj.get("password", ""), f"{path}.password")
    return User(name=name, email=email, password=password)


POSTURE_KEYS: Final = ("platform", "os_version", "model", "compromised", "data_protection", "apps")


def parse_posture(
    reader: Reader, obj: Mapping[str, Any], path: str, base: Posture | None
) -> Posture:
    """Read posture fields from ``obj``; with ``base``, absent fields keep their value (a patch)."""
    fields: dict[str, Any] = {}
    if "platform" in obj:
        fields["platform"] = reader.string(
            obj["platform"], f"{path}.platform", _NAME, "a platform like ios"
        )
    if "os_version" in obj:
        fields["os_version"] = reader.version(obj["os_version"], f"{path}.os_version")
    if "model" in obj:
        fields["model"] = reader.string(obj["model"], f"{path}.model")
    for flag in ("compromised", "data_protection"):
        if flag in obj:
            fields[flag] = reader.boolean(obj[flag], f"{path}.{flag}")
    if "apps" in obj:
        fields["apps"] = frozenset(reader.strings(obj["apps"], f"{path}.apps"))
    if base is not None:
        return attrs.evolve(base, **fields)
    if "os_version" not in fields:
        raise reader.fail(f"{path}.os_version", 'missing (e.g. os_version: "17.1")')
    fields.setdefault("platform", "ios")
    return Posture(**fields)


SECURITY_KEYS: Final = (
    "block_compromised",
    "min_os_version",
    "require_data_protection",
    "max_days_out_of_contact",
    "allowed_platforms",
    "allowed_models",
    "blocked_apps",
    "block_policy_out_of_date",
)


def parse_security_policy(
    reader: Reader, value: object, path: str, base: SecurityPolicy
) -> SecurityPolicy:
    """Read a security policy; absent keys keep ``base``'s values."""
    obj = reader.mapping(value, path, SECURITY_KEYS)
    fields: dict[str, Any] = {}
    for flag in ("block_compromised", "require_data_protection", "block_policy_out_of_date"):
        if flag in obj:
            fields[flag] = reader.boolean(obj[flag], f"{path}.{flag}")
    if "min_os_version" in obj:
        where = f"{path}.min_os_version"
        raw = reader.mapping(obj["min_os_version"], where)
        fields["min_os_version"] = {
            reader.string(k, where, _NAME, "a platform name"): reader.version(v, f"{where}.{k}")
            for k, v in raw.items()
        }
    if "max_days_out_of_contact" in obj:
        raw_days = obj["max_days_out_of_contact"]
        where = f"{path}.max_days_out_of_contact"
        fields["max_days_out_of_contact"] = (
            None if raw_days is None else reader.number(raw_days, where)
        )
    for listed in ("allowed_platforms", "allowed_models"):
        if listed in obj:
            raw_list = obj[listed]
            fields[listed] = (
                None if raw_list is None else reader.strings(raw_list, f"{path}.{listed}")
            )
    if "blocked_apps" in obj:
        fields["blocked_apps"] = reader.strings(obj["blocked_apps"], f"{path}.blocked_apps")
    return attrs.evolve(base, **fields)


def parse_activesync_settings(reader: Reader, value: object, path: str) -> dict[str, SettingValue]:
    """EASProvisionDoc settings (MS-ASPROV 2.2.2.27): names to str / int / bool values."""
    obj = reader.mapping(value, path)
    settings: dict[str, SettingValue] = {}
    for name, setting in obj.items():
        where = f"{path}.{name}"
        if not isinstance(name, str) or not _SETTING.fullmatch(name):
            raise reader.fail(
                where, "expected an EASProvisionDoc setting name like DevicePasswordEnabled"
            )
        if not isinstance(setting, str | int | bool) or isinstance(setting, float):
            raise reader.fail(where, f"expected a string, integer or boolean, got {show(setting)}")
        settings[name] = setting
    try:
        # The shared protocol library knows every setting's name, type and range.
        ProvisionDoc.from_mapping(settings, source=path)
    except ValueError as exc:
        where, _, problem = str(exc).partition(": ")
        raise reader.fail(where, problem) from None
    return settings


POLICY_KEYS: Final = (
    "auto_block_unregistered",
    "max_devices_per_mailbox",
    "security_policy",
    "activesync_policy",
)


def parse_policy(reader: Reader, obj: Mapping[str, Any], path: str, base: UemPolicy) -> UemPolicy:
    """Read the policy keys present in ``obj`` over ``base``.

    A changed security policy gets ``version + 1`` (devices must apply it again); changed
    ActiveSync settings get a new ActiveSync policy version (gatekeepers re-provision).
    """
    prefix = f"{path}." if path else ""
    policy = base
    if "auto_block_unregistered" in obj:
        flag = reader.boolean(obj["auto_block_unregistered"], f"{prefix}auto_block_unregistered")
        policy = attrs.evolve(policy, auto_block_unregistered=flag)
    if "max_devices_per_mailbox" in obj:
        raw = obj["max_devices_per_mailbox"]
        where = f"{prefix}max_devices_per_mailbox"
        limit = None if raw is None else reader.integer(raw, where, 1)
        policy = attrs.evolve(policy, max_devices_per_mailbox=limit)
    if "security_policy" in obj:
        security = parse_security_policy(
            reader, obj["security_policy"], f"{prefix}security_policy", base.security
        )
        if security != base.security:
            security = attrs.evolve(security, version=base.security.version + 1)
        policy = attrs.evolve(policy, security=security)
    if "activesync_policy" in obj:
        settings = parse_activesync_settings(
            reader, obj["activesync_policy"], f"{prefix}activesync_policy"
        )
        if settings != dict(base.activesync.settings):
            active = ActiveSyncPolicy(base.activesync.version + 1, settings)
            policy = attrs.evolve(policy, activesync=active)
    return policy


@attrs.frozen(kw_only=True)
class DeviceSpec:
    """A registered device as the lab file declares it (enrolled when the UEM starts)."""

    device_id: str
    user: str
    posture: Posture
    last_check_in_days_ago: float = 0.0


DEVICE_KEYS: Final = ("device_id", "user", *POSTURE_KEYS, "last_check_in_days_ago")


def parse_device_id(reader: Reader, value: object, path: str) -> str:
    return reader.string(
        value,
        path,
        _DEVICE_ID,
        "an EAS DeviceId such as ApplF17XK2Q1 (1-128 characters, no spaces)",
    )


def parse_device(reader: Reader, value: object, path: str) -> DeviceSpec:
    obj = reader.mapping(value, path, DEVICE_KEYS)
    for required in ("device_id", "user"):
        if required not in obj:
            raise reader.fail(f"{path}.{required}", "missing")
    days = obj.get("last_check_in_days_ago", 0)
    return DeviceSpec(
        device_id=parse_device_id(reader, obj["device_id"], f"{path}.device_id"),
        user=reader.string(obj["user"], f"{path}.user", _DEVICE_ID, "a user's login or email"),
        posture=parse_posture(reader, obj, path, None),
        last_check_in_days_ago=reader.number(days, f"{path}.last_check_in_days_ago"),
    )


@attrs.frozen(kw_only=True)
class TlsConfig:
    """``uem.tls``: both listening ports."""

    api: ListenerTls = attrs.field(factory=ListenerTls)
    admin: ListenerTls = attrs.field(factory=ListenerTls)


PORT_TLS_KEYS: Final = ("enabled", "min_version", "max_version", "ciphers", "certificate")
OUTGOING_KEYS: Final = ("selected_ciphers", "disabled_ciphers", "protocols", "trust")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def tls_version_text(version: ssl.TLSVersion) -> str:
    """``TLSv1_2`` -> ``"1.2"``."""
    return version.name.removeprefix("TLSv").replace("_", ".")


def _path(reader: Reader, value: object, where: str, base_dir: str | None) -> str:
    text = reader.string(value, where, what="a file path")
    if not text.strip():
        raise reader.fail(where, "expected a file path, got an empty string")
    if base_dir is not None and not os.path.isabs(text):
        return os.path.join(base_dir, text)
    return text


def _version(reader: Reader, value: object, where: str) -> ssl.TLSVersion:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise reader.fail(where, f'expected "1.2" or "1.3", got {show(value)}')
    try:
        return tls_version(value, source=reader.source, key=where)
    except PkiError as exc:
        # labpki's message starts with "source: key: "; keep only the problem.
        problem = str(exc).removeprefix(f"{reader.source}: {where}: ")
        raise reader.fail(where, problem) from None


def parse_certificate(
    reader: Reader, value: object, where: str, base_dir: str | None
) -> Pkcs12File | PemFiles | None:
    if value is None:
        return None
    obj = reader.mapping(value, where)
    if "pkcs12" in obj:
        reader.mapping(obj, where, ("pkcs12", "password_env"))
        env = obj.get("password_env")
        if env is not None and not (isinstance(env, str) and _ENV_NAME.fullmatch(env)):
            raise reader.fail(
                f"{where}.password_env",
                f"expected the name of an environment variable, got {show(env)}",
            )
        return Pkcs12File(_path(reader, obj["pkcs12"], f"{where}.pkcs12", base_dir), env)
    if "cert_chain" in obj or "key" in obj:
        reader.mapping(obj, where, ("cert_chain", "key"))
        for key in ("cert_chain", "key"):
            if obj.get(key) is None:
                raise reader.fail(f"{where}.{key}", "missing (expected a file path)")
        return PemFiles(
            _path(reader, obj["cert_chain"], f"{where}.cert_chain", base_dir),
            _path(reader, obj["key"], f"{where}.key", base_dir),
        )
    raise reader.fail(
        where,
        "expected {pkcs12: path, password_env: VARIABLE} or {cert_chain: path, key: path}, "
        f"got {show(value)}",
    )


def parse_port_tls(reader: Reader, value: object, where: str, base_dir: str | None) -> ListenerTls:
    if value is None:
        return ListenerTls()
    obj = reader.mapping(value, where, PORT_TLS_KEYS)
    enabled = reader.boolean(obj.get("enabled", False), f"{where}.enabled")
    low = _version(reader, obj.get("min_version", "1.2"), f"{where}.min_version")
    high = None
    if obj.get("max_version") is not None:
        high = _version(reader, obj["max_version"], f"{where}.max_version")
        if high < low:
            raise reader.fail(
                f"{where}.max_version",
                f"expected a version >= min_version ({tls_version_text(low)}), "
                f"got {tls_version_text(high)}",
            )
    ciphers = None
    if obj.get("ciphers") is not None:
        ciphers = reader.string(obj["ciphers"], f"{where}.ciphers", what="an OpenSSL cipher list")
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            probe.set_ciphers(ciphers)
        except ssl.SSLError:
            raise reader.fail(
                f"{where}.ciphers",
                f"no cipher matches {show(ciphers)}",
                hint='an OpenSSL cipher list such as "ECDHE+AESGCM:ECDHE+CHACHA20"',
            ) from None
    return ListenerTls(
        enabled=enabled,
        min_version=low,
        max_version=high,
        ciphers=ciphers,
        certificate=parse_certificate(
            reader, obj.get("certificate"), f"{where}.certificate", base_dir
        ),
    )


def parse_tls(reader: Reader, value: object, base_dir: str | None) -> TlsConfig:
    if value is None:
        return TlsConfig()
    obj = reader.mapping(value, "uem.tls", ("api", "admin"))
    return TlsConfig(
        api=parse_port_tls(reader, obj.get("api"), "uem.tls.api", base_dir),
        admin=parse_port_tls(reader, obj.get("admin"), "uem.tls.admin", base_dir),
    )


def parse_outgoing_tls(
    reader: Reader, value: object, path: str, allowed: Sequence[str] = OUTGOING_KEYS
) -> OutgoingTlsSettings:
    """``selected_ciphers``/``disabled_ciphers``/``protocols`` (``trust`` is read apart)."""
    obj = reader.mapping({} if value is None else value, path, allowed)
    try:
        return OutgoingTlsSettings.from_mapping(obj, path=path)
    except OutgoingTlsError as exc:
        raise reader.fail(exc.path, exc.problem, hint=exc.hint) from None


UEM_KEYS: Final = (
    *POLICY_KEYS,
    "devices",
    "state_dir",
    "compliance_check_interval_s",
    "tls",
    "outgoing_tls",
)


@attrs.frozen(kw_only=True)
class UemConfig:
    """Everything ``make_app`` needs to start a UEM."""

    users: tuple[User, ...] = ()
    policy: UemPolicy = attrs.field(factory=UemPolicy)
    devices: tuple[DeviceSpec, ...] = ()
    state_dir: str | None = None
    compliance_check_interval_s: float = 300.0
    #: ``uem.tls``: TLS of the API and admin ports.
    tls: TlsConfig = TlsConfig()
    #: ``uem.outgoing_tls`` without ``trust``.
    outgoing_tls: OutgoingTlsSettings = attrs.field(factory=OutgoingTlsSettings.default)
    #: ``uem.outgoing_tls.trust``: PEM roots for outgoing calls (None: see ``uem_sim.tls``).
    outgoing_trust: str | None = None
    #: The config's name in error messages (the file name); not part of equality.
    source: str = attrs.field(default="lab.yaml", eq=False)

    @classmethod
    def from_mapping(
        cls, mapping: object, source: str = "lab.yaml", *, base_dir: str | None = None
    ) -> UemConfig:
        """Read the ``users`` and ``uem`` sections of a lab file; other sections are ignored.

        ``base_dir``: where relative certificate and trust paths start (None: as written)."""
        reader = Reader(source)
        top = reader.mapping({} if mapping is None else mapping, "")
        users: list[User] = []
        seen: dict[str, str] = {}
        for i, raw in enumerate(reader.sequence(top.get("users") or [], "users")):
            user = parse_user(reader, raw, f"users[{i}]")
            for ident in (user.mailbox, user.email.lower()):
                if ident and ident in seen:
                    raise reader.fail(f"users[{i}]", f"{ident!r} is already used by {seen[ident]}")
                if ident:
                    seen[ident] = f"users[{i}]"
            users.append(user)

        raw_uem = top.get("uem")
        uem = reader.mapping({} if raw_uem is None else raw_uem, "uem", UEM_KEYS)
        policy = parse_policy(reader, uem, "uem", UemPolicy())
        if "security_policy" in uem:  # the lab's policy is version 1, not a change
            policy = attrs.evolve(policy, security=attrs.evolve(policy.security, version=1))
        if "activesync_policy" in uem:
            policy = attrs.evolve(policy, activesync=attrs.evolve(policy.activesync, version=1))
        else:
            policy = attrs.evolve(
                policy, activesync=ActiveSyncPolicy(1, DEFAULT_ACTIVESYNC_SETTINGS)
            )

        known = {u.mailbox: u.mailbox for u in users} | {
            u.email.lower(): u.mailbox for u in users if u.email
        }
        devices: list[DeviceSpec] = []
        keys: set[tuple[str, str]] = set()
        for i, raw in enumerate(reader.sequence(uem.get("devices") or [], "uem.devices")):
            spec = parse_device(reader, raw, f"uem.devices[{i}]")
            ident = strip_domain(spec.user).lower()
            if ident not in known:
                raise reader.fail(
                    f"uem.devices[{i}].user",
                    f"no user named {show(spec.user)}",
                    hint="add it to users: or use an existing user's name or email",
                )
            key = (known[ident], spec.device_id)
            if key in keys:
                raise reader.fail(
                    f"uem.devices[{i}].device_id",
                    f"{spec.device_id!r} is already registered for {spec.user}",
                )
            keys.add(key)
            devices.append(spec)

        state_dir = None
        if uem.get("state_dir") is not None:
            state_dir = reader.string(uem["state_dir"], "uem.state_dir")
        interval = 300.0
        if "compliance_check_interval_s" in uem:
            interval = reader.number(
                uem["compliance_check_interval_s"], "uem.compliance_check_interval_s", positive=True
            )
        outgoing = parse_outgoing_tls(reader, uem.get("outgoing_tls"), "uem.outgoing_tls")
        trust = None
        raw_outgoing = uem.get("outgoing_tls")
        if isinstance(raw_outgoing, Mapping) and raw_outgoing.get("trust") is not None:
            trust = _path(reader, raw_outgoing["trust"], "uem.outgoing_tls.trust", base_dir)
        return cls(
            users=tuple(users),
            policy=policy,
            devices=tuple(devices),
            state_dir=state_dir,
            compliance_check_interval_s=interval,
            tls=parse_tls(reader, uem.get("tls"), base_dir),
            outgoing_tls=outgoing,
            outgoing_trust=trust,
            source=source,
        )
