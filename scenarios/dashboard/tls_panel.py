"""The live view's "Outgoing TLS" panel: what the UEM speaks when it pushes to gatekeepers.

Responsibility: turn the UEM's outgoing-TLS admin views (``GET /api/v1/outgoing-tls``, its
``/usage`` and ``GET /api/v1/admin/gatekeepers``; docs/admin-api.md) into what the panel shows:
one row per endpoint the UEM calls (negotiated protocol, suite, SNI, calls, last use; a failing
endpoint with its error and the *disabled* suite(s) it would need), the suite list (selected in
order, then disabled, with Core's ``*`` marker), when the weekly usage clears, and in plain
words whether outgoing calls use TLS at all. ``OutgoingTlsFeed`` reads those views from the
lab when a UEM event may have changed them and remembers the last panel. Must not: change the
UEM's settings except through ``reset`` (the trainer's "reset to default" control, the same
admin call an administrator makes), decide anything, or show a push URL's path (it holds the
gatekeeper's push secret): endpoints are ``host:port`` only.

Theory of operation: ``OutgoingTlsPanel.from_views`` is pure: JSON in (validated, bounded;
a malformed view raises ``PanelDataError`` naming the route and the JSON path), a frozen value
out. Rows come from the union of the usage table and the registered gatekeepers' push URLs,
so a gatekeeper is listed before its first push ("no call yet this week") and over plain
http ("plain HTTP, no TLS": the usage table only records TLS connections). The feed is the
shell: the dashboard's hub calls ``saw(kind)`` for every UEM event and ``mark()`` after a
control; ``read(lab)`` re-reads the three views only when something may have changed, and when
the UEM cannot be read keeps the last panel marked stale, as the UEM devices view does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

import aiohttp
import attrs
from yarl import URL

from scenarios.lab import LabError
from simclock import Clock
from uem_sim.outgoing_client import endpoint_of

#: The UEM's admin routes the panel reads (docs/admin-api.md, "UEM outgoing TLS").
SETTINGS_PATH: Final = "/api/v1/outgoing-tls"
USAGE_PATH: Final = "/api/v1/outgoing-tls/usage"
GATEKEEPERS_PATH: Final = "/api/v1/admin/gatekeepers"
RESET_PATH: Final = "/api/v1/outgoing-tls/reset"
#: UEM events after which the panel is read again: pushes (calls, failures), settings applied,
#: a diagnosed handshake failure, a (re-)registered push URL, a replaced certificate.
TLS_EVENTS: Final = frozenset(
    {
        "PushDelivered",
        "PushFailed",
        "OutgoingTlsApplied",
        "OutgoingTlsFailed",
        "GatekeeperRegistered",
        "CertificateReplaced",
    }
)
#: Endpoint rows sent to the page (failing ones first).
MAX_ENDPOINTS: Final = 200
#: Suites accepted in a view (the UEM knows 22).
MAX_SUITES: Final = 100
#: Gatekeepers accepted in a view.
MAX_GATEKEEPERS: Final = 1000
#: Longest text kept from a view (an error message, a name).
MAX_TEXT: Final = 600
#: Real seconds allowed to read the three views.
READ_TIMEOUT_S: Final = 3.0
#: Marker of a disabled suite a failing endpoint would need (Core's asterisk).
MARKER: Final = "*"

#: ``transport``: every push URL is https / every one is http / some of each / none registered.
TRANSPORTS: Final = ("tls", "plain", "mixed", "none")
#: An endpoint row's ``status``: negotiated / last handshake failed / TLS but not called this
#: week / plain http (no TLS at all).
ROW_STATUSES: Final = ("ok", "failing", "unused", "plain")

_HEADLINES: Final[Mapping[str, str]] = {
    "tls": "Outgoing calls use TLS 1.2: the UEM pushes to every gatekeeper over https.",
    "plain": (
        "Outgoing calls are plain HTTP (no TLS): the gatekeepers' push URLs are http://, so "
        "nothing is negotiated. The policy below is what would apply over TLS "
        "(start the lab with lab.tls: true)."
    ),
    "mixed": (
        "Some outgoing calls are plain HTTP (no TLS): only the https push URLs use the "
        "policy below."
    ),
    "none": (
        "No gatekeeper has registered a push URL yet: the UEM calls nobody. The policy "
        "below applies to https push URLs."
    ),
}


class PanelDataError(ValueError):
    """A UEM view that does not have the documented shape; the message names where."""


class UemAdmin(Protocol):
    """What the feed needs of a lab: its clock and the UEM's admin API (``Lab`` has both)."""

    @property
    def clock(self) -> Clock: ...

    async def uem(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any: ...


# --- reading the views (bounded, validated) ------------------------------------------------


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@attrs.frozen
class _At:
    """A place in one answer, for messages: ``GET /api/v1/outgoing-tls/usage: $.endpoints[2]``."""

    route: str
    path: str = "$"

    def key(self, name: str) -> _At:
        return _At(self.route, f"{self.path}.{name}")

    def index(self, n: int) -> _At:
        return _At(self.route, f"{self.path}[{n}]")

    def fail(self, expected: str, got: object) -> PanelDataError:
        return PanelDataError(f"{self.route}: {self.path}: expected {expected}, got {_show(got)}")


def _mapping(value: object, at: _At) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise at.fail("an object", value)
    return value


def _list(value: object, at: _At, most: int) -> Sequence[Any]:
    if not isinstance(value, list | tuple):
        raise at.fail("a list", value)
    if len(value) > most:
        raise at.fail(f"at most {most} items", f"{len(value)} items")
    return value


def _text(raw: Mapping[str, Any], key: str, at: _At) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise at.key(key).fail("a string", value)
    return value[:MAX_TEXT]


def _optional_text(raw: Mapping[str, Any], key: str, at: _At) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise at.key(key).fail("a string or null", value)
    return value[:MAX_TEXT]


def _count(raw: Mapping[str, Any], key: str, at: _At) -> int:
    value = raw.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise at.key(key).fail("a count (an integer >= 0)", value)
    return value


def _time(raw: Mapping[str, Any], key: str, at: _At) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise at.key(key).fail("a time in seconds", value)
    return float(value)


def _optional_time(raw: Mapping[str, Any], key: str, at: _At) -> float | None:
    return None if raw.get(key) is None else _time(raw, key, at)


def _names(raw: Mapping[str, Any], key: str, at: _At) -> tuple[str, ...]:
    where = at.key(key)
    items = _list(raw.get(key, []), where, MAX_GATEKEEPERS)
    names = []
    for n, item in enumerate(items):
        if not isinstance(item, str):
            raise where.index(n).fail("a string", item)
        names.append(item[:MAX_TEXT])
    return tuple(names)


# --- the panel's values ----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class EndpointRow:
    """One endpoint the UEM calls (``host:port``), as the panel shows it."""

    endpoint: str
    #: ``ok``, ``failing``, ``unused`` or ``plain`` (``ROW_STATUSES``).
    status: str = attrs.field(validator=attrs.validators.in_(ROW_STATUSES))
    #: Ids of the gatekeepers whose push URL is this endpoint (empty: not registered now).
    gatekeepers: tuple[str, ...] = ()
    sni: str | None = None
    protocol: str | None = None
    #: IANA name of the negotiated suite (OpenSSL's when the UEM does not know it).
    cipher: str | None = None
    openssl_cipher: str | None = None
    calls: int = 0
    failures: int = 0
    last_used_at: float | None = None
    last_error: str | None = None
    last_failure_at: float | None = None
    #: Disabled suites a probe found the endpoint would accept (marked ``*`` in the list).
    needs_disabled: tuple[str, ...] = ()
    #: A retired protocol the endpoint speaks instead of TLS 1.2 (``TLSv1.1``).
    speaks_only: str | None = None

    @classmethod
    def from_usage(cls, raw: object, at: _At, gatekeepers: tuple[str, ...]) -> EndpointRow:
        entry = _mapping(raw, at)
        failing = entry.get("failing")
        if not isinstance(failing, bool):
            raise at.key("failing").fail("true or false", failing)
        return cls(
            endpoint=_text(entry, "endpoint", at),
            status="failing" if failing else "ok",
            gatekeepers=gatekeepers,
            sni=_optional_text(entry, "sni", at),
            protocol=_optional_text(entry, "protocol", at),
            cipher=_optional_text(entry, "cipher", at),
            openssl_cipher=_optional_text(entry, "openssl_cipher", at),
            calls=_count(entry, "calls", at),
            failures=_count(entry, "failures", at),
            last_used_at=_optional_time(entry, "last_used_at", at),
            last_error=_optional_text(entry, "last_error", at),
            last_failure_at=_optional_time(entry, "last_failure_at", at),
            needs_disabled=_names(entry, "needs_disabled", at),
            speaks_only=_optional_text(entry, "speaks_only", at),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "status": self.status,
            "gatekeepers": list(self.gatekeepers),
            "sni": self.sni,
            "protocol": self.protocol,
            "cipher": self.cipher,
            "openssl_cipher": self.openssl_cipher,
            "calls": self.calls,
            "failures": self.failures,
            "last_used_at": self.last_used_at,
            "last_error": self.last_error,
            "last_failure_at": self.last_failure_at,
            "needs_disabled": list(self.needs_disabled),
            "speaks_only": self.speaks_only,
        }


@attrs.frozen(kw_only=True)
class SuiteRow:
    """One cipher suite of the outgoing policy."""

    name: str
    openssl_name: str
    status: str = attrs.field(validator=attrs.validators.in_(("selected", "disabled")))
    #: 1-based position among the selected suites (the order they are offered); None if disabled.
    order: int | None
    #: ``*`` on a disabled suite that a failing endpoint would need, else "".
    marker: str = ""
    #: ``selected`` or ``disabled`` in the default policy ("" when the view does not say).
    default_status: str = ""
    used_by: tuple[str, ...] = ()
    needed_by: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "openssl_name": self.openssl_name,
            "status": self.status,
            "order": self.order,
            "marker": self.marker,
            "default_status": self.default_status,
            "used_by": list(self.used_by),
            "needed_by": list(self.needed_by),
        }


