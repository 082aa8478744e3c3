"""The gatekeeper's imperative shell: wires the cores to the clock, the UEM, SQLite and events.

Responsibility: own one gatekeeper's running state (device list, gate, policy gate, outbox,
upstream forwarder, event bus) and carry out what the cores ask for: queue reports, wake the
requests waiting on a record, apply the fallback when the UEM fails, run the start-up pull, the
periodic resync and the periodic persistence, take pushes, and provision with the upstream on a
device's behalf when the upstream demands it (uem policy mode). Every step emits its event. It
must not make access decisions itself (``gate.py`` does) nor build HTTP responses
(``handlers.py``).

Theory of operation: requests of an UNKNOWN record wait on one future per record, raced
against the injected clock; whatever changes the record (a report answer, a push, a resync, a
failed report's fallback, a removal) resolves and drops the future, so 20 waiting requests
cost one report and one wake-up. Background loops sleep on the clock, so a ``ManualClock``
drives resyncs and persistence deterministically in tests and in the lab. Provisioning with the
upstream runs once per record however many of its requests meet the demand at the same time:
the first starts a task, the others await the same task; a request that meets the demand after
a new upstream key was stored just uses that key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import ssl
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, Final

import attrs

from activesync.commands.provision import ProvisionDoc
from activesync.query import EasRequest
from sentry_sim.config import SentryConfig
from sentry_sim.device_list import DeviceList, State
from sentry_sim.events import (
    DecisionApplied,
    DeviceListLoaded,
    DeviceListPersisted,
    Event,
    EventBus,
    PushReceived,
    RecordForgotten,
    ReportFailed,
    ReportQueued,
    ReportSent,
    ResyncCompleted,
    ResyncFailed,
    UpstreamProvisioned,
    WaitTimedOut,
)
from sentry_sim.gate import Access, Change, Gate, Outcome, ReportDevice, Wait, decision_keys
from sentry_sim.policy_gate import PolicyGate, settings_doc
from sentry_sim.store import Store
from sentry_sim.uem_client import Outbox, UemClient, UemUnavailable
from sentry_sim.upstream import Forwarder, UpstreamAnswer, UpstreamUnavailable
from sentry_sim.upstream_policy import (
    CARRIED_HEADERS,
    DeviceInformationBook,
    Phase,
    UpstreamKeys,
    ack_body,
    initial_body,
    provision_line,
    read_phase,
)
from simclock import Clock
from uem_sim.contract import (
    ActiveSyncPolicy,
    DecisionMessage,
    PushMessage,
    RegisterGatekeeper,
    ReportRequest,
    reason_names,
)

logger = logging.getLogger(__name__)

#: Seconds between attempts to register the push URL while the UEM is unreachable.
REGISTER_RETRY_S = 5.0

#: Seconds allowed for each of the two Provision requests the gatekeeper sends upstream.
UPSTREAM_PROVISION_TIMEOUT_S: Final = 30.0


@attrs.frozen
class UpstreamProvisioning:
    """How provisioning with the upstream on a device's behalf went."""

    #: The upstream's final policy key, or None when provisioning failed.
    key: int | None
    #: What happened, in words (for the event and the logs).
    detail: str
    #: The upstream's own refusal (401, 403, 5xx...) when it gave one: the device gets it.
    answer: UpstreamAnswer | None = None
    #: The upstream could not be reached at all.
    unreachable: bool = False


