"""What-if: replay a journal of gatekeeper reports against a changed policy, list what flips.

Responsibility: the journal format (JSON Lines), a pure writer (values to lines), the hook a
lab uses to record one (``JournalRecorder``), a reader whose errors name the file and line, and
``replay(journal, policy)``, which runs the journal twice through the pure UEM registry (the
journal's own policy, then the new one) and returns the records whose state or reasons differ,
with both explanations and the rules that changed. Must not: talk to a running lab or read a
clock; time comes from the journal.

Journal format (one JSON object per line, ``type`` first)::

    {"type": "header", "format": "sentry-sim-journal", "version": 1, "started_at": T,
     "users": [{"name", "email"}], "security_policy_version": N,
     "policy": {<the uem: policy keys, lab-file form>},
     "devices": [{"user", "device_id", "platform", "os_version", "model", "compromised",
                  "data_protection", "apps", "last_check_in", "applied_policy_version"}]}
    {"type": "report", <uem_sim.contract.ReportRequest fields: gatekeeper_id, user, device_id,
     device_type, protocol_version, user_agent, model, seen_at, correlation_id>}
    {"type": "checkin", "at": T, "user", "device_id", <posture fields>, "applied_policy_version"}
    {"type": "action", "at": T, "user", "device_id", "action": allow|block|wipe|remove|clear,
     "note"}

Only the header and reports are required; a recorder that sees posture changes or admin actions
(the scenario runner does) writes ``checkin`` and ``action`` lines so the replay sees them too.

Theory of operation: each run starts a fresh ``uem_sim.registry.Registry`` with the header's
users and registered devices (checked in at their ``last_check_in``) and the policy under test,
applies every line in order at its own time (``registry.report`` is exactly what the UEM does
with a report, mailbox limits and first-come-first-served order included), then runs the
compliance check at the journal's last time so both runs are judged at the same instant. The
new policy is taken as the policy in force from the start (same security policy version as the
journal's, so devices have applied it): the question answered is "what if the lab had run with
this policy?".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Final

import attrs

from scenarios.spec_read import Fields, ScenarioError
from uem_sim.config import (
    POSTURE_KEYS,
    Reader,
    UemConfig,
    parse_posture,
    parse_user,
)
from uem_sim.config import parse_policy as read_policy_keys
from uem_sim.contract import ContractError, ReportRequest
from uem_sim.errors import ConfigError, UemError
from uem_sim.events import Event as UemEvent
from uem_sim.events import RecordReported
from uem_sim.model import (
    DAY,
    AdminAction,
    EasRecord,
    Posture,
    RecordKey,
    RuleResult,
    UemPolicy,
    User,
)
from uem_sim.registry import Registry

FORMAT: Final = "sentry-sim-journal"
VERSION: Final = 1
#: Bounds on what ``read_journal`` accepts.
MAX_JOURNAL_BYTES: Final = 256 * 1024 * 1024
MAX_LINE_BYTES: Final = 1024 * 1024

_HEADER_KEYS: Final = (
    "type",
    "format",
    "version",
    "started_at",
    "users",
    "devices",
    "policy",
    "security_policy_version",
)
_DEVICE_KEYS: Final = (
    "user",
    "device_id",
    *POSTURE_KEYS,
    "last_check_in",
    "applied_policy_version",
)
_CHECKIN_KEYS: Final = ("type", "at", "user", "device_id", *POSTURE_KEYS, "applied_policy_version")
_ACTION_KEYS: Final = ("type", "at", "user", "device_id", "action", "note")


# --- values -------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class JournalDevice:
    """A device registered with the UEM when the journal started."""

    user: str
    device_id: str
    posture: Posture
    last_check_in: float
    applied_policy_version: int


@attrs.frozen(kw_only=True)
class JournalHeader:
    """The lab's users, registered devices and policy when recording started."""

    started_at: float
    users: tuple[User, ...]
    devices: tuple[JournalDevice, ...]
    policy: UemPolicy

    @classmethod
    def from_config(cls, config: UemConfig, now: float) -> JournalHeader:
        """The header of a lab started from ``config`` at ``now``."""
        devices = tuple(
            JournalDevice(
                user=spec.user,
                device_id=spec.device_id,
                posture=spec.posture,
                last_check_in=now - spec.last_check_in_days_ago * DAY,
                applied_policy_version=config.policy.security.version,
            )
            for spec in config.devices
        )
        return cls(started_at=now, users=config.users, devices=devices, policy=config.policy)

    @classmethod
    def from_registry(cls, registry: Registry, now: float) -> JournalHeader:
        """The header of a running UEM's current state (to start a journal mid-run)."""
        devices = tuple(
            JournalDevice(
                user=d.mailbox,
                device_id=d.device_id,
                posture=d.posture,
                last_check_in=d.last_check_in,
                applied_policy_version=d.applied_policy_version,
            )
            for d in sorted(registry.devices.values(), key=lambda d: d.key)
        )
        users = tuple(sorted(registry.users.values(), key=lambda u: u.mailbox))
        return cls(started_at=now, users=users, devices=devices, policy=registry.policy)


