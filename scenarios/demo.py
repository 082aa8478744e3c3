"""The onboarding story: simulated devices through a running lab, told as the 8 steps of the flow.

Responsibility: drive devices of the default lab through six stories (a compliant device
allowed, a compromised one blocked, an unregistered one auto-blocked, a third device over the
mailbox limit, a device turned compromised in the UEM and blocked after the push, an admin wipe)
and tell each as the 8 steps of DESIGN.md section 2, from what actually happened: the
gatekeeper's events (its event bus), the UEM's explanation (its explain API) and the devices'
own results. Each story checks its outcome against what the story says, so the demo fails
loudly when the product misbehaves. It must not print (``cli_demo`` renders) nor invent text
that no event or record backs.

Theory of operation: an ``EventLog`` subscribes to the gatekeeper's bus for the whole run and
hands each story the events of its record since the story began. A story runs its devices with
``Lab.device``, then builds its ``Step`` lines from those events and the UEM's explanation, and
compares the result with its expectation (``Story.passed``, ``Story.problem``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs

from activesync.versions import ProtocolVersion
from device_sim.client import DeviceState, Sync
from device_sim.shell import DeviceRunner, ScriptReport
from device_sim.wire import QueryForm
from scenarios.flow import FIRST_CONTACT, STEP_TITLES, answer_text, reasons_text
from scenarios.lab import Lab, LabError
from sentry_sim.device_list import record_key
from sentry_sim.events import Event, EventBus

#: Seconds (real time) a push may take before the story counts as failed.
PUSH_WAIT_S: Final = 3.0


@attrs.frozen
class Step:
    """One of the 8 steps as it happened (``applies`` False: not on this story's path)."""

    number: int
    text: str
    applies: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.number,
            "title": STEP_TITLES[self.number],
            "text": self.text,
            "applies": self.applies,
        }


@attrs.frozen(kw_only=True)
class Story:
    """One story of the demo, told and checked."""

    letter: str
    title: str
    #: Who: "alice / ALICEIPHONE01  iPhone  EAS 16.1 (plain query)".
    device: str
    #: Lines before the steps (devices that set the scene).
    prelude: tuple[str, ...] = ()
    steps: tuple[Step, ...]
    #: What the story says should happen, in one line.
    expected: str
    #: What did happen, in one line.
    outcome: str
    passed: bool
    #: Why it failed (empty when it passed).
    problem: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "story": self.letter,
            "title": self.title,
            "device": self.device,
            "prelude": list(self.prelude),
            "steps": [s.to_json() for s in self.steps],
            "expected": self.expected,
            "outcome": self.outcome,
            "passed": self.passed,
            "problem": self.problem,
        }


@attrs.frozen(kw_only=True)
class DemoReport:
    """The whole run: every story and the UEM's ActiveSync devices view at the end."""

    stories: tuple[Story, ...]
    devices_view: Mapping[str, Any]

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.stories)

    @property
    def failures(self) -> tuple[Story, ...]:
        return tuple(s for s in self.stories if not s.passed)

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "stories": [s.to_json() for s in self.stories],
            "devices_view": dict(self.devices_view),
        }


@attrs.define(eq=False)
class EventLog:
    """Every gatekeeper event since ``attach``, as JSON dicts, searchable per record."""

    events: list[dict[str, Any]] = attrs.field(factory=list)
    _detach: Callable[[], None] | None = None

    def attach(self, bus: EventBus) -> None:
        self._detach = bus.subscribe(self._take)

    def detach(self) -> None:
        if self._detach is not None:
            self._detach()
            self._detach = None

    def _take(self, event: Event) -> None:
        self.events.append(event.to_json())

    def mark(self) -> int:
        return len(self.events)

    def of(self, key: str, since: int, kind: str | None = None) -> list[dict[str, Any]]:
        """Events of record ``key`` since ``mark`` (of one kind when given)."""
        return [
            e
            for e in self.events[since:]
            if e.get("record") == key and (kind is None or e["event"] == kind)
        ]


# --- the wording of the steps ---------------------------------------------------------------


def _who(runner: DeviceRunner) -> str:
    ident = runner.client.identity
    return (
        f"{ident.user} / {ident.device_id}  {ident.device_type}  EAS {ident.version.text} "
        f"({ident.query_form.value} query)"
    )


