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
import secrets
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import aiohttp
import attrs
import yaml
from aiohttp import web

from device_sim.client import DeviceClient, StepResult
from device_sim.shell import AiohttpTransport, DeviceRunner
from device_sim.wire import DeviceIdentity, QueryForm
from exchange_sim.app import make_app as make_exchange_app
from exchange_sim.config import ConfigError as ExchangeConfigError
from exchange_sim.config import ExchangeConfig, UserConfig
from scenarios.cli_sentry import RunningSentry
from scenarios.cli_sentry import serve as serve_sentry
from scenarios.serving import StartedSite, start_site
from scenarios.whatif import JournalHeader, JournalRecorder
from sentry_sim.config import ConfigError as SentryConfigError
from sentry_sim.config import SentryConfig
from sentry_sim.device_list import record_key
from sentry_sim.events import Event, EventBus
from sentry_sim.service import Sentry
from simclock import Clock, SystemClock
from uem_sim.app import make_app as make_uem_app
from uem_sim.config import UemConfig
from uem_sim.errors import ConfigError as UemConfigError
from uem_sim.events import EventBus as UemEventBus

#: The top-level sections of a lab file.
TOP_LEVEL_KEYS: Final = ("users", "uem", "sentry", "exchange", "lab")
#: The keys of the ``lab:`` section.
LAB_KEYS: Final = (
    "host",
    "sentry_port",
    "sentry_admin_port",
    "uem_port",
    "uem_admin_port",
    "exchange_port",
    "dashboard_port",
)
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
class LabSettings:
    """The ``lab:`` section: where the lab listens (port 0 picks a free port)."""

    host: str = "127.0.0.1"
    sentry_port: int = 0
    sentry_admin_port: int = 0
    uem_port: int = 0
    uem_admin_port: int = 0
    exchange_port: int = 0
    dashboard_port: int = 0

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
        for key in LAB_KEYS[1:]:
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
        return cls(host=host, **ports)


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
    """YAML text to plain data; a syntax error names the file, line and column."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if mark is not None:
            raise LabConfigError(
                f"{source}: line {mark.line + 1}, column {mark.column + 1}: "
                f"not valid YAML: {problem}"
            ) from None
        raise LabConfigError(f"{source}: not valid YAML: {problem}") from None


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

    async def listen(self, api_port: int, admin_port: int) -> None:
        self.api_port = await self._listen(api_port, "uem_port")
        self.admin_port = await self._listen(admin_port, "uem_admin_port")

    async def _listen(self, port: int, name: str) -> int:
        before = set(map(tuple, self.runner.addresses))
        site = web.TCPSite(self.runner, self.host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise LabError(
                f"UEM ({name}): cannot listen on {self.host}:{port}: {exc.strerror or exc}"
            ) from None
        self.sites.append(site)
        fresh = [a for a in map(tuple, self.runner.addresses) if a not in before]
        return int(fresh[0][1]) if fresh else port

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
            )
            runner = web.AppRunner(
                uem_app, handle_signals=False, access_log=None, shutdown_timeout=2.0
            )
            await runner.setup()
            self._uem = _UemServer(runner, settings.host)
            await self._uem.listen(settings.uem_port, settings.uem_admin_port)
            self.uem_listening = True
            await self._start_sentry(settings.sentry_port, settings.sentry_admin_port)
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
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
    def _url(self, port: int) -> str:
        return f"http://{_url_host(self.config.lab.host)}:{port}"

    @property
    def exchange_url(self) -> str:
        if self._exchange is None:
            raise LabError("Exchange is not running")
        return self._url(self._exchange.port)

    @property
    def uem_url(self) -> str:
        return self._url(self._require_uem().api_port)

    @property
    def uem_admin_url(self) -> str:
        return self._url(self._require_uem().admin_port)

    @property
    def sentry_url(self) -> str:
        return self._url(self._require_sentry().device_site.port)

    @property
    def sentry_admin_url(self) -> str:
        return self._url(self._require_sentry().admin_site.port)

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
    ) -> DeviceRunner:
        """A simulated device of ``user`` that talks to the gatekeeper."""
        identity = self.identity(
            user, device_id, version=version, form=form, device_type=device_type, password=password
        )
        return DeviceRunner(
            DeviceClient(identity),
            AiohttpTransport(self.session, self.sentry_url),
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
