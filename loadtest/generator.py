"""The load generator: simulated phones driven at an open-model rate (or by closed workers).

Responsibility: the I/O of a load run. It builds the population's ``DeviceClient``s, warms the
registered devices up (Provision, FolderSync, Sync: bounded in time and concurrency), then runs
the profile's phases through one ``aiohttp.ClientSession`` (one connection pool), keeps the
held Pings going, fires the profile's events on the lab, samples its own CPU every second and
hands every finished operation to a ``results.Recorder``. It must not judge or print: the
recorder and thresholds judge, the report prints (through the ``on_progress`` callback).

Theory of operation:
- Open model: arrival ``i`` of a phase is due at ``phase_start + i / rate``. The scheduler
  sleeps until then (or dispatches at once when late), records the dispatch lag and starts a
  task; the operation's latency runs from the *due* time, so a target that stalls is charged
  for the requests that queued behind the stall (no coordinated omission). Arrivals beyond
  ``max_in_flight`` are dropped and make the run invalid. An arrival for a warm device takes
  an idle one from a queue; when none is idle it waits, and the wait is part of its latency.
- Closed model: ``concurrency`` workers loop; with an ``interval`` each means to start one
  operation per interval and its latency is recorded with coordinated-omission correction.
- Every operation runs one ``device_sim`` step (``Sync``, ``FolderSync``, ``Provision`` for a
  first access, ``Ping``) under ``asyncio.timeout``; the step's results are classified into an
  ``Outcome`` (ok, provisioning, blocked 403/129/177, http error, timeout, connection error).
- TLS: an ``https://`` target is reached trusting only one root: the profile's
  ``target.tls`` or, for a ready file, the ``tls_root`` the lab wrote (``TlsFiles.load``), set
  on the one connector, so every pooled connection is verified against it. A handshake is
  paid when the pool opens a connection (mostly during warm-up); one opened during a phase is
  part of that operation's latency, as it would be for a phone.
- CPU: ``time.process_time()`` deltas per wall second. The lab may share this process
  (``lab: default``): then the figure covers both, and so does the validity verdict.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import aiohttp
import attrs

from device_sim import (
    DeviceClient,
    DeviceIdentity,
    FolderSync,
    Ping,
    Provision,
    Step,
    Sync,
)
from device_sim.shell import AiohttpTransport, DeviceRunner, DeviceTls, TransportError
from loadtest.profiles import (
    ClosedModel,
    Event,
    Op,
    OpenModel,
    Phase,
    Profile,
    UemState,
    device_id,
    groups,
    mailbox,
)
from loadtest.results import (
    PING,
    DeviceClass,
    Outcome,
    Recorder,
    RunResult,
    Sample,
    WarmUp,
    classify,
)
from loadtest.target import LabControl, Target, TargetError
from simclock import SystemClock

#: A connection failure is retried by a Ping loop after this pause (no hot spinning).
PING_RETRY_PAUSE: Final = 0.5
#: Extra seconds the drain at the end allows beyond the operation timeout.
DRAIN_GRACE: Final = 2.0


def _now() -> float:
    # Not loop.time(): uvloop's is libuv's cached millisecond clock, too coarse for latency.
    return time.perf_counter()


class GeneratorError(RuntimeError):
    """The run cannot start or go on (no device warmed up, an event without a lab...)."""


@attrs.frozen(kw_only=True)
class Progress:
    """A once-a-second snapshot for the live progress line."""

    elapsed: float
    planned: float
    phase: str
    dispatched: int
    finished: int
    in_flight: int
    errors: int
    #: Operations (not held Pings) finished in the last second.
    last_second: int
    #: p99 latency of the last second, microseconds.
    last_p99: int | None
    cpu: float | None
    held_pings: int


@attrs.define(eq=False)
class _Device:
    client: DeviceClient
    device_class: DeviceClass

    @property
    def device_id(self) -> str:
        return self.client.identity.device_id


def identities(profile: Profile, group: str) -> list[DeviceIdentity]:
    """The identities of one population group (versions handed out round-robin)."""
    pop = profile.population
    count = groups(profile)[group]
    return [
        DeviceIdentity(
            user=mailbox(group, n),
            password=pop.password,
            device_id=device_id(group, n),
            device_type=pop.device_type,
            version=pop.versions[(n - 1) % len(pop.versions)],
            model="iPhone15,2",
            os="iOS 17.4",
            user_agent="Apple-iPhone15C2/2104.1",
        )
        for n in range(1, count + 1)
    ]


def interleave(first: list[DeviceIdentity], second: list[DeviceIdentity]) -> list[DeviceIdentity]:
    """Both lists merged so each keeps its share all along (first accesses mix groups)."""
    total = len(first) + len(second)
    out: list[DeviceIdentity] = []
    i = j = 0
    for k in range(1, total + 1):
        # Take from ``first`` while it is behind its share of the first k picks.
        if j >= len(second) or (i < len(first) and i * total < k * len(first)):
            out.append(first[i])
            i += 1
        else:
            out.append(second[j])
            j += 1
    return out


@attrs.define(eq=False)
class Generator:
    """Runs one profile against one target."""

    profile: Profile
    target: Target
    #: The lab's fault controls (None for a lab started elsewhere).
    lab: LabControl | None = None
    on_progress: Callable[[Progress], None] | None = None
    #: Set when the lab runs in this process (CPU figures then include it).
    lab_in_process: bool = False
    _recorder: Recorder | None = attrs.field(default=None, init=False)
    _idle: asyncio.Queue[_Device] = attrs.field(factory=asyncio.Queue, init=False)
    _fresh: collections.deque[_Device] = attrs.field(factory=collections.deque, init=False)
    _in_flight: set[asyncio.Task[None]] = attrs.field(factory=set, init=False)
    _rng: random.Random = attrs.field(factory=random.Random, init=False)
    _phase_name: str = attrs.field(default="warm-up", init=False)
    _held: int = attrs.field(default=0, init=False)
    _transport: AiohttpTransport | None = attrs.field(default=None, init=False)

    async def run(self) -> RunResult:
        """Warm up, run every phase, drain, and return what was measured."""
        profile = self.profile
        if profile.events and self.lab is None:
            raise GeneratorError(
                f"{profile.source}: events: {profile.events[0].label} needs a lab this run "
                "controls; use target: {lab: default} (a lab behind a ready file offers no "
                "fault controls)"
            )
        self._rng.seed(profile.options.seed)
        tls = self.tls()
        pings = profile.held_pings.devices if profile.held_pings else 0
        connector = aiohttp.TCPConnector(
            limit=profile.options.connections + pings,
            ssl=True if tls is None else tls.context,
        )
        timeout = aiohttp.ClientTimeout(total=None, connect=profile.options.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            self._transport = AiohttpTransport(session, self.target.sentry_url, tls=tls)
            warm, pingers, warmup = await self._warm_up()
            for device in warm:
                self._idle.put_nowait(device)
            self._fresh.extend(_Device(DeviceClient(i), c) for i, c in self._first_access_devices())
            return await self._measure(pingers, warmup)

    def tls(self) -> DeviceTls | None:
        """How to reach the target: None for http, else trusting only the configured root.

        Raises ``GeneratorError`` when an https target has no root or a plain one has one,
        and when a file cannot be used (the message names the setting and the file)."""
        files = self.profile.target.tls or self.target.tls
        url = self.target.sentry_url
        if not url.lower().startswith("https://"):
            if self.profile.target.tls is not None:
                raise GeneratorError(
                    f"{self.profile.target.tls.at('ca')}: given, but the target {url} is plain "
                    "http (is this the lab you meant?)"
                )
            return None
        if files is None:
            raise GeneratorError(
                f"{self.profile.source}: target.tls: the target {url} is https; give tls: "
                "{ca: ROOT.pem} (the lab's root; load never trusts the system store)"
            )
        try:
            return files.load()
        except TargetError as exc:
            raise GeneratorError(str(exc)) from None

    # -- warm-up -----------------------------------------------------------------------------

    def _first_access_devices(self) -> list[tuple[DeviceIdentity, DeviceClass]]:
        new = identities(self.profile, "new")
        unregistered = identities(self.profile, "unregistered")
        registered_ids = {i.device_id for i in new}
        return [
            (
                i,
                DeviceClass.REGISTERED
                if i.device_id in registered_ids
                else DeviceClass.UNREGISTERED,
            )
            for i in interleave(new, unregistered)
        ]

    async def _warm_up(self) -> tuple[list[_Device], list[_Device], WarmUp]:
        """Provision, FolderSync and Sync every registered and pinging device (bounded)."""
        wanted = identities(self.profile, "registered") + identities(self.profile, "pinging")
        if not wanted:
            return [], [], WarmUp(devices=0, ready=0, seconds=0.0)
        options = self.profile.options
        gate = asyncio.Semaphore(options.warmup_concurrency)
        ready: list[DeviceIdentity] = []
        clients: dict[str, DeviceClient] = {}
        problems: list[str] = []
        begun = _now()

        async def one(identity: DeviceIdentity) -> None:
            client = clients[identity.device_id] = DeviceClient(identity)
            assert self._transport is not None
            runner = DeviceRunner(
                client, self._transport, SystemClock(), request_timeout=options.timeout
            )
            async with gate:
                report = await runner.run_script((Provision(), FolderSync(), Sync()))
            if report.succeeded:
                ready.append(identity)
            elif report.error is not None:
                problems.append(f"{identity.device_id}: {report.error}")
            else:
                last = report.results[-1] if report.results else None
                problems.append(
                    f"{identity.device_id}: "
                    + (f"{last.label}: {last.summary}" if last else f"ended {report.state.value}")
                )

        tasks = [asyncio.ensure_future(one(i)) for i in wanted]
        try:
            async with asyncio.timeout(options.warmup_timeout):
                await asyncio.gather(*tasks)
        except TimeoutError:
            problems.append(
                f"the warm-up took longer than options.warmup_timeout "
                f"({options.warmup_timeout:g} s)"
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        ready_ids = {i.device_id for i in ready}
        hot = [
            _Device(clients[i.device_id], DeviceClass.REGISTERED)
            for i in wanted
            if i.device_id in ready_ids and not i.device_id.startswith("LTPNG")
        ]
        pingers = [
            _Device(clients[i.device_id], DeviceClass.REGISTERED)
            for i in wanted
            if i.device_id in ready_ids and i.device_id.startswith("LTPNG")
        ]
        warmup = WarmUp(
            devices=len(wanted),
            ready=len(ready),
            seconds=_now() - begun,
            first_error=problems[0] if problems else None,
        )
        needs_hot = any(
            op in (Op.SYNC, Op.FOLDERSYNC)
            for phase in self.profile.phases
            for op, _ in self.profile.phase_workload(phase)
        )
        if (needs_hot and not hot) or (self.profile.held_pings and not pingers):
            raise GeneratorError(
                f"warm-up: none of the {len(wanted)} registered devices became ready against "
                f"{self.target.sentry_url}; first problem: {warmup.first_error or 'unknown'}"
            )
        return hot, pingers, warmup

    # -- the measured run ------------------------------------------------------------------

    async def _measure(self, pingers: list[_Device], warmup: WarmUp) -> RunResult:
        profile = self.profile
        recorder = self._recorder = Recorder(start=_now())
        if self.lab_in_process:
            recorder.note(
                "the lab ran inside the generator's process: the CPU figures and the validity "
                "verdict cover both (use ready_file: for a lab in its own process)"
            )
        if warmup.ready < warmup.devices:
            recorder.note(
                f"warm-up: {warmup.devices - warmup.ready} of {warmup.devices} devices did not "
                f"become ready ({warmup.first_error})"
            )
        stop = asyncio.Event()
        background = [
            asyncio.ensure_future(self._monitor(stop)),
            *(asyncio.ensure_future(self._event(e)) for e in profile.events),
            *(asyncio.ensure_future(self._hold_pings(d, stop)) for d in pingers),
        ]
        try:
            cursor = recorder.start
            for phase in profile.phases:
                self._phase_name = phase.name
                recorder.mark(cursor, f"phase {phase.name}")
                if isinstance(profile.model, OpenModel):
                    await self._open_phase(phase, cursor)
                    cursor += phase.duration
                else:
                    await self._closed_phase(phase, profile.model)
                    cursor = _now()
            self._phase_name = "drain"
            await self._drain()
            ended = _now()
        finally:
            stop.set()
            pinging = background[1 + len(profile.events) :]
            if pinging:
                # Held Pings end by themselves within a heartbeat: dropping them mid-poll
                # would only make the gatekeeper log writes to closed connections.
                assert profile.held_pings is not None
                await asyncio.wait(pinging, timeout=min(profile.held_pings.heartbeat + 1.0, 10.0))
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if self.lab is not None and any(e.uem is UemState.DOWN for e in profile.events):
                # Leave the lab as it was found, whatever the events did.
                await self.lab.set_uem_reachable(True)
        return recorder.finish(
            ended,
            limits=profile.options.limits,
            profile=profile.name,
            model=profile.model.describe(),
            warmup=warmup,
            planned_seconds=profile.duration,
        )

    async def _open_phase(self, phase: Phase, begin: float) -> None:
        recorder = self._recorder
        assert recorder is not None
        rate = self.profile.phase_rate(phase)
        bound = self.profile.phase_bound(phase)
        mix = self.profile.phase_workload(phase)
        end = begin + phase.duration
        cap = self.profile.options.max_in_flight
        for i in range(bound):
            due = begin + i / rate
            if due >= end:
                break
            delay = due - _now()
            # When late, still yield, so finished operations are recorded between dispatches.
            await asyncio.sleep(max(0.0, delay))
            op = self._draw(mix)
            now = _now()
            recorder.record_dispatch(now, due)
            if len(self._in_flight) >= cap:
                self._record(op, "-", DeviceClass.REGISTERED, Outcome.DROPPED, None, due, now, now)
                continue
            self._spawn(self._arrival(op, due))
        remaining = end - _now()
        if remaining > 0:
            await asyncio.sleep(remaining)

    async def _closed_phase(self, phase: Phase, model: ClosedModel) -> None:
        workers = self.profile.phase_concurrency(phase)
        bound = self.profile.phase_bound(phase)
        mix = self.profile.phase_workload(phase)
        end = _now() + phase.duration
        started = 0

        async def worker() -> None:
            nonlocal started
            next_due = _now()
            while started < bound and _now() < end:
                started += 1
                op = self._draw(mix)
                now = _now()
                await self._arrival(op, now, expected_interval=model.interval)
                if model.interval:
                    next_due = max(next_due + model.interval, _now() - model.interval)
                    await asyncio.sleep(max(0.0, min(next_due, end) - _now()))

        await asyncio.gather(*(worker() for _ in range(workers)))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _drain(self) -> None:
        if not self._in_flight:
            return
        limit = self.profile.options.timeout + DRAIN_GRACE
        pending = list(self._in_flight)
        _, still = await asyncio.wait(pending, timeout=limit)
        for task in still:
            task.cancel()
        if still:
            await asyncio.gather(*still, return_exceptions=True)
            assert self._recorder is not None
            self._recorder.note(f"{len(still)} operations were still running after the drain")

    def _draw(self, mix: Iterable[tuple[Op, float]]) -> Op:
        ops: list[Op] = [op for op, _ in mix]
        if len(ops) == 1:
            return ops[0]
        return self._rng.choices(ops, [w for _, w in mix])[0]

    # -- one operation ---------------------------------------------------------------------

    async def _arrival(self, op: Op, due: float, *, expected_interval: float | None = None) -> None:
        if op is Op.FIRST_ACCESS:
            if not self._fresh:
                now = _now()
                assert self._recorder is not None
                self._recorder.note(
                    "the population ran out of unseen devices for first_access: later first "
                    "accesses were skipped (give more new:/unregistered: devices)"
                )
                self._record(
                    op, "-", DeviceClass.UNREGISTERED, Outcome.SKIPPED, None, due, now, now
                )
                return
            device = self._fresh.popleft()
            await self._operate(op, device, Provision(), due, expected_interval)
            return
        if self._idle.empty():
            assert self._recorder is not None
            self._recorder.waited_for_device += 1
        device = await self._idle.get()
        try:
            step: Step = Sync() if op is Op.SYNC else FolderSync()
            await self._operate(op, device, step, due, expected_interval)
        finally:
            self._idle.put_nowait(device)

    async def _operate(
        self,
        op: Op,
        device: _Device,
        step: Step,
        due: float,
        expected_interval: float | None,
    ) -> Outcome:
        assert self._transport is not None
        limit = self.profile.options.timeout
        # The runner's own per-request timeout stays out of the way of the operation's.
        runner = DeviceRunner(
            device.client, self._transport, SystemClock(), request_timeout=2 * limit + 1
        )
        started = _now()
        code: int | None = None
        try:
            async with asyncio.timeout(limit):
                results, ok = await runner.run_step(step)
            outcome, code = classify(results, ok)
        except TimeoutError:
            outcome = Outcome.TIMEOUT
            if device.client.busy:
                device.client.abandon("the load generator's operation timeout", time.time())
        except TransportError:
            outcome = Outcome.CONNECTION_ERROR
        self._record(
            op,
            device.device_id,
            device.device_class,
            outcome,
            code,
            due,
            started,
            _now(),
            expected_interval,
        )
        return outcome

    async def _hold_pings(self, device: _Device, stop: asyncio.Event) -> None:
        assert self.profile.held_pings is not None
        heartbeat = self.profile.held_pings.heartbeat
        while not stop.is_set():
            self._held += 1
            try:
                outcome = await self._operate_ping(device, heartbeat, _now())
            finally:
                self._held -= 1
            if outcome not in (Outcome.OK, Outcome.PROVISIONING):
                await asyncio.sleep(PING_RETRY_PAUSE)

    async def _operate_ping(self, device: _Device, heartbeat: int, due: float) -> Outcome:
        assert self._transport is not None
        limit = self.profile.options.timeout + heartbeat
        runner = DeviceRunner(
            device.client, self._transport, SystemClock(), request_timeout=2 * limit + 1
        )
        code: int | None = None
        try:
            async with asyncio.timeout(limit):
                results, ok = await runner.run_step(Ping(heartbeat=heartbeat))
            outcome, code = classify(results, ok)
        except TimeoutError:
            outcome = Outcome.TIMEOUT
            if device.client.busy:
                device.client.abandon("the load generator's operation timeout", time.time())
        except TransportError:
            outcome = Outcome.CONNECTION_ERROR
        self._record(PING, device.device_id, device.device_class, outcome, code, due, due, _now())
        return outcome

    def _record(
        self,
        op: Op | str,
        device: str,
        device_class: DeviceClass,
        outcome: Outcome,
        code: int | None,
        due: float,
        started: float,
        ended: float,
        expected_interval: float | None = None,
    ) -> None:
        assert self._recorder is not None
        self._recorder.record(
            Sample(
                op=op.value if isinstance(op, Op) else op,
                device_id=device,
                device_class=device_class,
                outcome=outcome,
                code=code,
                intended=due,
                started=started,
                ended=ended,
                expected_interval=expected_interval,
            )
        )

    # -- events and self-measurement -----------------------------------------------------

    async def _event(self, event: Event) -> None:
        recorder = self._recorder
        assert recorder is not None
        assert self.lab is not None
        await asyncio.sleep(max(0.0, recorder.start + event.at - _now()))
        await self.lab.set_uem_reachable(event.uem is UemState.UP)
        recorder.mark(_now(), event.label)

    async def _monitor(self, stop: asyncio.Event) -> None:
        """Every second: the process's CPU share, then a progress snapshot."""
        recorder = self._recorder
        assert recorder is not None
        wall, cpu = _now(), time.process_time()
        tick = 0
        while not stop.is_set():
            tick += 1
            await asyncio.sleep(max(0.0, recorder.start + tick - _now()))
            now_wall, now_cpu = _now(), time.process_time()
            share = (now_cpu - cpu) / max(1e-6, now_wall - wall)
            wall, cpu = now_wall, now_cpu
            recorder.record_cpu(now_wall, share)
            if self.on_progress is not None:
                self.on_progress(self._snapshot(now_wall, share))

    def _snapshot(self, now: float, cpu: float) -> Progress:
        recorder = self._recorder
        assert recorder is not None
        finished = errors = 0
        for name, stats in recorder.ops.items():
            if name != PING:
                finished += stats.finished
                errors += stats.errors
        last = recorder.windows.get(int(now - recorder.start) - 1)
        return Progress(
            elapsed=now - recorder.start,
            planned=self.profile.duration,
            phase=self._phase_name,
            dispatched=recorder.dispatched,
            finished=finished,
            in_flight=len(self._in_flight),
            errors=errors,
            last_second=0 if last is None else sum(last.outcomes.values()),
            last_p99=None if last is None else last.latency.percentile(99.0),
            cpu=cpu,
            held_pings=self._held,
        )


async def run_profile(
    profile: Profile,
    target: Target,
    *,
    lab: LabControl | None = None,
    lab_in_process: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
) -> RunResult:
    """Run ``profile`` against ``target`` and return the result (the one-call API)."""
    generator = Generator(
        profile, target, lab=lab, on_progress=on_progress, lab_in_process=lab_in_process
    )
    return await generator.run()
