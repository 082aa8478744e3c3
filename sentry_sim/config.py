"""The gatekeeper's settings: the ``sentry:`` section of the lab YAML, validated.

Responsibility: turn a plain mapping (already loaded from YAML) into a frozen ``SentryConfig``,
checking every value, or fail with a ``ConfigError`` that names the file, the key path, what
was expected and what arrived (``lab.yaml: sentry.uem_unreachable: expected allow or block,
got 'maybe'``). Unknown keys are errors: a typo would otherwise be a silently ignored setting.
It must not read files or start anything.

Recognised keys (all optional)::

    sentry:
      uem_unreachable: allow | block            (allow: the real product's default)
      blocked_response: eas | http403           (eas: 403 below 14.0, Status 129 from 14.0)
      activesync_policy_mode: uem | pass_through (uem: the gatekeeper provisions the policy)
      resync_interval_s: number > 0             (300)
      first_access_wait_s: number >= 0          (5)
      persist_interval_s: number > 0            (60)
      state_dir: path | null                    (null: nothing persisted)
      host: address                             (127.0.0.1)
      port: 0..65535                            (0: a free port)
      admin_port: 0..65535                      (0: a free port)
      gatekeeper_id: name                       (generated, and kept in state_dir)
      report_retry_initial_s: number > 0        (0.5)
      report_retry_max_s: number > 0            (30)
      uem_timeout_s: number > 0                 (5)
      upstream_connect_timeout_s: number > 0    (5)
      upstream_retry_after_s: int >= 0          (30)
      default_activesync_policy: {EASProvisionDoc setting: str | int | bool}
      fast_lane: true | false                   (true: the httptools hot path, docs/performance.md)
      hot_path_events: true | false             (true: hot-path requests emit their events)
      workers: int >= 1                         (1; more: SO_REUSEPORT worker processes, each
                                                 with its own cache; `sentry-sim sentry` only)
      tls:                                      (docs/tls.md, "Gatekeeper TLS")
        device:                                 the device port (what phones connect to)
          enabled: true | false                 (false: plain HTTP)
          min_version: "1.2" | "1.3"            ("1.2"; 1.0 and 1.1 are refused, RFC 8996)
          max_version: null | "1.2" | "1.3"     (null: the newest the ssl module speaks)
          ciphers: null | OpenSSL cipher string (null: Python's defaults; TLS 1.2 suites only,
                                                 TLS 1.3 suites are not configurable)
          certificate: null                     (null: the lab supplies one from its CA)
            | {pkcs12: path, password_env: ENVVAR}  (password_env optional: the variable
                                                     holding the PKCS#12 password)
            | {cert_chain: path, key: path}     (PEM: leaf first, then its CAs; unencrypted key)
          client_certificates: off | optional | required   (off: mutual TLS not asked for)
          client_ca: path | null                (PEM roots device certificates must chain to;
                                                 null: the lab's root)
        admin:                                  the admin port (and the UEM push receiver):
                                                 the same keys but client_certificates/client_ca
        trust: path | null                      (PEM roots the gatekeeper trusts for its own
                                                 calls to the UEM and an https upstream;
                                                 null: the system store)

Certificate paths are kept as written; a relative one is read relative to ``base_dir`` when
``from_mapping`` is given one (``sentry-sim sentry --config`` gives the config file's folder),
else to the working directory. This module only checks their shape: ``sentry_sim.tls`` reads
the files and reports a missing or unreadable one with the same file-and-key message.
"""

from __future__ import annotations

import enum
import json
import math
import os
import re
import ssl
from collections.abc import Mapping
from typing import Any, Final, TypeVar

import attrs

