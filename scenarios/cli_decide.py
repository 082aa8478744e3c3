"""``sentry-sim decide``: the UEM's decision for one device, offline, with the rule trace.

Responsibility: read a policy file (the lab's ``uem:`` section, or a whole lab file) and a
device file (one posture, or ``registered: false``), run ``uem_sim.policy.decide`` on them and
print the state, the reasons (names and hex mask), the explanation and every rule with the
inputs it read. Starts nothing and sends nothing. A bad file is one line naming the file and
the key, exit 2. Also the home of ``load_policy_file`` and ``format_trace``, which
``explain`` and ``whatif`` reuse.

Theory of operation: the device file becomes an ``EasRecord`` (with the override, if any), a
``RegisteredDevice`` (unless unregistered) checked in ``last_check_in_days_ago`` days before
the decision time, and ``MailboxSlots`` holding ``mailbox_allowed_devices`` other allowed
devices of the same mailbox; ``decide`` does the rest.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from scenarios.spec import read_yaml_file
from scenarios.spec_read import Fields, ScenarioError
from uem_sim.config import (
    POSTURE_KEYS,
    UEM_KEYS,
    Reader,
    UemConfig,
    parse_posture,
)
from uem_sim.config import parse_policy as read_policy_keys
from uem_sim.contract import reason_names
from uem_sim.errors import ConfigError
from uem_sim.model import (
    DAY,
    EasRecord,
    Override,
    OverrideAction,
    RegisteredDevice,
    RuleResult,
    UemPolicy,
)
from uem_sim.policy import Decision, MailboxSlots, decide

#: The decision time of ``decide`` (fixed so output is reproducible): 2024-01-01T00:00:00Z.
DECISION_TIME: Final = 1_704_067_200.0

DEVICE_FILE_KEYS: Final = (
    "user",
    "device_id",
    "registered",
    *POSTURE_KEYS,
    "last_check_in_days_ago",
    "applied_policy_version",
    "mailbox_allowed_devices",
    "override",
)


class InputError(ValueError):
    """A file ``decide``/``whatif`` cannot use; the message names the file and the key."""


def _load_yaml(path: str) -> object:
    data, _ = read_yaml_file(Path(path), path)
    return data


def policy_from_mapping(data: object, source: str) -> UemPolicy:
    """A policy from a whole lab mapping (has ``uem:`` or ``users:``) or a bare ``uem:``
    section; the policy's versions are 1, as in a freshly started lab."""
    if isinstance(data, Mapping) and ("uem" in data or "users" in data):
        return UemConfig.from_mapping(data, source).policy
    reader = Reader(source)
    section = reader.mapping({} if data is None else data, "", UEM_KEYS)
    policy = read_policy_keys(reader, section, "", UemPolicy())
    return attrs.evolve(
        policy,
        security=attrs.evolve(policy.security, version=1),
        activesync=attrs.evolve(policy.activesync, version=1),
    )


def load_policy_file(path: str) -> UemPolicy:
    """Read a policy file; ``InputError`` names the file and the key on any problem."""
    try:
        return policy_from_mapping(_load_yaml(path), path)
    except ScenarioError as exc:
        raise InputError(str(exc)) from None
    except ConfigError as exc:
        raise InputError(f"{exc.message}{'; ' + exc.hint if exc.hint else ''}") from None


@attrs.frozen(kw_only=True)
class DeviceCase:
    """What ``decide`` is asked about: the record, its registered device and the slots."""

    record: EasRecord
    device: RegisteredDevice | None
    allowed_elsewhere: int


def device_case(data: object, source: str, policy: UemPolicy, now: float) -> DeviceCase:
    """Read a device file's mapping (see ``DEVICE_FILE_KEYS``); errors name file and key."""
    f = Fields(source)
    obj = f.mapping(data, "", DEVICE_FILE_KEYS)
    user = f.string(obj.get("user", "user"), "user", max_len=256).lower()
    device_id = f.string(obj.get("device_id", "DEVICE1"), "device_id", max_len=128)
    registered = f.boolean(obj.get("registered", True), "registered")
    override = None
    if "override" in obj:
        raw = obj["override"]
        choices = tuple(a.value for a in OverrideAction)
        if isinstance(raw, Mapping):
            spec = f.mapping(raw, "override", ("action", "note"), required=("action",))
            action = f.choice(spec["action"], "override.action", choices, fold_case=True)
            note = f.string(spec.get("note", ""), "override.note", empty=True)
        else:
            action = f.choice(raw, "override", choices, fold_case=True)
            note = ""
        override = Override(OverrideAction(action), note, now)
    allowed = 0
    if "mailbox_allowed_devices" in obj:
        allowed = f.integer(obj["mailbox_allowed_devices"], "mailbox_allowed_devices", 0, 10_000)
    device = None
    if registered:
        try:
            posture = parse_posture(Reader(source), obj, "", None)
        except ConfigError as exc:
            raise f.fail(exc.path.lstrip("."), exc.problem, exc.hint) from None
        days = 0.0
        if "last_check_in_days_ago" in obj:
            days = f.number(obj["last_check_in_days_ago"], "last_check_in_days_ago", 0, 36_500)
        applied = policy.security.version
        if "applied_policy_version" in obj:
            applied = f.integer(obj["applied_policy_version"], "applied_policy_version", 0, 10**6)
        device = RegisteredDevice(
            device_id=device_id,
            mailbox=user,
            posture=posture,
            last_check_in=now - days * DAY,
            applied_policy_version=applied,
            enrolled_at=now - days * DAY,
        )
    else:
        for key in (*POSTURE_KEYS, "last_check_in_days_ago", "applied_policy_version"):
            if key in obj:
                raise f.fail(
                    key,
                    "only a registered device has a posture",
                    "drop it or the registered: false",
                )
    record = EasRecord(
        mailbox=user,
        device_id=device_id,
        first_seen=now,
        last_seen=now,
        seq=1,
        registered=registered,
        override=override,
    )
    return DeviceCase(record=record, device=device, allowed_elsewhere=allowed)


