"""The values of a scenario: named phones, the steps of the timeline, and the expectations.

Responsibility: frozen attrs classes the scenario runner executes, one class per step kind, plus
the vocabularies the parser checks names against (gatekeeper states, UEM groups, event types,
counters). It must not parse YAML (``scenarios.spec`` does), run anything or do I/O.

Theory of operation: a ``Scenario`` (in ``scenarios.spec``) holds a tuple of ``Step`` values in
file order. Every step knows its ``index`` in ``steps:`` and its ``line`` in the file, so a
runner can report a failed expectation as ``limit.yaml: steps[4] (line 23): ...``. Steps that
act on a record name it with a ``RecordRef``: the user and EAS DeviceId, and the named phone
when the file named one. Everything is already validated: a runner never has to check a field.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import attrs

import sentry_sim.events as gatekeeper_events
import uem_sim.events as uem_events
from activesync.versions import ProtocolVersion
from device_sim.client import DeviceState
from device_sim.wire import QueryForm, Quirk
from uem_sim.contract import Reason
from uem_sim.model import AdminAction, User
from uem_sim.registry import GROUPS

# --- vocabularies -------------------------------------------------------------------------------

#: What the gatekeeper's record can be expected to be (``absent``: no record at all).
GATEKEEPER_STATES: Final = ("ALLOWED", "BLOCKED", "WIPED", "UNKNOWN", "absent")
#: What the UEM's record can be expected to be.
UEM_STATES: Final = ("ALLOW", "BLOCK", "WIPE", "absent")
#: The groups of the UEM's ActiveSync devices view, and ``absent``.
UEM_GROUPS: Final = (*GROUPS, "absent")
#: What a phone's last step came to.
DEVICE_SAW: Final = ("allowed", "blocked", "wiped", "error")
#: The phone's state machine states (``device_sim.client.DeviceState`` values).
DEVICE_STATES: Final = tuple(s.value for s in DeviceState)
#: Reason names (the UEM's taxonomy).
REASON_NAMES: Final = tuple(r.name for r in Reason if r.name is not None)


@attrs.frozen
class EventType:
    """An event a scenario may expect: which actor emits it, its names, its fields."""

    actor: str  #: "gatekeeper" or "uem"
    name: str  #: the class name, e.g. ``ReportSent``
    kind: str  #: the ``event`` value in its JSON form, e.g. ``report_sent``
    fields: frozenset[str]  #: fields a ``where:`` filter may name


def _event_types() -> Mapping[str, EventType]:
    found: dict[str, EventType] = {}
    base = gatekeeper_events.Event
    for value in vars(gatekeeper_events).values():
        if isinstance(value, type) and issubclass(value, base) and value is not base:
            names = frozenset(f.name for f in attrs.fields(value)) - {"at"}
            found[value.__name__] = EventType("gatekeeper", value.__name__, value.kind, names)
    for cls in typing.get_args(uem_events.Event):
        names = frozenset(f.name for f in attrs.fields(cls)) - {"at"}
        found[cls.__name__] = EventType("uem", cls.__name__, cls.__name__, names)
    return MappingProxyType(found)


#: Every event type by class name (``ReportSent``); ``event_type`` also takes the JSON kind.
EVENT_TYPES: Final = _event_types()


def event_type(name: str) -> EventType | None:
    """The event type called ``name`` (class name, or the gatekeeper's JSON kind)."""
    found = EVENT_TYPES.get(name)
    if found is not None:
        return found
    for candidate in EVENT_TYPES.values():
        if candidate.kind == name:
            return candidate
    return None


#: Counters a scenario may expect, with where the runner reads them. Gatekeeper counters come
#: from its ``/metrics`` and ``/api/stats``; ``uem_*`` from the UEM's ActiveSync devices view
#: and event log. All count since the lab started.
COUNTERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "reports_sent": "gatekeeper: reports the UEM answered (sentry_reports_total, sent)",
        "reports_failed": "gatekeeper: failed report attempts (sentry_reports_total, failed)",
        "requests_forwarded": "gatekeeper: device requests proxied to Exchange",
        "requests_denied": "gatekeeper: device requests it answered with a refusal",
        "provisions_answered": "gatekeeper: Provision requests it answered itself",
        "decisions_applied": "gatekeeper: decisions cached (any source)",
        "pushes_received": "gatekeeper: UEM pushes received",
        "resyncs": "gatekeeper: resyncs completed",
        "resyncs_failed": "gatekeeper: resyncs failed",
        "records": "gatekeeper: records in the device list (/api/stats records)",
        "allowed": "gatekeeper: records ALLOWED (/api/stats by_state)",
        "blocked": "gatekeeper: records BLOCKED",
        "wiped": "gatekeeper: records WIPED",
        "unknown": "gatekeeper: records UNKNOWN",
        "reports_in_flight": "gatekeeper: records with a report in flight",
        "outbox_pending": "gatekeeper: reports waiting in the outbox",
        "uem_records": "UEM: records in the ActiveSync devices view",
        **{f"uem_{g}": f"UEM: records in the {g} group" for g in GROUPS},
        "uem_reports_received": "UEM: reports received (RecordReported events)",
        "uem_pushes_delivered": "UEM: push batches delivered (PushDelivered events)",
    }
)


