"""Scenario files: every step kind parses; every class of mistake names file, step and field."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from activesync.versions import ProtocolVersion
from device_sim.wire import QueryForm, Quirk
from scenarios.spec import STEP_KINDS, load_scenario, parse_scenario, thaw
from scenarios.spec_read import ScenarioError, parse_duration_text
from scenarios.spec_steps import (
    AddUser,
    Advance,
    ChangePolicy,
    CheckIn,
    ComplianceCheck,
    DeviceAction,
    DeviceStep,
    Expect,
    Fault,
    RecordAction,
    RecordRef,
    Register,
    Resync,
    Say,
    SetPosture,
    Unregister,
    Window,
)
from uem_sim.contract import Reason
from uem_sim.model import AdminAction

LAB = """\
users:
  - {name: alice, email: alice@example.com, password: alice-pass}
  - {name: dave, email: dave@example.com, password: dave-pass}
uem:
  max_devices_per_mailbox: 2
  devices:
    - {device_id: ALICEIPHONE01, user: alice, platform: ios, os_version: "17.4"}
"""

FULL = """\
name: everything
description: Every step kind once.
tags: [smoke, limits]
lab: lab.yaml
lab_overrides:
  uem: {auto_block_unregistered: true}
devices:
  alice-phone: {user: alice, device_id: ALICEIPHONE01}
  dave-ipad:
    user: dave
    device_id: DAVEIPAD01
    device_type: iPad
    version: 14.1
    query: base64
    quirks: [no-key-on-first-provision]
  erin-phone: {user: erin, device_id: ERINPHONE1, device_type: Android, version: "12.1"}
steps:
  - say: Alice connects.
  - note: a second narration form
  - connect: alice-phone
  - options: alice-phone
  - provision: alice-phone
  - foldersync: {device: alice-phone}
  - sync: {device: alice-phone, folders: [Inbox]}
  - ping: {device: alice-phone, heartbeat: 5m}
  - send_mail: {device: alice-phone, to: dave@example.com, subject: hi}
  - settings: alice-phone
  - checkin: {device: alice-phone, compromised: true, applied_policy_version: 1}
  - block: {device: alice-phone, note: lost}
  - allow: alice-phone
  - wipe: {user: dave, device_id: DAVEIPAD01}
  - remove: dave-ipad
  - clear: alice-phone
  - posture: {device: alice-phone, os_version: "16.1", last_check_in_days_ago: 9}
  - register: {device: dave-ipad, platform: ios, os_version: "17.0"}
  - unregister: dave-ipad
  - add_user: {name: erin, email: erin@example.com, password: erin-pass}
  - policy: {max_devices_per_mailbox: 1, security_policy: {min_os_version: {ios: "17.0"}}}
  - advance: 25h
  - uem: down
  - uem: up
  - uem: compliance_check
  - exchange: down
  - gatekeeper: resync
  - expect:
      device: {device: alice-phone, saw: blocked, http: 200, eas_status: 129, state: blocked}
      gatekeeper:
        - {device: alice-phone, state: BLOCKED, reasons: [COMPROMISED, os_version]}
        - {user: dave, device_id: DAVEIPAD01, state: absent}
      uem: {device: alice-phone, group: registered_blocked, reasons_include: MANUAL}
      events:
        since: previous
        happened:
          - ReportSent
          - {event: decision_applied, device: alice-phone, where: {source: push}}
        not_happened: [{event: ReportFailed}]
      counters: {reports_sent: 1, allowed: {at_least: 0, at_most: 3}}
