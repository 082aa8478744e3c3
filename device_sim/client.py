"""A simulated phone's EAS client as a pure state machine (sans-I/O, in the manner of h11).

Responsibility: everything a phone decides. It turns a step of a script (OPTIONS, Provision,
FolderSync, Sync, Ping, SendMail, Settings) into ``HttpRequest`` values and reads each
``HttpResponse`` into a ``StepResult`` that says what happened in plain words and what to do
next. It keeps what a phone keeps: its policy key, the policy it applied, the folder hierarchy
and its sync key, a sync key per folder and the items received. It must not touch sockets, the
event loop or the clock: the shell (``shell.py``) sends, waits and sleeps; time comes in as
``now``.

Theory of operation:
- ``begin(step)`` plans the step as a queue of exchanges (``_Op`` values) and returns the
  first request. ``receive(response, now)`` reads the answer to the head of the queue and
  returns a ``StepResult`` whose ``action`` is ``Send(request)`` (the step continues: the next
  exchange, a retry, a provisioning round), ``Backoff(seconds, request)`` (wait, then send),
  ``Done(succeeded)`` (the step is over) or ``Halt(state)`` (the device cannot go on: blocked,
  wiped, refused credentials).
- Reactions follow what real phones do (notes 2, 3.3, 5.2): HTTP 449 or body Status 141-144
  drop the policy key, provision again (two phases, applying the policy) and retry the command;
  129, 177 and HTTP 403 (and the other access refusals 126/130/131) halt the device as
  BLOCKED, keeping the code; Status 140 sends an empty Provision, a RemoteWipe directive in any
  Provision response is acknowledged (Status 1) and the device halts as WIPED; HTTP 503 (and
  Status 111) back off for Retry-After seconds (or exponentially); 401 halts with an auth error.
- Every loop is bounded per step (exchanges, re-provisions, back-offs, sync rounds), so a
  misbehaving server ends a step with a failure instead of spinning.
- ``DeviceState`` changes only through ``TRANSITIONS``; an event the table does not allow in
  the current state raises ``IllegalTransition`` naming both.
"""

from __future__ import annotations

import collections
import email.utils
import enum
from collections.abc import Iterable, Mapping
from typing import ClassVar, Final

import attrs

from activesync.commands.email_item import EmailItem
from activesync.commands.folder_sync import (
    FolderSyncRequest,
    FolderSyncResponse,
    FolderSyncStatus,
)
from activesync.commands.folder_types import FolderType
from activesync.commands.ping import PingFolder, PingRequest, PingResponse, PingStatus
from activesync.commands.provision import ProvisionDoc, ProvisionRequest, ProvisionResponse
from activesync.commands.send_mail import SendMailRequest, SendMailResponse
from activesync.commands.settings import DeviceInformation, SettingsRequest, SettingsResponse
from activesync.commands.sync import (
    ItemChange,
    ItemDelete,
    ItemSoftDelete,
    ServerAdd,
    SyncCollectionRequest,
    SyncCollectionResponse,
    SyncRequest,
    SyncResponse,
    SyncStatus,
)
from activesync.errors import ActiveSyncError
from activesync.query import build_base64_query, build_plain_query
from activesync.status import (
    FIRST_GLOBAL_STATUS,
    PolicyStatus,
    ProvisionStatus,
    Status,
    status_name,
)
from activesync.versions import ProtocolVersion
from activesync.wbxml import decode, encode
from activesync.wbxml.tree import Element
from device_sim.wire import EAS_PATH, DeviceIdentity, HttpRequest, HttpResponse, QueryForm, Quirk

_V = ProtocolVersion

#: MS-ASHTTP 2.2.1.1.2.3: the WBXML media type.
WBXML: Final = "application/vnd.ms-sync.wbxml"
#: MS-ASCMD 2.2.1.17: SendMail below 14.0 posts the message itself.
RFC822: Final = "message/rfc822"

#: Bounds per step, so a misbehaving server ends a step instead of looping it.
MAX_EXCHANGES: Final = 64
MAX_REPROVISIONS: Final = 2
MAX_BACKOFFS: Final = 5
MAX_RESYNCS: Final = 2
#: Sync rounds per folder while the server says MoreAvailable.
MAX_SYNC_ROUNDS: Final = 20
#: Back-off without Retry-After: 2, 4, 8... seconds (MS-ASHTTP 3.1.5.2.3), at most this.
DEFAULT_BACKOFF: Final = 2.0
MAX_BACKOFF_SECONDS: Final = 3600.0
#: Items asked for per Sync round (MS-ASCMD 2.2.3.199: the server caps it at 512).
WINDOW_SIZE: Final = 100


# --- states --------------------------------------------------------------------------------


class DeviceState(enum.Enum):
    """Where the phone stands with the server."""

    #: No policy key: never provisioned, or the key was dropped on a re-provision request.
    NEW = "new"
    #: The initial Provision request is out; waiting for the policy and a temporary key.
    PROVISIONING = "provisioning"
    #: The acknowledgement of the temporary key is out; waiting for the final key.
    ACKNOWLEDGING = "acknowledging"
    #: The server accepts this phone's commands (final key held, or no policy demanded).
    READY = "ready"
    #: The server asked for a wipe (Status 140); the empty Provision that fetches it is out.
    WIPE_PENDING = "wipe-pending"
    #: A RemoteWipe directive arrived; the wipe acknowledgement is out.
    WIPING = "wiping"
    #: The server refused this phone (129, 177, 403...); ``DeviceClient.block`` has the code.
    BLOCKED = "blocked"
    #: The phone acknowledged a remote wipe and erased its account data. Final.
    WIPED = "wiped"
    #: The server refused the credentials (HTTP 401).
    AUTH_FAILED = "auth-failed"


class Event(enum.Enum):
    """What moves a ``DeviceState``."""

    #: An initial Provision request was sent.
    PROVISION_STARTED = "provision-started"
    #: Phase 1 answered with a policy and a temporary key.
    TEMPORARY_KEY_RECEIVED = "temporary-key-received"
    #: Phase 1 answered "no policy for this client" (Policy Status 2).
    NO_POLICY_REQUIRED = "no-policy-required"
    #: Phase 2 answered with the final key.
    FINAL_KEY_RECEIVED = "final-key-received"
    #: A Provision exchange failed (bad status, wrong key...).
    PROVISION_FAILED = "provision-failed"
    #: The server served a command normally.
    COMMAND_ACCEPTED = "command-accepted"
    #: The server asked for (re-)provisioning (449, 141-144).
    PROVISION_REQUIRED = "provision-required"
    #: The server refused the device (129, 177, 403, ...).
    ACCESS_REFUSED = "access-refused"
    #: The server refused the credentials (401).
    AUTH_REFUSED = "auth-refused"
    #: The server asked for a wipe (Status 140).
    WIPE_REQUESTED = "wipe-requested"
    #: A Provision response carried RemoteWipe / AccountOnlyRemoteWipe.
    WIPE_DIRECTIVE_RECEIVED = "wipe-directive-received"
    #: The wipe acknowledgement went out and the data is gone.
    WIPE_ACKNOWLEDGED = "wipe-acknowledged"


class IllegalTransition(RuntimeError):
    """An event that the current state does not allow (a bug in the caller or the core)."""

    def __init__(self, state: DeviceState, event: Event) -> None:
        super().__init__(f"event {event.name} is not allowed in state {state.name}")
        self.state = state
        self.event = event


