"""The lab: Exchange, the UEM and the gatekeeper in one process on loopback, plus its config.

Responsibility: read a lab file (``LabConfig``: the ``users``, ``uem``, ``sentry``,
``exchange`` and ``lab`` sections, each delegated to its actor's ``from_mapping`` so every
error names the file and the key path), start the three servers wired to each other
(``Lab``), and give demos and tests what they need to drive and inspect them: simulated
devices pointed at the gatekeeper, the UEM's admin calls, the gatekeeper's record and events.
It must not decide anything or speak EAS itself: the actors do, and they talk to each other
only over HTTP, exactly as when started one by one.

Theory of operation:
- Start order is the real one: Exchange first (the upstream), then the UEM (API and admin port
  served by one app), then the gatekeeper, which registers its push URL with the UEM and pulls
  the allowed devices at start-up. ``start`` returns once every listener is up and the
  gatekeeper has registered (bounded), so a push can reach it from the first admin action.
- One clock (``simclock``: ``SystemClock`` unless a ``ManualClock`` is passed) and one admin
  token (``secrets.token_urlsafe`` unless given) are shared by all three.
- ``uem_offline`` / ``uem_online`` stop and restart the UEM's listeners on the same ports while
  its app (and state) stays up; open connections are closed, so the gatekeeper sees a real
  outage (connection refused). ``exchange_offline`` / ``exchange_online`` do the same for
  Exchange (its mailboxes stay).
- ``Lab(config, journal=path)`` records a whatif journal (``scenarios.whatif``) of the reports
  the UEM receives while the lab runs.
- ``restart_sentry`` stops the gatekeeper (it persists its device list when it has a state
  directory) and starts a new one on the same ports.
- TLS (``lab.tls: true``, docs/lab-config.md): at start the lab makes a CA hierarchy
  (``labpki.make_hierarchy``: root, intermediate, issuing CA) and one server certificate for
  the lab's host names, and the gatekeeper's device and admin ports and the UEM's API and
  admin ports speak TLS with it (``SentryTls``/``UemTls``; a port's ``certificate: null`` is
  the lab's credential). Servers send the chain up to, not including, the root; every client
  of the lab trusts only the root: the gatekeeper's calls to the UEM, the UEM's pushes to the
  gatekeeper's admin port, the lab's own session and its simulated devices, as a device that
  trusts only its MDM's root would. The root is written to ``root.pem`` (``tls_root_file``,
  or a private temporary directory removed at stop) and named in the ready payload
  (``tls_root``) for ``sentry-sim device --ca``. ``device_identity`` issues client
  certificates for mutual TLS (``lab.tls.client_certificates``). Exchange (the upstream) and
  the live view stay plain http.
- Exchange and the gatekeeper agree on who provisions: in ``activesync_policy_mode: uem`` the
  gatekeeper answers the device's Provision with the UEM's policy, and when the lab's Exchange
  (``provisioning_required: true``, its default) demands a policy key of its own, the
  gatekeeper provisions with Exchange on the device's behalf and swaps the keys. In
  ``pass_through`` mode Exchange's own Provision reaches the device unchanged.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import os
import secrets
import shutil
import ssl
import tempfile
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import aiohttp
import attrs
from aiohttp import web

from device_sim.client import DeviceClient, StepResult
from device_sim.shell import AiohttpTransport, DeviceRunner, DeviceTls
from device_sim.wire import DeviceIdentity, QueryForm
from exchange_sim.app import make_app as make_exchange_app
from exchange_sim.config import ConfigError as ExchangeConfigError
from exchange_sim.config import ExchangeConfig, UserConfig
from labauth import guards_admin
from labpki import (
    ClientCertMode,
    Hierarchy,
    Issued,
    ListenerTls,
    PkiError,
    ServerCredential,
    client_context,
    make_hierarchy,
)
from scenarios import yaml_text
from scenarios.cli_sentry import RunningSentry
from scenarios.cli_sentry import serve as serve_sentry
from scenarios.serving import StartedSite, start_site, warn_if_exposed
from scenarios.whatif import JournalHeader, JournalRecorder
from sentry_sim.config import ConfigError as SentryConfigError
from sentry_sim.config import SentryConfig
from sentry_sim.config import TlsConfig as SentryTlsConfig
from sentry_sim.device_list import record_key
from sentry_sim.events import Event, EventBus
from sentry_sim.service import Sentry
from sentry_sim.tls import SentryTls
from simclock import Clock, SystemClock
from uem_sim.app import make_app as make_uem_app
from uem_sim.config import TlsConfig as UemTlsConfig
from uem_sim.config import UemConfig
from uem_sim.errors import ConfigError as UemConfigError
from uem_sim.events import EventBus as UemEventBus
from uem_sim.tls import UemTls

#: The top-level sections of a lab file.
TOP_LEVEL_KEYS: Final = ("users", "uem", "sentry", "exchange", "lab")
#: The port keys of the ``lab:`` section.
PORT_KEYS: Final = (
    "sentry_port",
    "sentry_admin_port",
    "uem_port",
    "uem_admin_port",
    "exchange_port",
    "dashboard_port",
)
#: The keys of the ``lab:`` section.
LAB_KEYS: Final = ("host", *PORT_KEYS, "tls")
#: The keys of ``lab.tls`` when it is a mapping.
TLS_KEYS: Final = ("enabled", "client_certificates")
#: Name of the lab's CA hierarchy (its certificates' subjects start with it).
HIERARCHY_NAME: Final = "sentry-sim lab"
#: The file the lab writes its root certificate to.
ROOT_FILE_NAME: Final = "root.pem"
#: The path a device appends to ``sentry_url`` (MS-ASHTTP 2.2.1.1.1).
EAS_PATH: Final = "/Microsoft-Server-ActiveSync"
#: Name of the embedded default lab in error messages.
DEFAULT_SOURCE: Final = "embedded default lab (scenarios/labs/default.yaml)"
#: Real seconds ``start`` waits for the gatekeeper to register its push URL with the UEM.
REGISTER_WAIT_S: Final = 5.0
#: DeviceType sent by simulated devices, by the UEM platform of their registered device.
DEVICE_TYPES: Final[Mapping[str, str]] = {
    "ios": "iPhone",
    "android": "Android",
    "windows": "WindowsMail",
}


class LabConfigError(ValueError):
    """A lab file that cannot be used; the message names the file and the key path."""


class LabError(RuntimeError):
    """The lab could not start (a port taken) or an admin call failed; the message says which."""


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@attrs.frozen(kw_only=True)
class LabTls:
    """``lab.tls``: whether the gatekeeper and the UEM speak TLS with the lab's own CA."""

    #: TLS on the gatekeeper's device and admin ports and the UEM's API and admin ports.
    enabled: bool = False
    #: Mutual TLS on the gatekeeper's device port (client certificates from the lab's CA).
    client_certificates: ClientCertMode = ClientCertMode.OFF

    @classmethod
    def from_value(cls, raw: object, source: str) -> LabTls:
        """``false``/``true``/``{enabled: bool, client_certificates: off|optional|required}``."""
        if raw is None or isinstance(raw, bool):
            return cls(enabled=bool(raw))
        if not isinstance(raw, Mapping):
            raise LabConfigError(
                f"{source}: lab.tls: expected true, false or a mapping with "
                f"{', '.join(TLS_KEYS)}, got {_show(raw)}"
            )
        for key in raw:
            if key not in TLS_KEYS:
                raise LabConfigError(
                    f"{source}: lab.tls.{key}: unknown key; expected one of {', '.join(TLS_KEYS)}"
                )
        enabled = raw.get("enabled", True)
        if not isinstance(enabled, bool):
            raise LabConfigError(
                f"{source}: lab.tls.enabled: expected true or false, got {_show(enabled)}"
            )
        mode = raw.get("client_certificates", "off")
        if mode is False:
            mode = "off"  # YAML reads an unquoted off as false
        if not isinstance(mode, str):
            raise LabConfigError(
                f"{source}: lab.tls.client_certificates: expected off, optional or required, "
                f"got {_show(mode)}"
            )
        try:
            client = ClientCertMode.parse(mode, source=source, key="lab.tls.client_certificates")
        except PkiError as exc:
            raise LabConfigError(str(exc)) from None
        if client is not ClientCertMode.OFF and not enabled:
            raise LabConfigError(
                f"{source}: lab.tls.client_certificates: {client.value} needs TLS "
                "(lab.tls.enabled: true)"
            )
        return cls(enabled=enabled, client_certificates=client)


