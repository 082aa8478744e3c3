"""The EAS request line: plain-text and base64 query forms, headers, validation.

Responsibility: turn ``(method, path, query, headers)`` into one frozen ``EasRequest`` that says
which command, user, device, protocol version and policy key a request carries, whichever of the
two query forms of MS-ASHTTP 2.2.1.1.1 it used; and build both forms back. Validation follows
Exchange (notes 1.2, 7.2) and every failure is a ``QueryError`` carrying the HTTP status and the
MS-ASCMD status to answer with. It must not authenticate, look anything up or decide access.

Theory of operation:
- Form detection (notes 7.1): a query with ``&`` or a ``=`` before its trailing padding is the
  plain form (``Cmd=Sync&User=..&DeviceId=..&DeviceType=..``); anything else is read as base64.
  A plain query's parameters are read by name, case-insensitively (IIS), never by position.
- The base64 form (MS-ASHTTP 2.2.1.1.1.1) is decoded with a bounds-checked cursor: version byte,
  command code, little-endian locale, length-prefixed device ID, policy key (length 0 or 4,
  little-endian uint32) and device type, then tag/length/value parameter records.
- Device IDs: the raw bytes are kept; the canonical string is the ASCII text when every byte is
  ``[0-9A-Za-z]`` and lowercase hex otherwise (notes 1.4 recommendation), so ``v140Device`` is
  the same device in both forms. The canonical ID must then be 1-32 alphanumerics (Exchange).
- The user comes from the query (``User=`` or tag 8) or, failing that, from Basic credentials:
  the base64 form usually carries none (MS-ASHTTP 2.2.1.1.1.1, R16).
- Headers are matched case-insensitively. ``X-MS-PolicyKey`` that is not a decimal uint32 counts
  as absent, as in Exchange.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, Literal
from urllib.parse import quote, unquote

import attrs

from activesync.commands.roots import OPTIONS, command_by_code, command_info, require_supported
from activesync.errors import QueryError
from activesync.status import Status
from activesync.versions import ProtocolVersion

#: The one path EAS serves (MS-ASHTTP 2.2.1.1.1).
ENDPOINT: Final = "/Microsoft-Server-ActiveSync"

#: Longest query string we read. IIS's default ``maxQueryString`` is 2048 characters, so no
#: client that works with Exchange sends more; the largest legal base64 query is far shorter.
MAX_QUERY_LENGTH: Final = 2048

#: MS-ASHTTP 2.2.1.1.1.1.3 parameter tags of the base64 form. 2 (CollectionName) and 5
#: (ParentId) are not in the current spec table but old clients send them (ITS/Horde enums).
PARAM_TAGS: Final[dict[int, str]] = {
    0: "AttachmentName",
    1: "CollectionId",
    2: "CollectionName",
    3: "ItemId",
    4: "LongId",
    5: "ParentId",
    6: "Occurrence",
    7: "Options",
    8: "User",
}
_TAG_BY_NAME: Final[dict[str, int]] = {name.lower(): tag for tag, name in PARAM_TAGS.items()}

#: MS-ASHTTP 2.2.1.1.1.1.3: bits of the Options parameter.
OPTION_SAVE_IN_SENT: Final = 0x01
OPTION_ACCEPT_MULTIPART: Final = 0x02

#: Locale written when a base64 query is built without one: en-US, what most clients send.
DEFAULT_LOCALE: Final = 0x0409

_DEVICE_ID_RE: Final = re.compile(r"[0-9A-Za-z]{1,32}")
_PARAM_NAME_RE: Final = re.compile(r"[A-Za-z]+")
_POLICY_KEY_RE: Final = re.compile(r"[0-9]{1,10}")
_UINT32_MAX: Final = 0xFFFF_FFFF
_ALNUM_BYTES: Final = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

Form = Literal["plain", "base64"]


@attrs.frozen
class UserName:
    """A user as given, split into account and domain (``DOMAIN\\user`` or ``user@domain``)."""

    #: The account part (``rmjones``).
    account: str
    #: The domain part, or None for a bare name.
    domain: str | None
    #: Which spelling it came in: ``"down-level"`` (DOMAIN\\user), ``"upn"`` (user@domain),
    #: ``"bare"``.
    form: Literal["down-level", "upn", "bare"]


def split_user(value: str) -> UserName:
    """Split ``DOMAIN\\user`` and ``user@domain``; anything else is a bare account name."""
    domain, sep, account = value.partition("\\")
    if sep and domain and account:
        return UserName(account, domain, "down-level")
    account, sep, domain = value.rpartition("@")
    if sep and domain and account:
        return UserName(account, domain, "upn")
    return UserName(value, None, "bare")


def parse_policy_key(text: str | None) -> int | None:
    """A policy key as a decimal uint32 (MS-ASHTTP 2.2.1.1.2.8), or None.

    Exchange treats a value that is not a decimal uint32 as no key at all (notes 1.7).
    """
    if text is None:
        return None
    text = text.strip()
    if not _POLICY_KEY_RE.fullmatch(text):
        return None
    value = int(text)
    return value if value <= _UINT32_MAX else None


def canonical_device_id(raw: bytes) -> str:
    """Notes 1.4: the ASCII text when every byte is ``[0-9A-Za-z]``, else lowercase hex."""
    if raw and all(b in _ALNUM_BYTES for b in raw):
        return raw.decode("ascii")
    return raw.hex()


@attrs.frozen(kw_only=True)
class EasRequest:
    """What one EAS request line says, whichever query form it used."""

    #: ``"POST"`` or ``"OPTIONS"``.
    method: str
    #: Canonical command name (``"FolderSync"``); ``"Options"`` for OPTIONS.
    command: str
    #: Which query form carried it; an OPTIONS without query counts as ``"plain"``.
    form: Form
    #: The user as given (query first, then Basic credentials), or None.
    user: str | None
    #: Canonical device ID (see the module docstring); ``""`` only for OPTIONS.
    device_id: str
    #: The device ID's raw bytes (plain form: its ASCII bytes).
    device_id_bytes: bytes
    #: Device type (``"iPhone"``, ``"SmartPhone"``); ``""`` only for OPTIONS.
    device_type: str
    #: Protocol version; None only for an OPTIONS request that named none.
    protocol_version: ProtocolVersion | None
    #: Policy key as a uint32, or None when the request carried none (0 is a real value).
    policy_key: int | None
    #: Base64 form's LCID (0x0409 = en-US); None for the plain form.
    locale: int | None
    #: Every query parameter, in order, as (name, value): the plain form's pairs (Cmd, User,
    #: DeviceId, DeviceType and unknown ones like ``PolicyKey``), or the base64 form's tagged
    #: records (Options as its decimal byte value).
    params: tuple[tuple[str, str], ...] = ()
    #: SaveInSent (plain ``SaveInSent=T``, base64 Options bit 0x01).
    save_in_sent: bool = False
    #: Multipart response wanted (``MS-ASAcceptMultiPart: T``, base64 Options bit 0x02).
    accept_multipart: bool = False

    def param(self, name: str) -> str | None:
        """The first value of query parameter ``name`` (case-insensitive), or None."""
        lowered = name.lower()
        for key, value in self.params:
            if key.lower() == lowered:
                return value
        return None

    @property
    def user_name(self) -> UserName | None:
        """The user split into account and domain, or None when there is no user."""
        return None if self.user is None else split_user(self.user)

    @property
    def device_key(self) -> str:
        """The device ID for identity comparisons: lowercased, because Exchange stores device
        IDs as directory object names, which compare case-insensitively (an inference)."""
        return self.device_id.lower()

    @property
    def is_options(self) -> bool:
        """True for an OPTIONS (capability discovery) request."""
        return self.command == OPTIONS

    def wire(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """The query string and protocol headers that reproduce this request.

        The Authorization header is the caller's: a user that came from credentials is not put
        into the query.
        """
        if self.is_options:
            query = _join_plain(self.params)
            headers: list[tuple[str, str]] = []
            if self.protocol_version is not None:
                headers.append(("MS-ASProtocolVersion", self.protocol_version.text))
            return query, tuple(headers)
        version = _need_version(self.protocol_version)
        if self.form == "base64":
            query = build_base64_query(
                command=self.command,
                device_id=self.device_id_bytes,
                device_type=self.device_type,
                version=version,
                policy_key=self.policy_key,
                locale=DEFAULT_LOCALE if self.locale is None else self.locale,
                params=self.params,
            )
            return query, ()
        headers = [("MS-ASProtocolVersion", version.text)]
        if self.policy_key is not None:
            headers.append(("X-MS-PolicyKey", str(self.policy_key)))
        if self.accept_multipart:
            headers.append(("MS-ASAcceptMultiPart", "T"))
        return _join_plain(self.params), tuple(headers)

    @classmethod
    def create(
        cls,
        *,
        command: str,
        device_id: str | bytes,
        device_type: str,
        version: ProtocolVersion | str,
        form: Form = "plain",
        user: str | None = None,
        policy_key: int | None = None,
        locale: int | None = None,
        params: Sequence[tuple[str, str]] = (),
        save_in_sent: bool = False,
        accept_multipart: bool = False,
    ) -> EasRequest:
        """Build a request the way a client would send it (then read it back, so the value is
        exactly what ``parse_request`` gives for that wire form)."""
        version = ProtocolVersion.coerce(version)
        headers: dict[str, str] = {}
        if form == "base64":
            query = build_base64_query(
                command=command,
                device_id=device_id,
                device_type=device_type,
                version=version,
                policy_key=policy_key,
                locale=DEFAULT_LOCALE if locale is None else locale,
                user=user,
                params=params,
                save_in_sent=save_in_sent,
                accept_multipart=accept_multipart,
            )
        else:
            if isinstance(device_id, bytes):
                device_id = canonical_device_id(device_id)
            extra = list(params)
            if save_in_sent:
                extra.append(("SaveInSent", "T"))
            query = build_plain_query(
                command=command,
                device_id=device_id,
                device_type=device_type,
                user=user,
                params=extra,
            )
            headers["MS-ASProtocolVersion"] = version.text
            if policy_key is not None:
                headers["X-MS-PolicyKey"] = str(policy_key)
            if accept_multipart:
                headers["MS-ASAcceptMultiPart"] = "T"
        return parse_request("POST", ENDPOINT, query, headers)


# --- parsing -------------------------------------------------------------------------------


def parse_request(method: str, path: str, query: str, headers: Mapping[str, str]) -> EasRequest:
    """Read one EAS request line; raise ``QueryError`` (with the answer to give) if it is bad."""
    method = method.upper()
    if method not in ("POST", "OPTIONS"):
        # Exchange answers a browser's GET on the endpoint with 501 Not Implemented.
        raise QueryError(
            f"method {method[:16]}: expected POST or OPTIONS on {ENDPOINT}", http_status=501
        )
    if path.rstrip("/").lower() != ENDPOINT.lower():
        raise QueryError(f"path {path[:80]!r}: expected {ENDPOINT}", http_status=404)
    if len(query) > MAX_QUERY_LENGTH:
        raise QueryError(
            f"query: expected at most {MAX_QUERY_LENGTH} characters, got {len(query)}",
            http_status=414,
        )
    lowered = {k.lower(): v for k, v in headers.items()}
    auth_user = _basic_auth_user(lowered.get("authorization"))
    if method == "OPTIONS":
        return _parse_options(query, lowered, auth_user)
    if not query:
        raise QueryError(
            "query: missing; expected Cmd=...&User=...&DeviceId=...&DeviceType=... "
            "or a base64-encoded query (MS-ASHTTP 2.2.1.1.1)"
        )
    if is_plain_query(query):
        return _parse_plain(query, lowered, auth_user)
    return _parse_base64(query, lowered, auth_user)


def is_plain_query(query: str) -> bool:
    """Notes 7.1: a plain query has ``&`` or a ``=`` before any trailing base64 padding."""
    return "&" in query or "=" in query.rstrip("=")


def _parse_options(query: str, headers: Mapping[str, str], auth_user: str | None) -> EasRequest:
    # MS-ASHTTP 2.2.3.1.1: OPTIONS needs no query. Some clients send their usual one; keep its
    # pairs when it reads as plain text, but require nothing from it.
    params: tuple[tuple[str, str], ...] = ()
    if query and is_plain_query(query):
        try:
            params = _split_plain(query)
        except QueryError:
            params = ()
    version_text = headers.get("ms-asprotocolversion")
    version: ProtocolVersion | None = None
    if version_text is not None:
        try:
            version = ProtocolVersion.from_text(version_text)
        except QueryError:
            version = None
    user = _first(params, "User") or auth_user
    return EasRequest(
        method="OPTIONS",
        command=OPTIONS,
        form="plain",
        user=user,
        device_id="",
        device_id_bytes=b"",
        device_type="",
        protocol_version=version,
        policy_key=parse_policy_key(headers.get("x-ms-policykey")),
        locale=None,
        params=params,
    )


def _parse_plain(query: str, headers: Mapping[str, str], auth_user: str | None) -> EasRequest:
    params = _split_plain(query)
    core: dict[str, str] = {}
    for name, value in params:
        canon = _CORE_PARAMS.get(name.lower())
        if canon is None:
            continue
        if canon in core:
            raise QueryError(f"query parameter {canon}: expected once, got it twice")
        core[canon] = value
    if "Cmd" not in core:
        raise QueryError(
            "query: missing required parameter Cmd (plain-text form, MS-ASHTTP 2.2.1.1.1.2)"
        )
    command = command_info(core["Cmd"]).name
    device_id = _check_device_id(core.get("DeviceId"), "DeviceId")
    device_type = _check_device_type(core.get("DeviceType"), "DeviceType")
    version_text = headers.get("ms-asprotocolversion")
    if version_text is None:
        raise QueryError(
            "MS-ASProtocolVersion header: missing; the plain-text query needs it "
            "(MS-ASHTTP 2.2.1.1.2.6)",
            eas_status=Status.VersionNotSupported,
        )
    version = ProtocolVersion.from_text(version_text)
    require_supported(command, version)
    user = core.get("User")
    if user is not None:
        _check_user(user, "User")
    save = core.get("SaveInSent")
    return EasRequest(
        method="POST",
        command=command,
        form="plain",
        user=user or auth_user,
        device_id=device_id,
        device_id_bytes=device_id.encode("ascii"),
        device_type=device_type,
        protocol_version=version,
        policy_key=parse_policy_key(headers.get("x-ms-policykey")),
        locale=None,
        params=params,
        save_in_sent=save is not None and save.upper() == "T",
        accept_multipart=headers.get("ms-asacceptmultipart", "").strip().upper() == "T",
    )


_CORE_PARAMS: Final[dict[str, str]] = {
    n.lower(): n for n in ("Cmd", "User", "DeviceId", "DeviceType", "SaveInSent")
}


def _split_plain(query: str) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for index, part in enumerate(query.split("&"), start=1):
        if not part:
            continue
        raw_name, sep, raw_value = part.partition("=")
        where = f"query parameter {index} ({part[:40]!r})"
        if not sep:
            raise QueryError(f"{where}: expected name=value, got no '='")
        name = _unquote(raw_name, where)
        if not name:
            raise QueryError(f"{where}: expected a parameter name before '='")
        pairs.append((name, _unquote(raw_value, where)))
    return tuple(pairs)


def _unquote(text: str, where: str) -> str:
    try:
        return unquote(text, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise QueryError(f"{where}: percent-escapes are not valid UTF-8") from None


def _parse_base64(query: str, headers: Mapping[str, str], auth_user: str | None) -> EasRequest:
    data = _decode_base64(query)
    reader = _Reader(data)
    version = ProtocolVersion.from_byte(reader.byte("protocol version"))
    if not version.allows_base64_query:
        raise QueryError(
            f"base64 query byte 0: protocol version {version.text} must use the plain-text "
            "query; the base64 form is for 12.1 and later (MS-ASHTTP 2.2.1.1.1.1)",
            eas_status=Status.VersionNotSupported,
        )
    command = command_by_code(reader.byte("command code")).name
    require_supported(command, version)
    locale = struct.unpack("<H", reader.take(2, "locale"))[0]
    id_length = reader.byte("device ID length")
    if id_length == 0:
        raise QueryError(
            f"base64 query byte {reader.pos - 1}: device ID length must be greater than 0 "
            "(MS-ASHTTP 2.2.1.1.1.1, R32)",
            eas_status=Status.DeviceIdMissingOrInvalid,
        )
    raw_id = reader.take(id_length, "device ID")
    key_length = reader.byte("policy key length")
    if key_length not in (0, 4):
        raise QueryError(
            f"base64 query byte {reader.pos - 1}: policy key length expected 0 or 4, "
            f"got {key_length} (MS-ASHTTP 2.2.1.1.1.1, R38)"
        )
    policy_key: int | None = None
    if key_length == 4:
        policy_key = struct.unpack("<I", reader.take(4, "policy key"))[0]
    else:
        # The spec says the header SHOULD NOT be sent with the base64 form; if a client sends
        # only the header, honour it rather than treat the device as keyless.
        policy_key = parse_policy_key(headers.get("x-ms-policykey"))
    type_length = reader.byte("device type length")
    type_at = reader.pos
    raw_type = reader.take(type_length, "device type")
    try:
        device_type_text = raw_type.decode("ascii")
    except UnicodeDecodeError:
        raise QueryError(
            f"base64 query byte {type_at}: device type expected ASCII, got {raw_type[:32]!r}",
            eas_status=Status.DeviceTypeMissingOrInvalid,
        ) from None
    device_type = _check_device_type(device_type_text, f"base64 query byte {type_at}: device type")
    params: list[tuple[str, str]] = []
    options = 0
    user: str | None = None
    while not reader.done:
        tag_at = reader.pos
        tag = reader.byte("parameter tag")
        name = PARAM_TAGS.get(tag)
        if name is None:
            raise QueryError(
                f"base64 query byte {tag_at}: unknown parameter tag {tag}; expected one of "
                f"{', '.join(f'{t} ({n})' for t, n in PARAM_TAGS.items())}"
            )
        length = reader.byte(f"{name} length")
        value = reader.take(length, name)
        if name == "Options":
            if length != 1:
                raise QueryError(
                    f"base64 query byte {tag_at}: Options expected 1 byte, got {length}"
                )
            options |= value[0]
            params.append((name, str(value[0])))
            continue
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            raise QueryError(
                f"base64 query byte {tag_at}: {name} expected UTF-8 text, got {value[:32]!r}"
            ) from None
        if name == "User":
            _check_user(text, f"base64 query byte {tag_at}: User")
            user = user or text
        params.append((name, text))
    device_id = canonical_device_id(raw_id)
    if not _DEVICE_ID_RE.fullmatch(device_id):
        raise QueryError(
            f"base64 query: device ID of {len(raw_id)} bytes reads as {device_id[:70]!r}; "
            "expected at most 32 letters or digits (Exchange)",
            eas_status=Status.DeviceIdMissingOrInvalid,
        )
    return EasRequest(
        method="POST",
        command=command,
        form="base64",
        user=user or auth_user,
        device_id=device_id,
        device_id_bytes=raw_id,
        device_type=device_type,
        protocol_version=version,
        policy_key=policy_key,
        locale=locale,
        params=tuple(params),
        save_in_sent=bool(options & OPTION_SAVE_IN_SENT),
        accept_multipart=bool(options & OPTION_ACCEPT_MULTIPART),
    )


def _decode_base64(query: str) -> bytes:
    text = query
    if "%" in text:
        # Some clients percent-escape '+', '/' and '=' in the query.
        text = _unquote(text, "base64 query")
    if len(text) % 4 == 1:
        raise QueryError(
            f"base64 query: {len(text)} characters cannot be base64 (a length of 4n+1 never is)"
        )
    text += "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise QueryError(
            f"base64 query: not valid base64 ({exc}); expected the RFC 2045 alphabet A-Z a-z "
            "0-9 + / with = padding, or a plain Cmd=... query"
        ) from None
    if len(data) < 7:
        raise QueryError(
            f"base64 query: decodes to {len(data)} bytes; expected at least 7 (version, "
            "command, locale, device ID length, policy key length, device type length)"
        )
    return data


class _Reader:
    """A cursor over the decoded base64 query that refuses to read past the end."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)

    def take(self, count: int, field: str) -> bytes:
        left = len(self.data) - self.pos
        if count > left:
            raise QueryError(
                f"base64 query byte {self.pos}: {field} expected {count} bytes, "
                f"only {left} remain of {len(self.data)}"
            )
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def byte(self, field: str) -> int:
        return self.take(1, field)[0]