class UsageError(ValueError):
    """The client was driven wrongly (a step begun while another is in flight, after a wipe)."""


def _transitions() -> dict[tuple[DeviceState, Event], DeviceState]:
    s, e = DeviceState, Event
    idle = (s.NEW, s.READY, s.BLOCKED, s.AUTH_FAILED)
    provisioning = (s.PROVISIONING, s.ACKNOWLEDGING)
    alive = (*idle, *provisioning, s.WIPE_PENDING)
    table: dict[tuple[DeviceState, Event], DeviceState] = {}
    for state in idle:
        table[(state, e.PROVISION_STARTED)] = s.PROVISIONING
        table[(state, e.COMMAND_ACCEPTED)] = s.READY
    for state in (*idle, *provisioning):
        table[(state, e.PROVISION_REQUIRED)] = s.NEW
    for state in alive:
        table[(state, e.ACCESS_REFUSED)] = s.BLOCKED
        table[(state, e.AUTH_REFUSED)] = s.AUTH_FAILED
        table[(state, e.WIPE_REQUESTED)] = s.WIPE_PENDING
    for state in (*provisioning, s.WIPE_PENDING):
        table[(state, e.WIPE_DIRECTIVE_RECEIVED)] = s.WIPING
        table[(state, e.PROVISION_FAILED)] = s.NEW
    table[(s.PROVISIONING, e.TEMPORARY_KEY_RECEIVED)] = s.ACKNOWLEDGING
    table[(s.WIPE_PENDING, e.TEMPORARY_KEY_RECEIVED)] = s.ACKNOWLEDGING
    table[(s.PROVISIONING, e.NO_POLICY_REQUIRED)] = s.READY
    table[(s.WIPE_PENDING, e.NO_POLICY_REQUIRED)] = s.READY
    table[(s.ACKNOWLEDGING, e.FINAL_KEY_RECEIVED)] = s.READY
    table[(s.WIPING, e.WIPE_ACKNOWLEDGED)] = s.WIPED
    return table


#: (state, event) -> next state. Anything missing is an ``IllegalTransition``.
TRANSITIONS: Final[Mapping[tuple[DeviceState, Event], DeviceState]] = _transitions()


# --- steps (what a script asks for) ----------------------------------------------------------


