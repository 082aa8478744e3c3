"""The scenario runner: a scenario file's steps against a running lab, narrated and checked.

Responsibility: start a lab for a ``Scenario`` (``scenarios.spec``) on a ``ManualClock``, carry
out its steps in order (phones talking EAS to the gatekeeper, UEM administrator calls, clock
advances, faults), check every ``expect:`` against what the lab shows (the phones' last
results, the gatekeeper's admin API, the UEM's ActiveSync devices view, the events of both
since the lab started, counters), narrate each step as it happens, and return a
``ScenarioResult`` that the CLI, the JUnit/JSON/Mermaid writers and the tests read. It must not
decide anything the actors decide, nor compare values itself (``scenarios.runner_checks``
does), nor print (it hands lines to a ``narrate`` callback).

Theory of operation:
- The lab runs on one ``ManualClock``: ``advance: 25h`` moves it, which wakes the UEM's
  compliance-check loop, the gatekeeper's resync loop, report retries and the UEM's push
  retries, all of which sleep on that clock. Network I/O stays real (loopback), so after every
  step the runner *settles*: it waits until no event and no phone exchange has happened for
  ``QUIET_S`` of real time (bounded by ``SETTLE_MAX_S``), then goes on.
- Phones back off on a clock of their own that reads the lab's time but never waits (a busy
  server is retried at once, up to the client's limit): a phone must not move the lab's clock.
- A Ping is held by Exchange until mail arrives or the lab's clock passes the heartbeat, so a
  ``ping:`` step runs in the background; the phone's next step, an expectation about it or the
  end of the scenario waits for it (bounded).
- ``gatekeepers: 2``: the runner starts the extra gatekeepers against the lab's UEM and
  Exchange with ``scenarios.cli_sentry.serve``. ``gatekeeper: push_down`` re-registers a
  gatekeeper with a push URL its admin app refuses, so the UEM's pushes to it fail (and are
  retried on the clock) until ``push_up`` registers the real one again: its cache serves the
  stale decision until a push or a resync gets through.
- A phone with ``client_certificate:`` gets an identity from the lab's CA
  (``Lab.device_identity``) when it is first used and presents it on the gatekeeper's device
  port (mutual TLS); the others trust the lab's root and present nothing.
- Every event of the gatekeeper(s) and the UEM, every phone exchange and every step is kept
  in the result's ``trace`` (the Mermaid sequence diagram is drawn from it).
- A failed expectation is recorded and the scenario goes on; a step that cannot run (an admin
  call refused, the lab failing to start) ends the scenario with an error.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp
import attrs

from device_sim.client import (
    DeviceClient,
    DeviceState,
    FolderSync,
    Options,
    Ping,
    Provision,
    SendMail,
    Settings,
    StepResult,
    Sync,
)
from device_sim.client import Step as ClientStep
from device_sim.shell import AiohttpTransport, DeviceRunner, DeviceTls, ScriptReport, TlsSetupError
from device_sim.wire import DeviceIdentity
from exchange_sim.config import UserConfig
from exchange_sim.faults import FAULTS_PATH as EXCHANGE_FAULTS_PATH
from scenarios.cli_sentry import RunningSentry
from scenarios.cli_sentry import serve as serve_sentry
from scenarios.lab import Lab, LabConfig, LabConfigError, LabError
from scenarios.runner_checks import (
    DeviceSeen,
    Mismatch,
    ObservedEvent,
    check_counter,
    check_device,
    check_events,
    check_gatekeeper,
    check_uem,
    render_mismatch,
)
from scenarios.spec import Scenario, thaw
from scenarios.spec_read import line_index, line_of
from scenarios.spec_steps import (
    AddUser,
    Advance,
    ChangePolicy,
    CheckIn,
    ClearFaults,
    ClientCertificate,
    ComplianceCheck,
    DeviceAction,
    DeviceSpec,
    DeviceStep,
    Expect,
    Fault,
    RecordAction,
    RecordRef,
    Register,
    Resync,
    Say,
    SetFaults,
    SetPosture,
    Step,
    Unregister,
    Window,
)
from sentry_sim.admin import push_path
from sentry_sim.device_list import record_key
from sentry_sim.events import Event as GatekeeperEvent
from sentry_sim.events import EventBus
from sentry_sim.service import Sentry
from simclock import ManualClock
from uem_sim import events as uem_events
from uem_sim.faults import FAULTS_PATH as UEM_FAULTS_PATH

#: Real seconds without any event or phone exchange after which the lab counts as settled.
QUIET_S: Final = 0.03
#: Real seconds a settle may take at most (a busy lab is left to go on after this).
SETTLE_MAX_S: Final = 3.0
#: Real seconds one phone step may take.
DEVICE_STEP_TIMEOUT_S: Final = 20.0
#: Real seconds the runner waits for a held Ping before it gives up on it.
PING_WAIT_S: Final = 5.0
#: Real seconds an extra gatekeeper may take to register with the UEM.
REGISTER_WAIT_S: Final = 5.0
#: The path a disabled push URL ends with (the gatekeeper's admin app answers it 404).
DISABLED_PUSH_PATH: Final = "/uem/push/disabled-by-scenario"
#: How the narration names the servers a fault plan is set on.
_FAULT_NAMES: Final[Mapping[str, str]] = {"uem": "UEM", "exchange": "Exchange"}
#: What a phone in a TLS lab is told when the TLS handshake goes wrong.
CA_HINT: Final = "the scenario's phones trust only the lab's root"
#: ... when the gatekeeper closes the connection on a phone without a client certificate.
NO_CLIENT_CERT_HINT: Final = (
    "the gatekeeper requires a client certificate (lab.tls.client_certificates) and this phone "
    "holds none: give it client_certificate: {user: ..., device_id: ...} under devices:"
)
#: ... when it closes the connection on a phone with one (not from the lab's CA?).
CLIENT_CERT_HINT: Final = (
    "the gatekeeper refused the phone's client certificate in the TLS handshake"
)
#: What a phone runs for each device step.
FIRST_CONNECTION: Final[tuple[ClientStep, ...]] = (Options(), Provision(), FolderSync(), Sync())

Narrate = Callable[[str], None]


class StepError(Exception):
    """A step that cannot run (an admin call refused, an actor that cannot be restarted)."""


@attrs.frozen
class TraceEntry:
    """One thing that happened during a run, for the sequence diagram.

    ``actor``: ``gatekeeper`` (``gatekeeper2``...), ``uem``, ``device`` or ``runner``;
    ``name``: the event's class name, ``exchange`` for a phone's request and answer, or the
    runner's step kind (``say``, ``advance``, ``expect``...)."""

    actor: str
    name: str
    at: float
    fields: Mapping[str, Any]