from labpki import ClientCertMode, ListenerTls, PemFiles, Pkcs12File
from sentry_sim.gate import PolicyMode, Unreachable


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the file and the key path."""

    def __init__(self, source: str, path: str, problem: str) -> None:
        super().__init__(f"{source}: {path}: {problem}")
        self.source = source
        self.path = path
        self.problem = problem


class BlockedResponse(enum.Enum):
    """How a blocked device is told (``blocked_response``)."""

    #: Version-correct EAS answer: HTTP 403 below 14.0, HTTP 200 + Status 129 (177) from 14.0.
    EAS = "eas"
    #: Plain HTTP 403 with an empty body at every version.
    HTTP403 = "http403"


#: ``min_version``/``max_version`` values and the versions they name.
TLS_VERSIONS: Final[Mapping[str, ssl.TLSVersion]] = {
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
#: Spellings of the versions RFC 8996 deprecated: refused with their own message.
_OLD_TLS: Final = frozenset({"1", "1.0", "1.1", "tlsv1", "tlsv1.0", "tlsv1.1", "ssl3", "sslv3"})
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


@attrs.frozen(kw_only=True)
class TlsConfig:
    """``sentry.tls``: both ports and the roots trusted for the gatekeeper's own calls."""

    device: ListenerTls = attrs.field(factory=ListenerTls)
    admin: ListenerTls = attrs.field(factory=ListenerTls)
    #: PEM roots for calls to the UEM and an https upstream (None: the system store).
    trust: str | None = None
    #: The config file's name, for the messages about the files above (``sentry_sim.tls``);
    #: not part of equality: the same settings read from two files are the same settings.
    source: str = attrs.field(default="config", eq=False)

    @property
    def enabled(self) -> bool:
        return self.device.enabled or self.admin.enabled


#: The temporary default ActiveSync policy a device gets while the UEM is unreachable
#: (uem_unreachable: allow): a 4-digit PIN, locking after 15 minutes.
DEFAULT_FALLBACK_POLICY: Final[Mapping[str, str | int | bool]] = {
    "DevicePasswordEnabled": 1,
    "AlphanumericDevicePasswordRequired": 0,
    "MinDevicePasswordLength": 4,
    "MaxInactivityTimeDeviceLock": 900,
    "AllowSimpleDevicePassword": 1,
}

#: Most worker processes ``sentry.workers`` accepts.
MAX_WORKERS: Final = 64

_SETTING: Final = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")
_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _show(value: object) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


E = TypeVar("E", bound=enum.Enum)


