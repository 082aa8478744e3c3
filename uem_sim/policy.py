"""The UEM's decision: ALLOW, BLOCK or WIPE for one ActiveSync record, with reasons and why.

Responsibility: ``decide()``, a pure function of the record, its registered device (or none),
the policy, the mailbox's slot holders and ``now``. Must not: read a clock, touch storage,
or look at other records itself (the registry hands it the slot holders, which is how decisions
for one mailbox are serialized and first come, first served).

Theory of operation, in order (DESIGN.md section 2 step 5):

1. Compliance, for a registered device: each rule of the security policy is checked and a
   violated rule adds its reason bit (COMPROMISED, OS_VERSION for platform and minimum OS,
   HW_VERSION for the model, DATA_PROTECTION, POLICY_OUT_OF_DATE, DEVICE_OUT_OF_CONTACT against
   ``now``, APP_CONTROL). An unregistered device is instead checked by auto-block (AUTO_BLOCK).
2. Admin overrides win: WIPE gives WIPE, BLOCK gives BLOCK, both adding MANUAL to whatever the
   policy found; ALLOW clears compliance and auto-block reasons.
3. The per-mailbox limit applies to a record that would otherwise be allowed: when the other
   allowed records of the mailbox already fill the limit it is blocked with PER_MAILBOX_LIMIT.
   An admin ALLOW does not lift the limit, so the limit is never exceeded.

A denial is a result: ``Decision`` carries the state, the bitmask, a rule trace with the
inputs each rule read, and a plain-English explanation naming every rule.
"""

from __future__ import annotations

import attrs

from uem_sim.contract import AccessState, Reason
from uem_sim.model import (
    DAY,
    EasRecord,
    OverrideAction,
    RegisteredDevice,
    RuleResult,
    SecurityPolicy,
    UemPolicy,
    version_tuple,
)
from uem_sim.reasons import describe


@attrs.frozen
class MailboxSlots:
    """The mailbox limit and the other records of the mailbox currently holding a slot."""

    limit: int | None
    holders: tuple[str, ...] = ()


@attrs.frozen
class Decision:
    """The outcome of ``decide()``."""

    state: AccessState
    reasons: int
    explanation: str
    trace: tuple[RuleResult, ...]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _rule(
    rule: str, violated: bool, reason: Reason, inputs: dict[str, str], detail: str
) -> RuleResult:
    return RuleResult(
        rule=rule,
        outcome="violated" if violated else "pass",
        reason=reason.value if violated else 0,
        inputs=tuple(inputs.items()),
        detail=detail,
    )


def _skipped(rule: str, detail: str) -> RuleResult:
    return RuleResult(rule=rule, outcome="skipped", reason=0, inputs=(), detail=detail)


def compliance(device: RegisteredDevice, security: SecurityPolicy, now: float) -> list[RuleResult]:
    """Check a registered device against every rule of the security policy."""
    p = device.posture
    results: list[RuleResult] = []

    if security.block_compromised:
        results.append(
            _rule(
                "block compromised devices",
                p.compromised,
                Reason.COMPROMISED,
                {"compromised": _yes(p.compromised)},
                "the device reports it is compromised" if p.compromised else "not compromised",
            )
        )
    else:
        results.append(_skipped("block compromised devices", "off in the security policy"))

    if security.allowed_platforms is not None:
        ok = p.platform in security.allowed_platforms
        allowed = ", ".join(sorted(security.allowed_platforms)) or "(none)"
        results.append(
            _rule(
                "allowed platforms",
                not ok,
                Reason.OS_VERSION,
                {"platform": p.platform, "allowed": allowed},
                f"platform {p.platform} is {'' if ok else 'not '}in [{allowed}]",
            )
        )
    else:
        results.append(_skipped("allowed platforms", "any platform is allowed"))

    minimum = security.min_os_version.get(p.platform)
    if minimum is not None:
        too_old = version_tuple(p.os_version) < version_tuple(minimum)
        results.append(
            _rule(
                f"minimum OS version for {p.platform}",
                too_old,
                Reason.OS_VERSION,
                {"os_version": p.os_version, "minimum": minimum},
                f"{p.os_version} is {'below' if too_old else 'at or above'} {minimum}",
            )
        )
    else:
        results.append(
            _skipped(f"minimum OS version for {p.platform}", "no minimum set for this platform")
        )

    if security.allowed_models is not None:
        ok = p.model.lower() in security.allowed_models
        allowed = ", ".join(sorted(security.allowed_models)) or "(none)"
        results.append(
            _rule(
                "allowed models",
                not ok,
                Reason.HW_VERSION,
                {"model": p.model or "(unknown)", "allowed": allowed},
                f"model {p.model or '(unknown)'} is {'' if ok else 'not '}in [{allowed}]",
            )
        )
    else:
        results.append(_skipped("allowed models", "any model is allowed"))

    if security.require_data_protection:
        results.append(
            _rule(
                "require data protection",
                not p.data_protection,
                Reason.DATA_PROTECTION,
                {"data_protection": _yes(p.data_protection)},
                "data protection is on" if p.data_protection else "data protection is off",
            )
        )
    else:
        results.append(_skipped("require data protection", "off in the security policy"))

    if security.block_policy_out_of_date:
        stale = device.applied_policy_version < security.version
        results.append(
            _rule(
                "policy up to date",
                stale,
                Reason.POLICY_OUT_OF_DATE,
                {
                    "applied_policy_version": str(device.applied_policy_version),
                    "current_policy_version": str(security.version),
                },
                f"the device applied policy version {device.applied_policy_version}, "
                f"the current one is {security.version}",
            )
        )
    else:
        results.append(_skipped("policy up to date", "off in the security policy"))

    if security.max_days_out_of_contact is not None:
        days = max(0.0, now - device.last_check_in) / DAY
        late = days > security.max_days_out_of_contact
        results.append(
            _rule(
                "maximum days out of contact",
                late,
                Reason.DEVICE_OUT_OF_CONTACT,
                {
                    "days_since_check_in": f"{days:.2f}",
                    "maximum_days": f"{security.max_days_out_of_contact:g}",
                },
                f"last check-in {days:.2f} days ago, the maximum is "
                f"{security.max_days_out_of_contact:g}",
            )
        )
    else:
        results.append(_skipped("maximum days out of contact", "no maximum set"))

    if security.blocked_apps:
        found = sorted(p.apps & security.blocked_apps)
        results.append(
            _rule(
                "disallowed apps",
                bool(found),
                Reason.APP_CONTROL,
                {
                    "installed_disallowed": ", ".join(found) or "(none)",
                    "disallowed": ", ".join(sorted(security.blocked_apps)),
                },
                f"disallowed apps installed: {', '.join(found)}"
                if found
                else "no disallowed app installed",
            )
        )
    else:
        results.append(_skipped("disallowed apps", "no app is disallowed"))
    return results