@attrs.frozen(kw_only=True)
class LabSettings:
    """The ``lab:`` section: where the lab listens (port 0 picks a free port), and TLS."""

    host: str = "127.0.0.1"
    sentry_port: int = 0
    sentry_admin_port: int = 0
    uem_port: int = 0
    uem_admin_port: int = 0
    exchange_port: int = 0
    dashboard_port: int = 0
    tls: LabTls = LabTls()

    @classmethod
    def from_mapping(cls, raw: object, source: str) -> LabSettings:
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise LabConfigError(f"{source}: lab: expected a mapping, got {_show(raw)}")
        for key in raw:
            if key not in LAB_KEYS:
                raise LabConfigError(
                    f"{source}: lab.{key}: unknown key; expected one of {', '.join(LAB_KEYS)}"
                )
        host = raw.get("host", "127.0.0.1")
        if not isinstance(host, str) or not _is_address(host):
            raise LabConfigError(
                f"{source}: lab.host: expected an IP address such as 127.0.0.1 or localhost, "
                f"got {_show(host)}"
            )
        ports: dict[str, int] = {}
        for key in PORT_KEYS:
            value = raw.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
                raise LabConfigError(
                    f"{source}: lab.{key}: expected a port 0..65535 (0 = a free port), "
                    f"got {_show(value)}"
                )
            ports[key] = value
        taken: dict[int, str] = {}
        for key, port in ports.items():
            if port and port in taken:
                raise LabConfigError(
                    f"{source}: lab.{key}: port {port} is also lab.{taken[port]}; "
                    "every listener needs its own port"
                )
            taken[port] = key
        return cls(host=host, tls=LabTls.from_value(raw.get("tls"), source), **ports)