"""


def write(tmp_path: Path, text: str, name: str = "scenario.yaml") -> Path:
    (tmp_path / "lab.yaml").write_text(LAB, encoding="utf-8")
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> ScenarioError:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return info.value


def test_every_step_kind_parses_into_its_class(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, FULL))
    kinds = [type(s) for s in scenario.steps]
    assert kinds == [
        Say, Say, DeviceStep, DeviceStep, DeviceStep, DeviceStep, DeviceStep, DeviceStep,
        DeviceStep, DeviceStep, CheckIn, RecordAction, RecordAction, RecordAction, RecordAction,
        RecordAction, SetPosture, Register, Unregister, AddUser, ChangePolicy, Advance, Fault,
        Fault, ComplianceCheck, Fault, Resync, Expect,
    ]  # fmt: skip
    assert scenario.name == "everything"
    assert scenario.tags == ("smoke", "limits")
    assert [s.index for s in scenario.steps] == list(range(len(scenario.steps)))
    # Line numbers point into the file.
    assert scenario.steps[2].line == FULL.splitlines().index("  - connect: alice-phone") + 1


def test_devices_take_their_password_from_the_lab_or_an_add_user_step(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, FULL))
    ipad = scenario.devices["dave-ipad"]
    assert ipad.password == "dave-pass"
    assert ipad.version is ProtocolVersion.V14_1
    assert ipad.query is QueryForm.BASE64
    assert ipad.quirks == frozenset({Quirk.NO_KEY_ON_FIRST_PROVISION})
    assert scenario.devices["erin-phone"].password == "erin-pass"
    assert scenario.devices["alice-phone"].ref == RecordRef("alice", "ALICEIPHONE01", "alice-phone")


def test_lab_file_is_merged_with_the_overrides(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, FULL))
    lab = scenario.lab.to_mapping()
    assert scenario.lab.file == str((tmp_path / "lab.yaml").resolve())
    assert lab["uem"]["auto_block_unregistered"] is True
    assert lab["uem"]["max_devices_per_mailbox"] == 2  # from the file, untouched
    assert lab["users"][0]["name"] == "alice"


def test_step_options_are_read(tmp_path: Path) -> None:
    steps = load_scenario(write(tmp_path, FULL)).steps
    ping = steps[7]
    assert isinstance(ping, DeviceStep)
    assert (ping.action, ping.heartbeat_s) == (DeviceAction.PING, 300)
    mail = steps[8]
    assert isinstance(mail, DeviceStep)
    assert (mail.to, mail.subject) == ("dave@example.com", "hi")
    checkin = steps[10]
    assert isinstance(checkin, CheckIn)
    assert checkin.posture.to_json() == {"compromised": True}
    wipe = steps[13]
    assert isinstance(wipe, RecordAction)
    assert wipe.action is AdminAction.WIPE
    assert wipe.record == RecordRef("dave", "DAVEIPAD01")
    policy = steps[20]
    assert isinstance(policy, ChangePolicy)
    assert thaw(policy.changes)["security_policy"] == {"min_os_version": {"ios": "17.0"}}
    advance = steps[21]
    assert isinstance(advance, Advance)
    assert advance.seconds == 25 * 3600
    down = steps[22]
    assert isinstance(down, Fault)
    assert (down.actor, down.up) == ("uem", False)


def test_expectations_are_read(tmp_path: Path) -> None:
    expect = load_scenario(write(tmp_path, FULL)).steps[-1]
    assert isinstance(expect, Expect)
    (device,) = expect.devices
    assert (device.saw, device.http, device.eas_status, device.state) == (
        "blocked",
        200,
        129,
        "blocked",
    )
    first, second = expect.gatekeeper
    assert first.state == "BLOCKED"
    assert first.reasons == Reason.COMPROMISED | Reason.OS_VERSION
    assert (second.record, second.state) == (RecordRef("dave", "DAVEIPAD01"), "absent")
    (uem,) = expect.uem
    assert (uem.group, uem.reasons_include) == ("registered_blocked", Reason.MANUAL.value)
    assert expect.events_since is Window.PREVIOUS
    sent, applied, failed = expect.events
    assert (sent.event.name, sent.at_least, sent.record) == ("ReportSent", 1, None)
    assert applied.event.name == "DecisionApplied"
    assert applied.record is not None
    assert applied.record.device == "alice-phone"
    assert dict(applied.where) == {"source": "push"}
    assert (failed.event.name, failed.count) == ("ReportFailed", 0)
    reports, allowed = expect.counters
    assert (reports.name, reports.equals) == ("reports_sent", 1)
    assert (allowed.at_least, allowed.at_most) == (0, 3)


def test_inline_lab_needs_no_file(tmp_path: Path) -> None:
    lab = textwrap.indent(LAB, "  ")
    text = f"lab:\n{lab}devices:\n  a: {{user: alice, device_id: A1}}\nsteps:\n  - connect: a\n"
    path = tmp_path / "inline.yaml"
    path.write_text(text, encoding="utf-8")
    scenario = load_scenario(path)
    assert scenario.lab.file is None
    assert scenario.name == "inline"
    assert scenario.devices["a"].password == "alice-pass"


# --- the promised errors ----------------------------------------------------------------------


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, "steps:\n  - connect: [a\n  - sync: b\n")
    assert err.source.endswith("scenario.yaml")
    assert "not valid YAML" in str(err)
    assert err.line == 3


def test_unknown_step_kind_suggests_the_close_one(tmp_path: Path) -> None:
    err = error_of(
        tmp_path,
        """\
        lab: lab.yaml
        devices: {a: {user: alice, device_id: A1}}
        steps:
          - connect: a
          - conect: a
        """,
    )
    assert err.path == "steps[1]"
    assert 'unknown step kind "conect"' in str(err)
    assert 'did you mean "connect"?' in str(err)
    assert err.line == 5


def test_misspelt_gatekeeper_state_gives_the_documented_message(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        lab: lab.yaml
        devices: {a: {user: alice, device_id: A1}}
        steps:
          - connect: a
          - connect: a
          - advance: 1h
          - say: hello
          - expect:
              gatekeeper: {device: a, state: ALOWED}
        """,
        name="limit.yaml",
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value).startswith(
        f"{path}: steps[4].expect.gatekeeper.state: expected one of ALLOWED, BLOCKED, WIPED, "
        'UNKNOWN, absent, got "ALOWED"; did you mean "ALLOWED"?'
    )
    assert info.value.line == 9