# --- devices and records ------------------------------------------------------------------------


@attrs.frozen
class ClientCertificate:
    """A phone's client certificate for mutual TLS (``client_certificate:`` of a device).

    The runner has the lab's CA issue it when the phone is first used
    (``Lab.device_identity(user, device_id)``): subject CN ``user`` and, with ``device_id``,
    the SAN URI ``urn:sentry-sim:device:<device_id>``; without it the certificate stands for
    every device of ``user``. It need not match the phone's own user and device: that is how a
    scenario shows a borrowed certificate being refused.
    """

    user: str
    device_id: str | None = None

    @property
    def label(self) -> str:
        return self.user + (f" (device {self.device_id})" if self.device_id else " (any device)")


@attrs.frozen(kw_only=True)
class DeviceSpec:
    """A named simulated phone (``devices:`` of the scenario)."""

    name: str
    user: str
    password: str = attrs.field(repr=False)
    device_id: str
    device_type: str = "iPhone"
    version: ProtocolVersion = ProtocolVersion.V16_1
    query: QueryForm = QueryForm.PLAIN
    quirks: frozenset[Quirk] = frozenset()
    model: str = "Simulated Phone"
    os: str = "SimOS 17.1"
    user_agent: str = "sentry-sim-device/1.0"
    #: Which of the scenario's gatekeepers the phone talks to (1 = the lab's own).
    gatekeeper: int = 1
    #: The certificate it presents for mutual TLS (None: it holds none).
    client_certificate: ClientCertificate | None = None

    @property
    def ref(self) -> RecordRef:
        return RecordRef(self.user, self.device_id, self.name)


@attrs.frozen
class RecordRef:
    """One (user, EAS DeviceId) record; ``device`` is the named phone, when one was named."""

    user: str
    device_id: str
    device: str | None = None

    @property
    def label(self) -> str:
        return self.device or f"{self.user}/{self.device_id}"


@attrs.frozen(kw_only=True)
class PostureChange:
    """Posture fields to report or set; ``None`` leaves a field as it is."""

    platform: str | None = None
    os_version: str | None = None
    model: str | None = None
    compromised: bool | None = None
    data_protection: bool | None = None
    apps: frozenset[str] | None = None

    def to_json(self) -> dict[str, Any]:
        """The fields that are set, as the UEM's check-in and device APIs take them."""
        out: dict[str, Any] = {}
        for field in attrs.fields(PostureChange):
            value = getattr(self, field.name)
            if value is not None:
                out[field.name] = sorted(value) if isinstance(value, frozenset) else value
        return out


# --- steps --------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _Step:
    #: Position in ``steps:`` (0-based, as in ``steps[4]``).
    index: int
    #: 1-based line in the file, when known.
    line: int | None = None

    @property
    def where(self) -> str:
        return f"steps[{self.index}]" + (f" (line {self.line})" if self.line else "")


