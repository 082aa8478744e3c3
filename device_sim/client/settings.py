"""The Settings command and the DeviceInformation a phone reports about itself.

Responsibility: build the DeviceInformation block (for Settings, and for Provision from 14.1)
and the Settings request, and read the Settings answer into a verdict. It must not change the
phone: the facade applies the verdict.

Theory of operation: 12.1 and 14.0 phones report their model, IMEI, OS... in a Settings
command; from 14.1 they also put it in the initial Provision. Which fields exist depends on the
protocol version (MS-ASWBXML 2.1.2.1.19), so the block is built from the identity and version.
"""

from __future__ import annotations

from activesync.commands.settings import DeviceInformation, SettingsRequest, SettingsResponse
from activesync.versions import ProtocolVersion
from activesync.wbxml.tree import Element
from device_sim.client.framing import post
from device_sim.client.states import Event
from device_sim.client.verdicts import Advance, Fail, Verdict
from device_sim.wire import DeviceIdentity, HttpRequest

_V = ProtocolVersion


def device_information(identity: DeviceIdentity) -> DeviceInformation:
    """What the phone says about itself, with the fields its version knows."""
    version = identity.version
    return DeviceInformation(
        model=identity.model,
        imei=identity.imei,
        friendly_name=identity.friendly_name,
        os=identity.os,
        os_language=identity.os_language,
        phone_number=identity.phone_number,
        # MS-ASWBXML 2.1.2.1.19: UserAgent from 12.1, MobileOperator from 14.0 (so a 14.1+
        # Provision carries every field).
        user_agent=identity.user_agent if version >= _V.V12_1 else None,
        mobile_operator=identity.mobile_operator if version >= _V.V14_0 else None,
    )


def settings_request(identity: DeviceIdentity, policy_key: int) -> HttpRequest:
    """A Settings request setting DeviceInformation."""
    request = SettingsRequest(device_information=device_information(identity))
    return post(identity, "Settings", request.to_element(), policy_key=policy_key)


def read_settings(root: Element | None) -> Verdict:
    """Read a Settings answer (its global status already handled)."""
    if root is None:
        return Verdict(Fail(None, "empty Settings response"))
    answer = SettingsResponse.from_element(root)
    if answer.status != 1:
        return Verdict(Fail(answer.status, f"Settings Status {answer.status}"))
    info = answer.device_information_status
    return Verdict(
        Advance(
            answer.status,
            f"Status 1  DeviceInformation Status {info if info is not None else '-'}",
            {"device_information_status": info},
        ),
        events=(Event.COMMAND_ACCEPTED,),
    )
