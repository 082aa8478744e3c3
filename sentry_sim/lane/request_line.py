"""The fast lane's reading of an EAS request line: identity in a few microseconds, or "not sure".

Responsibility: from the raw request target and the two or three headers that matter, say
which device record a POST belongs to and which command it carries, cheaply enough for the hot
path, and agreeing exactly with ``activesync.query.parse_request`` whenever it answers. It must
not decide access, raise on bad input or build answers: when anything is unusual (a parameter
twice, an escape that is not UTF-8, a missing header, a value ``parse_request`` would refuse,
the user only in the credentials of a plain query...) it returns None and the request takes
the full path (the aiohttp handler), which parses it properly and answers any error exactly as
before.

Theory of operation: ``parse_request`` costs about 12 us, a third of a whole proxied request's
budget, because it builds a full ``EasRequest`` with every parameter. The hot path needs only
the record key and the command, so:
- plain form (notes 7.1: ``&`` or an ``=`` before the padding): one split on ``&``, the five
  names that matter compared lower-cased, the values checked with the same rules as
  ``query.py`` (str methods instead of regular expressions: ``isascii() and isalnum()`` is
  ``[0-9A-Za-z]``; ASCII ``isprintable()`` without space is ``!``..``~``);
- base64 form (MS-ASHTTP 2.2.1.1.1.1): decode, then walk the fixed prefix and the tagged
  parameters with bounds checks, as ``query._parse_base64`` does;
- (command text, version) -> canonical command is memoised (a few dozen pairs exist), so
  ``command_info``/``require_supported`` run once per pair, and whatever they refuse is None;
- ``Authorization: Basic`` is validated as ``parse_request`` does (it refuses malformed
  credentials with 401 even when the query names the user); the user of a base64 query without
  a ``User`` parameter comes from it.
``tests/sentry_sim/test_fastlane_request_line.py`` checks the agreement with ``parse_request``
on generated and mutated request lines.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final
from urllib.parse import unquote

from activesync.commands.roots import command_by_code, command_info, require_supported
from activesync.errors import QueryError
from activesync.query import ENDPOINT, MAX_QUERY_LENGTH, PARAM_TAGS, canonical_device_id
from activesync.versions import ProtocolVersion
from sentry_sim.device_list import record_key

_ENDPOINT_LOWER: Final = ENDPOINT.lower()

#: Memo bound: (command text, version text) pairs seen. Real traffic has a few dozen; a client
#: inventing commands must not grow it without bound.
_MEMO_LIMIT: Final = 4096

#: (Cmd value, MS-ASProtocolVersion value) -> canonical command, or "" when refused.
_PLAIN_COMMANDS: dict[tuple[str, str], str] = {}
#: (version byte, command code) -> canonical command, or "" when refused.
_BASE64_COMMANDS: dict[tuple[int, int], str] = {}

_OPTIONS_TAG: Final = 7
_USER_TAG: Final = 8


class Line:
    """What the hot path needs of one request line (a slots class: one per request)."""

    __slots__ = ("command", "form", "key", "policy_key_param")

    def __init__(self, key: str, command: str, form: str, policy_key_param: bool) -> None:
        #: The device record key (``device_list.record_key``).
        self.key = key
        #: Canonical command name (``"Sync"``).
        self.command = command
        #: ``"plain"`` or ``"base64"``.
        self.form = form
        #: The plain query carries a ``PolicyKey`` parameter (uem mode must rewrite it).
        self.policy_key_param = policy_key_param


def read_line(target: str, version: str | None, authorization: str | None) -> Line | None:
    """The record and command of a POST to ``target`` (path and query as sent), or None when
    the full parser should look at it. ``version`` is the MS-ASProtocolVersion header,
    ``authorization`` the Authorization header (None when absent)."""
    path, sep, query = target.partition("?")
    if path.rstrip("/").lower() != _ENDPOINT_LOWER:
        return None
    if not sep or not query or len(query) > MAX_QUERY_LENGTH:
        return None
    if "&" in query or "=" in query.rstrip("="):
        return _read_plain(query, version, authorization)
    return _read_base64(query, authorization)


def basic_user(authorization: str) -> tuple[bool, str | None]:
    """(valid, user) of an Authorization header, as ``parse_request`` reads it: Basic
    credentials must be base64 of ``user:password``; other schemes are valid and name no one."""
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return True, None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False, None
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        text = decoded.decode("latin-1")
    user, colon, _password = text.partition(":")
    if not colon:
        return False, None
    return True, user or None


def _read_plain(query: str, version: str | None, authorization: str | None) -> Line | None:
    if version is None:
        return None
    cmd = user = device_id = device_type = None
    save_in_sent = False
    policy_key_param = False
    for part in query.split("&"):
        if not part:
            continue
        name, eq, value = part.partition("=")
        if not eq:
            return None
        if "%" in part:
            try:
                name = unquote(name, encoding="utf-8", errors="strict")
                value = unquote(value, encoding="utf-8", errors="strict")
            except UnicodeDecodeError:
                return None
        if not name:
            return None
        lowered = name.lower()
        if lowered == "cmd":
            if cmd is not None:
                return None
            cmd = value
        elif lowered == "user":
            if user is not None:
                return None
            user = value
        elif lowered == "deviceid":
            if device_id is not None:
                return None
            device_id = value
        elif lowered == "devicetype":
            if device_type is not None:
                return None
            device_type = value
        elif lowered == "saveinsent":
            if save_in_sent:
                return None
            save_in_sent = True
        elif lowered == "policykey":
            policy_key_param = True
    if cmd is None or user is None or device_id is None or device_type is None:
        return None
    command = _plain_command(cmd, version)
    if not command:
        return None
    if not (len(device_id) <= 32 and device_id.isascii() and device_id.isalnum()):
        return None
    if not _device_type_ok(device_type):
        return None
    if not _user_ok(user):
        return None
    if authorization is not None and not basic_user(authorization)[0]:
        return None
    return Line(record_key(user, device_id), command, "plain", policy_key_param)


def _read_base64(query: str, authorization: str | None) -> Line | None:
    text = query
    if "%" in text:
        try:
            text = unquote(text, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            return None
    if len(text) % 4 == 1:
        return None
    text += "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    size = len(data)
    if size < 7:
        return None
    command = _base64_command(data[0], data[1])
    if not command:
        return None
    # Byte 2-3: locale. Byte 4: device ID length (> 0), then the ID.
    id_length = data[4]
    pos = 5 + id_length
    if id_length == 0 or pos >= size:
        return None
    raw_id = data[5:pos]
    key_length = data[pos]
    pos += 1 + key_length
    if key_length not in (0, 4) or pos >= size:
        return None
    type_length = data[pos]
    end = pos + 1 + type_length
    if end > size:
        return None
    try:
        device_type = data[pos + 1 : end].decode("ascii")
    except UnicodeDecodeError:
        return None
    if not _device_type_ok(device_type):
        return None
    pos = end
    user: str | None = None
    while pos < size:
        tag = data[pos]
        if tag not in PARAM_TAGS or pos + 1 >= size:
            return None
        length = data[pos + 1]
        end = pos + 2 + length
        if end > size:
            return None
        if tag == _OPTIONS_TAG:
            if length != 1:
                return None
        else:
            try:
                value = data[pos + 2 : end].decode("utf-8")
            except UnicodeDecodeError:
                return None
            if tag == _USER_TAG:
                if not _user_ok(value):
                    return None
                user = user or value
        pos = end
    device_id = canonical_device_id(raw_id)
    if not (len(device_id) <= 32 and device_id.isascii() and device_id.isalnum()):
        return None
    if authorization is not None:
        valid, auth_user = basic_user(authorization)
        if not valid:
            return None
        user = user or auth_user
    if user is None:
        return None
    return Line(record_key(user, device_id), command, "base64", False)


def _device_type_ok(value: str) -> bool:
    # query._check_device_type: 1-32 characters from '!' to '~', no '-'.
    return (
        0 < len(value) <= 32
        and value.isascii()
        and value.isprintable()
        and " " not in value
        and "-" not in value
    )


def _user_ok(value: str) -> bool:
    # query._check_user refuses empty values and control characters; isprintable() is stricter
    # for some non-ASCII characters, which then just take the full path.
    return 0 < len(value) <= 256 and value.isprintable()


def _plain_command(cmd: str, version: str) -> str:
    memo_key = (cmd, version)
    found = _PLAIN_COMMANDS.get(memo_key)
    if found is not None:
        return found
    try:
        protocol = ProtocolVersion.from_text(version)
        name = command_info(cmd).name
        require_supported(name, protocol)
    except QueryError:
        name = ""
    if len(_PLAIN_COMMANDS) < _MEMO_LIMIT:
        _PLAIN_COMMANDS[memo_key] = name
    return name


def _base64_command(version_byte: int, code: int) -> str:
    memo_key = (version_byte, code)
    found = _BASE64_COMMANDS.get(memo_key)
    if found is not None:
        return found
    name = ""
    try:
        protocol = ProtocolVersion.from_byte(version_byte)
        if protocol.allows_base64_query:
            name = command_by_code(code).name
            require_supported(name, protocol)
    except QueryError:
        name = ""
    # At most 256 x 256 keys: bounded by construction.
    _BASE64_COMMANDS[memo_key] = name
    return name