@attrs.define(eq=False)
class Sentry:
    """One running gatekeeper."""

    config: SentryConfig
    clock: Clock
    bus: EventBus
    store: Store
    gate: Gate
    policy: PolicyGate
    uem: UemClient
    forwarder: Forwarder
    gatekeeper_id: str
    #: Secret path segment of the push URL (the UEM authenticates by knowing it).
    push_secret: str
    outbox: Outbox = attrs.field(init=False)
    #: The UEM change version this cache is current with (the next resync's ``since``).
    uem_version: int = 0
    #: None until the UEM was first asked; then whether the last call got an answer.
    uem_reachable: bool | None = None
    started_at: float = 0.0
    last_resync_at: float | None = None
    push_url: str | None = None
    registered: bool = False
    #: uem policy mode: the upstream's final policy key of each record.
    upstream_keys: UpstreamKeys = attrs.field(factory=UpstreamKeys)
    #: uem policy mode: the DeviceInformation each device gave in its Provision.
    device_information: DeviceInformationBook = attrs.field(factory=DeviceInformationBook)
    _waiters: dict[str, asyncio.Future[None]] = attrs.field(factory=dict)
    _tasks: set[asyncio.Task[Any]] = attrs.field(factory=set)
    _upstream_runs: dict[str, asyncio.Task[UpstreamProvisioning]] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        self.outbox = Outbox(
            self.uem,
            self.store,
            self.clock,
            on_answer=self._report_answered,
            on_failure=self._report_failed,
            initial_delay_s=self.config.report_retry_initial_s,
            max_delay_s=self.config.report_retry_max_s,
        )

    @classmethod
    def create(
        cls,
        config: SentryConfig,
        *,
        upstream_url: str,
        uem_url: str,
        clock: Clock,
        bus: EventBus | None = None,
        policy_key_secret: str | None = None,
        client_tls: ssl.SSLContext | None = None,
    ) -> Sentry:
        """``policy_key_secret`` (hex) overrides the stored one: worker processes share it, so
        a policy key one worker issued is valid at every other (``sentry.workers``)."""
        store = Store.open(config.state_dir)
        gatekeeper_id = (
            config.gatekeeper_id or store.get("gatekeeper_id") or (f"sentry-{secrets.token_hex(4)}")
        )
        store.put("gatekeeper_id", gatekeeper_id)
        secret_hex = policy_key_secret or store.get("policy_key_secret") or secrets.token_hex(32)
        store.put("policy_key_secret", secret_hex)
        push_secret = store.get("push_secret") or secrets.token_urlsafe(24)
        store.put("push_secret", push_secret)
        fallback = settings_doc(
            config.default_activesync_policy, "sentry.default_activesync_policy"
        )
        policy = PolicyGate(bytes.fromhex(secret_hex), fallback)
        gate = Gate(
            DeviceList(),
            policy_mode=config.activesync_policy_mode,
            unreachable=config.uem_unreachable,
            first_access_wait_s=config.first_access_wait_s,
            key_check=policy.check,
        )
        return cls(
            config=config,
            clock=clock,
            bus=bus or EventBus(),
            store=store,
            gate=gate,
            policy=policy,
            uem=UemClient(uem_url, timeout_s=config.uem_timeout_s, ssl_context=client_tls),
            forwarder=Forwarder(
                upstream_url,
                connect_timeout_s=config.upstream_connect_timeout_s,
                ssl_context=client_tls,
            ),
            gatekeeper_id=gatekeeper_id,
            push_secret=push_secret,
        )

    @property
    def devices(self) -> DeviceList:
        return self.gate.devices

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Open sessions, reload the persisted state, start the background loops."""
        self.started_at = self.clock.now()
        await self.uem.open()
        await self.forwarder.open()
        self._load()
        self._spawn(self._resync_loop(), "resync loop")
        if self.store.persistent:
            self._spawn(self._persist_loop(), "persist loop")

    async def stop(self) -> None:
        """Stop loops and reports (they stay in the outbox), persist, close everything."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.outbox.close()
        if self.store.persistent:
            await self.persist()
        await self.uem.close()
        await self.forwarder.close()
        self.store.close()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _load(self) -> None:
        rows = self.store.load_devices()
        loaded = self.devices.load(rows)
        for name, value in self.store.items("policy."):
            version = int(name.removeprefix("policy."))
            self._learn(ActiveSyncPolicy(version=version, settings=json.loads(value)), save=False)
        resumed = self.outbox.resume()
        for key in resumed:
            self.devices.start_report(key)
        upstream_keys = self.upstream_keys.load(self.store.upstream_keys())
        self.emit(
            DeviceListLoaded(
                at=self.clock.now(),
                records=loaded,
                pending_reports=len(resumed),
                upstream_keys=upstream_keys,
            )
        )

    def emit(self, event: Event) -> None:
        self.bus.emit(event)

    # -- requests --------------------------------------------------------------------------
    def queue_report(self, report: ReportDevice) -> None:
        """Carry out the gate's ``ReportDevice``: persist it and start delivering it."""
        message = ReportRequest(
            gatekeeper_id=self.gatekeeper_id,
            user=report.user,
            device_id=report.device_id,
            device_type=report.device_type,
            protocol_version=report.protocol_version,
            user_agent=report.user_agent[:1024],
            seen_at=report.seen_at,
            correlation_id=report.request_id,
        )
        self.outbox.submit(report.key, message)
        self.emit(ReportQueued(at=report.seen_at, request_id=report.request_id, record=report.key))

    async def wait_for_decision(self, access: Access, until: float) -> Outcome:
        """Hold a request of an UNKNOWN record until it is decided, or apply the fallback."""
        started = self.clock.now()
        while True:
            now = self.clock.now()
            record = self.devices.get(access.key)
            if record is None:
                # The UEM removed the record meanwhile: this is a first access again.
                admission = self.gate.admit(access, now)
                if admission.report is not None:
                    self.queue_report(admission.report)
                outcome = admission.outcome
                if not isinstance(outcome, Wait):
                    return outcome
                record = admission.record
            if record.state is not State.UNKNOWN:
                return self.gate.evaluate(record, access, now)
            remaining = until - now
            if remaining <= 0:
                break
            await self._park(access.key, remaining)
        now = self.clock.now()
        self.emit(
            WaitTimedOut(
                at=now, request_id=access.request_id, record=access.key, waited_s=now - started
            )
        )
        applied, outcome = self.gate.wait_expired(access, now)
        if applied is not None:
            self._changed([Change(access.key, applied)], "fallback", access.request_id)
        return outcome

    async def _park(self, key: str, seconds: float) -> None:
        # One future per record, shared by its waiting requests (never cancelled by one of
        # them leaving), raced against one timer task on the injected clock. Plain done
        # callbacks instead of asyncio.wait + gather: a third of the cost, and every request
        # of a first-access storm parks once.
        loop = asyncio.get_running_loop()
        woken = self._waiters.get(key)
        if woken is None:
            woken = self._waiters[key] = loop.create_future()
        timer = loop.create_task(self.clock.sleep(seconds))
        either: asyncio.Future[None] = loop.create_future()

        def settle(_done: asyncio.Future[None]) -> None:
            if not either.done():
                either.set_result(None)

        woken.add_done_callback(settle)
        timer.add_done_callback(settle)
        try:
            await either
        finally:
            woken.remove_done_callback(settle)
            if not timer.done():
                timer.remove_done_callback(settle)
                timer.cancel()

    def _wake(self, key: str) -> None:
        woken = self._waiters.pop(key, None)
        if woken is not None and not woken.done():
            woken.set_result(None)

    # -- provisioning with the upstream (uem policy mode) -----------------------------------
    async def provision_upstream(
        self,
        access: Access,
        eas: EasRequest,
        device_headers: Mapping[str, str],
        raw_path: str,
        used_key: int | None,
        demand: int,
    ) -> UpstreamProvisioning:
        """The upstream answered a request of ``access`` (sent with ``used_key``) with a
        demand to provision: run the two-phase Provision with it on the device's behalf, once
        per record however many requests wait, and keep its final key."""
        record = access.key
        current = self.upstream_keys.get(record)
        if current is not None and current != used_key:
            return UpstreamProvisioning(
                current, "a concurrent request of this record provisioned with the upstream"
            )
        run = self._upstream_runs.get(record)
        if run is None:
            run = self._spawn(
                self._provision_upstream(access, eas, device_headers, raw_path, demand),
                f"upstream provisioning of {record}",
            )
            self._upstream_runs[record] = run

            def forget(task: asyncio.Task[UpstreamProvisioning]) -> None:
                if self._upstream_runs.get(record) is task:
                    del self._upstream_runs[record]

            run.add_done_callback(forget)
        # Shielded: a device that hangs up must not cancel the run other requests wait on.
        return await asyncio.shield(run)

    async def _provision_upstream(
        self,
        access: Access,
        eas: EasRequest,
        device_headers: Mapping[str, str],
        raw_path: str,
        demand: int,
    ) -> UpstreamProvisioning:
        version = access.version
        # The device's own credentials and client identity: the upstream must see the same
        # user and device it would have seen without the gatekeeper.
        carried = {n: v for n in CARRIED_HEADERS if (v := device_headers.get(n)) is not None}
        information = self.device_information.for_upstream(
            access.key, access.device_type, access.user_agent
        )
        phases: tuple[Phase, Phase] = ("policy", "acknowledgement")
        key = 0
        for phase in phases:
            line = provision_line(eas, raw_path, key)
            if phase == "policy":
                body = initial_body(version, information)
            else:
                # MS-ASPROV 3.1.5.1.2.1: acknowledge with the temporary key, policy applied.
                body = ack_body(version, key)
            try:
                answer = await self.forwarder.exchange(
                    "POST",
                    line.raw_path,
                    {**carried, **dict(line.set_headers)},
                    body,
                    timeout_s=UPSTREAM_PROVISION_TIMEOUT_S,
                )
            except UpstreamUnavailable as exc:
                failed = UpstreamProvisioning(None, f"{phase} request: {exc}", unreachable=True)
                return self._upstream_done(access, demand, failed, 0)
            read = read_phase(phase, answer.status, answer.body)
            if isinstance(read, str):
                refusal = answer if answer.status != 200 else None
                return self._upstream_done(
                    access, demand, UpstreamProvisioning(None, read, refusal), answer.status
                )
            key = read
        now = self.clock.now()
        self.upstream_keys.set(access.key, key, now)
        self.store.put_upstream_key(access.key, key, now)
        done = UpstreamProvisioning(
            key,
            f"provisioned with the upstream ({eas.form} query, {version.text}); its key "
            "replaces the device's on every forwarded request",
        )
        return self._upstream_done(access, demand, done, 200)

    def _upstream_done(
        self, access: Access, demand: int, result: UpstreamProvisioning, upstream_status: int
    ) -> UpstreamProvisioning:
        self.emit(
            UpstreamProvisioned(
                at=self.clock.now(),
                request_id=access.request_id,
                record=access.key,
                ok=result.key is not None,
                detail=result.detail,
                demand=demand,
                upstream_status=upstream_status,
            )
        )
        if result.key is None:
            logger.info("provisioning %s with the upstream failed: %s", access.key, result.detail)
        return result

    # -- decisions -------------------------------------------------------------------------
    def _changed(self, changes: Iterable[Change], source: str, request_id: str = "") -> None:
        now = self.clock.now()
        for change in changes:
            applied = change.applied
            if applied is None:
                self.emit(RecordForgotten(at=now, record=change.key, source=source))
            else:
                record = applied.record
                self.emit(
                    DecisionApplied(
                        at=now,
                        request_id=request_id,
                        record=change.key,
                        state=record.state.value,
                        previous_state=applied.previous.value,
                        reasons=record.reasons,
                        reason_names=reason_names(record.reasons),
                        source=source,
                        answer=record.answer,
                    )
                )
            self._wake(change.key)

    def _learn(self, policy: ActiveSyncPolicy, *, save: bool = True) -> None:
        if self.policy.knows(policy.version):
            return
        try:
            doc: ProvisionDoc = settings_doc(policy.settings, f"UEM policy v{policy.version}")
        except ValueError as exc:
            logger.warning(
                "UEM policy v%s cannot be provisioned (%s); using the default policy for it",
                policy.version,
                exc,
            )
            doc = self.policy.fallback_doc
        self.policy.learn(policy.version, doc)
        if save:
            self.store.put(f"policy.{policy.version}", json.dumps(dict(policy.settings)))

    def apply(self, decision: DecisionMessage, source: str) -> None:
        """Cache a pushed or resynced decision."""
        self._learn(decision.activesync_policy)
        self._changed(self.gate.apply_decision(decision, self.clock.now()), source)

    def _report_answered(self, key: str, decision: DecisionMessage) -> None:
        now = self.clock.now()
        self.uem_reachable = True
        self.emit(
            ReportSent(
                at=now, record=key, attempt=self.outbox.attempts(key), state=decision.state.value
            )
        )
        self._learn(decision.activesync_policy)
        self._changed(self.gate.report_answered(key, decision, now), "report")

    def _report_failed(self, key: str, attempt: int, error: str, retry_in: float) -> None:
        now = self.clock.now()
        self.uem_reachable = False
        self.emit(
            ReportFailed(at=now, record=key, attempt=attempt, error=error, retry_in_s=retry_in)
        )
        applied = self.gate.report_failed(key, now)
        if applied is not None:
            self._changed([Change(key, applied)], "fallback")

    # -- keeping the cache true ------------------------------------------------------------
    def receive_push(self, message: PushMessage) -> int:
        """Apply a UEM push; returns how many records it carried."""
        self.uem_reachable = True
        for decision in message.records:
            self.apply(decision, "push")
        missed = message.since > self.uem_version
        if missed:
            # A batch went missing: fetch everything since our version (the stale check makes
            # the overlap with this push harmless).
            self._spawn(self.resync("catch_up"), "catch-up resync")
        else:
            self.uem_version = max(self.uem_version, message.version)
        self.emit(PushReceived(at=self.clock.now(), changes=len(message.records)))
        return len(message.records)

    async def resync(self, mode: str) -> bool:
        """Fetch the UEM's changes (everything for the start-up ``pull``); True on success."""
        since = 0 if mode == "pull" else self.uem_version
        try:
            answer = await self.uem.changes(since)
        except UemUnavailable as exc:
            self.uem_reachable = False
            self.emit(ResyncFailed(at=self.clock.now(), mode=mode, error=str(exc)))
            return False
        self.uem_reachable = True
        for decision in answer.records:
            self.apply(decision, "startup_pull" if mode == "pull" else "resync")
        if answer.full:
            present = [key for d in answer.records if not d.removed for key in decision_keys(d)]
            self._changed(self.gate.drop_missing(present, answer.version), "resync")
        self.uem_version = answer.version
        self.last_resync_at = self.clock.now()
        self.emit(
            ResyncCompleted(
                at=self.last_resync_at,
                mode=mode,
                changes=len(answer.records),
                version=answer.version,
            )
        )
        return True

    async def _resync_loop(self) -> None:
        pulled = await self.resync("pull")
        while True:
            await self.clock.sleep(self.config.resync_interval_s)
            pulled = await self.resync("incremental" if pulled else "pull")

    def set_push_url(self, url: str) -> None:
        """Tell the UEM where to push (retried in the background until it answers)."""
        self.push_url = url
        self._spawn(self._register(url), "register push URL")

    async def _register(self, url: str) -> None:
        message = RegisterGatekeeper(self.gatekeeper_id, url)
        while True:
            try:
                await self.uem.register(message)
            except UemUnavailable as exc:
                logger.info("registering the push URL failed (%s); retrying", exc)
                await self.clock.sleep(REGISTER_RETRY_S)
                continue
            self.registered = True
            return

    async def persist(self) -> int:
        """Write the device list (UEM-decided records only) to SQLite."""
        rows = list(self.devices.rows())
        count = await asyncio.to_thread(self.store.save_devices, rows)
        self.emit(DeviceListPersisted(at=self.clock.now(), records=count))
        return count

    async def _persist_loop(self) -> None:
        while True:
            await self.clock.sleep(self.config.persist_interval_s)
            try:
                await self.persist()
            except Exception:
                # A full disk must not stop the proxy; the next round tries again.
                logger.exception("persisting the device list failed")
