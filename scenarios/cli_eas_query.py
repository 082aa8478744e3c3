"""``sentry-sim eas-query``: decode and encode EAS base64 request lines.

Responsibility: a people-facing window on ``activesync.query`` for policy engineers and QA who
meet a base64 query in a log (``/Microsoft-Server-ActiveSync?jAAJBAp2MTQw...``) and want to
know what it says, or need one for a test. It must not send anything anywhere.

Theory of operation: ``decode`` strips an optional ``/Microsoft-Server-ActiveSync?`` prefix,
runs the same parser the gatekeeper uses and prints JSON; ``encode`` builds the bytes with the
same builder the simulated devices use. Any ``QueryError`` becomes one line on stderr and exit
status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from activesync.errors import ActiveSyncError
from activesync.query import (
    ENDPOINT,
    EasRequest,
    build_base64_query,
    is_plain_query,
    parse_request,
)
from activesync.versions import ProtocolVersion


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``eas-query`` with its ``decode`` and ``encode`` actions."""
    parser = sub.add_parser(
        "eas-query",
        help="decode or encode an EAS base64 query string",
        description=(
            "Decode an ActiveSync base64 query (MS-ASHTTP 2.2.1.1.1.1) to JSON, or build one. "
            "Nothing is sent anywhere."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    decode = actions.add_parser(
        "decode",
        help="print a base64 query as JSON",
        description=(
            "Print what a base64 query says: version, command, locale, device ID (and its raw "
            "bytes in hex), policy key, device type and parameters."
        ),
    )
    decode.add_argument(
        "query",
        metavar="STRING",
        help="the query, with or without the leading /Microsoft-Server-ActiveSync?",
    )
    decode.set_defaults(func=_decode)
    encode = actions.add_parser(
        "encode",
        help="print the base64 query for the given fields",
        description="Build a base64 query string (without the leading '?').",
    )
    encode.add_argument("--cmd", required=True, help="command name, e.g. Sync or FolderSync")
    encode.add_argument("--device-id", required=True, help="device ID (1-32 letters or digits)")
    encode.add_argument("--device-type", required=True, help="device type, e.g. iPhone")
    encode.add_argument(
        "--version",
        required=True,
        choices=[v.text for v in ProtocolVersion if v.allows_base64_query],
        help="protocol version (the base64 form exists from 12.1)",
    )
    encode.add_argument("--policy-key", type=int, help="policy key (decimal uint32)")
    encode.add_argument(
        "--locale",
        type=_locale,
        default=0x0409,
        help="locale LCID, decimal or 0x hex (default 0x0409, en-US)",
    )
    encode.add_argument("--user", help="user, written as parameter tag 8")
    encode.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra parameter, e.g. AttachmentName=x (repeatable)",
    )
    encode.set_defaults(func=_encode)


def _locale(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an LCID like 0x0409 or 1033, got {text!r}"
        ) from None
    if not 0 <= value <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"expected 0..0xFFFF, got {text!r}")
    return value


def _strip_prefix(text: str) -> str:
    text = text.strip()
    _, sep, rest = text.partition("?")
    if sep:
        return rest
    if text.lower().startswith(ENDPOINT.lower()):
        return text[len(ENDPOINT) :]
    return text


def decoded_json(request: EasRequest) -> dict[str, Any]:
    """The JSON shape ``decode`` prints."""
    version = request.protocol_version
    return {
        "version": None if version is None else version.text,
        "command": request.command,
        "locale": None if request.locale is None else f"0x{request.locale:04x}",
        "device_id": request.device_id,
        "device_id_hex": request.device_id_bytes.hex(),
        "policy_key": request.policy_key,
        "device_type": request.device_type,
        "user": request.user,
        "params": [[name, value] for name, value in request.params],
    }


def _decode(args: argparse.Namespace) -> int:
    query = _strip_prefix(args.query)
    if is_plain_query(query):
        print(
            "sentry-sim eas-query decode: this is a plain-text query (Cmd=...), not base64; "
            "it needs no decoding",
            file=sys.stderr,
        )
        return 1
    try:
        request = parse_request("POST", ENDPOINT, query, {})
    except ActiveSyncError as exc:
        print(f"sentry-sim eas-query decode: {exc.message}", file=sys.stderr)
        return 1
    print(json.dumps(decoded_json(request), indent=2))
    return 0


def _encode(args: argparse.Namespace) -> int:
    params: list[tuple[str, str]] = []
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(
                f"sentry-sim eas-query encode: --param {item!r}: expected NAME=VALUE",
                file=sys.stderr,
            )
            return 1
        params.append((name, value))
    try:
        query = build_base64_query(
            command=args.cmd,
            device_id=args.device_id,
            device_type=args.device_type,
            version=args.version,
            policy_key=args.policy_key,
            locale=args.locale,
            user=args.user,
            params=params,
        )
    except ActiveSyncError as exc:
        print(f"sentry-sim eas-query encode: {exc.message}", file=sys.stderr)
        return 1
    print(query)
    return 0
