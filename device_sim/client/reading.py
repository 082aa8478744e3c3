"""Reading any EAS response far enough to react: HTTP statuses, global statuses, back-off.

Responsibility: the reactions every command shares, decided before a command's own reader
looks at the body: HTTP 401/503/449/403, a body that does not decode, a global ``Status``
(blocked, provision again, wipe, retry later), and how long to back off. It must not read a
command's own answer (the command modules do) nor change the phone (the facade does).

Theory of operation: ``screen`` looks at the HTTP status only; ``read_body`` decodes a 200 body
and picks out a global status (MS-ASCMD 2.2.2, notes 3.3: from 14.0 a refusal or a provisioning
demand is ``<Root><Status>N</Status>``); ``global_reaction`` maps that status to a reaction.
``retry_after`` reads Retry-After (seconds or an HTTP date) against ``now``, else backs off
exponentially (MS-ASHTTP 3.1.5.2.3), never beyond an hour.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from typing import Final

import attrs

from activesync.status import FIRST_GLOBAL_STATUS, Status, status_name
from activesync.wbxml import decode
from activesync.wbxml.tree import Element
from device_sim.client.results import Block, BlockKind
from device_sim.client.verdicts import (
    AuthRefused,
    Busy,
    Fail,
    Reaction,
    Refuse,
    Reprovision,
    WipeRequested,
)
from device_sim.wire import HttpResponse

#: Back-off without Retry-After: 2, 4, 8... seconds (MS-ASHTTP 3.1.5.2.3), at most this.
DEFAULT_BACKOFF: Final = 2.0
MAX_BACKOFF_SECONDS: Final = 3600.0

#: Body statuses that refuse the device, with what they mean (MS-ASCMD 2.2.2).
REFUSALS: Final[Mapping[int, tuple[BlockKind, str]]] = {
    Status.DeviceIsBlockedForThisUser: (
        BlockKind.BLOCKED,
        "DeviceIsBlockedForThisUser: this device may not sync this mailbox",
    ),
    Status.MaximumDevicesReached: (
        BlockKind.DEVICE_LIMIT,
        "MaximumDevicesReached: the mailbox has too many device partnerships",
    ),
    Status.UserDisabledForSync: (
        BlockKind.USER_DISABLED,
        "UserDisabledForSync: the user is not enabled for ActiveSync",
    ),
    Status.AccessDenied: (BlockKind.ACCESS_DENIED, "AccessDenied: the user may not do this"),
    Status.AccountDisabled: (BlockKind.ACCESS_DENIED, "AccountDisabled: the account is disabled"),
}

#: MS-ASCMD 2.2.2: statuses that mean "provision again" (449 below 14.0).
REPROVISION: Final = frozenset(
    {
        Status.LegacyDeviceOnStrictPolicy,
        Status.DeviceNotProvisioned,
        Status.PolicyRefresh,
        Status.InvalidPolicyKey,
    }
)

#: HTTP 403: the only refusal below 14.0 (and 177 at 14.0).
_FORBIDDEN: Final = Block(
    code=403,
    kind=BlockKind.FORBIDDEN,
    meaning="HTTP 403 Forbidden: the server refuses this device or user",
    http_status=403,
)


@attrs.frozen
class Reading:
    """A response body read far enough to classify it."""

    root: Element | None
    #: A direct ``Status`` child of the root that is a global status (>= 101), or None.
    global_status: int | None


def screen(response: HttpResponse) -> Reaction | None:
    """The reaction the HTTP status alone decides (401, 503, 449, 403), else None."""
    status = response.status
    if status == 401:
        return AuthRefused()
    if status == 503:
        return Busy("server busy (HTTP 503)")
    if status == 449:
        # MS-ASCMD 2.2.2: below 14.0, 449 stands for 140 (key sent), 141, 142, 143, 144.
        return Reprovision(None, "HTTP 449: provision again")
    if status == 403:
        return Refuse(None, _FORBIDDEN)
    return None


def read_body(response: HttpResponse) -> Reading:
    """Decode a 200 body far enough to see its root and any global status in it.

    Raises ``ActiveSyncError`` when the body is not WBXML.
    """
    if not response.body:
        return Reading(None, None)
    root = decode(response.body)
    status_el = root.child("Status", root.page)
    code: int | None = None
    if status_el is not None and status_el.text is not None and status_el.text.isdigit():
        value = int(status_el.text)
        # MS-ASCMD 2.2.2 / notes 3.3: from 14.0 a global status is <Root><Status>N</Status>.
        if value >= FIRST_GLOBAL_STATUS:
            code = value
    # Provision/Status also uses 139/141/145/165 as Provision's own statuses; 129/177/140 and
    # 142-144 are still global there.
    if root.page == "Provision" and code in (139, 141, 145, 165):
        code = None
    return Reading(root, code)


def global_reaction(code: int, http_status: int, *, provisioning: bool) -> Reaction:
    """The reaction to a global status ``code`` in an answer to any command.

    ``provisioning`` is true for a Provision exchange, where 140 is read as part of the
    Provision answer rather than as a demand to fetch a wipe.
    """
    name = status_name(code)
    refusal = REFUSALS.get(code)
    if refusal is not None:
        kind, meaning = refusal
        return Refuse(code, Block(code=code, kind=kind, meaning=meaning, http_status=http_status))
    if code in REPROVISION:
        return Reprovision(code, f"Status {code} {name}")
    if code == Status.RemoteWipeRequested and not provisioning:
        return WipeRequested(code)
    if code == Status.ServerErrorRetryLater:
        return Busy(f"Status {code} {name}")
    return Fail(code, f"Status {code} {name}")


def http_failure(status: int) -> Fail:
    """An HTTP status no reaction covers, in plain words."""
    return Fail(None, f"HTTP {status}: {_reason(status)}")


def _reason(status: int) -> str:
    return {
        400: "bad request",
        404: "not an ActiveSync endpoint",
        451: "redirect to another server",
        500: "server error",
        501: "not implemented",
        507: "mailbox full",
    }.get(status, "unexpected status")


def retry_after(response: HttpResponse, now: float, attempt: int) -> tuple[float, str]:
    """Seconds to wait after a 503: Retry-After (seconds or an HTTP date), else 2, 4, 8..."""
    raw = response.header("Retry-After")
    if raw is not None:
        raw = raw.strip()
        if raw.isdigit():
            return min(float(raw), MAX_BACKOFF_SECONDS), "Retry-After"
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            when = None
        if when is not None and when.tzinfo is not None:
            seconds = max(0.0, when.timestamp() - now)
            return min(seconds, MAX_BACKOFF_SECONDS), "Retry-After date"
    # MS-ASHTTP 3.1.5.2.3: without Retry-After, wait a few seconds with exponential backoff.
    return min(DEFAULT_BACKOFF * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS), "exponential back-off"