def decide(
    record: EasRecord,
    device: RegisteredDevice | None,
    policy: UemPolicy,
    slots: MailboxSlots,
    now: float,
) -> Decision:
    """Decide ALLOW / BLOCK / WIPE for ``record`` (see the module docstring for the order)."""
    trace: list[RuleResult] = []
    if device is not None:
        trace.append(
            RuleResult(
                rule="registration",
                outcome="pass",
                reason=0,
                inputs=(("registered", "yes"), ("platform", device.posture.platform)),
                detail=f"linked to the MDM-registered {device.posture.platform} device "
                f"{device.device_id} of {device.mailbox}",
            )
        )
        trace.extend(compliance(device, policy.security, now))
    else:
        auto = policy.auto_block_unregistered
        trace.append(
            _rule(
                "auto-block unregistered devices",
                auto,
                Reason.AUTO_BLOCK,
                {"registered": "no", "auto_block_unregistered": _yes(auto)},
                "not registered with the UEM, and unregistered devices are "
                + ("blocked" if auto else "allowed"),
            )
        )
    policy_reasons = 0
    for result in trace:
        policy_reasons |= result.reason

    override = record.override
    state = AccessState.BLOCK if policy_reasons else AccessState.ALLOW
    reasons = policy_reasons
    if override is not None:
        inputs = (("action", override.action.value), ("note", override.note))
        if override.action is OverrideAction.ALLOW:
            state, reasons = AccessState.ALLOW, 0
            detail = "an administrator allowed this record"
            if policy_reasons:
                detail += f", overriding {describe(policy_reasons)}"
                trace = [
                    attrs.evolve(r, outcome="overridden") if r.outcome == "violated" else r
                    for r in trace
                ]
        elif override.action is OverrideAction.BLOCK:
            state, reasons = AccessState.BLOCK, policy_reasons | Reason.MANUAL
            detail = "an administrator blocked this record"
        else:
            state, reasons = AccessState.WIPE, policy_reasons | Reason.MANUAL
            detail = "an administrator ordered a wipe of this device"
        violated = override.action is not OverrideAction.ALLOW
        trace.append(
            RuleResult(
                rule="admin override",
                outcome="violated" if violated else "pass",
                reason=Reason.MANUAL.value if violated else 0,
                inputs=inputs,
                detail=f"{detail} (note: {override.note or 'none'})",
            )
        )
    else:
        trace.append(_skipped("admin override", "none"))

    limit = slots.limit
    if limit is None:
        trace.append(_skipped("maximum devices per mailbox", "no limit"))
    else:
        used = len(slots.holders)
        holders = ", ".join(slots.holders) or "none"
        full = used >= limit
        if state is AccessState.ALLOW and full:
            state, reasons = AccessState.BLOCK, reasons | Reason.PER_MAILBOX_LIMIT
        outcome = "pass"
        if full:
            outcome = "violated" if reasons & Reason.PER_MAILBOX_LIMIT else "skipped"
        trace.append(
            RuleResult(
                rule="maximum devices per mailbox",
                outcome=outcome,
                reason=Reason.PER_MAILBOX_LIMIT.value if outcome == "violated" else 0,
                inputs=(("limit", str(limit)), ("allowed_elsewhere", str(used))),
                detail=f"{used} of {limit} slots of mailbox {record.mailbox} are held by "
                f"other allowed devices ({holders})"
                + ("" if not full or outcome == "violated" else "; not needed: already blocked"),
            )
        )

    return Decision(
        state=state,
        reasons=reasons,
        explanation=_explain(record, device, state, reasons, trace),
        trace=tuple(trace),
    )


def _explain(
    record: EasRecord,
    device: RegisteredDevice | None,
    state: AccessState,
    reasons: int,
    trace: list[RuleResult],
) -> str:
    who = f"{record.mailbox} / {record.device_id}"
    kind = (
        f"registered {device.posture.platform} {device.posture.os_version}"
        if device is not None
        else "unregistered"
    )
    if state is AccessState.ALLOW:
        head = f"ALLOW {who} ({kind}): no rule blocks it."
    elif state is AccessState.WIPE:
        head = f"WIPE {who} ({kind}): {describe(reasons)}."
    else:
        head = f"BLOCK {who} ({kind}): {describe(reasons)}."
    if reasons & Reason.PER_MAILBOX_LIMIT and record.override is not None:
        head += (
            " An admin allow does not lift the mailbox limit: remove another device of this"
            " mailbox or raise uem.max_devices_per_mailbox."
        )
    lines = [head]
    for r in trace:
        lines.append(f"- {r.rule}: {r.detail} [{r.outcome}]")
    return "\n".join(lines)