@pytest.mark.parametrize(
    ("step", "path", "fragment"),
    [
        ("- connect: {device: a, heartbeat: 10}", "steps[0].connect.heartbeat", "unknown key"),
        ("- expect: {gatekeeper: {device: a, stat: BLOCKED}}", "steps[0].expect.gatekeeper.stat",
         'did you mean "state"?'),
        ("- expect: {events: {happened: [ReportSnt]}}", "steps[0].expect.events.happened[0]",
         'did you mean "ReportSent"?'),
        ("- expect: {counters: {report_sent: 1}}", "steps[0].expect.counters.report_sent",
         'did you mean "reports_sent"?'),
        ("- expect: {events: {happened: [{event: ReportSent, where: {stat: x}}]}}",
         "steps[0].expect.events.happened[0].where.stat", 'did you mean "state"?'),
    ],
)  # fmt: skip
def test_unknown_keys_are_errors(tmp_path: Path, step: str, path: str, fragment: str) -> None:
    err = error_of(
        tmp_path,
        f"lab: lab.yaml\ndevices: {{a: {{user: alice, device_id: A1}}}}\nsteps:\n  {step}\n",
    )
    assert err.path == path
    assert fragment in str(err)


def test_unknown_top_level_key(tmp_path: Path) -> None:
    err = error_of(tmp_path, "lab: lab.yaml\nstep:\n  - say: hi\n")
    assert err.path == "step"
    assert 'did you mean "steps"?' in str(err)


@pytest.mark.parametrize(
    ("step", "path", "fragment"),
    [
        ("- expect: {device: {device: a, http: '403'}}", "steps[0].expect.device.http",
         'expected an integer 100..599, got "403"'),
        ("- ping: {device: a, heartbeat: true}", "steps[0].ping.heartbeat", "got true"),
        ("- connect: 7", "steps[0].connect", "expected the name of a phone"),
        ("- say: [not, text]", "steps[0].say", "expected the text to narrate"),
        ("- policy: {max_devices_per_mailbox: many}", "steps[0].policy.max_devices_per_mailbox",
         'got "many"'),
        ("- checkin: {device: a, os_version: 17.1}", "steps[0].checkin.os_version",
         'expected a version like "17.1"'),
        ("- connect: a\n    sync: a", "steps[0]", "expected one step kind per list item"),
    ],
)  # fmt: skip
def test_wrong_types_name_the_field(tmp_path: Path, step: str, path: str, fragment: str) -> None:
    err = error_of(
        tmp_path,
        f"lab: lab.yaml\ndevices: {{a: {{user: alice, device_id: A1}}}}\nsteps:\n  {step}\n",
    )
    assert err.path == path
    assert fragment in str(err)
    assert err.line == 4


@pytest.mark.parametrize("bad", ["90", "25 hours", "1x", "0s", "400d", "h"])
def test_bad_durations_are_errors(tmp_path: Path, bad: str) -> None:
    value = bad if not bad.isdigit() else int(bad)
    err = error_of(tmp_path, f"lab: lab.yaml\nsteps:\n  - say: x\n  - advance: {value!s}\n")
    assert err.path == "steps[1].advance"
    assert err.line == 4


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("25h", 90_000), ("7d", 604_800),
                          ("1h30m", 5400), ("250ms", 0.25)]
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration_text(text) == seconds


def test_unknown_device_name_lists_the_declared_ones(tmp_path: Path) -> None:
    err = error_of(
        tmp_path,
        """\
        lab: lab.yaml
        devices: {alice-phone: {user: alice, device_id: A1}}
        steps:
          - connect: alice-phone
          - expect: {device: {device: alice-phon, saw: allowed}}
        """,
    )
    assert err.path == "steps[1].expect.device.device"
    assert 'unknown device "alice-phon" (devices: alice-phone)' in str(err)
    assert 'did you mean "alice-phone"?' in str(err)


def test_bad_reason_name(tmp_path: Path) -> None:
    err = error_of(
        tmp_path,
        """\
        lab: lab.yaml
        devices: {a: {user: alice, device_id: A1}}
        steps:
          - expect: {uem: {device: a, reasons: [COMPROMISED, PER_MAILBOX_LIMT]}}
        """,
    )
    assert err.path == "steps[0].expect.uem.reasons[1]"
    assert 'did you mean "PER_MAILBOX_LIMIT"?' in str(err)


