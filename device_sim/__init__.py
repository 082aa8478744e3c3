"""Simulated phones: an EAS client state machine (pure) and the aiohttp shell that runs it.

- ``client``: ``DeviceClient`` (begin a step, receive responses, read the results), the steps
  (``Options``, ``Provision``, ``FolderSync``, ``Sync``, ``Ping``, ``SendMail``, ``Settings``)
  and the actions it asks of a shell (``Send``, ``Backoff``, ``Done``, ``Halt``).
- ``wire``: ``DeviceIdentity``, ``QueryForm``, ``Quirk``, ``HttpRequest``, ``HttpResponse``.
- ``shell``: ``DeviceRunner`` and ``AiohttpTransport``, and ``DeviceTls`` (https trusting only
  a given root, optionally with a client certificate); ``fleet``: many devices at once.

This package imports no other service package: it talks to servers only over HTTP.
"""

from __future__ import annotations

from device_sim.client import (
    Backoff,
    Block,
    BlockKind,
    DeviceClient,
    DeviceState,
    Done,
    FolderSync,
    Halt,
    Options,
    Outcome,
    Ping,
    Provision,
    Send,
    SendMail,
    Settings,
    Step,
    StepResult,
    Sync,
)
from device_sim.shell import DeviceTls, TlsSetupError, TransportError
from device_sim.wire import DeviceIdentity, HttpRequest, HttpResponse, QueryForm, Quirk

__all__ = [
    "Backoff",
    "Block",
    "BlockKind",
    "DeviceClient",
    "DeviceIdentity",
    "DeviceState",
    "DeviceTls",
    "Done",
    "FolderSync",
    "Halt",
    "HttpRequest",
    "HttpResponse",
    "Options",
    "Outcome",
    "Ping",
    "Provision",
    "QueryForm",
    "Quirk",
    "Send",
    "SendMail",
    "Settings",
    "Step",
    "StepResult",
    "Sync",
    "TlsSetupError",
    "TransportError",
]