def _is_address(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@attrs.frozen(kw_only=True)
class LabConfig:
    """A whole lab: each actor's own config plus where the lab listens."""

    #: Where the config came from (a path, or the embedded default), for messages.
    source: str
    exchange: ExchangeConfig
    uem: UemConfig
    sentry: SentryConfig
    lab: LabSettings

    @property
    def users(self) -> tuple[UserConfig, ...]:
        return self.exchange.users

    def user(self, name: str) -> UserConfig | None:
        """A lab user by login name or SMTP address (case-insensitive)."""
        return self.exchange.user(name)

    @classmethod
    def from_mapping(cls, mapping: object, source: str) -> LabConfig:
        """Validate a lab mapping (as loaded from YAML); ``LabConfigError`` names file and key."""
        if mapping is None:
            mapping = {}
        if not isinstance(mapping, Mapping):
            raise LabConfigError(
                f"{source}: expected a mapping with {', '.join(TOP_LEVEL_KEYS)} at the top "
                f"level, got {_show(mapping)}"
            )
        for key in mapping:
            if key not in TOP_LEVEL_KEYS:
                raise LabConfigError(
                    f"{source}: {key}: unknown top-level key; expected one of "
                    f"{', '.join(TOP_LEVEL_KEYS)}"
                )
        try:
            uem = UemConfig.from_mapping(mapping, source=source)
        except UemConfigError as exc:
            raise LabConfigError(exc.message + (f" ({exc.hint})" if exc.hint else "")) from None
        try:
            exchange = ExchangeConfig.from_mapping(mapping, source=source)
        except ExchangeConfigError as exc:
            raise LabConfigError(str(exc)) from None
        try:
            sentry = SentryConfig.from_mapping(mapping.get("sentry"), source)
        except SentryConfigError as exc:
            raise LabConfigError(str(exc)) from None
        lab = LabSettings.from_mapping(mapping.get("lab"), source)
        lab, sentry = _reconcile_sentry_address(lab, sentry, mapping.get("sentry"), source)
        sentry, uem = _reconcile_tls(lab, sentry, uem, source)
        return cls(source=source, exchange=exchange, uem=uem, sentry=sentry, lab=lab)

    @classmethod
    def load(cls, path: str | Path) -> LabConfig:
        """Read and validate a lab YAML file."""
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise LabConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise LabConfigError(f"{source}: not UTF-8 text: {exc.reason}") from None
        return cls.from_mapping(parse_yaml(text, source), source)

    @classmethod
    def default(cls) -> LabConfig:
        """The embedded default lab (``scenarios/labs/default.yaml``)."""
        return cls.from_mapping(default_lab_mapping(), DEFAULT_SOURCE)


def parse_yaml(text: str, source: str) -> object:
    """YAML text to plain data; a syntax error is a ``LabConfigError`` naming the file, line
    and column (``scenarios.yaml_text`` does the parsing for every loader)."""
    try:
        return yaml_text.parse_yaml(text, source)
    except yaml_text.YamlSyntaxError as exc:
        raise LabConfigError(str(exc)) from None


def default_lab_mapping() -> dict[str, Any]:
    """A fresh copy of the embedded default lab as plain data (tests adjust it)."""
    text = resources.files("scenarios").joinpath("labs/default.yaml").read_text("utf-8")
    data = parse_yaml(text, DEFAULT_SOURCE)
    assert isinstance(data, dict), "the embedded default lab must be a mapping"
    return copy.deepcopy(data)


def _reconcile_sentry_address(
    lab: LabSettings, sentry: SentryConfig, raw: object, source: str
) -> tuple[LabSettings, SentryConfig]:
    """``sentry.host/port/admin_port`` and ``lab.*`` name the same thing: one place wins."""
    section = raw if isinstance(raw, Mapping) else {}
    pairs = (("port", "sentry_port"), ("admin_port", "sentry_admin_port"))
    for sentry_key, lab_key in pairs:
        if sentry_key in section:
            mine, theirs = getattr(lab, lab_key), getattr(sentry, sentry_key)
            if mine and mine != theirs:
                raise LabConfigError(
                    f"{source}: sentry.{sentry_key}: {theirs} contradicts lab.{lab_key} "
                    f"({mine}); give the port in lab.{lab_key} only"
                )
            lab = attrs.evolve(lab, **{lab_key: theirs})
    if "host" in section and sentry.host != lab.host:
        raise LabConfigError(
            f"{source}: sentry.host: a lab binds every actor to lab.host ({lab.host}); "
            f"give the address there, not {_show(sentry.host)}"
        )
    return lab, sentry


def _certificate_names(host: str) -> tuple[str, ...]:
    """The names the lab's server certificate carries: loopback, and ``lab.host`` itself."""
    names = ["localhost", "127.0.0.1", "::1"]
    if host not in ("", "0.0.0.0", "::") and host not in names:
        names.append(host)
    return tuple(names)


def _uem_tls_enabled(uem: UemConfig) -> bool:
    return uem.tls.api.enabled or uem.tls.admin.enabled


def _reconcile_tls(
    lab: LabSettings, sentry: SentryConfig, uem: UemConfig, source: str
) -> tuple[SentryConfig, UemConfig]:
    """``lab.tls: true`` turns on TLS for the ports ``sentry.tls``/``uem.tls`` leave unset.

    A file that configures ``sentry.tls`` or ``uem.tls`` itself keeps its settings (a null
    ``certificate`` is the lab's credential); they need ``lab.tls: true``, which makes the CA.
    """
    if not lab.tls.enabled:
        for on, key in ((sentry.tls.enabled, "sentry.tls"), (_uem_tls_enabled(uem), "uem.tls")):
            if on:
                raise LabConfigError(
                    f"{source}: {key}: TLS in a lab needs lab.tls: true (the lab makes the CA "
                    "and the certificates)"
                )
        return sentry, uem
    mode = lab.tls.client_certificates
    if sentry.tls.enabled:
        if mode is not ClientCertMode.OFF:
            raise LabConfigError(
                f"{source}: lab.tls.client_certificates: sentry.tls is set in this file; give "
                "client_certificates in sentry.tls.device instead"
            )
    else:
        tls = SentryTlsConfig(
            device=ListenerTls(enabled=True, client_certificates=mode),
            admin=ListenerTls(enabled=True),
            trust=sentry.tls.trust,
            source=source,
        )
        sentry = attrs.evolve(sentry, tls=tls)
    if not _uem_tls_enabled(uem):
        port = ListenerTls(enabled=True)
        uem = attrs.evolve(uem, tls=UemTlsConfig(api=port, admin=port))
    return sentry, uem


def _url_host(host: str) -> str:
    """The host part of a URL to reach ``host`` (a wildcard bind is reached on loopback)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


@attrs.define(eq=False)
class _UemServer:
    """The UEM app on two listeners of one runner (API and admin), restartable in place."""

    runner: web.AppRunner
    host: str
    api_port: int = 0
    admin_port: int = 0
    sites: list[web.TCPSite] = attrs.field(factory=list)
    #: The TLS of each listener (None: plain http), kept for ``listen`` after an outage.
    api_ssl: ssl.SSLContext | None = None
    admin_ssl: ssl.SSLContext | None = None
    #: Set once the exposure warning was given (a restart after an outage does not repeat it).
    warned: bool = False

    async def listen(self, api_port: int, admin_port: int) -> None:
        self.api_port = await self._listen(api_port, "uem_port", self.api_ssl)
        self.admin_port = await self._listen(admin_port, "uem_admin_port", self.admin_ssl)
        self.warned = True

    async def _listen(self, port: int, name: str, context: ssl.SSLContext | None) -> int:
        before = set(map(tuple, self.runner.addresses))
        site = web.TCPSite(self.runner, self.host, port, reuse_address=True, ssl_context=context)
        try:
            await site.start()
        except OSError as exc:
            raise LabError(
                f"UEM ({name}): cannot listen on {self.host}:{port}: {exc.strerror or exc}"
            ) from None
        self.sites.append(site)
        fresh = [a for a in map(tuple, self.runner.addresses) if a not in before]
        bound = int(fresh[0][1]) if fresh else port
        if not self.warned:
            # As start_site does. One app serves both ports and the admin guard protects its
            # admin routes on either, so both get the admin wording when the app has a guard.
            warn_if_exposed(self.host, bound, admin=guards_admin(self.runner.app))
        return bound

    async def close_listeners(self) -> None:
        for site in self.sites:
            await site.stop()
        self.sites.clear()
        server = self.runner.server
        if server is not None:
            # Keep-alive connections outlive a stopped listener; close them so every client
            # (the gatekeeper's pooled session too) meets the outage.
            await server.shutdown(0.05)


@attrs.define(eq=False)
class Lab:
    """Every actor of a lab running in this process. Use ``async with Lab(config) as lab``."""

    config: LabConfig
    clock: Clock = attrs.field(factory=SystemClock)
    admin_token: str = attrs.field(factory=lambda: secrets.token_urlsafe(24))
    #: The gatekeeper's event bus (kept across ``restart_sentry``).
    bus: EventBus = attrs.field(factory=EventBus)
    #: The UEM's event bus.
    uem_events: UemEventBus = attrs.field(factory=UemEventBus)
    _exchange: StartedSite | None = attrs.field(default=None, init=False)
    _uem: _UemServer | None = attrs.field(default=None, init=False)
    _sentry: RunningSentry | None = attrs.field(default=None, init=False)
    _session: aiohttp.ClientSession | None = attrs.field(default=None, init=False)
    uem_listening: bool = attrs.field(default=False, init=False)
    #: Serve the trainer's live view (``scenarios.dashboard``) on ``lab.dashboard_port``.
    dashboard: bool = True
    _dashboard: StartedSite | None = attrs.field(default=None, init=False)
    exchange_listening: bool = attrs.field(default=False, init=False)
    #: Where to record a whatif journal of the reports the UEM receives (None: no journal).
    journal: Path | None = None
    #: The journal being recorded (while the lab runs with ``journal``).
    journal_recorder: JournalRecorder | None = attrs.field(default=None, init=False)
    #: Where a TLS lab writes its root certificate (None: ``root.pem`` in a private temporary
    #: directory, removed at stop). ``sentry-sim lab`` puts it next to the ready file.
    tls_root_file: Path | None = None
    #: The lab's CA (``lab.tls: true``; made at start), else None.
    hierarchy: Hierarchy | None = attrs.field(default=None, init=False)
    _credential: ServerCredential | None = attrs.field(default=None, init=False)
    _sentry_tls: SentryTls | None = attrs.field(default=None, init=False)
    _uem_tls: UemTls | None = attrs.field(default=None, init=False)
    _device_tls: DeviceTls | None = attrs.field(default=None, init=False)
    _root_path: Path | None = attrs.field(default=None, init=False)
    _temp_dir: Path | None = attrs.field(default=None, init=False)

    # -- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> Lab:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start Exchange, the UEM, then the gatekeeper; return when all listen."""
        settings = self.config.lab
        try:
            if settings.tls.enabled:
                self._make_pki()
            exchange_app = make_exchange_app(
                self.config.exchange, clock=self.clock, admin_token=self.admin_token
            )
            self._exchange = await self._start_site(
                exchange_app, settings.exchange_port, "Exchange (exchange_port)"
            )
            self.exchange_listening = True
            if self.journal is not None:
                header = JournalHeader.from_config(self.config.uem, self.clock.now())
                try:
                    self.journal_recorder = JournalRecorder.to_file(self.journal, header)
                except OSError as exc:
                    raise LabError(
                        f"journal {self.journal}: cannot write: {exc.strerror or exc}"
                    ) from None
                self.uem_events.subscribe(self.journal_recorder.on_uem_event)
            uem_app = make_uem_app(
                self.config.uem,
                clock=self.clock,
                admin_token=self.admin_token,
                events=self.uem_events,
                tls=self._uem_tls,
            )
            runner = web.AppRunner(
                uem_app, handle_signals=False, access_log=None, shutdown_timeout=2.0
            )
            await runner.setup()
            uem_tls = self._uem_tls
            self._uem = _UemServer(
                runner,
                settings.host,
                api_ssl=None if uem_tls is None else uem_tls.context("api"),
                admin_ssl=None if uem_tls is None else uem_tls.context("admin"),
            )
            await self._uem.listen(settings.uem_port, settings.uem_admin_port)
            self.uem_listening = True
            await self._start_sentry(settings.sentry_port, settings.sentry_admin_port)
            # The lab's own calls (admin APIs, its devices) trust only the lab's root.
            connector = aiohttp.TCPConnector(
                ssl=True if self._device_tls is None else self._device_tls.context
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=30)
            )
            if self.dashboard:
                # Imported here, not at the top: the dashboard imports this module's types.
                from scenarios.dashboard.app import make_dashboard_app

                self._dashboard = await self._start_site(
                    make_dashboard_app(self), settings.dashboard_port, "dashboard (dashboard_port)"
                )
        except BaseException:
            await self.stop()
            raise
        await self.wait_until_registered()

    def _make_pki(self) -> None:
        """The CA, the server credential for the lab's names, both actors' TLS, the root file."""
        try:
            hierarchy = make_hierarchy(HIERARCHY_NAME)
            credential = hierarchy.server_credential(_certificate_names(self.config.lab.host))
        except PkiError as exc:
            raise LabError(f"lab.tls: cannot make the lab's CA: {exc}") from None
        root = hierarchy.root_pem()
        try:
            self._sentry_tls = SentryTls.from_config(
                self.config.sentry, lab_credential=credential, lab_root_pem=root
            )
        except SentryConfigError as exc:
            raise LabError(str(exc)) from None
        try:
            self._uem_tls = UemTls.from_config(
                self.config.uem, lab_credential=credential, lab_root_pem=root
            )
        except UemConfigError as exc:
            raise LabError(exc.message + (f" ({exc.hint})" if exc.hint else "")) from None
        self.hierarchy = hierarchy
        self._credential = credential
        self._device_tls = DeviceTls.from_root(
            root,
            ca_hint="the lab's devices trust only the lab's root (Lab.tls_root_pem)",
            client_hint="the gatekeeper asks for client certificates (lab.tls."
            "client_certificates): give the device one from Lab.device_identity",
        )
        self._root_path = self._write_root(root)

    def _write_root(self, root: bytes) -> Path:
        target = self.tls_root_file
        if target is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="sentry-sim-lab-tls-"))
            target = self._temp_dir / ROOT_FILE_NAME
        tmp = target.with_name(target.name + ".tmp")
        try:
            # A certificate, not a secret: readable, but replaced atomically like the ready file.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            with os.fdopen(fd, "wb") as handle:
                handle.write(root)
            os.replace(tmp, target)
        except OSError as exc:
            raise LabError(
                f"lab.tls: cannot write the root certificate to {target}: {exc.strerror or exc}"
            ) from None
        return target

    async def _start_site(self, app: web.Application, port: int, what: str) -> StartedSite:
        try:
            return await start_site(app, self.config.lab.host, port, shutdown_timeout=2.0)
        except SystemExit as exc:  # start_site's way of saying "port taken"
            raise LabError(f"{what}: {exc}") from None

    async def _start_sentry(self, port: int, admin_port: int) -> None:
        try:
            self._sentry = await serve_sentry(
                self.config.sentry,
                upstream_url=self.exchange_url,
                uem_url=self.uem_url,
                clock=self.clock,
                admin_token=self.admin_token,
                bus=self.bus,
                host=self.config.lab.host,
                port=port,
                admin_port=admin_port,
                tls=self._sentry_tls,
            )
        except SystemExit as exc:
            raise LabError(f"gatekeeper (sentry_port/sentry_admin_port): {exc}") from None

    async def stop(self) -> None:
        """Stop everything that was started (gatekeeper first: it persists on the way out)."""
        if self._dashboard is not None:
            # First: its phones use the session closed next.
            await self._dashboard.stop()
            self._dashboard = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._sentry is not None:
            await self._sentry.stop()
            self._sentry = None
        if self._uem is not None:
            await self._uem.runner.cleanup()
            self._uem = None
            self.uem_listening = False
        if self._exchange is not None:
            await self._exchange.stop()
            self._exchange = None
            self.exchange_listening = False
        if self.journal_recorder is not None:
            self.journal_recorder.close()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
            self._root_path = None

    async def wait_until_registered(self, within: float = REGISTER_WAIT_S) -> bool:
        """Wait (real time, bounded) until the gatekeeper registered its push URL and pulled."""
        sentry = self.sentry
        step = 0.005
        # Registration sets a flag and emits no event, so this polls, briefly and bounded.
        for _ in range(max(1, int(within / step))):
            if sentry.registered and sentry.last_resync_at is not None:
                break
            await asyncio.sleep(step)
        return sentry.registered

    async def uem_offline(self) -> None:
        """Stop the UEM's listeners (its state stays): the gatekeeper meets a real outage."""
        await self._require_uem().close_listeners()
        self.uem_listening = False

    async def uem_online(self) -> None:
        """Listen again on the same UEM ports."""
        uem = self._require_uem()
        if not self.uem_listening:
            await uem.listen(uem.api_port, uem.admin_port)
            self.uem_listening = True

    async def exchange_offline(self) -> None:
        """Stop Exchange's listener (its mailboxes stay): the gatekeeper meets a real outage."""
        if self._exchange is None:
            raise LabError("the lab is not running (use 'async with Lab(config)')")
        for site in list(self._exchange.runner.sites):
            await site.stop()
        server = self._exchange.runner.server
        if server is not None:
            # As for the UEM: pooled keep-alive connections must meet the outage too.
            await server.shutdown(0.05)
        self.exchange_listening = False

    async def exchange_online(self) -> None:
        """Listen again on Exchange's port."""
        if self._exchange is None:
            raise LabError("the lab is not running (use 'async with Lab(config)')")
        if not self.exchange_listening:
            site = web.TCPSite(
                self._exchange.runner, self.config.lab.host, self._exchange.port, reuse_address=True
            )
            try:
                await site.start()
            except OSError as exc:
                raise LabError(
                    f"Exchange: cannot listen again on port {self._exchange.port}: "
                    f"{exc.strerror or exc}"
                ) from None
            self.exchange_listening = True

    async def restart_sentry(self) -> None:
        """Stop the gatekeeper (persisting its list if it has a state dir) and start a new one
        on the same ports, with the same bus, clock and token."""
        running = self._require_sentry()
        ports = (running.device_site.port, running.admin_site.port)
        await running.stop()
        self._sentry = None
        await self._start_sentry(*ports)
        if self.uem_listening:
            await self.wait_until_registered()

    def _require_uem(self) -> _UemServer:
        if self._uem is None:
            raise LabError("the lab is not running (use 'async with Lab(config)')")
        return self._uem

    def _require_sentry(self) -> RunningSentry:
        if self._sentry is None:
            raise LabError("the lab is not running (use 'async with Lab(config)')")
        return self._sentry

    # -- addresses -------------------------------------------------------------------------
    def _url(self, port: int, *, secure: bool = False) -> str:
        scheme = "https" if secure else "http"
        return f"{scheme}://{_url_host(self.config.lab.host)}:{port}"

    @property
    def exchange_url(self) -> str:
        if self._exchange is None:
            raise LabError("Exchange is not running")
        return self._url(self._exchange.port)

    @property
    def uem_url(self) -> str:
        uem = self._require_uem()
        return self._url(uem.api_port, secure=uem.api_ssl is not None)

    @property
    def uem_admin_url(self) -> str:
        uem = self._require_uem()
        return self._url(uem.admin_port, secure=uem.admin_ssl is not None)

    @property
    def sentry_url(self) -> str:
        tls = self._sentry_tls
        secure = tls is not None and tls.device is not None
        return self._url(self._require_sentry().device_site.port, secure=secure)

    @property
    def sentry_admin_url(self) -> str:
        tls = self._sentry_tls
        secure = tls is not None and tls.admin is not None
        return self._url(self._require_sentry().admin_site.port, secure=secure)

    # -- TLS -------------------------------------------------------------------------------
    @property
    def tls_root_pem(self) -> bytes | None:
        """The root certificate (PEM) every client of a TLS lab trusts; None without TLS."""
        return None if self.hierarchy is None else self.hierarchy.root_pem()

    @property
    def tls_root_path(self) -> Path | None:
        """Where the root certificate was written (``tls_root`` of the ready payload)."""
        return self._root_path

    @property
    def sentry_tls(self) -> SentryTls | None:
        """The running gatekeeper's TLS (its swappable contexts), None without TLS."""
        return self._sentry_tls

    @property
    def uem_tls(self) -> UemTls | None:
        """The UEM's TLS (its swappable contexts), None without TLS."""
        return self._uem_tls

    def new_sentry_tls(self) -> SentryTls | None:
        """TLS for one more gatekeeper against this lab (``sentry.tls`` with the lab's
        credential and root: fresh contexts, so a certificate swap on one does not touch the
        other); None without TLS."""
        if self._credential is None:
            return None
        try:
            return SentryTls.from_config(
                self.config.sentry, lab_credential=self._credential, lab_root_pem=self.tls_root_pem
            )
        except SentryConfigError as exc:
            raise LabError(str(exc)) from None

    def client_context(self, identity: Issued | None = None) -> ssl.SSLContext:
        """A client context that trusts only the lab's root (with ``identity`` for mTLS)."""
        root = self._require_tls()
        return client_context(root, identity=identity)

    def device_identity(self, user: str, device_id: str | None = None) -> Issued:
        """A client certificate from the lab's CA for mutual TLS: CN=``user`` and, with
        ``device_id``, the SAN URI ``urn:sentry-sim:device:<device_id>`` (without it, any
        device of that user matches). Give it to ``device(..., client_certificate=...)``."""
        self._require_tls()
        assert self.hierarchy is not None
        try:
            return self.hierarchy.device_identity(user, device_id)
        except PkiError as exc:
            raise LabError(f"device identity: {exc}") from None

    def _require_tls(self) -> bytes:
        root = self.tls_root_pem
        if root is None:
            raise LabError("the lab runs without TLS (set lab.tls: true in the lab file)")
        return root

    @property
    def sentry(self) -> Sentry:
        """The running gatekeeper (in-process: its device list, outbox and config)."""
        return self._require_sentry().sentry

    @property
    def dashboard_url(self) -> str:
        """The live view (open it with ``?token=<admin_token>``)."""
        if self._dashboard is None:
            raise LabError("the dashboard is not running (Lab(..., dashboard=True))")
        return self._dashboard.url

    def ready_payload(self) -> dict[str, str]:
        """The ready-file keys (DESIGN.md section 5), URLs without a trailing slash."""
        extra = {"dashboard_url": self.dashboard_url} if self._dashboard is not None else {}
        if self._root_path is not None:
            # Not one of DESIGN.md's keys: the root PEM for `sentry-sim device --ca`.
            extra["tls_root"] = str(self._root_path)
        return {
            **extra,
            "sentry_url": self.sentry_url,
            "sentry_admin_url": self.sentry_admin_url,
            "uem_url": self.uem_url,
            "uem_admin_url": self.uem_admin_url,
            "exchange_url": self.exchange_url,
            "admin_token": self.admin_token,
        }

    # -- devices ---------------------------------------------------------------------------
    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise LabError("the lab is not running (use 'async with Lab(config)')")
        return self._session

    def identity(
        self,
        user: str,
        device_id: str,
        *,
        version: str = "16.1",
        form: QueryForm = QueryForm.PLAIN,
        device_type: str | None = None,
        password: str | None = None,
    ) -> DeviceIdentity:
        """A device identity for a lab user (password from the lab file unless given).

        The DeviceType follows the platform of the UEM-registered device of that id, so a
        registered Android phone says ``Android``."""
        if password is None:
            known = self.config.user(user)
            if known is None:
                names = ", ".join(u.name for u in self.config.users)
                raise LabError(f"no lab user {user!r} (the lab has {names}); give a password")
            password = known.password
        registered = next((d for d in self.config.uem.devices if d.device_id == device_id), None)
        model = registered.posture.model if registered is not None else None
        if device_type is None:
            platform = registered.posture.platform.lower() if registered is not None else "ios"
            device_type = DEVICE_TYPES.get(platform, "SmartPhone")
            if model and model.startswith("iPad"):
                device_type = "iPad"
        return DeviceIdentity(
            user=user,
            password=password,
            device_id=device_id,
            device_type=device_type,
            version=version,
            query_form=form,
            model=model or "Simulated Phone",
        )

    def device(
        self,
        user: str,
        device_id: str,
        *,
        version: str = "16.1",
        form: QueryForm = QueryForm.PLAIN,
        device_type: str | None = None,
        password: str | None = None,
        on_result: Callable[[StepResult], None] | None = None,
        request_timeout: float = 10.0,
        client_certificate: Issued | None = None,
    ) -> DeviceRunner:
        """A simulated device of ``user`` that talks to the gatekeeper.

        In a TLS lab it trusts only the lab's root; ``client_certificate`` (from
        ``device_identity``) is presented for mutual TLS."""
        identity = self.identity(
            user, device_id, version=version, form=form, device_type=device_type, password=password
        )
        tls = self._device_tls
        if client_certificate is not None:
            root = self._require_tls()
            assert tls is not None
            tls = DeviceTls.from_root(
                root,
                identity=client_certificate,
                ca_hint=tls.ca_hint,
                client_hint=tls.client_hint,
            )
        return DeviceRunner(
            DeviceClient(identity),
            AiohttpTransport(self.session, self.sentry_url, tls=tls),
            self.clock,
            on_result=on_result,
            request_timeout=request_timeout,
        )

    # -- admin calls -----------------------------------------------------------------------
    async def _call(
        self, method: str, url: str, body: Mapping[str, Any] | None = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        async with self.session.request(method, url, json=body, headers=headers) as response:
            status = response.status
            try:
                data = await response.json(content_type=None)
            except ValueError:
                data = {"error": (await response.text())[:200]}
        return status, data

    async def _admin(self, method: str, url: str, body: Mapping[str, Any] | None = None) -> Any:
        status, data = await self._call(method, url, body)
        if status // 100 != 2:
            error = data.get("error", data) if isinstance(data, dict) else data
            hint = data.get("hint", "") if isinstance(data, dict) else ""
            raise LabError(
                f"{method} {url}: HTTP {status}: {error}" + (f" ({hint})" if hint else "")
            )
        return data

    async def uem(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """Call the UEM's admin API (``path`` like ``/api/v1/eas/devices``); JSON back."""
        return await self._admin(method, self.uem_admin_url + path, body)

    async def admin_action(
        self, user: str, device_id: str, action: str, note: str = ""
    ) -> dict[str, Any]:
        """UEM admin action on an ActiveSync record: allow, block, wipe, remove or clear."""
        path = f"/api/v1/eas/devices/{user}/{device_id}/actions"
        result: dict[str, Any] = await self.uem("POST", path, {"action": action, "note": note})
        return result

    async def set_posture(self, user: str, device_id: str, **posture: Any) -> dict[str, Any]:
        """Change a registered device's posture in the UEM (compromised, os_version...)."""
        result: dict[str, Any] = await self.uem(
            "PATCH", f"/api/v1/admin/devices/{user}/{device_id}", posture
        )
        return result

    async def uem_explain(self, user: str, device_id: str) -> dict[str, Any]:
        """The UEM's explanation of its decision for (user, device)."""
        result: dict[str, Any] = await self.uem(
            "GET", f"/api/v1/eas/devices/{user}/{device_id}/explain"
        )
        return result

    async def eas_devices(self) -> dict[str, Any]:
        """The UEM's ActiveSync devices view (five groups, with counts)."""
        result: dict[str, Any] = await self.uem("GET", "/api/v1/eas/devices")
        return result

    async def sentry_record(self, user: str, device_id: str) -> dict[str, Any] | None:
        """The gatekeeper's explanation of its record (None when it has none)."""
        url = f"{self.sentry_admin_url}/api/devices/{user}/{device_id}"
        status, data = await self._call("GET", url)
        if status == 404:
            return None
        if status != 200 or not isinstance(data, dict):
            raise LabError(f"GET {url}: HTTP {status}: {data}")
        return data

    async def sentry_events(self, limit: int = 2000) -> list[dict[str, Any]]:
        """The gatekeeper's latest events (JSON), through its admin API."""
        data = await self._admin("GET", f"{self.sentry_admin_url}/api/events?limit={limit}")
        events: list[dict[str, Any]] = data["events"]
        return events

    async def deliver_mail(self, to: str, subject: str, body: str = "") -> None:
        """Put a message in a mailbox through Exchange's admin API (wakes held Pings)."""
        await self._admin(
            "POST",
            f"{self.exchange_url}/admin/mail",
            {"to": to, "subject": subject, "body": body, "from": "helpdesk@example.com"},
        )

    def sentry_state(self, user: str, device_id: str) -> str | None:
        """The gatekeeper's cached state of (user, device), read in-process; None if unknown."""
        record = self.sentry.devices.get(record_key(user, device_id))
        return None if record is None else record.state.value

    async def wait_for_sentry_state(
        self, user: str, device_id: str, state: str, *, within: float = 5.0
    ) -> None:
        """Wait (real time) until the gatekeeper caches ``state`` for (user, device)."""
        key = record_key(user, device_id)
        touched = asyncio.Event()

        def watch(event: Event) -> None:
            if event.record == key:
                touched.set()

        unsubscribe = self.bus.subscribe(watch)
        try:
            async with asyncio.timeout(within):
                while self.sentry_state(user, device_id) != state:
                    await touched.wait()
                    touched.clear()
        except TimeoutError:
            now = self.sentry_state(user, device_id)
            raise LabError(
                f"the gatekeeper's record {user}/{device_id} is {now or 'absent'}, "
                f"not {state}, after {within:g} s"
            ) from None
        finally:
            unsubscribe()