def _first(events: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    return events[0] if events else None


def _answer_text(denied: dict[str, Any]) -> str:
    return answer_text(denied["http_status"], denied.get("eas_status"))


def _version_note(version: ProtocolVersion, denied: dict[str, Any]) -> str:
    if denied["http_status"] == 403 and version < ProtocolVersion.V14_0:
        return f"EAS {version.text} has no body status for it"
    if denied["http_status"] == 403:
        return f"what EAS {version.text} expects for it"
    return f"the status EAS {version.text} expects"


def _registration(explain: Mapping[str, Any]) -> str:
    group = str(explain.get("group", "?")).replace("_", " ")
    detail = next(
        (
            str(rule.get("detail", ""))
            for rule in explain.get("trace", [])
            if rule.get("rule") in ("registration", "auto-block unregistered devices")
        ),
        "",
    )
    kind = "registered" if explain.get("registered") else "unregistered"
    return f"listed as {kind} (group: {group})" + (f"; {detail}" if detail else "")


def _decision_line(explain: Mapping[str, Any]) -> str:
    headline = str(explain.get("explanation", "")).splitlines()
    text = headline[0] if headline else ""
    # "ALLOW alice / X (registered ios 17.4): no rule blocks it." -> keep the why.
    _, _, why = text.partition("): ")
    state = explain.get("state", "?")
    return f"{state}: {why or text}".rstrip(".")


def _inbox_count(runner: DeviceRunner) -> int:
    inbox = runner.client.folder_named("Inbox")
    if inbox is None:
        return 0
    return len(runner.client.items.get(inbox.server_id, {}))


def _first_contact_steps(
    log: EventLog,
    key: str,
    since: int,
    runner: DeviceRunner,
    explain: Mapping[str, Any],
) -> tuple[Step, ...]:
    """The 8 steps of a device's first contact, from the events of its record."""
    version = runner.client.version
    received = _first(log.of(key, since, "request_received"))
    step1 = (
        f"{received['command']} over EAS {received['protocol_version']} "
        f"(request {received['request_id']})"
        if received
        else "no request reached the gatekeeper"
    )
    seen = _first(log.of(key, since, "device_first_seen"))
    step2 = (
        f"unknown pair {key}: added to the device list as UNKNOWN"
        if seen
        else "the record was already there: nothing added"
    )
    queued = log.of(key, since, "report_queued")
    sent = _first(log.of(key, since, "report_sent"))
    failed = log.of(key, since, "report_failed")
    if sent:
        waiting = len(log.of(key, since, "request_waiting"))
        step3 = (
            f"{len(queued)} report (for {waiting} waiting request); the UEM answered "
            f"{sent['state']} at attempt {sent['attempt']}"
        )
    elif failed:
        step3 = f"report failed ({failed[-1]['error']}); retried until the UEM answers"
    else:
        step3 = "no report was needed"
    step4 = _registration(explain)
    step5 = _decision_line(explain)
    applied = next(
        (e for e in log.of(key, since, "decision_applied") if e["source"] == "report"), None
    )
    step6 = (
        f"cached {applied['state'].upper()} ({reasons_text(applied['reason_names'])}) "
        f"from UEM answer #{applied['answer']}; the waiting request resumes"
        if applied
        else "no decision was cached"
    )
    denied = _first(log.of(key, since, "request_denied"))
    forwarded = log.of(key, since, "request_forwarded")
    provisions = [e["phase"] for e in log.of(key, since, "provision_answered")]
    if denied is None:
        commands = ", ".join(dict.fromkeys(e["command"] for e in forwarded)) or "nothing"
        statuses = ", ".join(sorted({str(e["upstream_status"]) for e in forwarded}))
        policy = ""
        if "acknowledged" in provisions:
            applied_policy = runner.client.policy
            shown = list(applied_policy.restrictions.items())[:3] if applied_policy else []
            settings = ", ".join(f"{k}={v}" for k, v in shown)
            version_no = log.of(key, since, "provision_answered")[-1]["policy_version"]
            policy = (
                f"Provision answered by the gatekeeper with the UEM's ActiveSync policy "
                f"v{version_no} ({settings}, ...): temporary key, then final key; "
            )
        upstream = next((e for e in log.of(key, since, "upstream_provisioned") if e["ok"]), None)
        on_behalf = (
            "Exchange demanded its own policy key, so the gatekeeper provisioned with it on the "
            "device's behalf; "
            if upstream
            else ""
        )
        step7 = Step(
            7,
            f"{policy}{commands} proxied to Exchange (HTTP {statuses}); {on_behalf}"
            f"{_inbox_count(runner)} messages in the Inbox",
        )
        step8 = Step(8, "not blocked", applies=False)
    else:
        step7 = Step(7, "nothing forwarded: the gatekeeper answered itself", applies=False)
        step8 = Step(
            8,
            f"{denied['command']} answered {_answer_text(denied)}: "
            f"{_version_note(version, denied)}; the device stops ({runner.client.state.value})",
        )
    return (
        Step(1, step1),
        Step(2, step2),
        Step(3, step3),
        Step(4, step4),
        Step(5, step5),
        Step(6, step6),
        step7,
        step8,
    )


def _known_record_steps(log: EventLog, key: str, since: int) -> tuple[Step, Step, Step]:
    reports = log.of(key, since, "report_queued")
    return (
        Step(2, f"{key} is already in the device list: its cached decision answers"),
        Step(3, "no report: the record is known" if not reports else f"{len(reports)} report(s)"),
        Step(4, "already in the UEM's ActiveSync devices view"),
    )


async def _run(runner: DeviceRunner, steps: Sequence[Any]) -> ScriptReport:
    return await runner.run_script(steps)


def _check(conditions: Sequence[tuple[bool, str]]) -> str:
    """The first failed condition's message, or ''."""
    return next((message for ok, message in conditions if not ok), "")


def _blocked_outcome(report: ScriptReport, key_state: str | None, names: Sequence[str]) -> str:
    code = report.block.code if report.block else None
    return (
        f"device {report.state.value} (code {code}); gatekeeper {key_state}; "
        f"reasons {reasons_text(names)}"
    )


# --- the stories ------------------------------------------------------------------------------


async def _first_contact_story(
    lab: Lab,
    log: EventLog,
    *,
    letter: str,
    title: str,
    user: str,
    device_id: str,
    version: str,
    form: QueryForm,
    expected: str,
    allowed: bool,
    reason: str | None = None,
    block_code: int | None = None,
    prelude: tuple[str, ...] = (),
    runners: dict[str, DeviceRunner] | None = None,
) -> Story:
    key = record_key(user, device_id)
    since = log.mark()
    runner = lab.device(user, device_id, version=version, form=form)
    if runners is not None:
        runners[key] = runner
    report = await _run(runner, FIRST_CONTACT)
    explain = await lab.uem_explain(user, device_id)
    steps = _first_contact_steps(log, key, since, runner, explain)
    state = lab.sentry_state(user, device_id)
    names = list(explain.get("reason_names", []))
    if allowed:
        inbox = _inbox_count(runner)
        acknowledged = any(
            e["phase"] == "acknowledged" for e in log.of(key, since, "provision_answered")
        )
        outcome = (
            f"device {report.state.value}, policy "
            f"{'applied' if runner.client.policy else 'not applied'}, {inbox} messages synced"
        )
        problem = _check(
            [
                (report.error is None, f"transport failure: {report.error}"),
                (state == "allowed", f"the gatekeeper cached {state}, not allowed"),
                (report.state is DeviceState.READY, f"the device ended {report.state.value}"),
                (acknowledged and runner.client.policy is not None, "no policy was provisioned"),
                (inbox > 0, "no mail was synced"),
            ]
        )
    else:
        outcome = _blocked_outcome(report, state, names)
        code = report.block.code if report.block else None
        problem = _check(
            [
                (report.error is None, f"transport failure: {report.error}"),
                (state == "blocked", f"the gatekeeper cached {state}, not blocked"),
                (reason is None or reason in names, f"the UEM's reasons lack {reason}: {names}"),
                (report.state is DeviceState.BLOCKED, f"the device ended {report.state.value}"),
                (block_code is None or code == block_code, f"told {code}, not {block_code}"),
            ]
        )
    return Story(
        letter=letter,
        title=title,
        device=_who(runner),
        prelude=prelude,
        steps=steps,
        expected=expected,
        outcome=outcome,
        passed=not problem,
        problem=problem,
    )


async def _connect_quietly(lab: Lab, user: str, device_id: str, version: str) -> str:
    """Set the scene: a device connects and syncs; one line saying how it went."""
    runner = lab.device(user, device_id, version=version)
    report = await _run(runner, FIRST_CONTACT)
    state = lab.sentry_state(user, device_id)
    return (
        f"{user} / {device_id} connects first: gatekeeper {state}, device {report.state.value}, "
        f"{_inbox_count(runner)} messages"
    )


async def _wait_push(lab: Lab, user: str, device_id: str, state: str) -> float | None:
    """Real seconds until the gatekeeper caches ``state``; None if it never does."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await lab.wait_for_sentry_state(user, device_id, state, within=PUSH_WAIT_S)
    except LabError:
        return None
    return loop.time() - started


async def story_compromised_later(
    lab: Lab, log: EventLog, runners: Mapping[str, DeviceRunner]
) -> Story:
    """(e) An allowed device turns compromised in the UEM; the push blocks its next request."""
    user, device_id = "alice", "ALICEIPHONE01"
    key = record_key(user, device_id)
    since = log.mark()
    await lab.set_posture(user, device_id, compromised=True)
    took = await _wait_push(lab, user, device_id, "blocked")
    # The same phone as in story (a), with its policy key and sync state: its next Sync.
    runner = runners.get(key) or lab.device(user, device_id, version="16.1")
    report = await _run(runner, (Sync(),))
    explain = await lab.uem_explain(user, device_id)
    pushed = next(
        (e for e in log.of(key, since, "decision_applied") if e["source"] == "push"), None
    )
    received = _first(log.of(key, since, "request_received"))
    denied = _first(log.of(key, since, "request_denied"))
    step6 = (
        f"push arrived {took * 1000:.0f} ms after the change: cached "
        f"{pushed['state'].upper()} ({reasons_text(pushed['reason_names'])}), was "
        f"{pushed['previous_state']}"
        if pushed and took is not None
        else f"no push arrived within {PUSH_WAIT_S:g} s"
    )
    steps = (
        Step(
            1,
            f"the phone's next request: {received['command']} over EAS "
            f"{received['protocol_version']} (request {received['request_id']})"
            if received
            else "no request reached the gatekeeper",
        ),
        *_known_record_steps(log, key, since),
        Step(5, "MDM reports the phone compromised (posture change) -> " + _decision_line(explain)),
        Step(6, step6),
        Step(7, "nothing forwarded: the cached decision blocks it", applies=False),
        Step(
            8,
            f"{denied['command']} answered {_answer_text(denied)}"
            if denied
            else "the device was not told anything",
            applies=denied is not None,
        ),
    )
    names = list(explain.get("reason_names", []))
    state = lab.sentry_state(user, device_id)
    code = report.block.code if report.block else None
    problem = _check(
        [
            (took is not None, f"the push did not reach the gatekeeper within {PUSH_WAIT_S:g} s"),
            ("COMPROMISED" in names, f"the UEM's reasons lack COMPROMISED: {names}"),
            (state == "blocked", f"the gatekeeper cached {state}, not blocked"),
            (report.state is DeviceState.BLOCKED, f"the device ended {report.state.value}"),
            (code == 129, f"told {code}, not 129"),
        ]
    )
    return Story(
        letter="e",
        title="The UEM marks an allowed device compromised: blocked after the push",
        device=_who(runner),
        steps=tuple(sorted(steps, key=lambda s: s.number)),
        expected="the push blocks the next request with Status 129 (COMPROMISED)",
        outcome=_blocked_outcome(report, state, names),
        passed=not problem,
        problem=problem,
    )


async def story_wipe(lab: Lab, log: EventLog) -> Story:
    """(f) An administrator wipes an allowed device; its next request brings RemoteWipe."""
    user, device_id, version = "erin", "ERINIPHONE01", "14.0"
    runner = lab.device(user, device_id, version=version)
    first = await _run(runner, FIRST_CONTACT)
    prelude = (
        f"{user} / {device_id} connects first: gatekeeper {lab.sentry_state(user, device_id)}, "
        f"device {first.state.value}, {_inbox_count(runner)} messages",
    )
    key = record_key(user, device_id)
    since = log.mark()
    await lab.admin_action(user, device_id, "wipe", "reported lost")
    took = await _wait_push(lab, user, device_id, "wiped")
    report = await _run(runner, (Sync(),))
    explain = await lab.uem_explain(user, device_id)
    pushed = next(
        (e for e in log.of(key, since, "decision_applied") if e["source"] == "push"), None
    )
    received = _first(log.of(key, since, "request_received"))
    denied = _first(log.of(key, since, "request_denied"))
    phases = [e["phase"] for e in log.of(key, since, "provision_answered")]
    told = f"{denied['command']} answered {_answer_text(denied)}; " if denied else ""
    step7 = (
        f"{told}the device sent Provision and got the RemoteWipe directive; it acknowledged "
        f"and erased its data (device state: {report.state.value})"
        if "wipe" in phases
        else "no RemoteWipe directive was sent"
    )
    steps = (
        Step(
            1,
            f"the phone's next request: {received['command']} over EAS "
            f"{received['protocol_version']} (request {received['request_id']})"
            if received
            else "no request reached the gatekeeper",
        ),
        *_known_record_steps(log, key, since),
        Step(5, "administrator's wipe action -> " + _decision_line(explain)),
        Step(
            6,
            f"push arrived {took * 1000:.0f} ms after the action: cached "
            f"{pushed['state'].upper()} ({reasons_text(pushed['reason_names'])})"
            if pushed and took is not None
            else f"no push arrived within {PUSH_WAIT_S:g} s",
        ),
        Step(7, step7),
        Step(8, "not blocked: wiped instead (step 7)", applies=False),
    )
    problem = _check(
        [
            (first.state is DeviceState.READY, f"erin's phone ended {first.state.value} at first"),
            (took is not None, f"the push did not reach the gatekeeper within {PUSH_WAIT_S:g} s"),
            ("wipe" in phases, "the gatekeeper sent no RemoteWipe directive"),
            ("wipe_acknowledged" in phases, "the gatekeeper saw no wipe acknowledgement"),
            (report.state is DeviceState.WIPED, f"the device ended {report.state.value}"),
        ]
    )
    return Story(
        letter="f",
        title="An administrator wipes a device: RemoteWipe",
        device=_who(runner),
        prelude=prelude,
        steps=steps,
        expected="the next request leads to RemoteWipe and the device reports itself wiped",
        outcome=f"device {report.state.value}; gatekeeper {lab.sentry_state(user, device_id)}; "
        f"Provision phases {', '.join(phases) or 'none'}",
        passed=not problem,
        problem=problem,
    )


async def run_demo(lab: Lab, on_story: Callable[[Story], None] | None = None) -> DemoReport:
    """Run the six stories on ``lab`` (the default lab) and read the devices view at the end."""
    log = EventLog()
    log.attach(lab.bus)
    stories: list[Story] = []
    runners: dict[str, DeviceRunner] = {}

    def told(story: Story) -> None:
        stories.append(story)
        if on_story is not None:
            on_story(story)

    try:
        told(
            await _first_contact_story(
                lab,
                log,
                letter="a",
                title="A compliant registered device is allowed",
                user="alice",
                device_id="ALICEIPHONE01",
                version="16.1",
                form=QueryForm.PLAIN,
                expected="allowed, the UEM's policy applied through Provision, mail synced",
                allowed=True,
                runners=runners,
            )
        )
        told(
            await _first_contact_story(
                lab,
                log,
                letter="b",
                title="A compromised registered device is blocked",
                user="bob",
                device_id="BOBPIXEL01",
                version="14.1",
                form=QueryForm.BASE64,
                expected="blocked for COMPROMISED, told Status 129",
                allowed=False,
                reason="COMPROMISED",
                block_code=129,
            )
        )
        told(
            await _first_contact_story(
                lab,
                log,
                letter="c",
                title="An unregistered device is auto-blocked",
                user="carol",
                device_id="CAROLPHONE01",
                version="12.1",
                form=QueryForm.PLAIN,
                expected="blocked for AUTO_BLOCK, told HTTP 403 (EAS 12.1)",
                allowed=False,
                reason="AUTO_BLOCK",
                block_code=403,
            )
        )
        prelude = (
            await _connect_quietly(lab, "dave", "DAVEIPHONE01", "16.1"),
            await _connect_quietly(lab, "dave", "DAVEIPAD01", "16.1"),
        )
        told(
            await _first_contact_story(
                lab,
                log,
                letter="d",
                title="A third device over the limit of two per mailbox",
                user="dave",
                device_id="DAVEPIXEL01",
                version="16.1",
                form=QueryForm.PLAIN,
                expected="blocked for PER_MAILBOX_LIMIT, told Status 177 (EAS 14.1+)",
                allowed=False,
                reason="PER_MAILBOX_LIMIT",
                block_code=177,
                prelude=prelude,
            )
        )
        told(await story_compromised_later(lab, log, runners))
        told(await story_wipe(lab, log))
    finally:
        log.detach()
    view = await lab.eas_devices()
    return DemoReport(stories=tuple(stories), devices_view=view)