@attrs.frozen(kw_only=True)
class Say(_Step):
    """``say:`` / ``note:``: narration printed in the run's trace."""

    text: str


@attrs.frozen(kw_only=True)
class Advance(_Step):
    """``advance: 25h``: move the lab's virtual clock forward (timers due meanwhile fire)."""

    seconds: float
    text: str


class DeviceAction(enum.Enum):
    """What a phone can be told to do (``- <action>: <device name>``)."""

    OPTIONS = "options"  #: OPTIONS /Microsoft-Server-ActiveSync
    CONNECT = "connect"  #: OPTIONS, Provision, FolderSync, Sync (a phone's first connection)
    PROVISION = "provision"  #: both Provision phases
    FOLDERSYNC = "foldersync"  #: FolderSync
    SYNC = "sync"  #: Sync (the Inbox unless ``folders`` says otherwise)
    PING = "ping"  #: Ping with ``heartbeat`` seconds
    SEND_MAIL = "send_mail"  #: SendMail
    SETTINGS = "settings"  #: Settings with DeviceInformation


@attrs.frozen(kw_only=True)
class DeviceStep(_Step):
    """A phone does one EAS step. Options per action: ``sync``/``ping``: ``folders``;
    ``ping``: ``heartbeat`` (seconds); ``send_mail``: ``to``, ``subject``, ``body``."""

    action: DeviceAction
    device: str
    folders: tuple[str, ...] = ()
    heartbeat_s: int = 60
    to: str = ""
    subject: str = ""
    body: str = ""


@attrs.frozen(kw_only=True)
class CheckIn(_Step):
    """``checkin:``: the phone's MDM agent checks in (``POST /api/v1/mdm/checkin``) with a
    posture; a phone unknown to the UEM is enrolled (then ``os_version`` is needed)."""

    device: str
    posture: PostureChange
    applied_policy_version: int | None = None


@attrs.frozen(kw_only=True)
class RecordAction(_Step):
    """``allow``/``block``/``wipe``/``remove``/``clear``: an administrator acts on a record
    (``POST /api/v1/eas/devices/{user}/{device_id}/actions``)."""

    action: AdminAction
    record: RecordRef
    note: str = ""


@attrs.frozen(kw_only=True)
class SetPosture(_Step):
    """``posture:``: the MDM learns a new posture (``PATCH /api/v1/admin/devices/...``)."""

    record: RecordRef
    posture: PostureChange
    last_check_in_days_ago: float | None = None


@attrs.frozen(kw_only=True)
class Register(_Step):
    """``register:``: enrol a device with the MDM (``POST /api/v1/admin/devices``)."""

    record: RecordRef
    posture: PostureChange  #: ``os_version`` always set
    last_check_in_days_ago: float | None = None


@attrs.frozen(kw_only=True)
class Unregister(_Step):
    """``unregister:``: retire a registered device (``DELETE /api/v1/admin/devices/...``)."""

    record: RecordRef


@attrs.frozen(kw_only=True)
class AddUser(_Step):
    """``add_user:``: create a user and mailbox in the UEM (and Exchange, in a lab)."""

    user: User


@attrs.frozen(kw_only=True)
class ChangePolicy(_Step):
    """``policy:``: change any ``uem:`` policy key (``PATCH /api/v1/admin/policy``).

    ``changes`` is the validated, deep-frozen body; ``scenarios.spec.thaw`` makes it JSON again.
    """

    changes: Mapping[str, Any]


@attrs.frozen(kw_only=True)
class ComplianceCheck(_Step):
    """``uem: compliance_check``: run the UEM's periodic compliance check now."""


@attrs.frozen(kw_only=True)
class Resync(_Step):
    """``gatekeeper: resync``: the gatekeeper resyncs with the UEM now."""

    gatekeeper: int = 1  #: which gatekeeper (``gatekeeper: {action: resync, number: 2}``)


@attrs.frozen(kw_only=True)
class Fault(_Step):
    """``uem: down|up``, ``exchange: down|up``: stop or restore an actor's listener;
    ``gatekeeper: push_down|push_up``: the UEM's pushes to a gatekeeper fail / work again."""

    actor: str  #: "uem", "exchange" or "push"
    up: bool
    gatekeeper: int = 1  #: for "push": which gatekeeper


