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
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final, TypeVar

import attrs

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

    @classmethod
    def from_mapping(cls, mapping: object, source: str = "config") -> SentryConfig:
        """Read the ``sentry:`` section; ``source`` names the file in error messages."""
        if mapping is None:
            return cls()
        r = _Reader(source)
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
        )


@attrs.frozen
class _Reader:
    source: str

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
