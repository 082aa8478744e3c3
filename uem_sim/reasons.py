"""The UEM's reason taxonomy: Ivanti's block-reason bits, with a plain-English gloss each.

Responsibility: give the rest of ``uem_sim`` one place for reason names, values and wording.
The canonical values live in ``uem_sim.contract`` (the gatekeeper decodes the same bits); this
module re-exports them and adds descriptions. It must not define values of its own.
"""

from __future__ import annotations

from typing import Final

from uem_sim.contract import ALL_REASONS, Reason, reason_names

#: What each bit means, for explanations and the admin view.
DESCRIPTIONS: Final[dict[Reason, str]] = {
    Reason.COMPROMISED: "the device is compromised (jailbroken or rooted)",
    Reason.OS_VERSION: "the device's platform or OS version is not allowed",
    Reason.HW_VERSION: "the device model is not allowed",
    Reason.DATA_PROTECTION: "data protection (encryption) is required but off",
    Reason.POLICY_OUT_OF_DATE: "the device has not applied the current security policy",
    Reason.DEVICE_OUT_OF_CONTACT: "the device has not checked in with the UEM for too long",
    Reason.APP_CONTROL: "a disallowed app is installed",
    Reason.PER_MAILBOX_LIMIT: "the mailbox already has its maximum number of allowed devices",
    Reason.AUTO_BLOCK: "the device is not registered and unregistered devices are blocked",
    Reason.MANUAL: "an administrator blocked or wiped it",
}


def describe(mask: int) -> str:
    """``"COMPROMISED (the device is compromised ...), OS_VERSION (...)"`` or ``"none"``."""
    parts = [f"{r.name} ({DESCRIPTIONS[r]})" for r in Reason if mask & r.value]
    return ", ".join(parts) if parts else "none"


__all__ = ["ALL_REASONS", "DESCRIPTIONS", "Reason", "describe", "reason_names"]