def _check_device_id(value: str | None, where: str) -> str:
    if value is None:
        raise QueryError(
            f"{where}: missing; expected 1-32 letters or digits",
            eas_status=Status.DeviceIdMissingOrInvalid,
        )
    if not _DEVICE_ID_RE.fullmatch(value):
        raise QueryError(
            f"{where}: expected 1-32 letters or digits, got {value[:48]!r} ({len(value)} chars)",
            eas_status=Status.DeviceIdMissingOrInvalid,
        )
    return value


def _check_device_type(value: str | None, where: str) -> str:
    if value is None:
        raise QueryError(
            f"{where}: missing; expected 1-32 printable characters without '-'",
            eas_status=Status.DeviceTypeMissingOrInvalid,
        )
    printable = all("!" <= ch <= "~" for ch in value)
    if not value or len(value) > 32 or "-" in value or not printable:
        raise QueryError(
            f"{where}: expected 1-32 printable characters without '-', got {value[:48]!r}",
            eas_status=Status.DeviceTypeMissingOrInvalid,
        )
    return value


def _check_user(value: str, where: str) -> None:
    # MS-ASHTTP 2.2.1.1.1.2: user = 1*VCHAR. Non-ASCII names exist in the wild, so only empty
    # values and control characters are refused.
    if not value or len(value) > 256 or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise QueryError(f"{where}: expected 1-256 printable characters, got {value[:48]!r}")