def decide_case(case: DeviceCase, policy: UemPolicy, now: float) -> Decision:
    holders = tuple(f"other-allowed-device-{i + 1}" for i in range(case.allowed_elsewhere))
    slots = MailboxSlots(policy.max_devices_per_mailbox, holders)
    return decide(case.record, case.device, policy, slots, now)


def rule_json(rule: RuleResult) -> dict[str, Any]:
    return {
        "rule": rule.rule,
        "outcome": rule.outcome,
        "reason": rule.reason,
        "reason_names": list(reason_names(rule.reason)),
        "inputs": dict(rule.inputs),
        "detail": rule.detail,
    }


def decision_json(decision: Decision) -> dict[str, Any]:
    return {
        "state": decision.state.value,
        "reasons": decision.reasons,
        "reasons_hex": f"0x{decision.reasons:x}",
        "reason_names": list(reason_names(decision.reasons)),
        "explanation": decision.explanation,
        "trace": [rule_json(r) for r in decision.trace],
    }


def reasons_text(mask: int) -> str:
    """``OS_VERSION, PER_MAILBOX_LIMIT (0x82)`` or ``none (0x0)``."""
    return f"{', '.join(reason_names(mask)) or 'none'} (0x{mask:x})"


_MARKS: Final = {"pass": "ok", "violated": "XX", "skipped": "--", "overridden": "ov"}


def format_trace(rules: Iterable[Mapping[str, Any]], indent: str = "  ") -> list[str]:
    """The rule trace as aligned lines: mark, rule, outcome, inputs, then the detail."""
    rows = list(rules)
    width = max((len(str(r.get("rule", ""))) for r in rows), default=0)
    lines: list[str] = []
    for r in rows:
        outcome = str(r.get("outcome", ""))
        mark = _MARKS.get(outcome, "??")
        raw_inputs = r.get("inputs") or {}
        pairs = raw_inputs.items() if isinstance(raw_inputs, Mapping) else ()
        inputs = ", ".join(f"{k}={v}" for k, v in pairs)
        reason = int(r.get("reason", 0) or 0)
        bit = f" -> {', '.join(reason_names(reason))}" if reason else ""
        lines.append(f"{indent}[{mark}] {r.get('rule', '')!s:<{width}}  {outcome}{bit}")
        if inputs:
            lines.append(f"{indent}     {'':<{width}}  inputs: {inputs}")
        lines.append(f"{indent}     {'':<{width}}  {r.get('detail', '')}")
    return lines


def format_decision(decision: Decision, case: DeviceCase) -> str:
    kind = "registered" if case.device is not None else "unregistered"
    lines = [
        f"state:       {decision.state.value}",
        f"reasons:     {reasons_text(decision.reasons)}",
        f"record:      {case.record.mailbox} / {case.record.device_id} ({kind})",
        f"why:         {decision.explanation.splitlines()[0]}",
        "rule trace (rule, outcome, the inputs it read):",
        *format_trace(rule_json(r) for r in decision.trace),
    ]
    return "\n".join(lines)


def handle(args: argparse.Namespace) -> int:
    try:
        policy = load_policy_file(args.policy)
        try:
            case = device_case(_load_yaml(args.device), args.device, policy, DECISION_TIME)
        except ScenarioError as exc:
            raise InputError(str(exc)) from None
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    decision = decide_case(case, policy, DECISION_TIME)
    if args.json:
        print(json.dumps(decision_json(decision), indent=2))
    else:
        print(format_decision(decision, case))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "decide",
        help="evaluate the UEM's policy for one device offline, with the rule trace",
        description="Run the UEM's decision (ALLOW / BLOCK / WIPE) for one device against a "
        "policy, without starting anything, and show the reasons and every rule with the "
        "inputs it read. The policy file is a lab file or just its uem: section; the device "
        "file holds one posture (platform, os_version, model, compromised, data_protection, "
        "apps, last_check_in_days_ago, applied_policy_version) or registered: false, plus "
        "optional mailbox_allowed_devices: N (other allowed devices of the mailbox) and "
        "override: allow|block|wipe. See docs/scenarios.md.",
    )
    parser.add_argument("--policy", required=True, metavar="FILE", help="policy or lab YAML file")
    parser.add_argument("--device", required=True, metavar="FILE", help="device YAML file")
    parser.add_argument("--json", action="store_true", help="print the decision as JSON")
    parser.set_defaults(func=handle)