@attrs.frozen(kw_only=True)
class StepReport:
    """How one step went."""

    index: int
    line: int | None
    kind: str
    title: str
    lines: tuple[str, ...] = ()
    #: Failed checks with the line of each checked field.
    mismatches: tuple[tuple[Mismatch, int | None], ...] = ()
    #: How many checks an ``expect`` step made.
    checks: int = 0
    #: Why the step could not run (the scenario stops there).
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and not self.mismatches

    @property
    def where(self) -> str:
        return f"steps[{self.index}]" + (f" (line {self.line})" if self.line else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "line": self.line,
            "kind": self.kind,
            "title": self.title,
            "passed": self.passed,
            "checks": self.checks,
            "lines": list(self.lines),
            "failures": [dict(m.to_json(), line=line) for m, line in self.mismatches],
            "error": self.error,
        }


@attrs.frozen(kw_only=True)
class ScenarioResult:
    """A scenario's run: every step, the error that stopped it (if any), the trace."""

    name: str
    source: str
    description: str = ""
    tags: tuple[str, ...] = ()
    steps: tuple[StepReport, ...] = ()
    #: Why the scenario could not run to its end (lab start, a step that cannot run).
    error: str | None = None
    duration_s: float = 0.0
    #: Named phones (the diagram's participants) and the number of gatekeepers.
    devices: tuple[str, ...] = ()
    gatekeepers: int = 1
    trace: tuple[TraceEntry, ...] = ()
    #: The gatekeepers' ids (gatekeeper 1 first), to name push targets.
    gatekeeper_ids: tuple[str, ...] = ()
    #: Named phone -> the gatekeeper it talks to.
    device_gatekeepers: Mapping[str, int] = attrs.field(factory=dict)
    #: Gatekeeper record key (``alice/aliceiphone01``) -> named phone.
    record_names: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def passed(self) -> bool:
        return self.error is None and all(s.passed for s in self.steps)

    @property
    def checks(self) -> int:
        return sum(s.checks for s in self.steps)

    @property
    def failures(self) -> tuple[tuple[StepReport, Mismatch, int | None], ...]:
        return tuple((s, m, line) for s in self.steps for m, line in s.mismatches)

    def summary(self) -> str:
        """``PASS mailbox-limit: 12 steps, 9 checks, 1.4 s`` (or FAIL/ERROR with counts)."""
        verdict = "PASS" if self.passed else ("ERROR" if self.error else "FAIL")
        failed = len(self.failures)
        text = f"{verdict} {self.name}: {len(self.steps)} steps, {self.checks} checks"
        if failed:
            text += f", {failed} failed"
        if self.error:
            text += f"; stopped: {self.error}"
        return text + f" ({self.duration_s:.1f} s)"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "tags": list(self.tags),
            "passed": self.passed,
            "error": self.error,
            "checks": self.checks,
            "failed_checks": len(self.failures),
            "duration_s": round(self.duration_s, 3),
            "steps": [s.to_json() for s in self.steps],
        }


class _PhoneClock:
    """The lab's time for a phone, with waits that return at once (see the module docstring)."""

    def __init__(self, clock: ManualClock) -> None:
        self._clock = clock

    def now(self) -> float:
        return self._clock.now()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


@attrs.define(eq=False)
class _Phone:
    spec: DeviceSpec
    runner: DeviceRunner
    last: DeviceSeen | None = None
    ping: asyncio.Task[ScriptReport] | None = None


@attrs.define(eq=False)
class _Gatekeeper:
    """One of the scenario's gatekeepers: the lab's own (number 1) or an extra one."""

    number: int
    sentry: Sentry
    url: str
    admin_url: str
    bus: EventBus
    running: RunningSentry | None = None

    @property
    def actor(self) -> str:
        return "gatekeeper" if self.number == 1 else f"gatekeeper{self.number}"


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def lab_config_for(scenario: Scenario) -> LabConfig:
    """The scenario's lab, with Exchange mailboxes for the users ``add_user`` steps create
    (the UEM learns them at the step; Exchange serves their mail from the start)."""
    config = LabConfig.from_mapping(scenario.lab.to_mapping(), scenario.source)
    added = [s.user for s in scenario.steps if isinstance(s, AddUser)]
    known = {u.name.lower() for u in config.exchange.users}
    extra = tuple(
        UserConfig(u.name, u.email or f"{u.name}@example.com", u.password)
        for u in added
        if u.name.lower() not in known
    )
    if not extra:
        return config
    exchange = attrs.evolve(config.exchange, users=(*config.exchange.users, *extra))
    return attrs.evolve(config, exchange=exchange)


