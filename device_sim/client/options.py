"""The OPTIONS exchange: which protocol versions and commands the server offers.

Responsibility: build the OPTIONS request and read its answer's headers into a verdict (the
offer to remember, and whether the phone's own version is in it). It must not change the
phone: the facade applies the verdict.

Theory of operation: MS-ASHTTP 2.2.3: the answer lists versions in ``MS-ASProtocolVersions``
and commands in ``MS-ASProtocolCommands``, comma-separated. The phone remembers both whatever
they say; the step succeeds only when the phone's version is offered.
"""

from __future__ import annotations

from device_sim.client.framing import base_headers
from device_sim.client.reading import http_failure
from device_sim.client.verdicts import Advance, Fail, ServerOffer, Verdict
from device_sim.wire import EAS_PATH, DeviceIdentity, HttpRequest, HttpResponse


def options_request(identity: DeviceIdentity) -> HttpRequest:
    """``OPTIONS /Microsoft-Server-ActiveSync``."""
    return HttpRequest("OPTIONS", EAS_PATH, base_headers(identity))


def read_options(response: HttpResponse, identity: DeviceIdentity) -> Verdict:
    """Read an OPTIONS answer (401/503/449/403 already handled)."""
    if response.status != 200:
        return Verdict(http_failure(response.status))
    versions = _split_list(response.header("MS-ASProtocolVersions"))
    commands = _split_list(response.header("MS-ASProtocolCommands"))
    offer = (ServerOffer(versions, commands),)
    details = {"versions": list(versions), "commands": len(commands)}
    mine = identity.version.text
    if mine not in versions:
        offered = ",".join(versions) or "nothing"
        return Verdict(Fail(None, f"the server offers {offered}, not {mine}", details), facts=offer)
    summary = f"versions {','.join(versions)}  {len(commands)} commands"
    return Verdict(Advance(None, summary, details), facts=offer)


def _split_list(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())