def _names(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError(f"folders: expected a sequence of folder names, got the string {value!r}")
    return tuple(value)


@attrs.frozen
class Options:
    """``OPTIONS /Microsoft-Server-ActiveSync``: which versions and commands the server has."""

    name: ClassVar[str] = "OPTIONS"


@attrs.frozen
class Provision:
    """Both Provision phases: fetch the policy, apply it, acknowledge, keep the final key."""

    name: ClassVar[str] = "Provision"


@attrs.frozen
class FolderSync:
    """Fetch the folder hierarchy (from SyncKey 0 the first time, then incrementally)."""

    name: ClassVar[str] = "FolderSync"


@attrs.frozen
class Sync:
    """Sync folders (display names or ServerIds; the Inbox when none are named).

    A folder never synced gets the initial SyncKey 0 round, then GetChanges rounds until the
    server has nothing more (MoreAvailable). Unknown names trigger a FolderSync first.
    """

    folders: tuple[str, ...] = attrs.field(default=(), converter=_names)
    name: ClassVar[str] = "Sync"


@attrs.frozen
class Ping:
    """Ping (long poll) on folders (the Inbox when none are named) for ``heartbeat`` seconds.

    When the server reports changes, the phone syncs the changed folders in the same step, as
    real phones do before pinging again.
    """

    heartbeat: int = 60
    folders: tuple[str, ...] = attrs.field(default=(), converter=_names)
    name: ClassVar[str] = "Ping"


@attrs.frozen(kw_only=True)
class SendMail:
    """Send one message (ComposeMail WBXML from 14.0, raw MIME below)."""

    to: str
    subject: str
    body: str = ""
    save_in_sent: bool = True
    name: ClassVar[str] = "SendMail"


@attrs.frozen
class Settings:
    """Settings: report DeviceInformation (what 12.1/14.0 phones do instead of in Provision)."""

    name: ClassVar[str] = "Settings"


#: Any step a script may hold.
Step = Options | Provision | FolderSync | Sync | Ping | SendMail | Settings


# --- what the core tells the shell ---------------------------------------------------------


@attrs.frozen
class Send:
    """Send ``request`` next; the step goes on."""

    request: HttpRequest


@attrs.frozen
class Backoff:
    """Wait ``seconds`` (the server is busy), then send ``request`` again."""

    seconds: float
    request: HttpRequest


@attrs.frozen
class Done:
    """The step is over; ``succeeded`` says whether it did what it set out to do."""

    succeeded: bool


@attrs.frozen
class Halt:
    """The device cannot go on (blocked, wiped, refused credentials)."""

    state: DeviceState


Action = Send | Backoff | Done | Halt


class Outcome(enum.Enum):
    """What one exchange came to, in one word."""

    #: The server answered as hoped.
    OK = "ok"
    #: The server asked for (re-)provisioning; the phone provisions and retries.
    REPROVISION = "reprovision"
    #: The folder or hierarchy state was stale; the phone resyncs and retries.
    RESYNC = "resync"
    #: The server is busy; the phone waits and retries.
    BACKOFF = "backoff"
    #: The server refused this device.
    BLOCKED = "blocked"
    #: The server asked for a wipe; the phone fetches the directive.
    WIPE_REQUESTED = "wipe-requested"
    #: The phone acknowledged the wipe and erased the account.
    WIPED = "wiped"
    #: The server refused the credentials.
    AUTH_FAILED = "auth-failed"
    #: Anything else that went wrong.
    FAILED = "failed"


class BlockKind(enum.Enum):
    """Why the server refused the device."""

    #: 129 DeviceIsBlockedForThisUser.
    BLOCKED = "blocked"
    #: 177 MaximumDevicesReached.
    DEVICE_LIMIT = "device-limit"
    #: HTTP 403 (the only form below 14.0, and 177 at 14.0).
    FORBIDDEN = "forbidden"
    #: 126 UserDisabledForSync.
    USER_DISABLED = "user-disabled"
    #: 130 AccessDenied / 131 AccountDisabled.
    ACCESS_DENIED = "access-denied"


#: Body statuses that refuse the device, with what they mean (MS-ASCMD 2.2.2).
_REFUSALS: Final[Mapping[int, tuple[BlockKind, str]]] = {
    Status.DeviceIsBlockedForThisUser: (
        BlockKind.BLOCKED,
        "DeviceIsBlockedForThisUser: this device may not sync this mailbox",
    ),
    Status.MaximumDevicesReached: (
        BlockKind.DEVICE_LIMIT,
        "MaximumDevicesReached: the mailbox has too many device partnerships",
    ),
    Status.UserDisabledForSync: (
        BlockKind.USER_DISABLED,
        "UserDisabledForSync: the user is not enabled for ActiveSync",
    ),
    Status.AccessDenied: (BlockKind.ACCESS_DENIED, "AccessDenied: the user may not do this"),
    Status.AccountDisabled: (BlockKind.ACCESS_DENIED, "AccountDisabled: the account is disabled"),
}

#: MS-ASCMD 2.2.2: statuses that mean "provision again" (449 below 14.0).
_REPROVISION: Final = frozenset(
    {
        Status.LegacyDeviceOnStrictPolicy,
        Status.DeviceNotProvisioned,
        Status.PolicyRefresh,
        Status.InvalidPolicyKey,
    }
)


@attrs.frozen
class Block:
    """Why a device is BLOCKED: the code as received and what it means."""

    #: The EAS status (129, 177, ...) or the HTTP status (403).
    code: int
    #: Which kind of refusal.
    kind: BlockKind
    #: One line for people.
    meaning: str
    #: The HTTP status of the refusing response.
    http_status: int


@attrs.frozen
class Folder:
    """A folder as the phone knows it from FolderSync."""

    server_id: str
    parent_id: str
    display_name: str
    type: FolderType

    @property
    def ping_class(self) -> str:
        """The Ping/Sync class of the folder (MS-ASCMD 2.2.3.27.3)."""
        return _CLASS_BY_TYPE.get(self.type, "Email")


_CLASS_BY_TYPE: Final[Mapping[FolderType, str]] = {
    FolderType.CALENDAR: "Calendar",
    FolderType.USER_CALENDAR: "Calendar",
    FolderType.CONTACTS: "Contacts",
    FolderType.USER_CONTACTS: "Contacts",
    FolderType.TASKS: "Tasks",
    FolderType.USER_TASKS: "Tasks",
    FolderType.NOTES: "Notes",
    FolderType.USER_NOTES: "Notes",
}


@attrs.frozen(kw_only=True)
class Item:
    """An item the phone holds (mail: subject and sender)."""

    server_id: str
    subject: str | None = None
    sender: str | None = None
    read: bool | None = None


@attrs.frozen(kw_only=True)
class AppliedPolicy:
    """The policy the phone applied in its last Provision."""

    #: The EASProvisionDoc as received (None when the server sent no EAS document).
    doc: ProvisionDoc | None
    #: The settings that restrict something (differ from the permissive defaults).
    restrictions: Mapping[str, object]
    #: The Policy/Status the phone acknowledged with (1 applied ... 4 third party).
    ack_status: int
    #: When it was applied.
    applied_at: float


@attrs.frozen(kw_only=True)
class StepResult:
    """One HTTP exchange, told for people and for programs."""

    #: The step this exchange belongs to ("Provision", "Sync"...).
    step: str
    #: The EAS command of the exchange ("OPTIONS", "Provision", "Sync"...).
    command: str
    #: What the exchange was, e.g. "Provision (acknowledge)" or "Sync Inbox".
    label: str
    #: One-word outcome.
    outcome: Outcome
    #: The result in plain words: "Status 1  6 folders  sync key 1".
    summary: str
    #: HTTP status of the response.
    http_status: int
    #: The EAS status read from the body (None when there was none).
    eas_status: int | None
    #: Machine-readable facts (items received, sync key, policy key...).
    details: Mapping[str, object]
    #: What the shell does next.
    action: Action

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict (for ``--json`` and event logs)."""
        action: dict[str, object] = {"kind": type(self.action).__name__.lower()}
        if isinstance(self.action, Backoff):
            action["seconds"] = self.action.seconds
        elif isinstance(self.action, Done):
            action["succeeded"] = self.action.succeeded
        elif isinstance(self.action, Halt):
            action["state"] = self.action.state.value
        return {
            "step": self.step,
            "command": self.command,
            "label": self.label,
            "outcome": self.outcome.value,
            "summary": self.summary,
            "http_status": self.http_status,
            "eas_status": self.eas_status,
            "details": dict(self.details),
            "action": action,
        }


# --- exchanges inside a step ------------------------------------------------------------------


@attrs.frozen
class _OptionsOp:
    pass


@attrs.frozen
class _ProvisionOp:
    #: True after Status 140: the empty ``<Provision/>`` that fetches the wipe directive.
    wipe_fetch: bool = False


@attrs.frozen
class _AckOp:
    temporary_key: str


@attrs.frozen
class _WipeAckOp:
    account_only: bool


@attrs.frozen
class _FolderSyncOp:
    pass


@attrs.frozen
class _SyncOp:
    folder_id: str


@attrs.frozen
class _PingOp:
    heartbeat: int
    folder_ids: tuple[str, ...]


@attrs.frozen
class _SendMailOp:
    mail: SendMail
    client_id: str


@attrs.frozen
class _SettingsOp:
    pass


@attrs.frozen
class _ResolveSync:
    """Placeholder: turn folder names into ``_SyncOp``s once the hierarchy is known."""

    names: tuple[str, ...]


@attrs.frozen
class _ResolvePing:
    """Placeholder: turn folder names into a ``_PingOp`` once the hierarchy is known."""

    heartbeat: int
    names: tuple[str, ...]


_Op = (
    _OptionsOp
    | _ProvisionOp
    | _AckOp
    | _WipeAckOp
    | _FolderSyncOp
    | _SyncOp
    | _PingOp
    | _SendMailOp
    | _SettingsOp
    | _ResolveSync
    | _ResolvePing
)


@attrs.define
class _Run:
    """Book-keeping of the step in flight."""

    step: Step
    queue: collections.deque[_Op]
    exchanges: int = 0
    reprovisions: int = 0
    backoffs: int = 0
    resyncs: int = 0
    sync_rounds: dict[str, int] = attrs.field(factory=dict)
    #: Whether any exchange of the step failed (so the step as a whole did not succeed).
    failed: bool = False
    #: The request last sent, and whether the phone sent a policy key with it.
    last_request: HttpRequest | None = None


@attrs.frozen
class _Reading:
    """A response body read far enough to classify it."""

    root: Element | None
    #: A direct ``Status`` child of the root that is a global status (>= 101), or None.
    global_status: int | None


class _Default:
    """Marker: use the client's current policy key."""


_CURRENT_KEY: Final = _Default()


# --- the client ------------------------------------------------------------------------------


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
    _run: _Run | None = None
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
        if name in self.folders:
            return self.folders[name]
        lowered = name.lower()
        for folder in self.folders.values():
            if folder.display_name.lower() == lowered:
                return folder
        if lowered == "inbox":
            return self._inbox()
        return None

    def begin(self, step: Step) -> HttpRequest:
        """Start ``step``; return its first request."""
        if self._run is not None:
            raise UsageError(
                f"cannot begin {step.name}: {self._run.step.name} is still in flight "
                "(feed its responses to receive() until it is Done or Halted)"
            )
        if self.state is DeviceState.WIPED:
            raise UsageError(f"cannot begin {step.name}: the device was wiped")
        if self.state not in (
            DeviceState.NEW,
            DeviceState.READY,
            DeviceState.BLOCKED,
            DeviceState.AUTH_FAILED,
        ):
            raise UsageError(f"cannot begin {step.name} in state {self.state.name}")
        run = _Run(step, collections.deque(self._plan(step)))
        self._run = run
        problem = self._expand(run)
        if problem is not None:  # pragma: no cover - _plan checked the names
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
        elif self.state in (
            DeviceState.PROVISIONING,
            DeviceState.ACKNOWLEDGING,
            DeviceState.WIPE_PENDING,
        ):
            self._fire(Event.PROVISION_FAILED)
        result = StepResult(
            step=run.step.name,
            command=_command_of(op),
            label=self._label(op),
            outcome=outcome,
            summary=why,
            http_status=0,
            eas_status=None,
            details={},
            action=action,
        )
        self._run = None
        return result

    # -- planning ------------------------------------------------------------------------------

    def _plan(self, step: Step) -> list[_Op]:
        if isinstance(step, Options):
            return [_OptionsOp()]
        if isinstance(step, Provision):
            return [_ProvisionOp()]
        if isinstance(step, FolderSync):
            return [_FolderSyncOp()]
        if isinstance(step, Settings):
            return [_SettingsOp()]
        if isinstance(step, SendMail):
            self._mail_counter += 1
            client_id = f"{self.identity.device_id[:24]}m{self._mail_counter}"
            return [_SendMailOp(step, client_id)]
        names = step.folders or ("Inbox",)
        resolve: _Op
        if isinstance(step, Sync):
            resolve = _ResolveSync(names)
        else:
            resolve = _ResolvePing(step.heartbeat, names)
        if all(self.folder_named(n) is not None for n in names):
            return [resolve]
        # A phone that does not know a folder refreshes its hierarchy first.
        return [_FolderSyncOp(), resolve]

    def _expand(self, run: _Run) -> str | None:
        """Replace placeholders at the head of the queue; a problem message if one fails."""
        while run.queue and isinstance(run.queue[0], _ResolveSync | _ResolvePing):
            head = run.queue.popleft()
            assert isinstance(head, _ResolveSync | _ResolvePing)
            found = [self.folder_named(n) for n in head.names]
            missing = [n for n, f in zip(head.names, found, strict=True) if f is None]
            if missing:
                known = ", ".join(sorted(f.display_name for f in self.folders.values())) or "none"
                return f"no folder named {', '.join(missing)} (known: {known})"
            ids = tuple(f.server_id for f in found if f is not None)
            if isinstance(head, _ResolveSync):
                run.queue.extendleft(reversed([_SyncOp(i) for i in ids]))
            else:
                run.queue.appendleft(_PingOp(head.heartbeat, ids))
        return None

    def _next_request(self) -> HttpRequest | None:
        run = self._run
        assert run is not None
        if not run.queue:
            return None
        op = run.queue[0]
        request = self._request_for(op)
        if isinstance(op, _ProvisionOp) and not op.wipe_fetch:
            self._fire(Event.PROVISION_STARTED)
        run.last_request = request
        return request

    # -- building requests -----------------------------------------------------------------------

    def _request_for(self, op: _Op) -> HttpRequest:
        v = self.version
        if isinstance(op, _OptionsOp):
            return HttpRequest("OPTIONS", EAS_PATH, self._base_headers())
        if isinstance(op, _ProvisionOp):
            if op.wipe_fetch:
                # MS-ASPROV 3.1.5.1.1: after 140 the initial request SHOULD be an empty
                # <Provision/>, with the policy key reset to 0.
                return self._post("Provision", ProvisionRequest.wipe_fetch().to_element(), key=0)
            info = self._provision_device_information()
            body = ProvisionRequest.initial(v, info).to_element()
            # MS-ASPROV 3.1.5.1.1: the key is 0 on the initial request (some phones send none).
            no_key = Quirk.NO_KEY_ON_FIRST_PROVISION in self.identity.quirks
            return self._post("Provision", body, key=None if no_key else 0)
        if isinstance(op, _AckOp):
            body = ProvisionRequest.acknowledgement(
                v, op.temporary_key, self.identity.policy_ack_status
            ).to_element()
            key = _as_key(op.temporary_key)
            if (
                Quirk.ACK_KEY_IN_QUERY in self.identity.quirks
                and self.identity.query_form is QueryForm.PLAIN
            ):
                return self._post(
                    "Provision", body, key=None, params=(("PolicyKey", op.temporary_key),)
                )
            return self._post("Provision", body, key=key)
        if isinstance(op, _WipeAckOp):
            body = ProvisionRequest.wipe_ack(1, account_only=op.account_only).to_element()
            return self._post("Provision", body, key=0)
        if isinstance(op, _FolderSyncOp):
            return self._post("FolderSync", FolderSyncRequest(self.folder_sync_key).to_element())
        if isinstance(op, _SyncOp):
            return self._post("Sync", self._sync_body(op.folder_id))
        if isinstance(op, _PingOp):
            folders = tuple(
                PingFolder(fid, self.folders[fid].ping_class)
                for fid in op.folder_ids
                if fid in self.folders
            )
            ping = PingRequest(heartbeat_interval=op.heartbeat, folders=folders)
            # MS-ASPROV 3.1.5.1: Ping carries no policy key.
            return self._post("Ping", ping.to_element(), key=None)
        if isinstance(op, _SendMailOp):
            return self._send_mail_request(op)
        if isinstance(op, _SettingsOp):
            request = SettingsRequest(device_information=self._settings_device_information())
            return self._post("Settings", request.to_element())
        raise AssertionError(f"no request for placeholder {op!r}")  # pragma: no cover

    def _sync_body(self, folder_id: str) -> Element:
        key = self.sync_keys.get(folder_id, "0")
        if key == "0":
            # MS-ASCMD 3.1.5.3: the initial Sync of a folder carries only SyncKey 0 and the id.
            collection = SyncCollectionRequest(sync_key="0", collection_id=folder_id)
        else:
            collection = SyncCollectionRequest(
                sync_key=key,
                collection_id=folder_id,
                deletes_as_moves=True,
                get_changes=True,
                window_size=WINDOW_SIZE,
            )
        body = SyncRequest(collections=(collection,)).to_element()
        assert body is not None
        return body

    def _send_mail_request(self, op: _SendMailOp) -> HttpRequest:
        mime = _mime(self.identity.user, op.mail)
        if self.version < _V.V14_0:
            # MS-ASCMD 2.2.1.17: below 14.0 the body is the message itself, and SaveInSent
            # rides in the query (MS-ASHTTP 2.2.1.1.1.2.5).
            return self._post(
                "SendMail",
                None,
                raw=mime,
                content_type=RFC822,
                save_in_sent=op.mail.save_in_sent,
            )
        request = SendMailRequest(
            client_id=op.client_id, mime=mime, save_in_sent_items=op.mail.save_in_sent
        )
        return self._post("SendMail", request.to_element())

    def _provision_device_information(self) -> DeviceInformation | None:
        # MS-ASPROV 2.2.2.53: DeviceInformation must be sent from 14.1 and must not be below.
        if self.version < _V.V14_1:
            return None
        return self._settings_device_information()

    def _settings_device_information(self) -> DeviceInformation:
        ident = self.identity
        return DeviceInformation(
            model=ident.model,
            imei=ident.imei,
            friendly_name=ident.friendly_name,
            os=ident.os,
            os_language=ident.os_language,
            phone_number=ident.phone_number,
            # MS-ASWBXML 2.1.2.1.19: UserAgent from 12.1, MobileOperator from 14.0 (so a 14.1+
            # Provision carries every field).
            user_agent=ident.user_agent if self.version >= _V.V12_1 else None,
            mobile_operator=ident.mobile_operator if self.version >= _V.V14_0 else None,
        )

    def _base_headers(self) -> list[tuple[str, str]]:
        return [
            ("Authorization", self.identity.authorization),
            ("User-Agent", self.identity.user_agent),
        ]

    def _post(
        self,
        command: str,
        root: Element | None,
        *,
        key: int | _Default | None = _CURRENT_KEY,
        raw: bytes | None = None,
        content_type: str = WBXML,
        params: Iterable[tuple[str, str]] = (),
        save_in_sent: bool = False,
    ) -> HttpRequest:
        ident = self.identity
        policy_key = self.policy_key if isinstance(key, _Default) else key
        headers = self._base_headers()
        if ident.query_form is QueryForm.BASE64:
            # MS-ASHTTP 2.2.1.1.1.1: version and policy key travel in the query bytes; the
            # headers SHOULD NOT be sent.
            query = build_base64_query(
                command=command,
                device_id=ident.device_id,
                device_type=ident.device_type,
                version=ident.version,
                policy_key=policy_key,
                locale=ident.locale,
                user=ident.user,
                save_in_sent=save_in_sent,
            )
        else:
            extra = list(params)
            if save_in_sent:
                extra.append(("SaveInSent", "T"))
            query = build_plain_query(
                command=command,
                device_id=ident.device_id,
                device_type=ident.device_type,
                user=ident.user,
                params=extra,
            )
            headers.append(("MS-ASProtocolVersion", ident.version.text))
            if policy_key is not None:
                headers.append(("X-MS-PolicyKey", str(policy_key)))
        body = raw if raw is not None else (b"" if root is None else encode(root))
        if body:
            headers.append(("Content-Type", content_type))
        return HttpRequest("POST", f"{EAS_PATH}?{query}", headers, body)

    # -- reading responses -----------------------------------------------------------------------

    def _receive(self, run: _Run, op: _Op, response: HttpResponse, now: float) -> StepResult:
        command = _command_of(op)
        label = self._label(op)
        if run.exchanges > MAX_EXCHANGES:
            return self._finish_failed(
                run,
                op,
                response,
                None,
                f"gave up: more than {MAX_EXCHANGES} exchanges in one step",
            )
        if isinstance(op, _WipeAckOp):
            # MS-ASPROV 3.1.5.1.2.2: the phone wipes without waiting for or relying on the reply.
            return self._wiped(op, response, now)
        status = response.status
        if status == 401:
            self._fire(Event.AUTH_REFUSED)
            return self._result(
                op,
                response,
                None,
                Outcome.AUTH_FAILED,
                "credentials refused (HTTP 401): check the user name and password",
                Halt(self.state),
            )
        if status == 503:
            return self._backoff(run, op, response, now, "server busy (HTTP 503)")
        if status == 449:
            # MS-ASCMD 2.2.2: below 14.0, 449 stands for 140 (key sent), 141, 142, 143, 144.
            return self._reprovision(run, op, response, None, "HTTP 449: provision again")
        if status == 403:
            return self._blocked(
                op,
                response,
                None,
                Block(
                    code=403,
                    kind=BlockKind.FORBIDDEN,
                    meaning="HTTP 403 Forbidden: the server refuses this device or user",
                    http_status=403,
                ),
            )
        if isinstance(op, _OptionsOp):
            return self._options_result(run, op, response)
        if status != 200:
            return self._finish_failed(run, op, response, None, f"HTTP {status}: {_reason(status)}")
        try:
            reading = _read(response)
        except ActiveSyncError as exc:
            return self._finish_failed(
                run, op, response, None, f"unreadable {command} response: {exc.message}"
            )
        code = reading.global_status
        if code is not None:
            return self._global_status(run, op, response, code, now)
        try:
            if isinstance(op, _ProvisionOp | _AckOp):
                return self._provision_result(run, op, response, reading, now)
            if isinstance(op, _FolderSyncOp):
                return self._folder_sync_result(run, op, response, reading)
            if isinstance(op, _SyncOp):
                return self._sync_result(run, op, response, reading)
            if isinstance(op, _PingOp):
                return self._ping_result(run, op, response, reading)
            if isinstance(op, _SendMailOp):
                return self._send_mail_result(run, op, response, reading)
            if isinstance(op, _SettingsOp):
                return self._settings_result(run, op, response, reading)
        except ActiveSyncError as exc:
            return self._finish_failed(
                run, op, response, None, f"malformed {label} response: {exc.message}"
            )
        raise AssertionError(f"no reader for {op!r}")  # pragma: no cover

    def _global_status(
        self, run: _Run, op: _Op, response: HttpResponse, code: int, now: float
    ) -> StepResult:
        name = status_name(code)
        refusal = _REFUSALS.get(code)
        if refusal is not None:
            kind, meaning = refusal
            return self._blocked(
                op,
                response,
                code,
                Block(code=code, kind=kind, meaning=meaning, http_status=response.status),
            )
        if code in _REPROVISION:
            return self._reprovision(run, op, response, code, f"Status {code} {name}")
        if code == Status.RemoteWipeRequested and not isinstance(op, _ProvisionOp | _AckOp):
            return self._wipe_requested(run, op, response, code)
        if code == Status.ServerErrorRetryLater:
            return self._backoff(run, op, response, now, f"Status {code} {name}")
        return self._finish_failed(run, op, response, code, f"Status {code} {name}")

    # -- reactions -------------------------------------------------------------------------

    def _reprovision(
        self, run: _Run, op: _Op, response: HttpResponse, code: int | None, why: str
    ) -> StepResult:
        if isinstance(op, _ProvisionOp | _AckOp) or run.reprovisions >= MAX_REPROVISIONS:
            if not isinstance(op, _ProvisionOp | _AckOp):
                self._fire(Event.PROVISION_REQUIRED)
            else:
                self._fire(Event.PROVISION_FAILED)
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
        run.queue.appendleft(_ProvisionOp())
        return self._result(
            op,
            response,
            code,
            Outcome.REPROVISION,
            f"{why}: provisioning again, then retrying {_command_of(op)}",
            Send(self._must_next()),
        )

    def _blocked(
        self, op: _Op, response: HttpResponse, code: int | None, block: Block
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
            blocked_code=block.code,
            block_kind=block.kind.value,
        )

    def _wipe_requested(self, run: _Run, op: _Op, response: HttpResponse, code: int) -> StepResult:
        self._fire(Event.WIPE_REQUESTED)
        self.policy_key = 0
        run.queue.clear()
        run.queue.append(_ProvisionOp(wipe_fetch=True))
        return self._result(
            op,
            response,
            code,
            Outcome.WIPE_REQUESTED,
            f"Status {code} RemoteWipeRequested: fetching the wipe directive",
            Send(self._must_next()),
        )

    def _wipe_directive(
        self, run: _Run, op: _Op, response: HttpResponse, account_only: bool
    ) -> StepResult:
        self._fire(Event.WIPE_DIRECTIVE_RECEIVED)
        run.queue.clear()
        run.queue.append(_WipeAckOp(account_only))
        what = "AccountOnlyRemoteWipe" if account_only else "RemoteWipe"
        return self._result(
            op,
            response,
            1,
            Outcome.WIPE_REQUESTED,
            f"Status 1  {what} directive: acknowledging and wiping",
            Send(self._must_next()),
        )

    def _wiped(self, op: _WipeAckOp, response: HttpResponse, now: float) -> StepResult:
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

    def _backoff(
        self, run: _Run, op: _Op, response: HttpResponse, now: float, why: str
    ) -> StepResult:
        if run.backoffs >= MAX_BACKOFFS:
            return self._finish_failed(
                run, op, response, None, f"{why}; still busy after {MAX_BACKOFFS} back-offs"
            )
        run.backoffs += 1
        seconds, source = _retry_after(response, now, run.backoffs)
        request = run.last_request
        assert request is not None
        return self._result(
            op,
            response,
            None,
            Outcome.BACKOFF,
            f"{why}: waiting {seconds:g} s ({source}), then retrying",
            Backoff(seconds, request),
            backoff_seconds=seconds,
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

    # -- per-command readers ---------------------------------------------------------------

    def _options_result(self, run: _Run, op: _OptionsOp, response: HttpResponse) -> StepResult:
        if response.status != 200:
            return self._finish_failed(
                run, op, response, None, f"HTTP {response.status}: {_reason(response.status)}"
            )
        versions = _split_list(response.header("MS-ASProtocolVersions"))
        commands = _split_list(response.header("MS-ASProtocolCommands"))
        self.server_versions = versions
        self.server_commands = commands
        details = {"versions": list(versions), "commands": len(commands)}
        if self.version.text not in versions:
            offered = ",".join(versions) or "nothing"
            return self._finish_failed(
                run,
                op,
                response,
                None,
                f"the server offers {offered}, not {self.version.text}",
                **details,
            )
        return self._advance(
            run,
            op,
            response,
            None,
            f"versions {','.join(versions)}  {len(commands)} commands",
            **details,
        )

    def _provision_result(
        self,
        run: _Run,
        op: _ProvisionOp | _AckOp,
        response: HttpResponse,
        reading: _Reading,
        now: float,
    ) -> StepResult:
        if reading.root is None:
            self._fire(Event.PROVISION_FAILED)
            return self._finish_failed(run, op, response, None, "empty Provision response")
        answer = ProvisionResponse.from_element(reading.root)
        if answer.remote_wipe or answer.account_only_remote_wipe:
            return self._wipe_directive(
                run, op, response, account_only=answer.account_only_remote_wipe
            )
        if answer.status != ProvisionStatus.Success:
            self._fire(Event.PROVISION_FAILED)
            return self._finish_failed(
                run,
                op,
                response,
                answer.status,
                f"Provision Status {answer.status} {_provision_status_name(answer.status)}",
            )
        if answer.policy_status == PolicyStatus.NoPolicy and isinstance(op, _ProvisionOp):
            self._fire(Event.NO_POLICY_REQUIRED)
            self.policy_key = 0
            return self._advance(
                run,
                op,
                response,
                answer.status,
                "Status 1  no policy for this device (Policy Status 2)",
            )
        if answer.policy_status != PolicyStatus.Success or answer.policy_key_value is None:
            self._fire(Event.PROVISION_FAILED)
            return self._finish_failed(
                run,
                op,
                response,
                answer.status,
                f"Policy Status {answer.policy_status} "
                f"{_policy_status_name(answer.policy_status)}"
                + ("" if answer.policy_key_value is not None else "  no usable PolicyKey"),
            )
        key = answer.policy_key_value
        if isinstance(op, _ProvisionOp):
            self._fire(Event.TEMPORARY_KEY_RECEIVED)
            restrictions = {} if answer.doc is None else answer.doc.non_defaults
            self.policy = AppliedPolicy(
                doc=answer.doc,
                restrictions=restrictions,
                ack_status=self.identity.policy_ack_status,
                applied_at=now,
            )
            run.queue.popleft()
            run.queue.appendleft(_AckOp(str(key)))
            shown = ", ".join(f"{k}={_show(v)}" for k, v in restrictions.items()) or "no limits"
            return self._result(
                op,
                response,
                answer.status,
                Outcome.OK,
                f"Status 1  policy key {key} (temporary)  applied policy: {shown}",
                Send(self._must_next()),
                policy_key=key,
                temporary=True,
                restrictions={k: _json(v) for k, v in restrictions.items()},
            )
        self._fire(Event.FINAL_KEY_RECEIVED)
        self.policy_key = key
        return self._advance(
            run,
            op,
            response,
            answer.status,
            f"Status 1  policy key {key} (final)",
            policy_key=key,
            temporary=False,
        )

    def _folder_sync_result(
        self, run: _Run, op: _FolderSyncOp, response: HttpResponse, reading: _Reading
    ) -> StepResult:
        if reading.root is None:
            return self._finish_failed(run, op, response, None, "empty FolderSync response")
        answer = FolderSyncResponse.from_element(reading.root)
        if answer.status == FolderSyncStatus.INVALID_SYNC_KEY:
            return self._resync(
                run,
                op,
                response,
                answer.status,
                "Status 9 invalid hierarchy sync key: starting over from 0",
                folder_id=None,
            )
        if answer.status != FolderSyncStatus.SUCCESS or answer.sync_key is None:
            return self._finish_failed(
                run, op, response, answer.status, f"FolderSync Status {answer.status}"
            )
        self._fire(Event.COMMAND_ACCEPTED)
        changes = answer.changes
        added = 0
        if changes is not None:
            for entry in (*changes.adds, *changes.updates):
                self.folders[entry.server_id] = Folder(
                    entry.server_id, entry.parent_id, entry.display_name, entry.type
                )
            added = len(changes.adds)
            for server_id in changes.deletes:
                self.folders.pop(server_id, None)
                self.sync_keys.pop(server_id, None)
                self.items.pop(server_id, None)
        self.folder_sync_key = answer.sync_key
        count = len(self.folders)
        return self._advance(
            run,
            op,
            response,
            answer.status,
            f"Status 1  {count} folder{'s' if count != 1 else ''}  sync key {answer.sync_key}",
            folders=count,
            folders_added=added,
            sync_key=answer.sync_key,
        )

    def _sync_result(
        self, run: _Run, op: _SyncOp, response: HttpResponse, reading: _Reading
    ) -> StepResult:
        folder = self.folders.get(op.folder_id)
        name = folder.display_name if folder else op.folder_id
        if reading.root is None:
            # MS-ASCMD 2.2.1.21: an empty Sync response means no changes.
            self._fire(Event.COMMAND_ACCEPTED)
            return self._advance(run, op, response, None, "no changes", items=0)
        answer = SyncResponse.from_element(reading.root)
        if answer.status is not None and answer.status != SyncStatus.SUCCESS:
            return self._sync_status(run, op, response, answer.status, name)
        collection = _collection_for(answer, op.folder_id)
        if collection is None:
            self._fire(Event.COMMAND_ACCEPTED)
            return self._advance(run, op, response, None, "no changes", items=0)
        if collection.status != SyncStatus.SUCCESS:
            return self._sync_status(run, op, response, collection.status, name)
        self._fire(Event.COMMAND_ACCEPTED)
        first = self.sync_keys.get(op.folder_id, "0") == "0"
        self.sync_keys[op.folder_id] = collection.sync_key
        added, changed, deleted = self._apply_sync(op.folder_id, collection)
        rounds = run.sync_rounds.get(op.folder_id, 0) + 1
        run.sync_rounds[op.folder_id] = rounds
        again = first or collection.more_available
        parts = [f"Status {collection.status}"]
        held = len(self.items.get(op.folder_id, {}))
        if first:
            parts.append("initial sync")
        else:
            parts.append(f"{added} new item{'s' if added != 1 else ''}")
            if changed:
                parts.append(f"{changed} changed")
            if deleted:
                parts.append(f"{deleted} deleted")
        parts.append(f"sync key {collection.sync_key}")
        if collection.more_available:
            parts.append("more available")
        details: dict[str, object] = {
            "folder": name,
            "folder_id": op.folder_id,
            "items": added,
            "changed": changed,
            "deleted": deleted,
            "held": held,
            "sync_key": collection.sync_key,
            "subjects": [
                item.subject
                for item in self._new_items(op.folder_id, collection)
                if item.subject is not None
            ],
        }
        if again and rounds < MAX_SYNC_ROUNDS:
            run.queue.popleft()
            run.queue.appendleft(_SyncOp(op.folder_id))
            return self._result(
                op,
                response,
                collection.status,
                Outcome.OK,
                "  ".join(parts),
                Send(self._must_next()),
                **details,
            )
        if again:
            parts.append(f"stopping after {MAX_SYNC_ROUNDS} rounds")
        return self._advance(run, op, response, collection.status, "  ".join(parts), **details)

    def _sync_status(
        self, run: _Run, op: _SyncOp, response: HttpResponse, code: int, name: str
    ) -> StepResult:
        if code == SyncStatus.INVALID_SYNC_KEY:
            return self._resync(
                run,
                op,
                response,
                code,
                f"{name}: Status 3 invalid sync key: resyncing the folder from 0",
                folder_id=op.folder_id,
            )
        if code == SyncStatus.FOLDER_HIERARCHY_CHANGED:
            return self._resync(
                run,
                op,
                response,
                code,
                f"{name}: Status 12 hierarchy changed: FolderSync, then Sync again",
                folder_id=None,
                refetch_hierarchy=True,
            )
        return self._finish_failed(run, op, response, code, f"{name}: Sync Status {code}")

    def _resync(
        self,
        run: _Run,
        op: _Op,
        response: HttpResponse,
        code: int,
        why: str,
        *,
        folder_id: str | None,
        refetch_hierarchy: bool = False,
    ) -> StepResult:
        if run.resyncs >= MAX_RESYNCS:
            return self._finish_failed(
                run, op, response, code, f"{why}; giving up after {MAX_RESYNCS} resyncs"
            )
        run.resyncs += 1
        if folder_id is not None:
            # MS-ASCMD 2.2.3.177.17 Status 3: start the folder again from SyncKey 0.
            self.sync_keys[folder_id] = "0"
            self.items.pop(folder_id, None)
        elif refetch_hierarchy:
            run.queue.appendleft(_FolderSyncOp())
        else:
            # MS-ASCMD 2.2.3.177.4 Status 9: the hierarchy starts again from SyncKey 0.
            self.folder_sync_key = "0"
            self.folders.clear()
            self.sync_keys.clear()
            self.items.clear()
        return self._result(op, response, code, Outcome.RESYNC, why, Send(self._must_next()))

    def _apply_sync(
        self, folder_id: str, collection: SyncCollectionResponse
    ) -> tuple[int, int, int]:
        held = self.items.setdefault(folder_id, {})
        added = changed = deleted = 0
        for command in collection.commands or ():
            if isinstance(command, ServerAdd):
                held[command.server_id] = _item(command.server_id, command.application_data)
                added += 1
            elif isinstance(command, ItemChange):
                old = held.get(command.server_id)
                new = _item(command.server_id, command.application_data)
                if old is not None:
                    new = Item(
                        server_id=old.server_id,
                        subject=new.subject if new.subject is not None else old.subject,
                        sender=new.sender if new.sender is not None else old.sender,
                        read=new.read if new.read is not None else old.read,
                    )
                held[command.server_id] = new
                changed += 1
            elif isinstance(command, ItemDelete | ItemSoftDelete):
                held.pop(command.server_id, None)
                deleted += 1
        return added, changed, deleted

    def _new_items(self, folder_id: str, collection: SyncCollectionResponse) -> list[Item]:
        held = self.items.get(folder_id, {})
        return [
            held[c.server_id]
            for c in collection.commands or ()
            if isinstance(c, ServerAdd) and c.server_id in held
        ]

    def _ping_result(
        self, run: _Run, op: _PingOp, response: HttpResponse, reading: _Reading
    ) -> StepResult:
        if reading.root is None:
            return self._finish_failed(run, op, response, None, "empty Ping response")
        answer = PingResponse.from_element(reading.root)
        code = answer.status
        if code == PingStatus.EXPIRED:
            self._fire(Event.COMMAND_ACCEPTED)
            return self._advance(
                run,
                op,
                response,
                code,
                f"Status 1  no changes within the {op.heartbeat} s heartbeat",
                changed_folders=[],
            )
        if code == PingStatus.CHANGES:
            self._fire(Event.COMMAND_ACCEPTED)
            changed = [fid for fid in answer.folders or () if fid in self.folders]
            names = [self.folders[fid].display_name for fid in changed]
            run.queue.popleft()
            run.queue.extendleft(reversed([_SyncOp(fid) for fid in changed]))
            summary = f"Status 2  changes in {', '.join(names) or 'unknown folders'}"
            if not run.queue:
                return self._result(
                    op,
                    response,
                    code,
                    Outcome.OK,
                    summary,
                    self._done(run),
                    changed_folders=names,
                )
            return self._result(
                op,
                response,
                code,
                Outcome.OK,
                summary + ": syncing",
                Send(self._must_next()),
                changed_folders=names,
            )
        if code == PingStatus.HEARTBEAT_OUT_OF_RANGE and answer.heartbeat_interval is not None:
            if run.resyncs >= MAX_RESYNCS:
                return self._finish_failed(
                    run, op, response, code, "Status 5 heartbeat out of range, again"
                )
            run.resyncs += 1
            allowed = answer.heartbeat_interval
            run.queue.popleft()
            run.queue.appendleft(_PingOp(allowed, op.folder_ids))
            return self._result(
                op,
                response,
                code,
                Outcome.RESYNC,
                f"Status 5  heartbeat {op.heartbeat} s out of range: retrying with {allowed} s",
                Send(self._must_next()),
            )
        if code == PingStatus.FOLDER_SYNC_REQUIRED:
            return self._resync(
                run,
                op,
                response,
                code,
                "Status 7  folder hierarchy out of date: FolderSync, then Ping again",
                folder_id=None,
                refetch_hierarchy=True,
            )
        return self._finish_failed(run, op, response, code, f"Ping Status {code}")

    def _send_mail_result(
        self, run: _Run, op: _SendMailOp, response: HttpResponse, reading: _Reading
    ) -> StepResult:
        if self.version >= _V.V14_0:
            answer = SendMailResponse.from_element(reading.root)
            if answer.status is not None and answer.status != 1:
                return self._finish_failed(
                    run,
                    op,
                    response,
                    answer.status,
                    f"SendMail Status {answer.status} {status_name(answer.status)}",
                )
        self._fire(Event.COMMAND_ACCEPTED)
        return self._advance(
            run,
            op,
            response,
            None,
            f"sent {op.mail.subject!r} to {op.mail.to}",
            client_id=op.client_id,
        )

    def _settings_result(
        self, run: _Run, op: _SettingsOp, response: HttpResponse, reading: _Reading
    ) -> StepResult:
        if reading.root is None:
            return self._finish_failed(run, op, response, None, "empty Settings response")
        answer = SettingsResponse.from_element(reading.root)
        if answer.status != 1:
            return self._finish_failed(
                run, op, response, answer.status, f"Settings Status {answer.status}"
            )
        self._fire(Event.COMMAND_ACCEPTED)
        info = answer.device_information_status
        return self._advance(
            run,
            op,
            response,
            answer.status,
            f"Status 1  DeviceInformation Status {info if info is not None else '-'}",
            device_information_status=info,
        )

    # -- plumbing --------------------------------------------------------------------------

    def _fire(self, event: Event) -> None:
        after = TRANSITIONS.get((self.state, event))
        if after is None:
            raise IllegalTransition(self.state, event)
        self.state = after

    def _must_next(self) -> HttpRequest:
        request = self._next_request()
        assert request is not None, "a Send action needs an exchange at the head of the queue"
        return request

    def _advance(
        self,
        run: _Run,
        op: _Op,
        response: HttpResponse,
        code: int | None,
        summary: str,
        **details: object,
    ) -> StepResult:
        """The head exchange succeeded: move to the next one, or finish the step."""
        run.queue.popleft()
        problem = self._expand(run)
        if problem is not None:
            run.failed = True
            run.queue.clear()
            return self._result(
                op,
                response,
                code,
                Outcome.OK,
                f"{summary}; but {problem}",
                Done(False),
                **details,
            )
        if run.queue:
            return self._result(
                op, response, code, Outcome.OK, summary, Send(self._must_next()), **details
            )
        return self._result(op, response, code, Outcome.OK, summary, self._done(run), **details)

    def _done(self, run: _Run) -> Done:
        return Done(not run.failed)

    def _finish_failed(
        self,
        run: _Run,
        op: _Op,
        response: HttpResponse,
        code: int | None,
        summary: str,
        **details: object,
    ) -> StepResult:
        run.failed = True
        run.queue.clear()
        if self.state in (
            DeviceState.PROVISIONING,
            DeviceState.ACKNOWLEDGING,
            DeviceState.WIPE_PENDING,
        ):
            self._fire(Event.PROVISION_FAILED)
        return self._result(op, response, code, Outcome.FAILED, summary, Done(False), **details)

    def _result(
        self,
        op: _Op,
        response: HttpResponse,
        code: int | None,
        outcome: Outcome,
        summary: str,
        action: Action,
        **details: object,
    ) -> StepResult:
        run = self._run
        step_name = run.step.name if run is not None else _command_of(op)
        return StepResult(
            step=step_name,
            command=_command_of(op),
            label=self._label(op),
            outcome=outcome,
            summary=summary,
            http_status=response.status,
            eas_status=code,
            details=details,
            action=action,
        )

    def _label(self, op: _Op) -> str:
        if isinstance(op, _ProvisionOp):
            return "Provision (wipe fetch)" if op.wipe_fetch else "Provision"
        if isinstance(op, _AckOp):
            return "Provision (acknowledge)"
        if isinstance(op, _WipeAckOp):
            return "Provision (wipe acknowledge)"
        if isinstance(op, _SyncOp):
            folder = self.folders.get(op.folder_id)
            return f"Sync {folder.display_name if folder else op.folder_id}"
        return _command_of(op)

    def _inbox(self) -> Folder | None:
        for folder in self.folders.values():
            if folder.type == FolderType.INBOX:
                return folder
        return None


# --- small pure functions ----------------------------------------------------------------------


def _command_of(op: _Op) -> str:
    if isinstance(op, _OptionsOp):
        return "OPTIONS"
    if isinstance(op, _ProvisionOp | _AckOp | _WipeAckOp):
        return "Provision"
    if isinstance(op, _FolderSyncOp):
        return "FolderSync"
    if isinstance(op, _SyncOp | _ResolveSync):
        return "Sync"
    if isinstance(op, _PingOp | _ResolvePing):
        return "Ping"
    if isinstance(op, _SendMailOp):
        return "SendMail"
    return "Settings"


def _read(response: HttpResponse) -> _Reading:
    """Decode a 200 body far enough to see its root and any global status in it."""
    if not response.body:
        return _Reading(None, None)
    root = decode(response.body)
    status_el = root.child("Status", root.page)
    code: int | None = None
    if status_el is not None and status_el.text is not None and status_el.text.isdigit():
        value = int(status_el.text)
        # MS-ASCMD 2.2.2 / notes 3.3: from 14.0 a global status is <Root><Status>N</Status>.
        if value >= FIRST_GLOBAL_STATUS:
            code = value
    # Provision/Status also uses 139/141/145/165 as Provision's own statuses; 129/177/140 and
    # 142-144 are still global there.
    if root.page == "Provision" and code in (139, 141, 145, 165):
        code = None
    return _Reading(root, code)


def _collection_for(answer: SyncResponse, folder_id: str) -> SyncCollectionResponse | None:
    for collection in answer.collections or ():
        if collection.collection_id == folder_id:
            return collection
    return None


def _item(server_id: str, data: Element | None) -> Item:
    if data is None:
        return Item(server_id=server_id)
    try:
        mail = EmailItem.from_container(data, "ApplicationData")
    except ActiveSyncError:
        return Item(server_id=server_id)
    return Item(server_id=server_id, subject=mail.subject, sender=mail.from_, read=mail.read)


def _retry_after(response: HttpResponse, now: float, attempt: int) -> tuple[float, str]:
    """Seconds to wait after a 503: Retry-After (seconds or an HTTP date), else 2, 4, 8..."""
    raw = response.header("Retry-After")
    if raw is not None:
        raw = raw.strip()
        if raw.isdigit():
            return min(float(raw), MAX_BACKOFF_SECONDS), "Retry-After"
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            when = None
        if when is not None and when.tzinfo is not None:
            seconds = max(0.0, when.timestamp() - now)
            return min(seconds, MAX_BACKOFF_SECONDS), "Retry-After date"
    # MS-ASHTTP 3.1.5.2.3: without Retry-After, wait a few seconds with exponential backoff.
    return min(DEFAULT_BACKOFF * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS), "exponential back-off"


def _split_list(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _as_key(text: str) -> int:
    return int(text)


def _reason(status: int) -> str:
    return {
        400: "bad request",
        404: "not an ActiveSync endpoint",
        451: "redirect to another server",
        500: "server error",
        501: "not implemented",
        507: "mailbox full",
    }.get(status, "unexpected status")


def _provision_status_name(status: int) -> str:
    try:
        return ProvisionStatus(status).name
    except ValueError:
        return status_name(status)


def _policy_status_name(status: int | None) -> str:
    if status is None:
        return "(missing)"
    try:
        return PolicyStatus(status).name
    except ValueError:
        return "(unknown)"


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def _json(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _mime(sender: str, mail: SendMail) -> bytes:
    """A minimal RFC 5322 message (CRLF line ends, as SMTP expects)."""
    lines = [
        f"From: {sender}",
        f"To: {mail.to}",
        f"Subject: {mail.subject}",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="utf-8"',
        "",
        mail.body,
    ]
    return "\r\n".join(lines).encode("utf-8")
