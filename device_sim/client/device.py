"""``DeviceClient``: one phone's standing and memory, and the loop that drives a step.

Responsibility: hold what a phone keeps (state, policy key, policy, block, hierarchy, sync
keys, items), drive the step's queue of exchanges, and carry out what the readers conclude:
fire events, remember facts, react. It must not touch sockets, the event loop or the clock, and
it neither builds a request nor reads an answer itself: ``routing.py`` hands those to the
command modules, ``reading.py`` screens statuses, and both return values.

Theory of operation: ``begin`` plans the step (``exchanges.plan``) and returns the first
request; ``receive`` screens the response (HTTP status, body, global status), has the head
exchange's answer read into a ``Verdict`` and applies it. Protocol reactions that cut across
commands live here because they change the phone and the queue together: provisioning again
(449, 141-144), halting as BLOCKED (129, 177, 403...) or AUTH_FAILED (401), fetching and
acknowledging a wipe (140, RemoteWipe), backing off (503, 111), resyncing a folder or the
hierarchy. Every one of them is bounded per step (``exchanges.MAX_*``).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Final

import attrs

from activesync.errors import ActiveSyncError
from activesync.versions import ProtocolVersion
from device_sim.client.exchanges import (
    MAX_BACKOFFS,
    MAX_EXCHANGES,
    MAX_REPROVISIONS,
    MAX_RESYNCS,
    AckOp,
    FolderSyncOp,
    Op,
    OptionsOp,
    ProvisionOp,
    Run,
    SendMailOp,
    WipeAckOp,
    command_of,
    expand,
    label_of,
    plan,
)
from device_sim.client.mail import mail_client_id
from device_sim.client.memory import AppliedPolicy, Folder, Item, folder_named
from device_sim.client.options import read_options
from device_sim.client.reading import (
    global_reaction,
    http_failure,
    read_body,
    retry_after,
    screen,
)
from device_sim.client.results import (
    Action,
    Backoff,
    Block,
    Done,
    Halt,
    Outcome,
    Send,
    StepResult,
)
from device_sim.client.routing import read_answer, request_for
from device_sim.client.states import PROVISIONING_STATES, DeviceState, Event, next_state
from device_sim.client.steps import SendMail, Step
from device_sim.client.verdicts import (
    Advance,
    AuthRefused,
    Busy,
    Fact,
    Fail,
    HierarchyChanged,
    PolicyApplied,
    PolicyKeyChanged,
    Proceed,
    Reaction,
    Refuse,
    Reprovision,
    Resync,
    ServerOffer,
    Verdict,
    WipeRequested,
)
from device_sim.wire import DeviceIdentity, HttpRequest, HttpResponse

#: States in which a step may begin.
_STARTABLE: Final = frozenset(
    {DeviceState.NEW, DeviceState.READY, DeviceState.BLOCKED, DeviceState.AUTH_FAILED}
)
_NO_DETAILS: Final[Mapping[str, object]] = {}


class UsageError(ValueError):
    """The client was driven wrongly (a step begun while another is in flight, after a wipe)."""


@attrs.define(eq=False)
class DeviceClient:
    """One phone: identity, state and everything it remembers. Drive it with ``begin`` and
    ``receive``; read its state between steps."""

    identity: DeviceIdentity
    #: Where the phone stands.
    state: DeviceState = DeviceState.NEW
    #: Policy key sent with commands (0: none yet).
    policy_key: int = 0
    #: The policy applied in the last Provision.
    policy: AppliedPolicy | None = None
    #: Why the device is BLOCKED (kept after it is unblocked, for the record).
    block: Block | None = None
    #: Folder hierarchy sync key ("0" before the first FolderSync).
    folder_sync_key: str = "0"
    #: Folders by ServerId.
    folders: dict[str, Folder] = attrs.field(factory=dict)
    #: Sync key per folder ServerId ("0" or absent before the first Sync).
    sync_keys: dict[str, str] = attrs.field(factory=dict)
    #: Items held per folder ServerId, by item ServerId.
    items: dict[str, dict[str, Item]] = attrs.field(factory=dict)
    #: Versions and commands the server listed in its OPTIONS answer.
    server_versions: tuple[str, ...] = ()
    server_commands: tuple[str, ...] = ()
    #: When the wipe was acknowledged (None if never).
    wiped_at: float | None = None
    _run: Run | None = None
    _mail_counter: int = 0

    # -- public API ------------------------------------------------------------------------

    @property
    def version(self) -> ProtocolVersion:
        return self.identity.version

    @property
    def busy(self) -> bool:
        """True while a step is in flight (between ``begin`` and its Done/Halt)."""
        return self._run is not None

    def folder_named(self, name: str) -> Folder | None:
        """A folder by ServerId or display name (case-insensitive); None when unknown."""
        return folder_named(self.folders, name)

    def begin(self, step: Step) -> HttpRequest:
        """Start ``step``; return its first request."""
        if self._run is not None:
            raise UsageError(
                f"cannot begin {step.name}: {self._run.step.name} is still in flight "
                "(feed its responses to receive() until it is Done or Halted)"
            )
        if self.state is DeviceState.WIPED:
            raise UsageError(f"cannot begin {step.name}: the device was wiped")
        if self.state not in _STARTABLE:
            raise UsageError(f"cannot begin {step.name} in state {self.state.name}")
        run = Run(step, collections.deque(self._plan(step)))
        self._run = run
        problem = expand(run.queue, self.folders)
        if problem is not None:  # pragma: no cover - plan checked the names
            self._run = None
            raise UsageError(f"cannot begin {step.name}: {problem}")
        request = self._next_request()
        if request is None:  # pragma: no cover - every plan has a sendable exchange
            raise UsageError(f"{step.name}: nothing to send")
        return request

    def receive(self, response: HttpResponse, now: float) -> StepResult:
        """Read the response to the request last returned; say what happened and what next."""
        run = self._run
        if run is None or not run.queue:
            raise UsageError("receive() without a request in flight: call begin() first")
        run.exchanges += 1
        op = run.queue[0]
        result = self._receive(run, op, response, now)
        if isinstance(result.action, Done | Halt):
            self._run = None
        return result

    def abandon(self, why: str, now: float) -> StepResult:
        """End the step in flight without a response (connection refused, timeout...).

        The exchange's result has HTTP status 0. The device keeps its standing, so the step can
        be begun again later; a provisioning round in flight is dropped (state NEW), and a wipe
        acknowledgement that got no answer still wipes (MS-ASPROV 3.1.5.1.2.2: the phone does
        not wait for the reply).
        """
        run = self._run
        if run is None or not run.queue:
            raise UsageError("abandon() without a request in flight")
        op = run.queue[0]
        outcome: Outcome = Outcome.FAILED
        action: Action = Done(False)
        if self.state is DeviceState.WIPING:
            self._erase(now)
            outcome, action = Outcome.WIPED, Halt(self.state)
            why = f"{why}; the device wiped itself anyway"
        elif self.state in PROVISIONING_STATES:
            self._fire(Event.PROVISION_FAILED)
        result = StepResult(
            step=run.step.name,
            command=command_of(op),
            label=label_of(op, self.folders),
            outcome=outcome,
            summary=why,
            http_status=0,
            eas_status=None,
            details={},
            action=action,
        )
        self._run = None
        return result

    # -- driving the queue ---------------------------------------------------------------------

    def _plan(self, step: Step) -> list[Op]:
        if isinstance(step, SendMail):
            self._mail_counter += 1
            return [SendMailOp(step, mail_client_id(self.identity.device_id, self._mail_counter))]
        return plan(step, self.folders)

    def _next_request(self) -> HttpRequest | None:
        run = self._run
        assert run is not None
        if not run.queue:
            return None
        op = run.queue[0]
        request = request_for(op, self)
        if isinstance(op, ProvisionOp) and not op.wipe_fetch:
            self._fire(Event.PROVISION_STARTED)
        run.last_request = request
        return request

    # -- responses -----------------------------------------------------------------------------

    def _receive(self, run: Run, op: Op, response: HttpResponse, now: float) -> StepResult:
        if run.exchanges > MAX_EXCHANGES:
            return self._finish_failed(
                run, op, response, None, f"gave up: more than {MAX_EXCHANGES} exchanges in one step"
            )
        if isinstance(op, WipeAckOp):
            # MS-ASPROV 3.1.5.1.2.2: the phone wipes without waiting for or relying on the reply.
            return self._wiped(op, response, now)
        early = screen(response)
        if early is not None:
            return self._react(run, op, response, now, early)
        if isinstance(op, OptionsOp):
            return self._apply(run, op, response, now, read_options(response, self.identity))
        if response.status != 200:
            return self._react(run, op, response, now, http_failure(response.status))
        try:
            reading = read_body(response)
        except ActiveSyncError as exc:
            why = f"unreadable {command_of(op)} response: {exc.message}"
            return self._finish_failed(run, op, response, None, why)
        if reading.global_status is not None:
            provisioning = isinstance(op, ProvisionOp | AckOp)
            reaction = global_reaction(
                reading.global_status, response.status, provisioning=provisioning
            )
            return self._react(run, op, response, now, reaction)
        label = label_of(op, self.folders)
        try:
            verdict = read_answer(op, reading.root, self, run, now)
            return self._apply(run, op, response, now, verdict)
        except ActiveSyncError as exc:
            why = f"malformed {label} response: {exc.message}"
            return self._finish_failed(run, op, response, None, why)

    def _apply(
        self, run: Run, op: Op, response: HttpResponse, now: float, verdict: Verdict
    ) -> StepResult:
        """Fire the verdict's events, remember its facts, then carry out its reaction."""
        for event in verdict.events:
            self._fire(event)
        for fact in verdict.facts:
            self._remember(run, fact)
        return self._react(run, op, response, now, verdict.reaction)

    def _remember(self, run: Run, fact: Fact) -> None:
        if isinstance(fact, ServerOffer):
            self.server_versions = fact.versions
            self.server_commands = fact.commands
        elif isinstance(fact, PolicyApplied):
            self.policy = fact.policy
        elif isinstance(fact, PolicyKeyChanged):
            self.policy_key = fact.key
        elif isinstance(fact, HierarchyChanged):
            self.folders.clear()
            self.folders.update(fact.folders)
            for server_id in fact.deleted:
                self.sync_keys.pop(server_id, None)
                self.items.pop(server_id, None)
            self.folder_sync_key = fact.sync_key
        else:
            self.sync_keys[fact.folder_id] = fact.sync_key
            self.items[fact.folder_id] = dict(fact.items)
            run.sync_rounds[fact.folder_id] = fact.rounds

    def _react(
        self, run: Run, op: Op, response: HttpResponse, now: float, reaction: Reaction
    ) -> StepResult:
        if isinstance(reaction, Advance):
            return self._advance(run, op, response, reaction)
        if isinstance(reaction, Fail):
            return self._finish_failed(
                run, op, response, reaction.code, reaction.summary, reaction.details
            )
        if isinstance(reaction, Proceed):
            return self._proceed(run, op, response, reaction)
        if isinstance(reaction, Resync):
            return self._resync(run, op, response, reaction)
        if isinstance(reaction, Reprovision):
            return self._reprovision(run, op, response, reaction.code, reaction.why)
        if isinstance(reaction, Refuse):
            return self._blocked(op, response, reaction.code, reaction.block)
        if isinstance(reaction, AuthRefused):
            self._fire(Event.AUTH_REFUSED)
            return self._result(
                op,
                response,
                None,
                Outcome.AUTH_FAILED,
                "credentials refused (HTTP 401): check the user name and password",
                Halt(self.state),
            )
        if isinstance(reaction, Busy):
            return self._backoff(run, op, response, now, reaction.why)
        if isinstance(reaction, WipeRequested):
            return self._wipe_requested(run, op, response, reaction.code)
        return self._wipe_directive(run, op, response, reaction.account_only)

    # -- reactions -------------------------------------------------------------------------

    def _advance(self, run: Run, op: Op, response: HttpResponse, done: Advance) -> StepResult:
        """The head exchange succeeded: move to the next one, or finish the step."""
        run.queue.popleft()
        problem = expand(run.queue, self.folders)
        if problem is not None:
            run.failed = True
            run.queue.clear()
            return self._result(
                op,
                response,
                done.code,
                Outcome.OK,
                f"{done.summary}; but {problem}",
                Done(False),
                done.details,
            )
        action: Action = Send(self._must_next()) if run.queue else self._done(run)
        return self._result(op, response, done.code, Outcome.OK, done.summary, action, done.details)

    def _proceed(self, run: Run, op: Op, response: HttpResponse, then: Proceed) -> StepResult:
        """Replace the head exchange with the reader's follow-ups and send the next one."""
        if then.counts_as_resync:
            run.resyncs += 1
        run.queue.popleft()
        run.queue.extendleft(reversed(then.ops))
        if not run.queue:
            return self._result(
                op, response, then.code, then.outcome, then.summary, self._done(run), then.details
            )
        return self._result(
            op,
            response,
            then.code,
            then.outcome,
            then.summary + then.sending_suffix,
            Send(self._must_next()),
            then.details,
        )

    def _finish_failed(
        self,
        run: Run,
        op: Op,
        response: HttpResponse,
        code: int | None,
        summary: str,
        details: Mapping[str, object] = _NO_DETAILS,
    ) -> StepResult:
        run.failed = True
        run.queue.clear()
        if self.state in PROVISIONING_STATES:
            self._fire(Event.PROVISION_FAILED)
        return self._result(op, response, code, Outcome.FAILED, summary, Done(False), details)

    def _reprovision(
        self, run: Run, op: Op, response: HttpResponse, code: int | None, why: str
    ) -> StepResult:
        provisioning = isinstance(op, ProvisionOp | AckOp)
        if provisioning or run.reprovisions >= MAX_REPROVISIONS:
            self._fire(Event.PROVISION_FAILED if provisioning else Event.PROVISION_REQUIRED)
            return self._finish_failed(
                run,
                op,
                response,
                code,
                f"{why}, but provisioning does not satisfy the server "
                f"(after {run.reprovisions} re-provisions); giving up on this step",
            )
        run.reprovisions += 1
        self._fire(Event.PROVISION_REQUIRED)
        # MS-ASPROV 3.1.5.1.1: the policy key is reset to 0 for the initial request.
        self.policy_key = 0
        run.queue.appendleft(ProvisionOp())
        return self._result(
            op,
            response,
            code,
            Outcome.REPROVISION,
            f"{why}: provisioning again, then retrying {command_of(op)}",
            Send(self._must_next()),
        )

    def _resync(self, run: Run, op: Op, response: HttpResponse, resync: Resync) -> StepResult:
        if run.resyncs >= MAX_RESYNCS:
            why = f"{resync.why}; giving up after {MAX_RESYNCS} resyncs"
            return self._finish_failed(run, op, response, resync.code, why)
        run.resyncs += 1
        if resync.folder_id is not None:
            # MS-ASCMD 2.2.3.177.17 Status 3: start the folder again from SyncKey 0.
            self.sync_keys[resync.folder_id] = "0"
            self.items.pop(resync.folder_id, None)
        elif resync.refetch_hierarchy:
            run.queue.appendleft(FolderSyncOp())
        else:
            # MS-ASCMD 2.2.3.177.4 Status 9: the hierarchy starts again from SyncKey 0.
            self.folder_sync_key = "0"
            self.folders.clear()
            self.sync_keys.clear()
            self.items.clear()
        return self._result(
            op, response, resync.code, Outcome.RESYNC, resync.why, Send(self._must_next())
        )

    def _blocked(
        self, op: Op, response: HttpResponse, code: int | None, block: Block
    ) -> StepResult:
        self._fire(Event.ACCESS_REFUSED)
        self.block = block
        return self._result(
            op,
            response,
            code,
            Outcome.BLOCKED,
            f"BLOCKED ({block.code}): {block.meaning}",
            Halt(self.state),
            {"blocked_code": block.code, "block_kind": block.kind.value},
        )

    def _backoff(
        self, run: Run, op: Op, response: HttpResponse, now: float, why: str
    ) -> StepResult:
        if run.backoffs >= MAX_BACKOFFS:
            return self._finish_failed(
                run, op, response, None, f"{why}; still busy after {MAX_BACKOFFS} back-offs"
            )
        run.backoffs += 1
        seconds, source = retry_after(response, now, run.backoffs)
        request = run.last_request
        assert request is not None
        return self._result(
            op,
            response,
            None,
            Outcome.BACKOFF,
            f"{why}: waiting {seconds:g} s ({source}), then retrying",
            Backoff(seconds, request),
            {"backoff_seconds": seconds},
        )

    def _wipe_requested(self, run: Run, op: Op, response: HttpResponse, code: int) -> StepResult:
        self._fire(Event.WIPE_REQUESTED)
        self.policy_key = 0
        run.queue.clear()
        run.queue.append(ProvisionOp(wipe_fetch=True))
        return self._result(
            op,
            response,
            code,
            Outcome.WIPE_REQUESTED,
            f"Status {code} RemoteWipeRequested: fetching the wipe directive",
            Send(self._must_next()),
        )

    def _wipe_directive(
        self, run: Run, op: Op, response: HttpResponse, account_only: bool
    ) -> StepResult:
        self._fire(Event.WIPE_DIRECTIVE_RECEIVED)
        run.queue.clear()
        run.queue.append(WipeAckOp(account_only))
        what = "AccountOnlyRemoteWipe" if account_only else "RemoteWipe"
        return self._result(
            op,
            response,
            1,
            Outcome.WIPE_REQUESTED,
            f"Status 1  {what} directive: acknowledging and wiping",
            Send(self._must_next()),
        )

    def _wiped(self, op: WipeAckOp, response: HttpResponse, now: float) -> StepResult:
        self._erase(now)
        what = "account data" if op.account_only else "all data"
        return self._result(
            op,
            response,
            None,
            Outcome.WIPED,
            f"wipe acknowledged (RemoteWipe Status 1); the device erased {what}",
            Halt(self.state),
        )

    def _erase(self, now: float) -> None:
        self._fire(Event.WIPE_ACKNOWLEDGED)
        self.wiped_at = now
        # MS-ASPROV 3.1.5.1.2.2: destroy everything received from the server: keys,
        # hierarchy, items, policy.
        self.policy_key = 0
        self.policy = None
        self.folder_sync_key = "0"
        self.folders.clear()
        self.sync_keys.clear()
        self.items.clear()

    # -- plumbing --------------------------------------------------------------------------

    def _fire(self, event: Event) -> None:
        self.state = next_state(self.state, event)

    def _must_next(self) -> HttpRequest:
        request = self._next_request()
        assert request is not None, "a Send action needs an exchange at the head of the queue"
        return request

    def _done(self, run: Run) -> Done:
        return Done(not run.failed)

    def _result(
        self,
        op: Op,
        response: HttpResponse,
        code: int | None,
        outcome: Outcome,
        summary: str,
        action: Action,
        details: Mapping[str, object] = _NO_DETAILS,
    ) -> StepResult:
        run = self._run
        step_name = run.step.name if run is not None else command_of(op)
        return StepResult(
            step=step_name,
            command=command_of(op),
            label=label_of(op, self.folders),
            outcome=outcome,
            summary=summary,
            http_status=response.status,
            eas_status=code,
            details=dict(details),
            action=action,
        )
