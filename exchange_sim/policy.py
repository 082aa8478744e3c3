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
command, and it is ``activesync.provisioning.answer_provision`` (the decision the gatekeeper
uses too): a pending wipe first, then the ``precheck`` refusals (Status 2, Policy Status 3,
165), then the two phases on the machine.
"""

from __future__ import annotations

import random

import attrs

from activesync.answers import EasAnswer
from activesync.commands.provision import ProvisionDoc, ProvisionRequest, ProvisionResponse
from activesync.provisioning import PolicyKeyMachine, answer_provision
from activesync.query import EasRequest
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
        """MS-ASPROV 3.2.5.1: one Provision request, answered by the decision every server
        shares (``answer_provision``) with this partnership's machine and this server's policy."""
        return answer_provision(
            self.machine(user, device_id),
            request,
            version,
            self.policy,
            require_device_information=self.require_device_information,
        )
