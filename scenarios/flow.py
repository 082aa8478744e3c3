"""The 8 steps of the first-access flow (DESIGN.md section 2) as shared words and scripts.

Responsibility: the names of the steps, the script a phone runs when an account is added, and
the wording of how the gatekeeper answered a device, for every teller of the flow: the narrated
demo (``scenarios.demo``) and the live dashboard (``scenarios.dashboard``). It must not read
events, start anything or print; it holds words and values only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from activesync.status import status_name
from device_sim.client import FolderSync, Options, Provision, Sync

#: What each step of the flow is called (DESIGN.md section 2).
STEP_TITLES: Final[Mapping[int, str]] = {
    1: "device -> gatekeeper",
    2: "device list",
    3: "report -> UEM",
    4: "UEM devices view",
    5: "UEM decision",
    6: "gatekeeper cache",
    7: "allowed -> Exchange",
    8: "blocked -> device told",
}

#: A first contact: what a phone does when an account is added.
FIRST_CONTACT: Final = (Options(), Provision(), FolderSync(), Sync())


def answer_text(http_status: int, eas_status: int | None) -> str:
    """How the gatekeeper told a device: ``HTTP 200 + Status 129 (...)`` or ``HTTP 403``.

    activesync-notes.md section 7: from EAS 14.0 a block is HTTP 200 with a body status; below
    14.0 (or in the plain-403 response mode) it is the HTTP status alone.
    """
    if http_status == 200 and eas_status is not None:
        return f"HTTP 200 + Status {eas_status} ({status_name(eas_status)})"
    return f"HTTP {http_status}"


def reasons_text(names: Sequence[str]) -> str:
    """Reason names joined for a sentence, or ``no reasons``."""
    return ", ".join(names) if names else "no reasons"