@attrs.frozen(kw_only=True)
class ReportEntry:
    """A gatekeeper report as the UEM received it."""

    line: int
    report: ReportRequest

    @property
    def at(self) -> float:
        return self.report.seen_at


@attrs.frozen(kw_only=True)
class CheckInEntry:
    """The device agent checked in (posture fields given are the ones that changed)."""

    line: int
    at: float
    user: str
    device_id: str
    posture: Mapping[str, Any]
    applied_policy_version: int | None = None


@attrs.frozen(kw_only=True)
class ActionEntry:
    """An administrator acted on a record."""

    line: int
    at: float
    user: str
    device_id: str
    action: AdminAction
    note: str = ""


Entry = ReportEntry | CheckInEntry | ActionEntry


@attrs.frozen(kw_only=True)
class Journal:
    source: str
    header: JournalHeader
    entries: tuple[Entry, ...]

    @property
    def reports(self) -> int:
        return sum(1 for e in self.entries if isinstance(e, ReportEntry))

    @property
    def ends_at(self) -> float:
        return max((e.at for e in self.entries), default=self.header.started_at)


# --- writing ------------------------------------------------------------------------------------


def policy_section(policy: UemPolicy) -> dict[str, Any]:
    """A policy in the lab file's ``uem:`` form (what ``parse_policy`` reads back)."""
    s = policy.security
    return {
        "auto_block_unregistered": policy.auto_block_unregistered,
        "max_devices_per_mailbox": policy.max_devices_per_mailbox,
        "security_policy": {
            "block_compromised": s.block_compromised,
            "min_os_version": dict(s.min_os_version),
            "require_data_protection": s.require_data_protection,
            "max_days_out_of_contact": s.max_days_out_of_contact,
            "allowed_platforms": None
            if s.allowed_platforms is None
            else sorted(s.allowed_platforms),
            "allowed_models": None if s.allowed_models is None else sorted(s.allowed_models),
            "blocked_apps": sorted(s.blocked_apps),
            "block_policy_out_of_date": s.block_policy_out_of_date,
        },
        "activesync_policy": dict(policy.activesync.settings),
    }


def _posture_json(p: Posture) -> dict[str, Any]:
    return {
        "platform": p.platform,
        "os_version": p.os_version,
        "model": p.model,
        "compromised": p.compromised,
        "data_protection": p.data_protection,
        "apps": sorted(p.apps),
    }


