"""Fault injection in the mock Exchange: the EAS-aware faults, and the switch that holds them
together with the generic HTTP faults of ``labfaults``.

Responsibility: read, hold and apply the faults only an EAS server can make: the Nth
Provision answered "provision again" (HTTP 449 below 14.0), the next K Syncs answered with a
chosen Sync Status, the next K responses of a command sent with a corrupted WBXML token. It
must not do I/O: ``ExchangeFaults.before_command`` returns the ``EasAnswer`` to send instead
of running the command, ``corrupt_response`` returns the bytes to send instead of the real
body, and ``exchange_sim.app`` does the sending (and serves ``/admin/faults``).

Theory of operation: one plan mapping (docs/faults.md) carries both kinds; the EAS keys
(``EAS_KEYS``) are read here, the rest by ``labfaults.FaultPlan.from_mapping`` with the EAS
command names allowed in ``scope.command``. Setting a plan restarts every counter; the EAS
faults count only requests that reach their command handler (authenticated, a served command
and, except Provision and Ping, a valid policy key), as a back end failing the command would.

Version rules (activesync-notes 3.3): "449 on the Nth Provision" is
``status_answer("Provision", 142, version)``: HTTP 449 with an empty body below 14.0, and from
14.0, where 449 is no longer used, HTTP 200 with ``<Provision><Status>142</Status>``
(DeviceNotProvisioned), which is what that version's clients act on. ``always_449: true``
sends the bare HTTP 449 to every version (a server that gets the versions wrong). A Sync
status below 101 always travels in the body (HTTP 200, ``<Sync><Status>X</Status></Sync>``);
a global status (101 and up) follows the same per-version rule as every other answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs
from aiohttp import web

from activesync.answers import EasAnswer, status_answer
from activesync.commands.roots import COMMAND_NAMES, OPTIONS
from activesync.errors import ActiveSyncError
from activesync.query import ENDPOINT, parse_request
from activesync.status import Status
from activesync.versions import ProtocolVersion
from activesync.wbxml.codepages import PAGES, TAGS
from labfaults import FaultControl, FaultError, FaultPlan, Subscriber
from labfaults.plan import FAULT_KEYS, MAX_COUNT

#: The plan keys read here; every other key is a generic fault (``labfaults.plan``).
EAS_KEYS: Final = frozenset({"provision_449_on", "sync_status", "corrupt_wbxml"})
#: Commands whose response is a WBXML body the mock serves (SendMail answers an empty 200).
WBXML_COMMANDS: Final = frozenset(
    {"Provision", "FolderSync", "Sync", "Ping", "Settings", "GetItemEstimate", "ItemOperations"}
)
#: What a generic rule's ``scope.command`` may name.
SCOPE_COMMANDS: Final = frozenset({*COMMAND_NAMES, OPTIONS})
#: The route of the fault admin API (admin token required, never faulted).
FAULTS_PATH: Final = "/admin/faults"

#: WBXML token layout (MS-ASWBXML 2.1.2): SWITCH_PAGE, and the bits around a tag's token.
_SWITCH_PAGE: Final = 0x00
_TOKEN_MASK: Final = 0x3F
_FIRST_TAG: Final = 0x05


# --- the EAS fault plan -----------------------------------------------------------------------


@attrs.frozen
class Provision449:
    """Answer the ``nth`` Provision (counted from when the plan was set) "provision again"."""

    nth: int
    #: Send a bare HTTP 449 whatever the version (default: the version-correct answer).
    always_449: bool = False


@attrs.frozen
class SyncStatusFault:
    """Answer the next ``count`` Syncs with Sync Status ``status``."""

    status: int
    count: int = 1


@attrs.frozen
class CorruptWbxml:
    """Corrupt one tag token in the next ``count`` WBXML responses to ``command``."""

    command: str
    count: int = 1


@attrs.frozen
class EasFaultPlan:
    """The EAS-aware faults; each is optional."""

    provision_449: Provision449 | None = None
    sync_status: SyncStatusFault | None = None
    corrupt_wbxml: CorruptWbxml | None = None

    @property
    def empty(self) -> bool:
        return (
            self.provision_449 is None and self.sync_status is None and self.corrupt_wbxml is None
        )

    def to_mapping(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.provision_449 is not None:
            out["provision_449_on"] = {
                "nth": self.provision_449.nth,
                "always_449": self.provision_449.always_449,
            }
        if self.sync_status is not None:
            out["sync_status"] = {
                "status": self.sync_status.status,
                "count": self.sync_status.count,
            }
        if self.corrupt_wbxml is not None:
            out["corrupt_wbxml"] = {
                "command": self.corrupt_wbxml.command,
                "count": self.corrupt_wbxml.count,
            }
        return out

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], source: str) -> EasFaultPlan:
        """Read the ``EAS_KEYS`` of ``mapping`` (others are ignored); ``FaultError`` names the
        key of anything it cannot use."""
        return cls(
            provision_449=(
                _provision_449(mapping["provision_449_on"], source)
                if "provision_449_on" in mapping
                else None
            ),
            sync_status=(
                _sync_status(mapping["sync_status"], source) if "sync_status" in mapping else None
            ),
            corrupt_wbxml=(
                _corrupt(mapping["corrupt_wbxml"], source) if "corrupt_wbxml" in mapping else None
            ),
        )


def _kind(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:57] + '...' if len(text) > 60 else text}"


def _keys(value: object, source: str, path: str, keys: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FaultError(source, path, f"expected a mapping, got {_kind(value)}")
    for key in value:
        if key not in keys:
            raise FaultError(
                source,
                f"{path}.{str(key)[:40]}",
                f"unknown key; expected one of {', '.join(sorted(keys))}",
            )
    return value


def _count(value: object, source: str, path: str, lo: int = 1, hi: int = MAX_COUNT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise FaultError(source, path, f"expected an integer {lo}..{hi}, got {_kind(value)}")
    return value


def _provision_449(value: object, source: str) -> Provision449:
    path = "provision_449_on"
    if isinstance(value, int) and not isinstance(value, bool):
        return Provision449(nth=_count(value, source, path))
    raw = _keys(value, source, path, frozenset({"nth", "always_449"}))
    if "nth" not in raw:
        raise FaultError(source, f"{path}.nth", "missing; which Provision (1 = the next one)")
    always = raw.get("always_449", False)
    if not isinstance(always, bool):
        raise FaultError(
            source, f"{path}.always_449", f"expected true or false, got {_kind(always)}"
        )
    return Provision449(nth=_count(raw["nth"], source, f"{path}.nth"), always_449=always)


def _sync_status(value: object, source: str) -> SyncStatusFault:
    path = "sync_status"
    raw = _keys(value, source, path, frozenset({"status", "count"}))
    if "status" not in raw:
        raise FaultError(source, f"{path}.status", "missing; the Sync Status to answer with")
    status = raw["status"]
    # MS-ASCMD 2.2.3.177.17: Sync statuses are 1..16; 101 and up are the global statuses.
    if isinstance(status, bool) or not isinstance(status, int) or not 2 <= status <= 199:
        raise FaultError(
            source,
            f"{path}.status",
            f"expected a failing Sync status 2..199 (e.g. 3 invalid sync key, 12 hierarchy "
            f"changed, 110 server error), got {_kind(status)}",
        )
    return SyncStatusFault(
        status=status, count=_count(raw.get("count", 1), source, f"{path}.count")
    )


def _corrupt(value: object, source: str) -> CorruptWbxml:
    path = "corrupt_wbxml"
    raw: Mapping[str, Any] = (
        {"command": value}
        if isinstance(value, str)
        else _keys(value, source, path, frozenset({"command", "count"}))
    )
    command = raw.get("command")
    if not isinstance(command, str) or command not in WBXML_COMMANDS:
        raise FaultError(
            source,
            f"{path}.command",
            f"expected one of {', '.join(sorted(WBXML_COMMANDS))}, got "
            f"{'nothing' if command is None else _kind(command)}",
        )
    return CorruptWbxml(
        command=str(command), count=_count(raw.get("count", 1), source, f"{path}.count")
    )


# --- corrupting a body ------------------------------------------------------------------------


def _skip_mb_uint32(body: bytes, pos: int) -> int:
    # MS-ASWBXML 2.1.2 / WBXML 1.3 5.1: mb_u_int32, high bit set on every byte but the last.
    while pos < len(body) and body[pos] & 0x80:
        pos += 1
    return pos + 1


def corrupt_wbxml(body: bytes) -> bytes | None:
    """``body`` with its first tag's token replaced by one its code page does not define
    (content bit kept), so a decoder fails with "unknown WBXML token"; None if ``body`` has no
    tag to corrupt."""
    if len(body) < 5:
        return None
    pos = 1  # after the version byte
    for _ in range(3):  # public identifier, charset, string table length
        pos = _skip_mb_uint32(body, pos)
    page = 0
    while pos + 1 < len(body) and body[pos] == _SWITCH_PAGE:
        page = body[pos + 1]
        pos += 2
    if pos >= len(body) or page >= len(PAGES) or body[pos] & _TOKEN_MASK < _FIRST_TAG:
        return None
    free = [t for t in range(_TOKEN_MASK, _FIRST_TAG - 1, -1) if t not in TAGS[page]]
    if not free:
        return None
    byte = body[pos]
    return body[:pos] + bytes([(byte & ~_TOKEN_MASK & 0xFF) | free[0]]) + body[pos + 1 :]


# --- the switch -------------------------------------------------------------------------------


@attrs.define(eq=False)
class EasFaultState:
    """The counters of one active ``EasFaultPlan``."""

    plan: EasFaultPlan
    provisions: int = 0
    syncs_failed: int = 0
    corrupted: int = 0

    def before_command(self, command: str, version: ProtocolVersion) -> EasAnswer | None:
        """The answer to send instead of running ``command``, or None to run it."""
        fault = self.plan.provision_449
        if command == "Provision" and fault is not None:
            self.provisions += 1
            if self.provisions == fault.nth:
                if fault.always_449:
                    return EasAnswer(http_status=449, eas_status=Status.DeviceNotProvisioned)
                return status_answer("Provision", Status.DeviceNotProvisioned, version)
        sync = self.plan.sync_status
        if command == "Sync" and sync is not None and self.syncs_failed < sync.count:
            self.syncs_failed += 1
            return status_answer("Sync", sync.status, version)
        return None

    def corrupt_response(self, command: str, body: bytes) -> bytes | None:
        """The corrupted body to send instead of ``body``, or None to send it as it is."""
        fault = self.plan.corrupt_wbxml
        if fault is None or command != fault.command or self.corrupted >= fault.count:
            return None
        corrupted = corrupt_wbxml(body)
        if corrupted is not None:
            self.corrupted += 1
        return corrupted


@attrs.define(eq=False)
class ExchangeFaults:
    """The mock Exchange's faults: the generic ones (``http``) and the EAS-aware ones."""

    http: FaultControl = attrs.field(factory=lambda: FaultControl(commands=SCOPE_COMMANDS))
    _eas: EasFaultState | None = attrs.field(default=None, init=False)

    @property
    def active(self) -> bool:
        return self._eas is not None or self.http.active

    @property
    def down(self) -> bool:
        return self.http.down

    def parse(
        self, mapping: object, source: str = "faults"
    ) -> tuple[FaultPlan | None, EasFaultPlan]:
        """Read a plan for this server without activating it."""
        if not isinstance(mapping, Mapping):
            raise FaultError(source, "", f"expected a mapping, got {_kind(mapping)}")
        eas = EasFaultPlan.from_mapping(mapping, source)
        rest = {k: v for k, v in mapping.items() if k not in EAS_KEYS}
        if any(key != "seed" for key in rest):
            return self.http.parse(rest, source), eas
        if eas.empty:
            raise FaultError(
                source,
                "",
                f"expected at least one fault: {', '.join(FAULT_KEYS)} or "
                f"{', '.join(sorted(EAS_KEYS))} (to clear, DELETE)",
            )
        if rest.get("seed") is not None:
            # Only EAS faults, which draw no random numbers: the seed is checked, then unused.
            _count(rest["seed"], source, "seed", 0, 2**63 - 1)
        generic = None
        return generic, eas

    def set_mapping(self, mapping: object, source: str = "faults") -> None:
        """Validate and activate (every counter restarts); ``FaultError`` names the key."""
        generic, eas = self.parse(mapping, source)
        self._eas = None if eas.empty else EasFaultState(eas)
        if generic is None:
            self.http.clear()
        else:
            self.http.set(generic)

    def clear(self) -> None:
        self._eas = None
        self.http.clear()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Called after every change with the generic plan (None when it has none)."""
        return self.http.subscribe(subscriber)

    def describe(self) -> dict[str, Any]:
        """The generic view of ``FaultControl.describe`` with the EAS keys merged into
        ``plan`` (so a GET body can be PUT back) and their counters under ``eas``."""
        view = self.http.describe()
        eas = self._eas
        view["active"] = self.active
        view["eas"] = None
        if eas is not None:
            view["plan"] = {**(view["plan"] or {}), **eas.plan.to_mapping()}
            view["eas"] = {
                "stats": {
                    "provisions_seen": eas.provisions,
                    "syncs_failed": eas.syncs_failed,
                    "responses_corrupted": eas.corrupted,
                },
            }
        return view

    def before_command(self, command: str, version: ProtocolVersion) -> EasAnswer | None:
        return None if self._eas is None else self._eas.before_command(command, version)

    def corrupt_response(self, command: str, body: bytes) -> bytes | None:
        return None if self._eas is None else self._eas.corrupt_response(command, body)


def command_of(request: web.Request) -> str | None:
    """The EAS command of a device request (plain or base64 query), or None if it has none."""
    if request.path.rstrip("/").lower() != ENDPOINT.lower():
        return None
    try:
        return parse_request(
            request.method, request.path, request.rel_url.raw_query_string, request.headers
        ).command
    except ActiveSyncError:
        return None


def is_fault_admin(request: web.Request) -> bool:
    return request.path.rstrip("/") == FAULTS_PATH


FAULTS: Final = web.AppKey("exchange_faults", ExchangeFaults)
