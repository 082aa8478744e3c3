"""Error and denial answers for any command, shaped per protocol version.

Responsibility: build the exact response (HTTP status, WBXML body, headers) a server or a
gatekeeper sends when it refuses a request with an EAS status: blocked (129), mailbox device
limit (177), provisioning needed (142/143/144), remote wipe pending (140), or any other status.
It must not decide *whether* to refuse; the callers' cores decide and pass the status in.

Theory of operation (notes 3.3, 5.2, 7.4): if the command has an XML root at that version and
Exchange's per-version rule puts the status in the body (``status.status_in_body``), the answer
is HTTP 200 with ``<Root xmlns="Page:"><Status>N</Status></Root>`` (Exchange uses this one
shape for every command, even where a normal response nests Status deeper). Otherwise it is the
paired HTTP code (``status.http_equivalent``) with an empty body: 403 for a block below 14.0,
449 for provisioning below 14.0, always 403 for GetAttachment, which has no XML root.
"""

from __future__ import annotations

from typing import Final

import attrs

from activesync.commands.roots import canonical_name, root_for
from activesync.status import Status, http_equivalent, status_in_body
from activesync.versions import ProtocolVersion
from activesync.wbxml import encode
from activesync.wbxml.tree import E

#: MS-ASHTTP 2.2.1.1.2.3: the WBXML media type.
WBXML_CONTENT_TYPE: Final = "application/vnd.ms-sync.wbxml"

#: Exchange's reason phrases where they differ from the HTTP standard's (EXDEC
#: ``AirSyncResponse``); 449 has no standard phrase at all.
REASON_PHRASES: Final[dict[int, str]] = {
    449: "Retry after sending a PROVISION command",
}


@attrs.frozen
class EasAnswer:
    """A complete response: status line, body and the headers that describe the body."""

    #: HTTP status code.
    http_status: int
    #: WBXML body; empty when the answer has none.
    body: bytes = b""
    #: Headers, e.g. (("Content-Type", "application/vnd.ms-sync.wbxml"),) when there is a body.
    headers: tuple[tuple[str, str], ...] = ()
    #: The EAS status this answer conveys (in the body or as its HTTP pairing).
    eas_status: int | None = None

    @property
    def reason(self) -> str | None:
        """A reason phrase to use instead of the standard one (449's), or None."""
        return REASON_PHRASES.get(self.http_status)

    @property
    def status_in_body(self) -> bool:
        """True when the EAS status travels in the WBXML body (HTTP 200)."""
        return bool(self.body)


def status_answer(
    command: str,
    status: int,
    version: ProtocolVersion | str,
    *,
    policy_key_sent: bool = False,
) -> EasAnswer:
    """The answer carrying ``status`` for ``command`` to a client of ``version``.

    ``policy_key_sent`` matters only for 140 below 14.0: 449 when the request carried a policy
    key, 403 when it did not (MS-ASCMD 2.2.2 R7561/R7562).
    """
    version = ProtocolVersion.coerce(version)
    command = canonical_name(command)
    root = root_for(command, version)
    if root is not None and status_in_body(status, version):
        page, tag = root
        body = encode(E(page, tag, E(page, "Status", text=int(status))))
        return EasAnswer(
            http_status=200,
            body=body,
            headers=(("Content-Type", WBXML_CONTENT_TYPE),),
            eas_status=int(status),
        )
    return EasAnswer(
        http_status=http_equivalent(status, command, policy_key_sent=policy_key_sent),
        eas_status=int(status),
    )


def blocked_answer(command: str, version: ProtocolVersion | str) -> EasAnswer:
    """129 DeviceIsBlockedForThisUser: 403 below 14.0, 200 + Status 129 from 14.0 (notes 5.2)."""
    return status_answer(command, Status.DeviceIsBlockedForThisUser, version)


def device_limit_answer(command: str, version: ProtocolVersion | str) -> EasAnswer:
    """177 MaximumDevicesReached: 403 up to 14.0, 200 + Status 177 from 14.1 (notes 6)."""
    return status_answer(command, Status.MaximumDevicesReached, version)


def provisioning_needed_answer(
    command: str,
    version: ProtocolVersion | str,
    kind: int = Status.DeviceNotProvisioned,
) -> EasAnswer:
    """142 (never provisioned), 143 (refresh) or 144 (stale key): 449 below 14.0."""
    if kind not in (
        Status.DeviceNotProvisioned,
        Status.PolicyRefresh,
        Status.InvalidPolicyKey,
    ):
        raise ValueError(f"kind: expected 142, 143 or 144, got {kind}")
    return status_answer(command, kind, version)


def remote_wipe_needed_answer(
    command: str, version: ProtocolVersion | str, *, policy_key_sent: bool
) -> EasAnswer:
    """140 RemoteWipeRequested: below 14.0 403 without a key, 449 with one; body from 14.0."""
    return status_answer(
        command, Status.RemoteWipeRequested, version, policy_key_sent=policy_key_sent
    )