def test_device_of_an_unknown_user_needs_a_password(tmp_path: Path) -> None:
    err = error_of(
        tmp_path,
        "lab: lab.yaml\ndevices: {z: {user: zoe, device_id: Z1}}\nsteps:\n  - connect: z\n",
    )
    assert err.path == "devices.z.user"
    assert "no user" in str(err)
    assert "alice" in str(err)


def test_bad_device_id_and_base64_on_old_protocol(tmp_path: Path) -> None:
    err = error_of(
        tmp_path, "lab: lab.yaml\ndevices: {z: {user: alice, device_id: A-1}}\nsteps: [say: x]\n"
    )
    assert err.path == "devices.z.device_id"
    err = error_of(
        tmp_path,
        "lab: lab.yaml\ndevices: {z: {user: alice, device_id: A1, version: '12.0', query: base64}}"
        "\nsteps: [say: x]\n",
    )
    assert err.path == "devices.z.query"
    assert "12.1 or later" in str(err)


def test_bad_lab_override_is_named_in_the_scenario(tmp_path: Path) -> None:
    err = error_of(
        tmp_path,
        "lab: lab.yaml\nlab_overrides:\n  uem: {max_devices_per_mailbox: 0}\nsteps: [say: x]\n",
    )
    assert err.path == "lab_overrides.uem.max_devices_per_mailbox"
    assert err.line == 3


def test_bad_inline_lab_is_named_under_lab(tmp_path: Path) -> None:
    lab = "lab:\n  users: [{name: a, email: a@example.com, password: p}]\n"
    err = error_of(tmp_path, lab + "  sentry: {uem_unreachable: maybe}\nsteps: [say: x]\n")
    assert err.path == "lab.sentry.uem_unreachable"
    assert err.line == 3


def test_missing_lab_file_names_it_and_the_key_of_the_scenario_pointing_there(
    tmp_path: Path,
) -> None:
    err = error_of(tmp_path, "lab: nowhere.yaml\nsteps: [say: x]\n")
    assert err.source.endswith("scenario.yaml")
    assert (err.path, err.line) == ("lab", 1)
    assert f"cannot read the lab file {tmp_path / 'nowhere.yaml'}" in str(err)


def test_every_step_kind_is_documented() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "scenarios.md").read_text(encoding="utf-8")
    missing = [k for k in STEP_KINDS if not re.search(rf"`{k}:", docs)]
    assert missing == []


# --- fuzz ---------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 100_000),
    st.floats(allow_nan=True),
    st.sampled_from(["a", "alice", "A1", "25h", "BLOCKED", "ios", "17.1", "x" * 40, ""]),
)
keys = st.sampled_from(
    [*STEP_KINDS, "device", "user", "device_id", "state", "reasons", "events", "happened",
     "event", "where", "counters", "lab", "devices", "steps", "uem", "sentry", "users", "name",
     "os_version", "password", "version", "query", "quirks", "since", "heartbeat"]
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=30,
)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "lab": values,
            "devices": st.dictionaries(st.sampled_from(["a", "b"]), values, max_size=2),
            "steps": st.lists(st.dictionaries(keys, values, min_size=1, max_size=2), max_size=4),
            "name": values,
            "tags": values,
            "lab_overrides": values,
        },
    )
)
def test_random_mappings_only_raise_scenario_error(mapping: dict[str, Any]) -> None:
    def read_lab(path: Path) -> object:
        return yaml.safe_load(LAB)

    message = "fuzz.yaml: parsed"
    try:
        parse_scenario(mapping, "fuzz.yaml", base_dir=Path("."), read_lab=read_lab)
    except ScenarioError as exc:
        message = str(exc)
    assert message.startswith("fuzz.yaml")


def _paths(value: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _replace(value: Any, path: tuple[Any, ...], new: object) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: (_replace(v, rest, new) if k == head else v) for k, v in value.items()}
    return [(_replace(v, rest, new) if i == head else v) for i, v in enumerate(value)]


FULL_DATA = yaml.safe_load(FULL)
FULL_PATHS = _paths(FULL_DATA)


@given(st.sampled_from(FULL_PATHS), values)
def test_mutated_scenario_only_raises_scenario_error(path: tuple[Any, ...], new: object) -> None:
    mutated = _replace(FULL_DATA, path, new)

    def read_lab(_path: Path) -> object:
        return yaml.safe_load(LAB)

    message = "fuzz.yaml: parsed"
    try:
        scenario = parse_scenario(mutated, "fuzz.yaml", base_dir=Path("."), read_lab=read_lab)
    except ScenarioError as exc:
        message = str(exc)
    else:
        assert scenario.steps
    assert message.startswith("fuzz.yaml")