def _basic_auth_user(value: str | None) -> str | None:
    """The user name of ``Authorization: Basic ...``, or None for other schemes."""
    if value is None:
        return None
    scheme, _, credentials = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise QueryError(
            "Authorization: Basic credentials are not valid base64", http_status=401
        ) from None
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        # RFC 7617: without a charset parameter the encoding is unspecified; Latin-1 maps every
        # byte, which is what most servers fall back to.
        text = decoded.decode("latin-1")
    user, sep, _password = text.partition(":")
    if not sep:
        raise QueryError(
            "Authorization: Basic credentials expected user:password, got no ':'", http_status=401
        )
    return user or None


def _first(params: Iterable[tuple[str, str]], name: str) -> str | None:
    lowered = name.lower()
    for key, value in params:
        if key.lower() == lowered:
            return value
    return None


def _need_version(version: ProtocolVersion | None) -> ProtocolVersion:
    if version is None:
        raise QueryError("protocol version: missing", eas_status=Status.VersionNotSupported)
    return version


# --- building ------------------------------------------------------------------------------


def _join_plain(params: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{quote(n, safe='')}={quote(v, safe='')}" for n, v in params)


def build_plain_query(
    *,
    command: str,
    device_id: str,
    device_type: str,
    user: str | None = None,
    params: Iterable[tuple[str, str]] = (),
) -> str:
    """``Cmd=..&User=..&DeviceId=..&DeviceType=..`` plus ``params`` (MS-ASHTTP 2.2.1.1.1.2).

    Values are percent-escaped; parameter names must be letters (the ABNF's ``1*ALPHA``).
    """
    pairs: list[tuple[str, str]] = [("Cmd", command_info(command).name)]
    if user is not None:
        _check_user(user, "user")
        pairs.append(("User", user))
    pairs.append(("DeviceId", _check_device_id(device_id, "device_id")))
    pairs.append(("DeviceType", _check_device_type(device_type, "device_type")))
    for name, value in params:
        if not _PARAM_NAME_RE.fullmatch(name):
            raise QueryError(f"parameter name {name[:40]!r}: expected letters only")
        pairs.append((name, value))
    return _join_plain(pairs)


def build_base64_query(
    *,
    command: str,
    device_id: str | bytes,
    device_type: str,
    version: ProtocolVersion | str,
    policy_key: int | None = None,
    locale: int = DEFAULT_LOCALE,
    user: str | None = None,
    params: Iterable[tuple[str, str]] = (),
    save_in_sent: bool = False,
    accept_multipart: bool = False,
) -> str:
    """The base64 query (MS-ASHTTP 2.2.1.1.1.1), without the leading ``?``.

    ``device_id`` as text is written as its ASCII bytes (as the ITS client does); pass bytes for
    a binary ID. ``params`` are (name, value) records written in order with the tags of
    ``PARAM_TAGS`` (Options as its decimal byte value); ``user`` is written first as tag 8 and
    the ``save_in_sent``/``accept_multipart`` bits last as an Options record.
    """
    version = ProtocolVersion.coerce(version)
    if not version.allows_base64_query:
        raise QueryError(
            f"version {version.text}: the base64 query is for 12.1 and later "
            "(MS-ASHTTP 2.2.1.1.1.1)",
            eas_status=Status.VersionNotSupported,
        )
    info = command_info(command)
    if info.code is None:
        raise QueryError(f"Cmd={info.name}: has no base64 command code; use the plain query")
    raw_id = device_id if isinstance(device_id, bytes) else device_id.encode("ascii", "replace")
    if isinstance(device_id, bytes):
        _check_device_id(canonical_device_id(device_id), "device_id (canonical form)")
    else:
        _check_device_id(device_id, "device_id")
    type_bytes = _check_device_type(device_type, "device_type").encode("ascii")
    if not 0 <= locale <= 0xFFFF:
        raise QueryError(f"locale: expected 0..0xFFFF, got {locale}")
    out = bytearray((version.byte, info.code))
    out += struct.pack("<H", locale)
    out.append(len(raw_id))
    out += raw_id
    if policy_key is None:
        out.append(0)
    else:
        if not 0 <= policy_key <= _UINT32_MAX:
            raise QueryError(f"policy key: expected a uint32, got {policy_key}")
        out.append(4)
        out += struct.pack("<I", policy_key)
    out.append(len(type_bytes))
    out += type_bytes
    records: list[tuple[str, str]] = []
    if user is not None:
        _check_user(user, "user")
        records.append(("User", user))
    records.extend(params)
    options = (OPTION_SAVE_IN_SENT if save_in_sent else 0) | (
        OPTION_ACCEPT_MULTIPART if accept_multipart else 0
    )
    if options:
        records.append(("Options", str(options)))
    for name, value in records:
        tag = _TAG_BY_NAME.get(name.lower())
        if tag is None:
            raise QueryError(
                f"parameter {name[:40]!r}: the base64 form has no tag for it; expected one of "
                f"{', '.join(PARAM_TAGS.values())}"
            )
        if tag == 7:
            if not value.isdigit() or int(value) > 0xFF:
                raise QueryError(f"Options: expected a byte value 0..255, got {value[:20]!r}")
            encoded = bytes((int(value),))
        else:
            encoded = value.encode("utf-8")
        _check_length(encoded, name)
        out.append(tag)
        out.append(len(encoded))
        out += encoded
    return base64.b64encode(bytes(out)).decode("ascii")


def _check_length(value: bytes, field: str) -> None:
    if len(value) > 0xFF:
        raise QueryError(f"{field}: the base64 form holds at most 255 bytes, got {len(value)}")
