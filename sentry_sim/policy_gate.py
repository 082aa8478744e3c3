"""uem policy mode: the gatekeeper provisions the UEM's ActiveSync policy itself.

Responsibility: answer Provision requests of allowed and wiped devices (the two-phase policy
key of MS-ASPROV 3.1.1/3.2.5.1 and the remote-wipe exchange of 3.1.5.1.2.2), and check the
policy key of every other command. It must not do I/O, read a clock or decide access (the gate
and the UEM do); the policy-key state machine itself is ``activesync.provisioning``'s.

Theory of operation:
- Final keys are derived, not stored: ``final_key(record, policy_version)`` is an HMAC of the
  record key and the policy version under a per-gatekeeper secret (kept in the state dir), with
  the top bit clear. So a record needs no key slot (lean device list), keys survive restarts
  and are the same in every worker sharing the secret, and a new UEM policy version turns every
  old key stale by itself: the device gets 144 (449 below 14.0) and provisions again.
- Temporary keys are random with the top bit set, so a temporary key can never equal a final
  key. Between phase 1 and phase 2 the device's ``PolicyKeyMachine`` waits in a bounded
  table; the machine issues the temporary key, and on a right acknowledgement issues the final
  key from the derivation (its key source is swapped for the derivation for that call).
- The policy sent is the UEM's ``EASProvisionDoc`` for the record's policy version, or the
  configured temporary default policy (version 0) for a device allowed while the UEM was
  unreachable.
- Real clients vary (notes 2.1): the first Provision may carry no X-MS-PolicyKey at all; the
  acknowledgement's key is read from the body, else the ``X-MS-PolicyKey`` header, else a
  ``PolicyKey`` query parameter; 14.1+ clients that leave out DeviceInformation are served
  anyway (the gatekeeper is lenient, like older Exchange).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from typing import Final

import attrs

from activesync.commands.provision import (
    ProvisionDoc,
    ProvisionRequest,
    ProvisionResponse,
    RequestKind,
    precheck,
)
from activesync.provisioning import PolicyKeyMachine, PolicyState
from activesync.status import ProvisionStatus, Status
from activesync.versions import ProtocolVersion

#: Phase-1 machines kept waiting for their acknowledgement; the oldest go first beyond this.
MAX_PENDING: Final = 10_000

_TEMPORARY_BIT: Final = 0x8000_0000


def _temporary_source(bits: int) -> int:
    return secrets.randbits(bits) | _TEMPORARY_BIT


def settings_doc(settings: Mapping[str, object], source: str) -> ProvisionDoc:
    """A ``ProvisionDoc`` from UEM or config settings; digit strings count as integers."""
    values: dict[str, object] = {}
    for name, value in settings.items():
        if isinstance(value, str) and value.lstrip("-").isdigit():
            values[name] = int(value)
        else:
            values[name] = value
    return ProvisionDoc.from_mapping(values, source)


@attrs.frozen
class ProvisionAnswer:
    """The Provision response to send, and which phase it was (for the event)."""

    response: ProvisionResponse
    #: "policy", "acknowledged", "wrong_key", "wipe", "wipe_acknowledged" or "refused".
    phase: str


@attrs.define(eq=False)
class PolicyGate:
    """Policy keys and Provision answers of one gatekeeper."""

    secret: bytes
    fallback_doc: ProvisionDoc
    _docs: dict[int, ProvisionDoc] = attrs.field(factory=dict)
    _pending: OrderedDict[str, PolicyKeyMachine] = attrs.field(factory=OrderedDict)

    # -- policies --------------------------------------------------------------------------
    def learn(self, version: int, doc: ProvisionDoc) -> bool:
        """Remember the UEM's policy ``version``; True if it was new."""
        if version in self._docs:
            return False
        self._docs[version] = doc
        return True

    def knows(self, version: int) -> bool:
        return version == 0 or version in self._docs

    def doc_for(self, version: int) -> ProvisionDoc:
        """The policy of ``version``; the temporary default policy for 0 (or an unknown one)."""
        return self._docs.get(version, self.fallback_doc)

    # -- keys ------------------------------------------------------------------------------
    def final_key(self, record_key: str, policy_version: int) -> int:
        """The one final policy key of ``record_key`` under ``policy_version``."""
        mac = hmac.new(
            self.secret, f"{record_key}\n{policy_version}".encode(), hashlib.sha256
        ).digest()
        key = int.from_bytes(mac[:4], "big") & ~_TEMPORARY_BIT
        return key or 1

    def check(self, record_key: str, sent: int | None, policy_version: int) -> int | None:
        """None when ``sent`` is the current final key; else 142 (no key) or 144 (stale)."""
        if sent is None or sent == 0:
            return int(Status.DeviceNotProvisioned)
        if sent == self.final_key(record_key, policy_version):
            return None
        return int(Status.InvalidPolicyKey)

    def pending(self, record_key: str) -> PolicyKeyMachine | None:
        return self._pending.get(record_key)

    # -- Provision -------------------------------------------------------------------------
    def answer(
        self,
        record_key: str,
        request: ProvisionRequest,
        *,
        version: ProtocolVersion,
        policy_version: int,
        wipe: bool,
        presented_key: int | None,
    ) -> ProvisionAnswer:
        """The response to a Provision of an ALLOWED (``wipe`` False) or WIPED record."""
        if wipe:
            return self._wipe(request, version)
        refusal = precheck(request, version, require_device_information=False)
        if refusal is not None:
            return ProvisionAnswer(refusal, "refused")
        if request.kind is RequestKind.INITIAL:
            machine = PolicyKeyMachine(policy_version=policy_version, source=_temporary_source)
            temporary = machine.issue_temporary()
            self._remember(record_key, machine)
            response = ProvisionResponse.initial(
                version=version,
                policy_key=temporary,
                doc=self.doc_for(policy_version),
                device_information_sent=request.device_information is not None,
            )
            return ProvisionAnswer(response, "policy")
        if request.kind is RequestKind.ACKNOWLEDGEMENT:
            return self._acknowledge(record_key, request, version, policy_version, presented_key)
        # An empty Provision or a wipe report from a device nobody asked to wipe.
        return ProvisionAnswer(ProvisionResponse.failure(ProvisionStatus.ProtocolError), "refused")

    def _acknowledge(
        self,
        record_key: str,
        request: ProvisionRequest,
        version: ProtocolVersion,
        policy_version: int,
        presented_key: int | None,
    ) -> ProvisionAnswer:
        key = request.policy_key_value
        if key is None:
            key = presented_key
        machine = self._pending.get(record_key)
        if machine is None:
            machine = PolicyKeyMachine(policy_version=policy_version)
        elif machine.policy_version != policy_version:
            # The UEM's policy changed between the two phases: this acknowledgement is for the
            # old policy and must not yield a final key (the machine forgets its temporary key).
            machine.policy_changed(policy_version)
        final = self.final_key(record_key, policy_version)
        machine.source = lambda _bits: final
        outcome = machine.acknowledge(key)
        if not outcome.accepted or outcome.final_key is None:
            return ProvisionAnswer(ProvisionResponse.wrong_key(version=version), "wrong_key")
        assert machine.state is PolicyState.PROVISIONED
        self._pending.pop(record_key, None)
        response = ProvisionResponse.acknowledged(version=version, policy_key=outcome.final_key)
        return ProvisionAnswer(response, "acknowledged")

    def _wipe(self, request: ProvisionRequest, version: ProtocolVersion) -> ProvisionAnswer:
        if request.kind in (RequestKind.WIPE_ACK, RequestKind.ACCOUNT_WIPE_ACK):
            response = ProvisionResponse.wipe_acknowledged(
                version=version,
                succeeded=request.status == 1,
                account_only=request.kind is RequestKind.ACCOUNT_WIPE_ACK,
            )
            return ProvisionAnswer(response, "wipe_acknowledged")
        # MS-ASPROV 3.2.5.1.1: any other Provision of a device to be wiped gets the directive.
        return ProvisionAnswer(ProvisionResponse.wipe_directive(version=version), "wipe")

    def _remember(self, record_key: str, machine: PolicyKeyMachine) -> None:
        self._pending[record_key] = machine
        self._pending.move_to_end(record_key)
        while len(self._pending) > MAX_PENDING:
            self._pending.popitem(last=False)