@attrs.frozen(kw_only=True)
class SentryConfig:
    """Everything the gatekeeper needs besides the two URLs and the clock."""

    uem_unreachable: Unreachable = Unreachable.ALLOW
    blocked_response: BlockedResponse = BlockedResponse.EAS
    activesync_policy_mode: PolicyMode = PolicyMode.UEM
    resync_interval_s: float = 300.0
    first_access_wait_s: float = 5.0
    persist_interval_s: float = 60.0
    state_dir: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    admin_port: int = 0
    gatekeeper_id: str = ""
    report_retry_initial_s: float = 0.5
    report_retry_max_s: float = 30.0
    uem_timeout_s: float = 5.0
    upstream_connect_timeout_s: float = 5.0
    upstream_retry_after_s: int = 30
    default_activesync_policy: Mapping[str, str | int | bool] = attrs.field(
        factory=lambda: dict(DEFAULT_FALLBACK_POLICY)
    )
    #: Serve the device port with the fast lane (``sentry_sim.lane``) in front of the aiohttp
    #: app; false serves the aiohttp app directly.
    fast_lane: bool = True
    #: Hot-path requests emit ``RequestReceived``/``RequestForwarded`` like the full path.
    hot_path_events: bool = True
    #: Worker processes sharing the device port (SO_REUSEPORT), each its own gatekeeper.
    workers: int = 1
    #: Device and admin port TLS (off by default), and the trust for outgoing calls.
    tls: TlsConfig = TlsConfig()

    @classmethod
    def from_mapping(
        cls, mapping: object, source: str = "config", *, base_dir: str | None = None
    ) -> SentryConfig:
        """Read the ``sentry:`` section; ``source`` names the file in error messages and
        ``base_dir`` is where relative certificate paths start (module docstring)."""
        if mapping is None:
            return cls(tls=TlsConfig(source=source))
        r = _Reader(source, base_dir)
        section = r.mapping(mapping, "sentry")
        known = {f.name for f in attrs.fields(cls)}
        for key in section:
            if key not in known:
                raise r.fail(
                    f"sentry.{key}", f"unknown setting; expected one of {', '.join(sorted(known))}"
                )
        d = cls()
        return cls(
            uem_unreachable=r.choice(section, "uem_unreachable", Unreachable, d.uem_unreachable),
            blocked_response=r.choice(
                section, "blocked_response", BlockedResponse, d.blocked_response
            ),
            activesync_policy_mode=r.choice(
                section, "activesync_policy_mode", PolicyMode, d.activesync_policy_mode
            ),
            resync_interval_s=r.number(section, "resync_interval_s", d.resync_interval_s),
            first_access_wait_s=r.number(
                section, "first_access_wait_s", d.first_access_wait_s, allow_zero=True
            ),
            persist_interval_s=r.number(section, "persist_interval_s", d.persist_interval_s),
            state_dir=r.optional_text(section, "state_dir"),
            host=r.text(section, "host", d.host),
            port=r.port(section, "port", d.port),
            admin_port=r.port(section, "admin_port", d.admin_port),
            gatekeeper_id=r.identifier(section, "gatekeeper_id"),
            report_retry_initial_s=r.number(
                section, "report_retry_initial_s", d.report_retry_initial_s
            ),
            report_retry_max_s=r.number(section, "report_retry_max_s", d.report_retry_max_s),
            uem_timeout_s=r.number(section, "uem_timeout_s", d.uem_timeout_s),
            upstream_connect_timeout_s=r.number(
                section, "upstream_connect_timeout_s", d.upstream_connect_timeout_s
            ),
            upstream_retry_after_s=r.integer(
                section, "upstream_retry_after_s", d.upstream_retry_after_s
            ),
            default_activesync_policy=r.settings(
                section, "default_activesync_policy", d.default_activesync_policy
            ),
            fast_lane=r.boolean(section, "fast_lane", d.fast_lane),
            hot_path_events=r.boolean(section, "hot_path_events", d.hot_path_events),
            workers=r.count(section, "workers", d.workers, most=MAX_WORKERS),
            tls=r.tls(section.get("tls")),
        )