#: Servers a fault plan can be set on (``uem_faults:``, ``exchange_faults:``, ``clear_faults:``).
FAULT_ACTORS: Final = ("uem", "exchange")


@attrs.frozen(kw_only=True)
class SetFaults(_Step):
    """``uem_faults: {...}`` / ``exchange_faults: {...}``: activate a fault plan (the mapping of
    docs/faults.md) on the mock UEM or the mock Exchange through its admin API. The plan
    replaces the active one: every counter restarts, hung requests are released.

    ``plan`` is the validated, deep-frozen mapping; ``scenarios.spec.thaw`` makes it JSON."""

    actor: str  #: one of FAULT_ACTORS
    plan: Mapping[str, Any]


@attrs.frozen(kw_only=True)
class ClearFaults(_Step):
    """``clear_faults: uem|exchange|all``: clear the fault plan of those servers."""

    actors: tuple[str, ...]  #: some of FAULT_ACTORS


# --- expectations -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class DeviceExpectation:
    """What a phone saw in its last step. ``None`` fields are not checked."""

    path: str
    device: str
    saw: str | None = None  #: allowed | blocked | wiped | error
    http: int | None = None  #: HTTP status of its last response
    eas_status: int | None = None  #: EAS status of its last response
    state: str | None = None  #: a DeviceState value (ready, blocked, wiped...)


@attrs.frozen(kw_only=True)
class GatekeeperExpectation:
    """The gatekeeper's record (``GET /api/devices/{user}/{device_id}``)."""

    path: str
    record: RecordRef
    gatekeeper: int = 1  #: which of the scenario's gatekeepers
    state: str | None = None  #: one of GATEKEEPER_STATES
    reasons: int | None = None  #: exact reason mask (``reasons: []`` is 0)
    reasons_include: int = 0  #: these bits must be set
    fallback: bool | None = None  #: decided by the unreachable-UEM rule
    policy_version: int | None = None


@attrs.frozen(kw_only=True)
class UemExpectation:
    """The UEM's record in its ActiveSync devices view."""

    path: str
    record: RecordRef
    group: str | None = None  #: one of UEM_GROUPS
    state: str | None = None  #: one of UEM_STATES
    reasons: int | None = None
    reasons_include: int = 0
    registered: bool | None = None


@attrs.frozen(kw_only=True)
class EventExpectation:
    """Events of one type (optionally of one record, with field values) counted in a window.

    ``happened`` items default to ``at_least=1``; ``not_happened`` items are ``count=0``.
    """

    path: str
    event: EventType
    record: RecordRef | None = None
    where: Mapping[str, Any] = attrs.field(factory=lambda: MappingProxyType({}))
    count: int | None = None
    at_least: int | None = None
    at_most: int | None = None


class Window(enum.Enum):
    """Which events ``expect.events`` looks at."""

    START = "start"  #: every event since the lab started
    PREVIOUS = "previous"  #: events since the previous ``expect`` step (or the start)


@attrs.frozen(kw_only=True)
class CounterExpectation:
    """A counter of ``COUNTERS``: exactly ``equals``, or within ``at_least``..``at_most``."""

    path: str
    name: str
    equals: int | None = None
    at_least: int | None = None
    at_most: int | None = None


@attrs.frozen(kw_only=True)
class Expect(_Step):
    """``expect:``: checks made after the previous steps have settled."""

    devices: tuple[DeviceExpectation, ...] = ()
    gatekeeper: tuple[GatekeeperExpectation, ...] = ()
    uem: tuple[UemExpectation, ...] = ()
    events: tuple[EventExpectation, ...] = ()
    events_since: Window = Window.START
    counters: tuple[CounterExpectation, ...] = ()


Step = (
    Say
    | Advance
    | DeviceStep
    | CheckIn
    | RecordAction
    | SetPosture
    | Register
    | Unregister
    | AddUser
    | ChangePolicy
    | ComplianceCheck
    | Resync
    | Fault
    | SetFaults
    | ClearFaults
    | Expect
)