async def run_scenario(
    scenario: Scenario,
    *,
    narrate: Narrate | None = None,
    journal: Path | None = None,
) -> ScenarioResult:
    """Run ``scenario`` in a fresh lab on a ``ManualClock``; never raises for the scenario's
    own failures (they are in the result)."""
    run = _Run(scenario, narrate or (lambda _line: None), journal)
    return await run.execute()


@attrs.define(eq=False)
class _Run:
    """One scenario's run (the imperative shell around the checks)."""

    scenario: Scenario
    narrate: Narrate
    journal: Path | None
    clock: ManualClock = attrs.field(factory=ManualClock)
    lab: Lab | None = None
    gatekeepers: dict[int, _Gatekeeper] = attrs.field(factory=dict)
    phones: dict[str, _Phone] = attrs.field(factory=dict)
    #: Events of gatekeeper 1 and the UEM (what ``expect: events:`` and counters read).
    events: list[ObservedEvent] = attrs.field(factory=list)
    trace: list[TraceEntry] = attrs.field(factory=list)
    reports: list[StepReport] = attrs.field(factory=list)
    #: Where the previous ``expect`` step's event window ended.
    events_mark: int = 0
    #: Bumped by every event and every phone exchange (the settle watches it).
    activity: int = 0
    #: Lines of the step being run (None while the lab starts: start-up is not narrated).
    step_lines: list[str] | None = None
    names_by_key: dict[str, str] = attrs.field(factory=dict)
    emails: dict[str, str] = attrs.field(factory=dict)
    lines: dict[str, int] = attrs.field(factory=dict)
    unsubscribe: list[Callable[[], None]] = attrs.field(factory=list)

    # -- the whole run -------------------------------------------------------------------------
    async def execute(self) -> ScenarioResult:
        started = time.perf_counter()
        scenario = self.scenario
        self.lines = _line_index(scenario.source)
        for name, spec in scenario.devices.items():
            self.names_by_key[record_key(spec.user, spec.device_id)] = name
        self.narrate(f"== {scenario.name} ({scenario.source})")
        for text in scenario.description.strip().splitlines():
            self.narrate(f"   {text}")
        error: str | None = None
        try:
            error = await self._run_in_lab()
        finally:
            for unsubscribe in self.unsubscribe:
                unsubscribe()
        result = ScenarioResult(
            name=scenario.name,
            source=scenario.source,
            description=scenario.description,
            tags=scenario.tags,
            steps=tuple(self.reports),
            error=error,
            duration_s=time.perf_counter() - started,
            devices=tuple(scenario.devices),
            gatekeepers=scenario.gatekeepers,
            trace=tuple(self.trace),
            gatekeeper_ids=tuple(
                self.gatekeepers[n].sentry.gatekeeper_id for n in sorted(self.gatekeepers)
            ),
            device_gatekeepers={n: d.gatekeeper for n, d in scenario.devices.items()},
            record_names=dict(self.names_by_key),
        )
        self.narrate(result.summary())
        return result

    async def _run_in_lab(self) -> str | None:
        try:
            config = lab_config_for(self.scenario)
        except LabConfigError as exc:
            return f"the lab cannot be used: {exc}"
        self.emails = {u.email.lower(): u.name.lower() for u in config.users if u.email}
        lab = Lab(config, clock=self.clock, journal=self.journal, dashboard=False)
        self.lab = lab
        self.unsubscribe.append(lab.bus.subscribe(self._gatekeeper_listener(1)))
        self.unsubscribe.append(lab.uem_events.subscribe(self._on_uem_event))
        try:
            await lab.start()
        except (LabError, OSError) as exc:
            return f"the lab did not start: {exc}"
        try:
            self.gatekeepers[1] = _Gatekeeper(
                1, lab.sentry, lab.sentry_url, lab.sentry_admin_url, lab.bus
            )
            for number in range(2, self.scenario.gatekeepers + 1):
                await self._start_gatekeeper(lab, number)
            await self._settle()
            for step in self.scenario.steps:
                report = await self._run_step(step)
                self.reports.append(report)
                if report.error is not None:
                    return f"{report.where}: {report.error}"
            return None
        finally:
            await self._stop(lab)

    async def _stop(self, lab: Lab) -> None:
        for phone in self.phones.values():
            if phone.ping is not None and not phone.ping.done():
                phone.ping.cancel()
                await asyncio.gather(phone.ping, return_exceptions=True)
        for gatekeeper in self.gatekeepers.values():
            if gatekeeper.running is not None:
                await gatekeeper.running.stop()
        await lab.stop()

    async def _start_gatekeeper(self, lab: Lab, number: int) -> None:
        base = lab.config.sentry
        config = attrs.evolve(
            base,
            gatekeeper_id=f"{base.gatekeeper_id}-{number}" if base.gatekeeper_id else "",
            state_dir=None,
        )
        bus = EventBus()
        self.unsubscribe.append(bus.subscribe(self._gatekeeper_listener(number)))
        # In a ``lab.tls: true`` lab the UEM speaks https only: without the lab's credential and
        # root this gatekeeper could not register (None without TLS: plain http as before).
        tls = lab.new_sentry_tls()
        try:
            running = await serve_sentry(
                config,
                upstream_url=lab.exchange_url,
                uem_url=lab.uem_url,
                clock=self.clock,
                admin_token=lab.admin_token,
                bus=bus,
                host=lab.config.lab.host,
                port=0,
                admin_port=0,
                tls=tls,
            )
        except SystemExit as exc:
            raise LabError(f"gatekeeper {number}: {exc}") from None
        self.gatekeepers[number] = _Gatekeeper(
            number, running.sentry, running.url, running.admin_url, bus, running
        )
        sentry = running.sentry
        async with asyncio.timeout(REGISTER_WAIT_S):
            # Registration emits no gatekeeper event (as in ``Lab.wait_until_registered``): poll.
            while not (sentry.registered and sentry.last_resync_at is not None):  # noqa: ASYNC110
                await asyncio.sleep(0.005)

    # -- observing -----------------------------------------------------------------------------
    def _gatekeeper_listener(self, number: int) -> Callable[[GatekeeperEvent], None]:
        actor = "gatekeeper" if number == 1 else f"gatekeeper{number}"

        def listen(event: GatekeeperEvent) -> None:
            self.activity += 1
            fields = event.to_json()
            name = type(event).__name__
            self.trace.append(TraceEntry(actor, name, event.at, fields))
            if number == 1:
                self.events.append(
                    ObservedEvent(
                        seq=len(self.events), actor="gatekeeper", name=name, fields=fields
                    )
                )
            text = self._gatekeeper_line(name, fields)
            if text:
                prefix = "gatekeeper" if number == 1 else f"gatekeeper {number}"
                self._say(f"{prefix}: {text}")

        return listen

    def _on_uem_event(self, event: uem_events.Event) -> None:
        self.activity += 1
        fields = event.to_dict()
        name = type(event).__name__
        self.trace.append(TraceEntry("uem", name, event.at, fields))
        self.events.append(
            ObservedEvent(seq=len(self.events), actor="uem", name=name, fields=fields)
        )
        text = self._uem_line(name, fields)
        if text:
            self._say(f"UEM: {text}")

    def _on_result(self, phone: str) -> Callable[[StepResult], None]:
        def take(result: StepResult) -> None:
            self.activity += 1
            self.trace.append(
                TraceEntry(
                    "device",
                    "exchange",
                    self.clock.now(),
                    {
                        "device": phone,
                        "command": result.command,
                        "label": result.label,
                        "http_status": result.http_status,
                        "eas_status": result.eas_status,
                        "outcome": result.outcome.value,
                    },
                )
            )
            status = ""
            if (
                result.eas_status is not None
                and f"Status {result.eas_status}" not in result.summary
            ):
                status = f"  Status {result.eas_status}"
            http = f"HTTP {result.http_status}" if result.http_status else "no answer"
            self._say(f"{phone}: {result.label}  {http}{status}  {result.summary}")

        return take

    def _say(self, text: str) -> None:
        if self.step_lines is not None:
            self.step_lines.append(text)

    def _who(self, key: str) -> str:
        return self.names_by_key.get(key.lower(), key)

    def _gatekeeper_line(self, name: str, f: Mapping[str, Any]) -> str:
        who = self._who(str(f.get("record", "")))
        reasons = ", ".join(f.get("reason_names", ())) or "no reasons"
        lines: dict[str, Callable[[], str]] = {
            "DeviceFirstSeen": lambda: f"{who} first seen ({f['device_type']}): UNKNOWN",
            "ReportSent": lambda: f"report of {who}: the UEM answered {f['state']}",
            "ReportFailed": lambda: (
                f"report of {who} failed (attempt {f['attempt']}: {f['error']}); "
                f"retried in {f['retry_in_s']:g} s"
            ),
            "DecisionApplied": lambda: (
                ""
                if f["previous_state"] == f["state"] and f["source"] in ("push", "resync")
                else f"{who}: {f['previous_state']} -> {f['state']} ({reasons}) from {f['source']}"
            ),
            "RecordForgotten": lambda: f"{who} forgotten ({f['source']})",
            "PushReceived": lambda: f"push from the UEM ({f['changes']} change(s))",
            "ResyncCompleted": lambda: (
                f"{f['mode']} resync: {f['changes']} change(s), UEM version {f['version']}"
            ),
            "ResyncFailed": lambda: f"{f['mode']} resync failed: {f['error']}",
            "RequestDenied": lambda: (
                f"{f['command']} of {who} answered by the gatekeeper ({f['why']}): HTTP "
                f"{f['http_status']}"
                + (f" Status {f['eas_status']}" if f.get("eas_status") is not None else "")
            ),
            "WaitTimedOut": lambda: f"{who}: no decision after {f['waited_s']:g} s",
            "UpstreamFailed": lambda: f"{f['command']} of {who}: Exchange failed: {f['error']}",
        }
        make = lines.get(name)
        return make() if make is not None else ""

    def _uem_line(self, name: str, f: Mapping[str, Any]) -> str:
        who = self._who(f"{f.get('mailbox', '')}/{f.get('device_id', '')}")
        lines: dict[str, Callable[[], str]] = {
            "DecisionChanged": lambda: (
                f"{who} removed"
                if f["removed"]
                else f"{who} -> {f['state']} ({', '.join(f['reason_names']) or 'no reasons'})"
            ),
            "AdminChanged": lambda: (
                f"admin: {f['what']} {f['target']}" + (f" ({f['note']})" if f["note"] else "")
            ),
            "PushDelivered": lambda: (
                f"push of {f['records']} record(s) delivered to {f['gatekeeper_id']}"
            ),
            "PushFailed": lambda: (
                f"push to {f['gatekeeper_id']} failed (attempt {f['attempt']}): {f['error']}; "
                f"retried in {f['retry_in']:g} s"
            ),
            "DeviceCheckedIn": lambda: (
                f"{who} checked in" + (" (enrolled)" if f["enrolled"] else "")
            ),
        }
        make = lines.get(name)
        return make() if make is not None else ""

    async def _settle(self) -> None:
        """Wait until nothing happened for ``QUIET_S`` (real time), at most ``SETTLE_MAX_S``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_MAX_S
        seen = self.activity
        while True:
            await asyncio.sleep(QUIET_S)
            if self.activity == seen or loop.time() >= deadline:
                return
            seen = self.activity

    # -- steps ---------------------------------------------------------------------------------
    async def _run_step(self, step: Step) -> StepReport:
        kind, title = _describe(step)
        line = step.line
        self.narrate(f"  [{step.index}] {title}")
        self.trace.append(TraceEntry("runner", kind, self.clock.now(), {"title": title}))
        self.step_lines = []
        mismatches: list[tuple[Mismatch, int | None]] = []
        checks = 0
        error: str | None = None
        try:
            if isinstance(step, Expect):
                checks, found = await self._expect(step)
                mismatches = [(m, line_of(self.lines, m.path) or line) for m in found]
            else:
                await self._act(step)
                await self._settle()
        except (StepError, LabError) as exc:
            error = str(exc)
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        lines = _collapse(self.step_lines)
        self.step_lines = None
        for text in lines:
            self.narrate(f"      {text}")
        if isinstance(step, Expect):
            verdict = "ok" if not mismatches else f"FAILED ({len(mismatches)} of {checks})"
            self.narrate(f"      expect: {checks} check(s) {verdict}")
            for mismatch, where in mismatches:
                for text in _diff(mismatch, where):
                    self.narrate(text)
                self.trace.append(
                    TraceEntry("runner", "failure", self.clock.now(), mismatch.to_json())
                )
        if error is not None:
            self.narrate(f"      ERROR: {error}")
        return StepReport(
            index=step.index,
            line=line,
            kind=kind,
            title=title,
            lines=lines,
            mismatches=tuple(mismatches),
            checks=checks,
            error=error,
        )

    async def _act(self, step: Step) -> None:
        lab = self._lab()
        if isinstance(step, Say):
            return
        if isinstance(step, Advance):
            await self.clock.advance(step.seconds)
            self._say(f"clock: now {_iso(self.clock.now())}")
        elif isinstance(step, DeviceStep):
            await self._device_step(step)
        elif isinstance(step, CheckIn):
            await self._check_in(step)
        elif isinstance(step, RecordAction):
            ref = step.record
            await self._uem_admin(
                "POST",
                f"/api/v1/eas/devices/{_quote(ref.user)}/{_quote(ref.device_id)}/actions",
                {"action": step.action.value, "note": step.note},
            )
            if lab.journal_recorder is not None:
                lab.journal_recorder.on_action(
                    self.clock.now(), ref.user, ref.device_id, step.action, step.note
                )
        elif isinstance(step, SetPosture):
            body = step.posture.to_json()
            if step.last_check_in_days_ago is not None:
                body["last_check_in_days_ago"] = step.last_check_in_days_ago
            ref = step.record
            await self._uem_admin(
                "PATCH", f"/api/v1/admin/devices/{_quote(ref.user)}/{_quote(ref.device_id)}", body
            )
            if lab.journal_recorder is not None:
                lab.journal_recorder.on_checkin(
                    self.clock.now(), ref.user, ref.device_id, step.posture.to_json()
                )
        elif isinstance(step, Register):
            body = {"user": step.record.user, "device_id": step.record.device_id}
            body.update(step.posture.to_json())
            if step.last_check_in_days_ago is not None:
                body["last_check_in_days_ago"] = step.last_check_in_days_ago
            await self._uem_admin("POST", "/api/v1/admin/devices", body)
        elif isinstance(step, Unregister):
            ref = step.record
            await self._uem_admin(
                "DELETE", f"/api/v1/admin/devices/{_quote(ref.user)}/{_quote(ref.device_id)}"
            )
        elif isinstance(step, AddUser):
            user = step.user
            await self._uem_admin(
                "POST",
                "/api/v1/admin/users",
                {"name": user.name, "email": user.email, "password": user.password},
            )
        elif isinstance(step, ChangePolicy):
            await self._uem_admin("PATCH", "/api/v1/admin/policy", thaw(step.changes))
        elif isinstance(step, ComplianceCheck):
            await self._uem_admin("POST", "/api/v1/admin/compliance-check")
        elif isinstance(step, Resync):
            ok = await self._gatekeeper(step.gatekeeper).sentry.resync("incremental")
            self._say("resync " + ("completed" if ok else "failed (the UEM did not answer)"))
        elif isinstance(step, Fault):
            await self._fault(step)
        elif isinstance(step, SetFaults):
            await self._set_faults(step)
        elif isinstance(step, ClearFaults):
            for actor in step.actors:
                await self._fault_admin(actor, "DELETE")
                self._say(f"{_FAULT_NAMES[actor]}: faults cleared")

    def _lab(self) -> Lab:
        if self.lab is None:  # pragma: no cover - steps run only inside a started lab
            raise StepError("the lab is not running")
        return self.lab

    def _gatekeeper(self, number: int) -> _Gatekeeper:
        return self.gatekeepers[number]

    async def _uem_admin(self, method: str, path: str, body: Any = None) -> Any:
        lab = self._lab()
        if not lab.uem_listening:
            raise StepError(f"{method} {path}: the UEM is down (a 'uem: up' step restores it)")
        return await lab.uem(method, path, body)

    async def _fault(self, step: Fault) -> None:
        lab = self._lab()
        if step.actor == "uem":
            await (lab.uem_online() if step.up else lab.uem_offline())
            self._say("UEM " + ("listening again" if step.up else "down: connections refused"))
        elif step.actor == "exchange":
            await (lab.exchange_online() if step.up else lab.exchange_offline())
            self._say("Exchange " + ("listening again" if step.up else "down"))
        else:
            gatekeeper = self._gatekeeper(step.gatekeeper)
            sentry = gatekeeper.sentry
            url = gatekeeper.admin_url + (push_path(sentry) if step.up else DISABLED_PUSH_PATH)
            await self._register_push_url(sentry, url)
            self._say(
                f"gatekeeper {step.gatekeeper}: "
                + ("the UEM's pushes reach it again" if step.up else "the UEM's pushes fail")
            )

    async def _set_faults(self, step: SetFaults) -> None:
        view = await self._fault_admin(step.actor, "PUT", thaw(step.plan))
        plan = view.get("plan") if isinstance(view, dict) else None
        shown = json.dumps(plan, separators=(", ", ": "), sort_keys=True)
        self._say(f"{_FAULT_NAMES[step.actor]}: fault plan set: {shown}")

    async def _fault_admin(self, actor: str, method: str, body: Any = None) -> Any:
        """The fault admin API of the mock UEM or Exchange (docs/faults.md), over HTTP as an
        operator would call it; the route itself is never faulted, so a plan can be replaced
        or cleared whatever it does to other requests."""
        lab = self._lab()
        if actor == "uem":
            if not lab.uem_listening:
                raise StepError(f"{actor} faults: the UEM is down (a 'uem: up' step restores it)")
            url = lab.uem_admin_url + UEM_FAULTS_PATH
        else:
            if not lab.exchange_listening:
                raise StepError(
                    f"{actor} faults: Exchange is down (an 'exchange: up' step restores it)"
                )
            url = lab.exchange_url + EXCHANGE_FAULTS_PATH
        status, data = await self._request(method, url, body)
        if status != 200:
            error = data.get("error", data) if isinstance(data, dict) else data
            raise StepError(f"{method} {url}: HTTP {status}: {error}")
        return data

    async def _register_push_url(self, sentry: Sentry, url: str) -> None:
        lab = self._lab()
        if not lab.uem_listening:
            raise StepError("cannot change a push URL while the UEM is down")
        registered = asyncio.Event()

        def watch(event: uem_events.Event) -> None:
            if isinstance(event, uem_events.GatekeeperRegistered) and event.push_url == url:
                registered.set()

        unsubscribe = lab.uem_events.subscribe(watch)
        try:
            sentry.set_push_url(url)
            async with asyncio.timeout(REGISTER_WAIT_S):
                await registered.wait()
        except TimeoutError:
            raise StepError(f"the UEM did not take the push URL {url}") from None
        finally:
            unsubscribe()

    # -- phones --------------------------------------------------------------------------------
    def _phone(self, name: str) -> _Phone:
        phone = self.phones.get(name)
        if phone is None:
            spec = self.scenario.devices[name]
            gatekeeper = self._gatekeeper(spec.gatekeeper)
            identity = DeviceIdentity(
                user=spec.user,
                password=spec.password,
                device_id=spec.device_id,
                device_type=spec.device_type,
                version=spec.version,
                query_form=spec.query,
                model=spec.model,
                os=spec.os,
                user_agent=spec.user_agent,
                quirks=spec.quirks,
            )
            tls = self._phone_tls(name, spec.client_certificate)
            runner = DeviceRunner(
                DeviceClient(identity),
                AiohttpTransport(self._lab().session, gatekeeper.url, tls=tls),
                _PhoneClock(self.clock),
                on_result=self._on_result(name),
                request_timeout=DEVICE_STEP_TIMEOUT_S,
            )
            phone = self.phones[name] = _Phone(spec, runner)
        return phone

    def _phone_tls(self, name: str, certificate: ClientCertificate | None) -> DeviceTls | None:
        """In a TLS lab: trust only the lab's root and present ``certificate``, issued now by
        the lab's CA (the file was checked to run in a lab that asks for one). None without
        TLS: the phone speaks plain http."""
        lab = self._lab()
        root = lab.tls_root_pem
        if root is None:
            if certificate is not None:
                raise StepError(f"{name}: a client certificate needs a TLS lab (set lab.tls)")
            return None
        try:
            if certificate is None:
                return DeviceTls.from_root(root, ca_hint=CA_HINT, client_hint=NO_CLIENT_CERT_HINT)
            issued = lab.device_identity(certificate.user, certificate.device_id)
            tls = DeviceTls.from_root(
                root, identity=issued, ca_hint=CA_HINT, client_hint=CLIENT_CERT_HINT
            )
        except (LabError, TlsSetupError) as exc:
            raise StepError(f"{name}: TLS: {exc}") from None
        self._say(f"{name} presents a client certificate for {certificate.label}")
        return tls

    async def _finish_ping(self, phone: _Phone) -> bool:
        """Wait (bounded) for a held Ping of ``phone``; False if it is still held."""
        task = phone.ping
        if task is None:
            return True
        try:
            async with asyncio.timeout(PING_WAIT_S):
                report = await asyncio.shield(task)
        except TimeoutError:
            return False
        phone.ping = None
        phone.last = _seen(report)
        return True

    async def _device_step(self, step: DeviceStep) -> None:
        phone = self._phone(step.device)
        if not await self._finish_ping(phone):
            raise StepError(
                f"{step.device}'s Ping is still held by the server; advance the clock past its "
                "heartbeat or deliver mail before its next step"
            )
        if phone.runner.client.state is DeviceState.WIPED:
            self._say(f"{step.device} was wiped: its account is gone, it takes no further steps")
            return
        script = _script(step)
        if step.action is DeviceAction.PING:
            phone.ping = asyncio.get_running_loop().create_task(
                phone.runner.run_script(script), name=f"ping {step.device}"
            )
            await self._settle()
            if phone.ping.done():
                await self._finish_ping(phone)
            else:
                self._say(
                    f"{step.device}: Ping held by the server (heartbeat {step.heartbeat_s} s): "
                    "it returns on new mail or when the clock passes the heartbeat"
                )
            return
        async with asyncio.timeout(DEVICE_STEP_TIMEOUT_S * len(script)):
            report = await phone.runner.run_script(script)
        phone.last = _seen(report)

    async def _check_in(self, step: CheckIn) -> None:
        lab = self._lab()
        spec = self.scenario.devices[step.device]
        body: dict[str, Any] = {"user": spec.user, "device_id": spec.device_id}
        body.update(step.posture.to_json())
        if step.applied_policy_version is not None:
            body["applied_policy_version"] = step.applied_policy_version
        if not lab.uem_listening:
            raise StepError("check-in: the UEM is down")
        url = f"{lab.uem_url}/api/v1/mdm/checkin"
        status, data = await self._request("POST", url, body)
        if status // 100 != 2:
            raise StepError(f"POST {url}: HTTP {status}: {data}")
        if lab.journal_recorder is not None:
            lab.journal_recorder.on_checkin(
                self.clock.now(),
                spec.user,
                spec.device_id,
                step.posture.to_json(),
                step.applied_policy_version,
            )

    async def _request(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        lab = self._lab()
        headers = {"Authorization": f"Bearer {lab.admin_token}"}
        async with lab.session.request(method, url, json=body, headers=headers) as response:
            try:
                data = await response.json(content_type=None)
            except ValueError:
                data = {"error": (await response.text())[:200]}
            return response.status, data

    # -- expectations --------------------------------------------------------------------------
    async def _expect(self, step: Expect) -> tuple[int, list[Mismatch]]:
        found: list[Mismatch] = []
        checks = 0
        for exp in step.devices:
            checks += 1
            phone = self.phones.get(exp.device)
            if phone is not None and not await self._finish_ping(phone):
                found.append(
                    Mismatch(exp.path, "a finished step", "its Ping is still held", exp.device)
                )
                continue
            found += check_device(exp, phone.last if phone is not None else None)
        for gk_exp in step.gatekeeper:
            checks += 1
            record = await self._gatekeeper_record(gk_exp.gatekeeper, gk_exp.record)
            found += check_gatekeeper(gk_exp, record)
        for uem_exp in step.uem:
            checks += 1
            view, problem = await self._uem_record(uem_exp.record)
            if problem:
                found.append(Mismatch(uem_exp.path, "a readable UEM record", problem))
                continue
            found += check_uem(uem_exp, view)
        if step.events:
            start = self.events_mark if step.events_since is Window.PREVIOUS else 0
            window = self.events[start:]
            label = "since the previous expect" if start else "since the lab started"
            for ev_exp in step.events:
                checks += 1
                found += check_events(ev_exp, window, self.emails, label)
        if step.counters:
            values = await self._counters()
            for counter in step.counters:
                checks += 1
                found += check_counter(counter, values.get(counter.name))
        self.events_mark = len(self.events)
        return checks, found

    async def _gatekeeper_record(self, number: int, ref: RecordRef) -> dict[str, Any] | None:
        gatekeeper = self._gatekeeper(number)
        url = f"{gatekeeper.admin_url}/api/devices/{_quote(ref.user)}/{_quote(ref.device_id)}"
        status, data = await self._request("GET", url)
        if status == 404:
            return None
        if status != 200 or not isinstance(data, dict):
            raise StepError(f"GET {url}: HTTP {status}: {data}")
        return data

    async def _uem_record(self, ref: RecordRef) -> tuple[dict[str, Any] | None, str]:
        lab = self._lab()
        if not lab.uem_listening:
            return None, "the UEM is down: its devices view cannot be read"
        path = f"/api/v1/eas/devices/{_quote(ref.user)}/{_quote(ref.device_id)}"
        status, data = await self._request("GET", lab.uem_admin_url + path)
        if status == 404:
            return None, ""
        if status != 200 or not isinstance(data, dict):
            return None, f"GET {path}: HTTP {status}: {data}"
        return data, ""

    async def _counters(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        names = {
            "ReportSent": "reports_sent",
            "ReportFailed": "reports_failed",
            "RequestForwarded": "requests_forwarded",
            "RequestDenied": "requests_denied",
            "ProvisionAnswered": "provisions_answered",
            "DecisionApplied": "decisions_applied",
            "PushReceived": "pushes_received",
            "ResyncCompleted": "resyncs",
            "ResyncFailed": "resyncs_failed",
            "RecordReported": "uem_reports_received",
            "PushDelivered": "uem_pushes_delivered",
        }
        for name in names.values():
            counts[name] = 0
        for event in self.events:
            counted = names.get(event.name)
            if counted is not None:
                counts[counted] += 1
        lab = self._lab()
        status, stats = await self._request("GET", f"{lab.sentry_admin_url}/api/stats")
        if status == 200 and isinstance(stats, dict):
            counts["records"] = int(stats["records"])
            for state, n in stats["by_state"].items():
                counts[str(state)] = int(n)
            counts["reports_in_flight"] = int(stats["reports_in_flight"])
            counts["outbox_pending"] = int(stats["outbox_pending"])
        if lab.uem_listening:
            view = await lab.eas_devices()
            group_counts: Mapping[str, int] = view["counts"]
            counts["uem_records"] = sum(group_counts.values())
            for group, n in group_counts.items():
                counts[f"uem_{group}"] = int(n)
        return counts


def _collapse(lines: Sequence[str]) -> tuple[str, ...]:
    """Runs of one line (a resync every 5 minutes of a 25 h advance) as one line with a count."""
    out: list[str] = []
    run = 0
    for i, text in enumerate(lines):
        run += 1
        if i + 1 < len(lines) and lines[i + 1] == text:
            continue
        out.append(text if run == 1 else f"{text}  (x{run})")
        run = 0
    return tuple(out)


def _line_index(source: str) -> dict[str, int]:
    try:
        return line_index(Path(source).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return {}


def _script(step: DeviceStep) -> tuple[ClientStep, ...]:
    action = step.action
    if action is DeviceAction.CONNECT:
        return FIRST_CONNECTION
    if action is DeviceAction.OPTIONS:
        return (Options(),)
    if action is DeviceAction.PROVISION:
        return (Provision(),)
    if action is DeviceAction.FOLDERSYNC:
        return (FolderSync(),)
    if action is DeviceAction.SYNC:
        return (Sync(step.folders),)
    if action is DeviceAction.PING:
        return (Ping(step.heartbeat_s, step.folders),)
    if action is DeviceAction.SEND_MAIL:
        return (SendMail(to=step.to, subject=step.subject, body=step.body),)
    return (Settings(),)


def _seen(report: ScriptReport) -> DeviceSeen:
    """What a phone's step came to, as ``expect: device:`` checks it."""
    last = report.results[-1] if report.results else None
    state = report.state
    if state is DeviceState.WIPED:
        saw = "wiped"
    elif state is DeviceState.BLOCKED:
        saw = "blocked"
    elif report.error is not None or state is DeviceState.AUTH_FAILED or not report.succeeded:
        saw = "error"
    else:
        saw = "allowed"
    summary = ""
    if last is not None:
        summary = f"{last.label}: HTTP {last.http_status}, {last.summary}"
    if report.error:
        summary = f"{summary}; {report.error}" if summary else report.error
    return DeviceSeen(
        saw=saw,
        http=last.http_status if last is not None and last.http_status else None,
        eas_status=last.eas_status if last is not None else None,
        state=state.value,
        summary=summary,
    )


