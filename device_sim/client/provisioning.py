"""The Provision command, both phases and the wipe: requests and reading the answers.

Responsibility: build the four Provision requests a phone sends (initial, acknowledgement,
the empty wipe fetch, the wipe acknowledgement) and read a Provision answer into a verdict:
a temporary key and a policy to apply, a final key, no policy, a wipe directive, or a failure.
It must not change the phone: the facade applies the verdict (and owns the re-provision and
wipe reactions, which span commands).

Theory of operation (MS-ASPROV 3.1.5.1): phase 1 sends key 0 and DeviceInformation from 14.1,
and gets the policy with a temporary key; the phone applies the policy and acknowledges with
that key in phase 2, which answers with the final key sent with every later command. Policy
Status 2 means no policy: the phone is served with key 0. Any Provision answer may carry
RemoteWipe instead, which the phone acknowledges (Status 1) and then wipes. Quirks of real
phones change where the key travels (none on the first request, in the query on the ack).
"""

from __future__ import annotations

from activesync.commands.provision import ProvisionRequest, ProvisionResponse
from activesync.status import PolicyStatus, ProvisionStatus, status_name
from activesync.versions import ProtocolVersion
from activesync.wbxml.tree import Element
from device_sim.client.exchanges import AckOp, ProvisionOp, WipeAckOp
from device_sim.client.framing import post
from device_sim.client.memory import AppliedPolicy
from device_sim.client.results import Outcome
from device_sim.client.settings import device_information
from device_sim.client.states import Event
from device_sim.client.verdicts import (
    Advance,
    Fail,
    PolicyApplied,
    PolicyKeyChanged,
    Proceed,
    Verdict,
    WipeDirective,
)
from device_sim.wire import DeviceIdentity, HttpRequest, QueryForm, Quirk

_V = ProtocolVersion


def provision_request(identity: DeviceIdentity, op: ProvisionOp) -> HttpRequest:
    """Phase 1, or the empty ``<Provision/>`` that fetches a wipe directive."""
    if op.wipe_fetch:
        # MS-ASPROV 3.1.5.1.1: after 140 the initial request SHOULD be an empty
        # <Provision/>, with the policy key reset to 0.
        return post(identity, "Provision", ProvisionRequest.wipe_fetch().to_element(), policy_key=0)
    # MS-ASPROV 2.2.2.53: DeviceInformation must be sent from 14.1 and must not be below.
    info = device_information(identity) if identity.version >= _V.V14_1 else None
    body = ProvisionRequest.initial(identity.version, info).to_element()
    # MS-ASPROV 3.1.5.1.1: the key is 0 on the initial request (some phones send none).
    no_key = Quirk.NO_KEY_ON_FIRST_PROVISION in identity.quirks
    return post(identity, "Provision", body, policy_key=None if no_key else 0)


def ack_request(identity: DeviceIdentity, op: AckOp) -> HttpRequest:
    """Phase 2: acknowledge the applied policy with the temporary key."""
    body = ProvisionRequest.acknowledgement(
        identity.version, op.temporary_key, identity.policy_ack_status
    ).to_element()
    key = int(op.temporary_key)
    if Quirk.ACK_KEY_IN_QUERY in identity.quirks and identity.query_form is QueryForm.PLAIN:
        return post(
            identity,
            "Provision",
            body,
            policy_key=None,
            params=(("PolicyKey", op.temporary_key),),
        )
    return post(identity, "Provision", body, policy_key=key)


def wipe_ack_request(identity: DeviceIdentity, op: WipeAckOp) -> HttpRequest:
    """Acknowledge a RemoteWipe directive (Status 1: the wipe will happen)."""
    body = ProvisionRequest.wipe_ack(1, account_only=op.account_only).to_element()
    return post(identity, "Provision", body, policy_key=0)


def read_provision(
    op: ProvisionOp | AckOp, root: Element | None, *, ack_status: int, now: float
) -> Verdict:
    """Read the answer to either phase (its global status already handled).

    ``ack_status`` is the Policy/Status the phone acknowledges with; ``now`` dates the policy.
    """
    failed = (Event.PROVISION_FAILED,)
    if root is None:
        return Verdict(Fail(None, "empty Provision response"), events=failed)
    answer = ProvisionResponse.from_element(root)
    if answer.remote_wipe or answer.account_only_remote_wipe:
        return Verdict(WipeDirective(account_only=answer.account_only_remote_wipe))
    if answer.status != ProvisionStatus.Success:
        summary = f"Provision Status {answer.status} {_provision_status_name(answer.status)}"
        return Verdict(Fail(answer.status, summary), events=failed)
    if answer.policy_status == PolicyStatus.NoPolicy and isinstance(op, ProvisionOp):
        return Verdict(
            Advance(answer.status, "Status 1  no policy for this device (Policy Status 2)"),
            events=(Event.NO_POLICY_REQUIRED,),
            facts=(PolicyKeyChanged(0),),
        )
    key = answer.policy_key_value
    if answer.policy_status != PolicyStatus.Success or key is None:
        summary = (
            f"Policy Status {answer.policy_status} "
            f"{_policy_status_name(answer.policy_status)}"
            + ("" if key is not None else "  no usable PolicyKey")
        )
        return Verdict(Fail(answer.status, summary), events=failed)
    if isinstance(op, ProvisionOp):
        restrictions = {} if answer.doc is None else answer.doc.non_defaults
        policy = AppliedPolicy(
            doc=answer.doc, restrictions=restrictions, ack_status=ack_status, applied_at=now
        )
        shown = ", ".join(f"{k}={_show(v)}" for k, v in restrictions.items()) or "no limits"
        return Verdict(
            Proceed(
                code=answer.status,
                outcome=Outcome.OK,
                summary=f"Status 1  policy key {key} (temporary)  applied policy: {shown}",
                ops=(AckOp(str(key)),),
                details={
                    "policy_key": key,
                    "temporary": True,
                    "restrictions": {k: _json(v) for k, v in restrictions.items()},
                },
            ),
            events=(Event.TEMPORARY_KEY_RECEIVED,),
            facts=(PolicyApplied(policy),),
        )
    return Verdict(
        Advance(
            answer.status,
            f"Status 1  policy key {key} (final)",
            {"policy_key": key, "temporary": False},
        ),
        events=(Event.FINAL_KEY_RECEIVED,),
        facts=(PolicyKeyChanged(key),),
    )


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