@attrs.frozen
class _Reader:
    source: str
    base_dir: str | None = None

    def fail(self, path: str, problem: str) -> ConfigError:
        return ConfigError(self.source, path, problem)

    def mapping(self, value: object, path: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping, got {_show(value)}")
        return value

    def choice(self, section: Mapping[str, Any], key: str, kind: type[E], default: E) -> E:
        if key not in section:
            return default
        value = section[key]
        for member in kind:
            if value == member.value:
                return member
        allowed = " or ".join(str(m.value) for m in kind)
        raise self.fail(f"sentry.{key}", f"expected {allowed}, got {_show(value)}")

    def number(
        self, section: Mapping[str, Any], key: str, default: float, *, allow_zero: bool = False
    ) -> float:
        if key not in section:
            return default
        value = section[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise self.fail(
                f"sentry.{key}", f"expected a number of seconds {bound}, got {_show(value)}"
            )
        return float(value)

    def integer(self, section: Mapping[str, Any], key: str, default: int) -> int:
        if key not in section:
            return default
        value = section[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(f"sentry.{key}", f"expected an integer >= 0, got {_show(value)}")
        return value

    def boolean(self, section: Mapping[str, Any], key: str, default: bool) -> bool:
        if key not in section:
            return default
        value = section[key]
        if not isinstance(value, bool):
            raise self.fail(f"sentry.{key}", f"expected true or false, got {_show(value)}")
        return value

    def count(self, section: Mapping[str, Any], key: str, default: int, *, most: int) -> int:
        if key not in section:
            return default
        value = section[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise self.fail(f"sentry.{key}", f"expected an integer 1..{most}, got {_show(value)}")
        return value

    def port(self, section: Mapping[str, Any], key: str, default: int) -> int:
        if key not in section:
            return default
        value = section[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
            raise self.fail(
                f"sentry.{key}", f"expected a port 0..65535 (0 = a free port), got {_show(value)}"
            )
        return value

    def text(self, section: Mapping[str, Any], key: str, default: str) -> str:
        if key not in section:
            return default
        value = section[key]
        if not isinstance(value, str) or not value.strip() or len(value) > 1024:
            raise self.fail(f"sentry.{key}", f"expected a non-empty string, got {_show(value)}")
        return value

    def optional_text(self, section: Mapping[str, Any], key: str) -> str | None:
        if section.get(key) is None:
            return None
        return self.text(section, key, "")

    def identifier(self, section: Mapping[str, Any], key: str) -> str:
        if key not in section:
            return ""
        value = section[key]
        if not isinstance(value, str) or not _ID.fullmatch(value):
            raise self.fail(
                f"sentry.{key}",
                f"expected 1-64 letters, digits, '.', '_' or '-', got {_show(value)}",
            )
        return value

    def settings(
        self,
        section: Mapping[str, Any],
        key: str,
        default: Mapping[str, str | int | bool],
    ) -> Mapping[str, str | int | bool]:
        if key not in section:
            return default
        raw = self.mapping(section[key], f"sentry.{key}")
        out: dict[str, str | int | bool] = {}
        for name, value in raw.items():
            where = f"sentry.{key}.{name}"
            if not isinstance(name, str) or not _SETTING.fullmatch(name):
                raise self.fail(where, "expected an EASProvisionDoc setting name")
            if not isinstance(value, str | int | bool) or isinstance(value, float):
                raise self.fail(where, f"expected a string, integer or boolean, got {_show(value)}")
            out[name] = value
        return out

    # -- sentry.tls --------------------------------------------------------------------------
    def tls(self, value: object) -> TlsConfig:
        if value is None:
            return TlsConfig(source=self.source)
        section = self.mapping(value, "sentry.tls")
        self.only(section, "sentry.tls", ("admin", "device", "trust"))
        return TlsConfig(
            device=self.port_tls(section.get("device"), "sentry.tls.device", device=True),
            admin=self.port_tls(section.get("admin"), "sentry.tls.admin", device=False),
            trust=self.path(section.get("trust"), "sentry.tls.trust"),
            source=self.source,
        )

    def only(self, section: Mapping[str, Any], where: str, known: tuple[str, ...]) -> None:
        for key in section:
            if key not in known:
                raise self.fail(
                    f"{where}.{key}", f"unknown setting; expected one of {', '.join(known)}"
                )

    def port_tls(self, value: object, where: str, *, device: bool) -> ListenerTls:
        if value is None:
            return ListenerTls()
        section = self.mapping(value, where)
        keys: tuple[str, ...] = ("enabled", "min_version", "max_version", "ciphers", "certificate")
        if device:
            keys += ("client_certificates", "client_ca")
        for key in ("client_certificates", "client_ca"):
            if not device and key in section:
                raise self.fail(
                    f"{where}.{key}",
                    "only the device port asks for client certificates (sentry.tls.device)",
                )
        self.only(section, where, keys)
        enabled = section.get("enabled", False)
        if not isinstance(enabled, bool):
            raise self.fail(f"{where}.enabled", f"expected true or false, got {_show(enabled)}")
        low = self.tls_version(section.get("min_version", "1.2"), f"{where}.min_version")
        high = None
        if section.get("max_version") is not None:
            high = self.tls_version(section["max_version"], f"{where}.max_version")
            if high < low:
                raise self.fail(
                    f"{where}.max_version",
                    f"expected a version >= min_version ({tls_version_text(low)}), "
                    f"got {tls_version_text(high)}",
                )
        mode = self.client_mode(section.get("client_certificates"), f"{where}.client_certificates")
        return ListenerTls(
            enabled=enabled,
            min_version=low,
            max_version=high,
            ciphers=self.ciphers(section.get("ciphers"), f"{where}.ciphers"),
            certificate=self.certificate(section.get("certificate"), f"{where}.certificate"),
            client_certificates=mode,
            client_ca=self.path(section.get("client_ca"), f"{where}.client_ca"),
        )

    def tls_version(self, value: object, where: str) -> ssl.TLSVersion:
        # YAML reads an unquoted 1.2 as a number: accept it as the text it was meant to be.
        text = str(value).strip().lower() if isinstance(value, str | float) else None
        if text is not None:
            text = text.removeprefix("tlsv").removeprefix("tls ").removeprefix("tls")
            if text in TLS_VERSIONS:
                return TLS_VERSIONS[text]
            if text in _OLD_TLS or f"tlsv{text}" in _OLD_TLS:
                raise self.fail(
                    where,
                    f"TLS {text} is refused: TLS 1.0 and 1.1 are deprecated (RFC 8996); "
                    'expected "1.2" or "1.3"',
                )
        if isinstance(value, int) and not isinstance(value, bool) and value == 1:
            raise self.fail(where, 'TLS 1.0 is refused (RFC 8996); expected "1.2" or "1.3"')
        raise self.fail(where, f'expected "1.2" or "1.3", got {_show(value)}')

    def ciphers(self, value: object, where: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > 2048:
            raise self.fail(where, f"expected an OpenSSL cipher string, got {_show(value)}")
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            probe.set_ciphers(value)
        except ssl.SSLError:
            raise self.fail(
                where,
                f"no cipher matches {_show(value)} (an OpenSSL cipher list such as "
                '"ECDHE+AESGCM:ECDHE+CHACHA20")',
            ) from None
        return value

    def client_mode(self, value: object, where: str) -> ClientCertMode:
        if value is None or value is False:
            # YAML 1.1 reads an unquoted off as false.
            return ClientCertMode.OFF
        for member in ClientCertMode:
            if value == member.value:
                return member
        raise self.fail(where, f"expected off, optional or required, got {_show(value)}")

    def certificate(self, value: object, where: str) -> Pkcs12File | PemFiles | None:
        if value is None:
            return None
        section = self.mapping(value, where)
        if "pkcs12" in section:
            self.only(section, where, ("pkcs12", "password_env"))
            env = section.get("password_env")
            if env is not None and not (isinstance(env, str) and _ENV_NAME.fullmatch(env)):
                raise self.fail(
                    f"{where}.password_env",
                    f"expected the name of an environment variable, got {_show(env)}",
                )
            return Pkcs12File(self.required_path(section, "pkcs12", where), env)
        if "cert_chain" in section or "key" in section:
            self.only(section, where, ("cert_chain", "key"))
            return PemFiles(
                self.required_path(section, "cert_chain", where),
                self.required_path(section, "key", where),
            )
        raise self.fail(
            where,
            "expected {pkcs12: path, password_env: VARIABLE} or {cert_chain: path, key: path}, "
            f"got {_show(value)}",
        )

    def required_path(self, section: Mapping[str, Any], key: str, where: str) -> str:
        if section.get(key) is None:
            raise self.fail(f"{where}.{key}", "expected a file path, got nothing")
        path = self.path(section[key], f"{where}.{key}")
        assert path is not None
        return path

    def path(self, value: object, where: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > 4096:
            raise self.fail(where, f"expected a file path, got {_show(value)}")
        if self.base_dir is not None and not os.path.isabs(value):
            return os.path.join(self.base_dir, value)
        return value


def tls_version_text(version: ssl.TLSVersion) -> str:
    """``"1.2"`` or ``"1.3"``: how the config (and the admin API) names a TLS version."""
    return next(text for text, v in TLS_VERSIONS.items() if v is version)