def _push_endpoints(gatekeepers: object) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Endpoint -> (scheme, gatekeeper ids) from ``GET /api/v1/admin/gatekeepers``."""
    at = _At("GET " + GATEKEEPERS_PATH)
    items = _list(
        _mapping(gatekeepers, at).get("gatekeepers"), at.key("gatekeepers"), MAX_GATEKEEPERS
    )
    found: dict[str, tuple[str, list[str]]] = {}
    for n, raw in enumerate(items):
        where = at.key("gatekeepers").index(n)
        entry = _mapping(raw, where)
        gatekeeper_id = _text(entry, "gatekeeper_id", where)
        push_url = _text(entry, "push_url", where)
        try:
            url = URL(push_url)
        except ValueError:
            raise where.key("push_url").fail("an http(s) URL", "an unparsable URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            # Never echo the URL: its path is the gatekeeper's push secret.
            raise where.key("push_url").fail("an http(s) URL", f"a {url.scheme or 'relative'} URL")
        endpoint = endpoint_of(url)
        found.setdefault(endpoint, (url.scheme, []))[1].append(gatekeeper_id)
    return {endpoint: (scheme, tuple(ids)) for endpoint, (scheme, ids) in found.items()}


def _sort_key(row: EndpointRow) -> tuple[int, str]:
    order = {"failing": 0, "ok": 1, "unused": 2, "plain": 3}
    return (order[row.status], row.endpoint)


@attrs.frozen(kw_only=True)
class OutgoingTlsPanel:
    """Everything the panel shows (module docstring)."""

    #: ``tls``, ``plain``, ``mixed`` or ``none`` (``TRANSPORTS``).
    transport: str = attrs.field(validator=attrs.validators.in_(TRANSPORTS))
    endpoints: tuple[EndpointRow, ...]
    #: More endpoints than ``MAX_ENDPOINTS`` were known; this many are not shown.
    hidden_endpoints: int = 0
    suites: tuple[SuiteRow, ...]
    protocols: tuple[str, ...]
    is_default: bool
    trust: str
    #: How many times settings were applied since the UEM started.
    generation: int
    #: Seconds outgoing calls stay refused after settings were applied (0: they work).
    unavailable_for_s: float
    period_started_at: float
    #: When the usage table is cleared next (the UEM's clock, which is the lab's).
    clears_at: float
    #: ``clears_at`` minus the lab clock's ``now`` when the views were read.
    clears_in_s: float
    #: The lab clock's ``now`` when the views were read.
    read_at: float
    #: How many weekly clears happened so far.
    clears: int

    @property
    def headline(self) -> str:
        return _HEADLINES[self.transport]

    @property
    def marked(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.suites if s.marker)

    @classmethod
    def from_views(
        cls, *, settings: object, usage: object, gatekeepers: object, now: float
    ) -> OutgoingTlsPanel:
        """The panel from the three admin views (``PanelDataError`` when one is malformed)."""
        pushes = _push_endpoints(gatekeepers)
        settings_at = _At("GET " + SETTINGS_PATH)
        settings_map = _mapping(settings, settings_at)
        current_at = settings_at.key("settings")
        current = _mapping(settings_map.get("settings"), current_at)
        is_default = current.get("is_default")
        if not isinstance(is_default, bool):
            raise current_at.key("is_default").fail("true or false", is_default)
        defaults = _mapping(settings_map.get("default", {}), settings_at.key("default"))
        default_selected = set(_names(defaults, "selected_ciphers", settings_at.key("default")))
        default_disabled = set(_names(defaults, "disabled_ciphers", settings_at.key("default")))
        unavailable = settings_map.get("unavailable_for_s", 0.0)
        if isinstance(unavailable, bool) or not isinstance(unavailable, int | float):
            raise settings_at.key("unavailable_for_s").fail("seconds", unavailable)

        usage_at = _At("GET " + USAGE_PATH)
        usage_map = _mapping(usage, usage_at)
        rows: list[EndpointRow] = []
        seen: set[str] = set()
        entries = _list(usage_map.get("endpoints"), usage_at.key("endpoints"), MAX_GATEKEEPERS)
        for n, raw in enumerate(entries):
            where = usage_at.key("endpoints").index(n)
            endpoint = _text(_mapping(raw, where), "endpoint", where)
            ids = pushes.get(endpoint, ("https", ()))[1]
            rows.append(EndpointRow.from_usage(raw, where, ids))
            seen.add(endpoint)
        for endpoint, (scheme, ids) in pushes.items():
            if endpoint in seen:
                continue
            status = "plain" if scheme == "http" else "unused"
            rows.append(EndpointRow(endpoint=endpoint, status=status, gatekeepers=ids))
        rows.sort(key=_sort_key)

        suites: list[SuiteRow] = []
        suites_at = usage_at.key("suites")
        selected = 0
        for n, raw in enumerate(_list(usage_map.get("suites"), suites_at, MAX_SUITES)):
            where = suites_at.index(n)
            entry = _mapping(raw, where)
            listed = entry.get("status")
            if listed not in ("selected", "disabled"):
                raise where.key("status").fail('"selected" or "disabled"', listed)
            name = _text(entry, "name", where)
            marker = _optional_text(entry, "marker", where) or ""
            if marker not in ("", MARKER):
                raise where.key("marker").fail(f'"" or "{MARKER}"', marker)
            if listed == "selected":
                selected += 1
            default_status = (
                "selected"
                if name in default_selected
                else "disabled"
                if name in default_disabled
                else ""
            )
            suites.append(
                SuiteRow(
                    name=name,
                    openssl_name=_text(entry, "openssl_name", where),
                    status=str(listed),
                    order=selected if listed == "selected" else None,
                    marker=marker,
                    default_status=default_status,
                    used_by=_names(entry, "used_by", where),
                    needed_by=_names(entry, "needed_by", where),
                )
            )
        clears_at = _time(usage_map, "clears_at", usage_at)
        schemes = {scheme for scheme, _ in pushes.values()}
        transport = (
            "none"
            if not schemes
            else "mixed"
            if len(schemes) > 1
            else "plain"
            if schemes == {"http"}
            else "tls"
        )
        return cls(
            transport=transport,
            endpoints=tuple(rows[:MAX_ENDPOINTS]),
            hidden_endpoints=max(0, len(rows) - MAX_ENDPOINTS),
            suites=tuple(suites),
            protocols=_names(current, "protocols", current_at),
            is_default=is_default,
            trust=_text(settings_map, "trust", settings_at),
            generation=_count(settings_map, "generation", settings_at),
            unavailable_for_s=max(0.0, float(unavailable)),
            period_started_at=_time(usage_map, "period_started_at", usage_at),
            clears_at=clears_at,
            clears_in_s=max(0.0, clears_at - now),
            read_at=now,
            clears=_count(usage_map, "clears", usage_at),
        )

    def to_json(self) -> dict[str, Any]:
        """What the page gets (``outgoing_tls`` of the state and of ``views`` messages)."""
        return {
            "transport": self.transport,
            "headline": self.headline,
            "endpoints": [row.to_json() for row in self.endpoints],
            "hidden_endpoints": self.hidden_endpoints,
            "suites": [suite.to_json() for suite in self.suites],
            "marked": list(self.marked),
            "protocols": list(self.protocols),
            "is_default": self.is_default,
            "trust": self.trust,
            "generation": self.generation,
            "unavailable_for_s": self.unavailable_for_s,
            # When outgoing calls work again (lab clock): the page compares it with the
            # status's clock, so the restart note goes away without another read.
            "available_at": self.read_at + self.unavailable_for_s
            if self.unavailable_for_s
            else None,
            "read_at": self.read_at,
            "period_started_at": self.period_started_at,
            "clears_at": self.clears_at,
            "clears_in_s": self.clears_in_s,
            "clears": self.clears,
            "stale": False,
            "error": None,
        }


# --- the shell: reading from the lab ---------------------------------------------------------


@attrs.define(eq=False)
class OutgoingTlsFeed:
    """The panel's last state, re-read from the UEM when something may have changed it."""

    timeout_s: float = READ_TIMEOUT_S
    #: True when the next ``read`` must ask the UEM (at start, after a TLS event or a control).
    dirty: bool = True
    _last: dict[str, Any] | None = None

    def saw(self, kind: str) -> bool:
        """A UEM event of ``kind`` happened; True when it may change the panel."""
        if kind in TLS_EVENTS:
            self.dirty = True
            return True
        return False

    def mark(self) -> None:
        """Read again next time (a control changed the lab: clock, UEM up, reset)."""
        self.dirty = True

    @property
    def last(self) -> dict[str, Any] | None:
        return self._last

    async def read(self, lab: UemAdmin) -> dict[str, Any]:
        """The panel's JSON: read from the UEM when dirty, else the last one."""
        if not self.dirty and self._last is not None:
            return self._last
        # Cleared before reading: an event that lands during the read marks it again.
        self.dirty = False
        try:
            async with asyncio.timeout(self.timeout_s):
                settings, usage, gatekeepers = await asyncio.gather(
                    lab.uem("GET", SETTINGS_PATH),
                    lab.uem("GET", USAGE_PATH),
                    lab.uem("GET", GATEKEEPERS_PATH),
                )
            panel = OutgoingTlsPanel.from_views(
                settings=settings, usage=usage, gatekeepers=gatekeepers, now=lab.clock.now()
            )
        except (LabError, aiohttp.ClientError, TimeoutError, PanelDataError) as exc:
            self.dirty = True  # try again on the next refresh
            return self._stale(
                f"the UEM's outgoing TLS cannot be read: {exc or type(exc).__name__}"
            )
        self._last = panel.to_json()
        return self._last

    def _stale(self, error: str) -> dict[str, Any]:
        if self._last is None:
            return {
                "transport": "unknown",
                "endpoints": [],
                "suites": [],
                "stale": True,
                "error": error,
            }
        return {**self._last, "stale": True, "error": error}

    async def reset(self, lab: UemAdmin) -> dict[str, Any]:
        """Reset the UEM's outgoing TLS to the default (restarts its outgoing client)."""
        self.dirty = True
        answer = await lab.uem("POST", RESET_PATH)
        settings = answer.get("settings") if isinstance(answer, Mapping) else None
        unavailable = answer.get("unavailable_for_s") if isinstance(answer, Mapping) else None
        return {
            "is_default": isinstance(settings, Mapping) and settings.get("is_default") is True,
            "unavailable_for_s": (
                float(unavailable)
                if isinstance(unavailable, int | float) and not isinstance(unavailable, bool)
                else 0.0
            ),
        }
