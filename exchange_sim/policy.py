"""The mock Exchange's side of MS-ASPROV: one policy-key machine per (user, device).

Responsibility: keep a ``PolicyKeyMachine`` (``activesync.provisioning``) for every partnership,
answer Provision requests with it (two phases, wrong acknowledgement -> Policy Status 5, the
wipe directive and its acknowledgement), and say whether any other command may pass the policy
key gate. It must not write its own key logic (the machine does), build HTTP responses or read
the clock.

Theory of operation: keys come from one ``random.Random`` seeded from the config, so a lab run
with the same seed hands out the same keys. ``check`` is asked by the shell for every command
but Ping/Provision/OPTIONS and gives back the version-correct refusal (HTTP 449 below 14.0,
Status 142/144 in the command's root from 14.0) or None. ``provision`` is the whole Provision
command: ``precheck`` refusals (Status 2, Policy Status 3, 165), then the machine.
"""

from __future__ import annotations

import random

import attrs

from activesync.answers import EasAnswer
from activesync.commands.provision import (
    ProvisionDoc,
    ProvisionRequest,
    ProvisionResponse,
    RequestKind,
    precheck,
)
from activesync.provisioning import PolicyKeyMachine, PolicyState
from activesync.query import EasRequest
from activesync.status import ProvisionStatus
from activesync.versions import ProtocolVersion


@attrs.define(eq=False)
class ProvisioningBook:
    """Every partnership's policy-key machine, and the policy this server hands out."""

    policy: ProvisionDoc
    require_device_information: bool = True
    seed: int = 1
    machines: dict[tuple[str, str], PolicyKeyMachine] = attrs.Factory(dict)
    _rng: random.Random = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(f"exchange-policy-keys:{self.seed}")

    def machine(self, user: str, device_id: str) -> PolicyKeyMachine:
        key = (user.lower(), device_id.lower())
        found = self.machines.get(key)
        if found is None:
            found = self.machines[key] = PolicyKeyMachine(source=self._rng.getrandbits)
        return found

    def check(self, user: str, eas: EasRequest) -> EasAnswer | None:
        """None when the request's policy key lets it through, else the answer to send."""
        assert eas.protocol_version is not None
        result = self.machine(user, eas.device_id).check(
            eas.policy_key, eas.protocol_version, eas.command
        )
        return None if result.ok else result.answer

    def request_wipe(self, user: str, device_id: str) -> None:
        """Admin action: the device gets 140 (or 403/449) until it wipes."""
        self.machine(user, device_id).request_wipe()

    def provision(
        self, user: str, device_id: str, request: ProvisionRequest, version: ProtocolVersion
    ) -> ProvisionResponse:
        """MS-ASPROV 3.2.5.1: one Provision request, answered."""
        refusal = precheck(
            request, version, require_device_information=self.require_device_information
        )
        if refusal is not None:
            return refusal
        machine = self.machine(user, device_id)
        asks_policy = request.kind in (
            RequestKind.INITIAL,
            RequestKind.ACKNOWLEDGEMENT,
            RequestKind.WIPE_FETCH,
        )
        if asks_policy and machine.wipe_pending:
            # MS-ASPROV 3.2.5.1.2.2: a device told to wipe gets the directive, not a policy.
            account_only = machine.deliver_wipe()
            return ProvisionResponse.wipe_directive(
                version=version, account_only=account_only and version >= ProtocolVersion.V16_1
            )
        if request.kind is RequestKind.INITIAL:
            temporary = machine.issue_temporary()
            return ProvisionResponse.initial(
                version=version,
                policy_key=temporary,
                doc=self.policy,
                device_information_sent=request.device_information is not None,
            )
        if request.kind is RequestKind.ACKNOWLEDGEMENT:
            outcome = machine.acknowledge(request.policy_key_value)
            if outcome.accepted and outcome.final_key is not None:
                return ProvisionResponse.acknowledged(version=version, policy_key=outcome.final_key)
            # MS-ASPROV 3.2.5.1.2.1: the acknowledged key is not the temporary key.
            return ProvisionResponse.wrong_key(version=version)
        if request.kind is RequestKind.WIPE_FETCH:
            # An empty <Provision/> with no wipe pending breaks the protocol (Status 2).
            return ProvisionResponse.failure(ProvisionStatus.ProtocolError)
        if machine.state not in (PolicyState.WIPE_SENT, PolicyState.WIPED):
            return ProvisionResponse.failure(ProvisionStatus.ProtocolError)
        succeeded = request.status == 1
        machine.wipe_reported(succeeded)
        return ProvisionResponse.wipe_acknowledged(
            version=version,
            succeeded=succeeded,
            account_only=request.kind is RequestKind.ACCOUNT_WIPE_ACK,
        )