def _line(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"


@attrs.frozen
class JournalWriter:
    """Turns journal values into lines (each ends with a newline). Pure."""

    def header(self, header: JournalHeader) -> str:
        return _line(
            {
                "type": "header",
                "format": FORMAT,
                "version": VERSION,
                "started_at": header.started_at,
                "users": [{"name": u.name, "email": u.email} for u in header.users],
                "devices": [
                    {
                        "user": d.user,
                        "device_id": d.device_id,
                        **_posture_json(d.posture),
                        "last_check_in": d.last_check_in,
                        "applied_policy_version": d.applied_policy_version,
                    }
                    for d in header.devices
                ],
                "policy": policy_section(header.policy),
                "security_policy_version": header.policy.security.version,
            }
        )

    def report(self, report: ReportRequest) -> str:
        return _line({"type": "report", **report.to_dict()})

    def reported(self, event: RecordReported) -> str:
        """A report line from the UEM's ``RecordReported`` event (no device type in it)."""
        request = ReportRequest(
            gatekeeper_id=event.gatekeeper_id,
            user=event.mailbox,
            device_id=event.device_id,
            seen_at=event.at,
            correlation_id=event.correlation_id,
        )
        return self.report(request)

    def checkin(
        self,
        at: float,
        user: str,
        device_id: str,
        posture: Mapping[str, Any],
        applied_policy_version: int | None = None,
    ) -> str:
        body: dict[str, Any] = {"type": "checkin", "at": at, "user": user, "device_id": device_id}
        body.update({k: v for k, v in posture.items() if k in POSTURE_KEYS})
        if applied_policy_version is not None:
            body["applied_policy_version"] = applied_policy_version
        return _line(body)

    def action(self, at: float, user: str, device_id: str, action: AdminAction, note: str) -> str:
        return _line(
            {
                "type": "action",
                "at": at,
                "user": user,
                "device_id": device_id,
                "action": action.value,
                "note": note,
            }
        )


@attrs.define(eq=False)
class JournalRecorder:
    """The lab's hook: appends journal lines through ``write`` as reports arrive.

    Subscribe ``on_uem_event`` to the UEM's event bus (it takes ``RecordReported`` and ignores
    the rest), or call ``on_report`` with each ``ReportRequest`` the UEM receives.
    """

    write: Callable[[str], None]
    writer: JournalWriter = attrs.field(factory=JournalWriter)
    lines: int = 0
    _close: Callable[[], None] | None = None

    @classmethod
    def to_file(cls, path: str | Path, header: JournalHeader) -> JournalRecorder:
        """Create (truncate) ``path`` and write the header; each line is flushed."""
        # The file stays open for the recorder's life; close() closes it.
        handle: IO[str] = Path(path).open("w", encoding="utf-8")  # noqa: SIM115

        def write(text: str) -> None:
            handle.write(text)
            handle.flush()

        recorder = cls(write=write, close=handle.close)
        recorder.start(header)
        return recorder

    def start(self, header: JournalHeader) -> None:
        self._emit(self.writer.header(header))

    def on_report(self, report: ReportRequest) -> None:
        self._emit(self.writer.report(report))

    def on_uem_event(self, event: UemEvent) -> None:
        if isinstance(event, RecordReported):
            self._emit(self.writer.reported(event))

    def on_checkin(
        self,
        at: float,
        user: str,
        device_id: str,
        posture: Mapping[str, Any],
        applied_policy_version: int | None = None,
    ) -> None:
        self._emit(self.writer.checkin(at, user, device_id, posture, applied_policy_version))

    def on_action(
        self, at: float, user: str, device_id: str, action: AdminAction, note: str
    ) -> None:
        self._emit(self.writer.action(at, user, device_id, action, note))

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    def _emit(self, line: str) -> None:
        self.write(line)
        self.lines += 1


# --- reading ------------------------------------------------------------------------------------


def _wrap_config(exc: ConfigError, source: str) -> ScenarioError:
    return ScenarioError(source, exc.path.lstrip("."), exc.problem, hint=exc.hint)


def _header(f: Fields, obj: Mapping[str, Any]) -> JournalHeader:
    f.mapping(obj, "", _HEADER_KEYS, required=("format", "version", "started_at", "policy"))
    if obj["format"] != FORMAT:
        raise f.fail("format", f'expected "{FORMAT}", got {json.dumps(obj["format"])[:60]}')
    f.integer(obj["version"], "version", VERSION, VERSION)
    started = f.number(obj["started_at"], "started_at", 0, 1e11)
    reader = Reader(f.source)
    try:
        users = tuple(
            parse_user(reader, raw, f"users[{i}]")
            for i, raw in enumerate(f.sequence(obj.get("users", []), "users"))
        )
        section = f.mapping(obj["policy"], "policy")
        policy = read_policy_keys(reader, section, "policy", UemPolicy())
    except ConfigError as exc:
        raise _wrap_config(exc, f.source) from None
    version = f.integer(obj.get("security_policy_version", 1), "security_policy_version", 1, 10**9)
    policy = attrs.evolve(policy, security=attrs.evolve(policy.security, version=version))
    known = {u.mailbox for u in users} | {u.email.lower() for u in users if u.email}
    devices: list[JournalDevice] = []
    for i, raw in enumerate(f.sequence(obj.get("devices", []), "devices")):
        path = f"devices[{i}]"
        spec = f.mapping(raw, path, _DEVICE_KEYS, required=("user", "device_id", "os_version"))
        user = f.string(spec["user"], f"{path}.user", max_len=256)
        if user.lower() not in known:
            raise f.fail(f"{path}.user", f"no user {json.dumps(user)} in the header's users")
        try:
            posture = parse_posture(reader, spec, path, None)
        except ConfigError as exc:
            raise _wrap_config(exc, f.source) from None
        devices.append(
            JournalDevice(
                user=user,
                device_id=f.string(spec["device_id"], f"{path}.device_id", max_len=128),
                posture=posture,
                last_check_in=f.number(
                    spec.get("last_check_in", started), f"{path}.last_check_in", 0, 1e11
                ),
                applied_policy_version=f.integer(
                    spec.get("applied_policy_version", version),
                    f"{path}.applied_policy_version",
                    0,
                    10**9,
                ),
            )
        )
    return JournalHeader(started_at=started, users=users, devices=tuple(devices), policy=policy)


def _entry(f: Fields, obj: Mapping[str, Any], line: int) -> Entry:
    kind = f.choice(obj.get("type"), "type", ("report", "checkin", "action"))
    if kind == "report":
        body = {k: v for k, v in obj.items() if k != "type"}
        try:
            report = ReportRequest.from_dict(body, "$")
        except ContractError as exc:
            raise f.fail(exc.path.removeprefix("$."), exc.problem) from None
        except (TypeError, ValueError) as exc:
            raise f.fail("", str(exc)) from None
        return ReportEntry(line=line, report=report)
    keys = _CHECKIN_KEYS if kind == "checkin" else _ACTION_KEYS
    f.mapping(obj, "", keys, required=("at", "user", "device_id"))
    at = f.number(obj["at"], "at", 0, 1e11)
    user = f.string(obj["user"], "user", max_len=256)
    device_id = f.string(obj["device_id"], "device_id", max_len=128)
    if kind == "checkin":
        base = Posture(platform="ios", os_version="1")
        try:
            parse_posture(Reader(f.source), obj, "", base)
        except ConfigError as exc:
            raise _wrap_config(exc, f.source) from None
        applied = None
        if "applied_policy_version" in obj:
            applied = f.integer(obj["applied_policy_version"], "applied_policy_version", 0, 10**9)
        posture = {k: obj[k] for k in POSTURE_KEYS if k in obj}
        return CheckInEntry(
            line=line,
            at=at,
            user=user,
            device_id=device_id,
            posture=posture,
            applied_policy_version=applied,
        )
    action = AdminAction(f.choice(obj.get("action"), "action", tuple(a.value for a in AdminAction)))
    note = f.string(obj.get("note", ""), "note", empty=True)
    return ActionEntry(line=line, at=at, user=user, device_id=device_id, action=action, note=note)


def parse_journal(lines: Iterable[str], source: str) -> Journal:
    """A journal from its lines; errors name ``source``, the line number and the field."""
    header: JournalHeader | None = None
    entries: list[Entry] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        f = Fields(f"{source}: line {number}")
        if len(text) > MAX_LINE_BYTES:
            raise f.fail("", f"longer than {MAX_LINE_BYTES} characters")
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise f.fail("", f"not valid JSON ({exc})") from None
        except RecursionError:
            raise f.fail("", "not valid JSON (nested too deeply)") from None
        if header is None:
            if not isinstance(obj, Mapping) or obj.get("type") != "header":
                raise f.fail("type", 'the first line must be the header ({"type": "header", ...})')
            header = _header(f, obj)
            continue
        record = f.mapping(obj, "")
        if record.get("type") == "header":
            raise f.fail("type", "a second header; a journal has one, on its first line")
        entries.append(_entry(f, record, number))
    if header is None:
        raise ScenarioError(source, "", "empty journal: expected a header line first")
    return Journal(source=source, header=header, entries=tuple(entries))


def read_journal(path: str | Path) -> Journal:
    """Read a journal file; errors name the file and the line."""
    source = str(path)
    try:
        with Path(path).open("rb") as handle:
            raw = handle.read(MAX_JOURNAL_BYTES + 1)
    except OSError as exc:
        raise ScenarioError(source, "", f"cannot read the journal: {exc.strerror or exc}") from None
    if len(raw) > MAX_JOURNAL_BYTES:
        raise ScenarioError(source, "", f"larger than {MAX_JOURNAL_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(source, "", f"not UTF-8 text (byte {exc.start})") from None
    return parse_journal(text.splitlines(), source)


# --- replay -------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Verdict:
    """A record's decision at the end of one run."""

    state: str  #: ALLOW, BLOCK, WIPE, or "absent" (removed, or never reported in this run)
    reasons: int
    explanation: str
    trace: tuple[RuleResult, ...]


ABSENT: Final = Verdict(state="absent", reasons=0, explanation="no record", trace=())


@attrs.frozen(kw_only=True)
class RuleChange:
    """A rule whose outcome differs between the runs, with the inputs it read in each."""

    rule: str
    before: str
    after: str
    inputs_before: tuple[tuple[str, str], ...]
    inputs_after: tuple[tuple[str, str], ...]
    detail_after: str


@attrs.frozen(kw_only=True)
class Flip:
    """A record whose state or reasons differ under the new policy."""

    user: str
    device_id: str
    before: Verdict
    after: Verdict
    changed_rules: tuple[RuleChange, ...]


@attrs.frozen(kw_only=True)
class ReplayRun:
    """The end state of one run, and the lines that could not be applied (and why)."""

    records: Mapping[RecordKey, Verdict]
    skipped: tuple[str, ...]


def _verdict(record: EasRecord) -> Verdict:
    return Verdict(
        state=record.state.value,
        reasons=record.reasons,
        explanation=record.explanation,
        trace=record.trace,
    )


def run_journal(journal: Journal, policy: UemPolicy) -> ReplayRun:
    """Apply every line of ``journal`` to a fresh registry holding ``policy``."""
    header = journal.header
    registry = Registry(policy=policy)
    try:
        for user in header.users:
            registry.add_user(user)
        for device in header.devices:
            registry.check_in(
                device.user,
                device.device_id,
                device.posture,
                device.last_check_in,
                device.applied_policy_version,
            )
    except UemError as exc:
        raise ScenarioError(f"{journal.source}: line 1", "header", exc.message) from None
    skipped: list[str] = []
    for entry in journal.entries:
        try:
            if isinstance(entry, ReportEntry):
                registry.report(entry.report, entry.at)
            elif isinstance(entry, CheckInEntry):
                key = (registry.mailbox_of(entry.user), entry.device_id)
                existing = registry.devices.get(key)
                base = None if existing is None else existing.posture
                posture = parse_posture(Reader(journal.source), entry.posture, "", base)
                registry.check_in(
                    entry.user, entry.device_id, posture, entry.at, entry.applied_policy_version
                )
            else:
                registry.admin_action(
                    entry.user, entry.device_id, entry.action, entry.note, entry.at
                )
        except UemError as exc:
            skipped.append(f"line {entry.line}: {exc.message}")
    registry.reevaluate_all(journal.ends_at)
    return ReplayRun(
        records={k: _verdict(r) for k, r in registry.records.items()}, skipped=tuple(skipped)
    )


def _rule_changes(before: Verdict, after: Verdict) -> tuple[RuleChange, ...]:
    old = {r.rule: r for r in before.trace}
    changes: list[RuleChange] = []
    for rule in after.trace:
        was = old.get(rule.rule)
        if was is None or was.outcome != rule.outcome:
            changes.append(
                RuleChange(
                    rule=rule.rule,
                    before="absent" if was is None else was.outcome,
                    after=rule.outcome,
                    inputs_before=() if was is None else was.inputs,
                    inputs_after=rule.inputs,
                    detail_after=rule.detail,
                )
            )
    return tuple(changes)


def as_lab_policy(new: UemPolicy, journal: Journal) -> UemPolicy:
    """``new`` as the policy in force from the start: the journal's security version."""
    version = journal.header.policy.security.version
    return attrs.evolve(new, security=attrs.evolve(new.security, version=version))


def replay(journal: Journal, policy: UemPolicy) -> list[Flip]:
    """Records whose state or reasons differ between the journal's policy and ``policy``."""
    before = run_journal(journal, journal.header.policy)
    after = run_journal(journal, as_lab_policy(policy, journal))
    flips: list[Flip] = []
    for key in sorted(set(before.records) | set(after.records)):
        old = before.records.get(key, ABSENT)
        new = after.records.get(key, ABSENT)
        if old.state != new.state or old.reasons != new.reasons:
            flips.append(
                Flip(
                    user=key[0],
                    device_id=key[1],
                    before=old,
                    after=new,
                    changed_rules=_rule_changes(old, new),
                )
            )
    return flips
