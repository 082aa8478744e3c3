"""The Exchange ActiveSync wire protocol, sans-I/O.

No sockets, no asyncio: request lines, WBXML bodies, command views, status codes and the
per-version rules, as pure functions over bytes and attrs values. Every actor uses it.

This module is the curated public API: the request line (``parse_request``, the query
builders), protocol versions, status codes and their HTTP forms, the per-version answers, the
Provision model and its policy-key machine, and the WBXML codec. The typed command views live
in ``activesync.commands`` (its ``__all__`` lists them).

Import order matters once: ``activesync.query`` needs ``activesync.commands.roots`` and
``activesync.commands.provision`` needs ``activesync.query``, so the commands package must be
initialised before ``query`` starts. ``answers`` (first in sorted order below) imports
``commands``, which in turn loads ``query`` whole; keep a ``commands`` import first.
"""

from __future__ import annotations

from activesync.answers import (
    WBXML_CONTENT_TYPE,
    EasAnswer,
    blocked_answer,
    device_limit_answer,
    provisioning_needed_answer,
    remote_wipe_needed_answer,
    status_answer,
)
from activesync.commands.provision import (
    DeviceInformation,
    ProvisionDoc,
    ProvisionRequest,
    ProvisionResponse,
)
from activesync.commands.roots import COMMANDS, command_info, commands_header, root_for
from activesync.errors import ActiveSyncError, CommandError, QueryError, WbxmlError, XmlFormError
from activesync.provisioning import KeyCheck, PolicyKeyMachine, PolicyState, answer_provision
from activesync.query import (
    EasRequest,
    build_base64_query,
    build_plain_query,
    parse_policy_key,
    parse_request,
    split_user,
)
from activesync.status import (
    PolicyStatus,
    ProvisionStatus,
    Status,
    http_equivalent,
    status_in_body,
)
from activesync.versions import ALL_VERSIONS, ProtocolVersion, versions_header
from activesync.wbxml import decode, encode, from_xml, to_xml
from activesync.wbxml.tree import E, Element

__all__ = [
    "ALL_VERSIONS",
    "COMMANDS",
    "WBXML_CONTENT_TYPE",
    "ActiveSyncError",
    "CommandError",
    "DeviceInformation",
    "E",
    "EasAnswer",
    "EasRequest",
    "Element",
    "KeyCheck",
    "PolicyKeyMachine",
    "PolicyState",
    "PolicyStatus",
    "ProtocolVersion",
    "ProvisionDoc",
    "ProvisionRequest",
    "ProvisionResponse",
    "ProvisionStatus",
    "QueryError",
    "Status",
    "WbxmlError",
    "XmlFormError",
    "answer_provision",
    "blocked_answer",
    "build_base64_query",
    "build_plain_query",
    "command_info",
    "commands_header",
    "decode",
    "device_limit_answer",
    "encode",
    "from_xml",
    "http_equivalent",
    "parse_policy_key",
    "parse_request",
    "provisioning_needed_answer",
    "remote_wipe_needed_answer",
    "root_for",
    "split_user",
    "status_answer",
    "status_in_body",
    "to_xml",
    "versions_header",
]