def _describe(step: Step) -> tuple[str, str]:
    """(kind, one-line title) of a step for the narration and the reports."""
    if isinstance(step, Say):
        return "say", step.text
    if isinstance(step, Advance):
        return "advance", f"advance the clock {step.text}"
    if isinstance(step, DeviceStep):
        extra = ""
        if step.action is DeviceAction.PING:
            extra = f" (heartbeat {step.heartbeat_s} s)"
        elif step.action is DeviceAction.SEND_MAIL:
            extra = f" to {step.to}: {step.subject!r}"
        if step.folders:
            extra += " " + ", ".join(step.folders)
        return step.action.value, f"{step.device}: {step.action.value}{extra}"
    if isinstance(step, CheckIn):
        posture = ", ".join(f"{k}={v}" for k, v in step.posture.to_json().items())
        return "checkin", f"{step.device} checks in with the MDM" + (
            f" ({posture})" if posture else ""
        )
    if isinstance(step, RecordAction):
        note = f" ({step.note})" if step.note else ""
        return step.action.value, f"admin: {step.action.value} {step.record.label}{note}"
    if isinstance(step, SetPosture):
        posture = ", ".join(f"{k}={v}" for k, v in step.posture.to_json().items())
        if step.last_check_in_days_ago is not None:
            posture += (
                f"{', ' if posture else ''}last check-in {step.last_check_in_days_ago:g} d ago"
            )
        return "posture", f"the MDM learns: {step.record.label} {posture}"
    if isinstance(step, Register):
        return "register", f"admin: enrol {step.record.label} with the MDM"
    if isinstance(step, Unregister):
        return "unregister", f"admin: retire {step.record.label} from the MDM"
    if isinstance(step, AddUser):
        return "add_user", f"admin: add user {step.user.name}"
    if isinstance(step, ChangePolicy):
        return "policy", "admin: change the policy: " + ", ".join(step.changes)
    if isinstance(step, ComplianceCheck):
        return "compliance_check", "the UEM runs its compliance check now"
    if isinstance(step, Resync):
        return "resync", f"gatekeeper {step.gatekeeper} resyncs with the UEM now"
    if isinstance(step, Fault):
        if step.actor == "push":
            verb = "work again" if step.up else "fail"
            return "push_" + ("up" if step.up else "down"), (
                f"the UEM's pushes to gatekeeper {step.gatekeeper} {verb}"
            )
        return f"{step.actor}_{'up' if step.up else 'down'}", f"{step.actor}: " + (
            "up" if step.up else "down"
        )
    if isinstance(step, SetFaults):
        return f"{step.actor}_faults", f"{step.actor}: set faults " + ", ".join(
            key for key in step.plan if key != "seed"
        )
    if isinstance(step, ClearFaults):
        return "clear_faults", "clear the faults of " + " and ".join(step.actors)
    assert isinstance(step, Expect)
    return "expect", "expect"


def _diff(mismatch: Mismatch, line: int | None) -> list[str]:
    return render_mismatch(mismatch, line, indent="        ")


def render_failures(result: ScenarioResult) -> list[str]:
    """Every failed check of a result as readable diffs, for summaries and JUnit."""
    out: list[str] = []
    for step, mismatch, line in result.failures:
        out.append(f"{result.source}: {step.where}: {step.title}")
        out += _diff(mismatch, line)
    if result.error:
        out.append(f"{result.source}: stopped: {result.error}")
    return out


async def run_scenarios(
    scenarios: Sequence[Scenario],
    *,
    narrate: Narrate | None = None,
    journal: Path | None = None,
) -> tuple[ScenarioResult, ...]:
    """Run scenarios one after the other, each in its own lab (the journal records the last)."""
    results = []
    for scenario in scenarios:
        results.append(await run_scenario(scenario, narrate=narrate, journal=journal))
    return tuple(results)
