"""The HTTP values that cross the device's transport seam, and the device's identity.

Responsibility: plain frozen values: ``HttpRequest`` (what the client core asks the shell to
send), ``HttpResponse`` (what the shell hands back), ``DeviceIdentity`` (who the phone is and
how it speaks) and ``Quirk`` (deliberate deviations real clients show). Nothing here sends,
decides or parses EAS bodies.

Theory of operation: the client core (``client/``, facade ``client/device.py``) is sans-I/O
in the h11 sense: it turns steps into ``HttpRequest`` values and ``HttpResponse`` values into
results. Any transport that maps one to the other can drive it: the aiohttp shell, a fake in
tests, a load generator.
"""

from __future__ import annotations

import base64
import enum
import re
from collections.abc import Iterable, Mapping
from typing import Final

import attrs

from activesync.versions import ProtocolVersion

#: MS-ASHTTP 2.2.1.1.1.2.3: DeviceId is 1-32 letters or digits (Exchange rejects anything else).
_DEVICE_ID_RE: Final = re.compile(r"[A-Za-z0-9]{1,32}")

#: The path every EAS request goes to (MS-ASHTTP 2.2.1.1.1).
EAS_PATH: Final = "/Microsoft-Server-ActiveSync"


def _headers(value: Iterable[tuple[str, str]] | Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple((str(k), str(v)) for k, v in items)


def _first_header(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    wanted = name.lower()
    for k, v in headers:
        if k.lower() == wanted:
            return v
    return None


@attrs.frozen
class HttpRequest:
    """One request the device wants sent: ``path_and_query`` is relative to the server base."""

    #: "OPTIONS" or "POST".
    method: str
    #: E.g. ``/Microsoft-Server-ActiveSync?Cmd=Sync&User=...``.
    path_and_query: str
    #: Header (name, value) pairs in sending order.
    headers: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_headers)
    #: The body bytes (WBXML, MIME or nothing).
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive), or None."""
        return _first_header(self.headers, name)


@attrs.frozen
class HttpResponse:
    """One response as the transport received it."""

    #: The HTTP status code.
    status: int
    #: Header (name, value) pairs as received.
    headers: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_headers)
    #: The whole body.
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive), or None."""
        return _first_header(self.headers, name)


class QueryForm(enum.Enum):
    """How the device writes its request line (MS-ASHTTP 2.2.1.1.1)."""

    #: ``?Cmd=Sync&User=...&DeviceId=...&DeviceType=...`` plus version and key headers.
    PLAIN = "plain"
    #: ``?<base64 bytes>`` carrying version, command, locale, device id, key and type.
    BASE64 = "base64"


class Quirk(enum.Enum):
    """Behaviours some real clients show, which a gatekeeper must cope with."""

    #: Send no policy key at all on the initial Provision (no X-MS-PolicyKey header, or a
    #: zero-length key field in the base64 form) instead of key 0 (MS-ASPROV 2.2.2.42 allows it).
    NO_KEY_ON_FIRST_PROVISION = "no-key-on-first-provision"
    #: On the Provision acknowledgement, send the temporary key as a ``PolicyKey`` query parameter
    #: instead of the X-MS-PolicyKey header (plain query form only; the base64 form always
    #: carries the key in its key field).
    ACK_KEY_IN_QUERY = "ack-key-in-query"


def _device_id(_instance: object, _attribute: object, value: str) -> None:
    if not _DEVICE_ID_RE.fullmatch(value):
        raise ValueError(
            f"device id: expected 1-32 letters or digits (MS-ASHTTP 2.2.1.1.1.2.3), got {value!r}"
        )


def _device_type(_instance: object, _attribute: object, value: str) -> None:
    # MS-ASHTTP 2.2.1.1.1.2.4 + Exchange: 1-32 visible characters, no "-".
    if not 1 <= len(value) <= 32 or "-" in value or not value.isprintable() or " " in value:
        raise ValueError(
            f"device type: expected 1-32 visible characters without '-' or spaces, got {value!r}"
        )


def _user(_instance: object, _attribute: object, value: str) -> None:
    if not 1 <= len(value) <= 256 or not value.isprintable():
        raise ValueError(f"user: expected 1-256 printable characters, got {value!r}")


def _quirks(value: Iterable[Quirk]) -> frozenset[Quirk]:
    return frozenset(value)


def _version(value: ProtocolVersion | str) -> ProtocolVersion:
    return ProtocolVersion.coerce(value)


def _policy_ack_status(_instance: object, _attribute: object, value: int) -> None:
    # MS-ASPROV 2.2.2.54.1: 1 applied, 2 partially applied, 3 not applied, 4 third party.
    if value not in (1, 2, 3, 4):
        raise ValueError(
            f"policy acknowledgement status: expected 1 (applied), 2 (partial), "
            f"3 (not applied) or 4 (third party), got {value}"
        )


@attrs.frozen(kw_only=True)
class DeviceIdentity:
    """Who the phone is and how it talks: constant for the life of a partnership."""

    #: Mailbox user as sent in ``User=`` and the Basic credentials (``alice`` or ``DOM\\alice``).
    user: str = attrs.field(validator=_user)
    #: Password for Basic authentication.
    password: str = attrs.field(repr=False)
    #: EAS DeviceId: 1-32 letters or digits, stable for the device.
    device_id: str = attrs.field(validator=_device_id)
    #: EAS DeviceType, e.g. ``iPhone``, ``Android``, ``WindowsMail``.
    device_type: str = attrs.field(validator=_device_type)
    #: Protocol version the device speaks.
    version: ProtocolVersion = attrs.field(default=ProtocolVersion.V16_1, converter=_version)
    #: Request-line form.
    query_form: QueryForm = QueryForm.PLAIN
    #: Hardware model (Settings/Provision DeviceInformation ``Model``).
    model: str = "Simulated Phone"
    #: Operating system (DeviceInformation ``OS``).
    os: str = "SimOS 17.1"
    #: OS language (DeviceInformation ``OSLanguage``).
    os_language: str = "en-US"
    #: A friendly name the user gave the phone.
    friendly_name: str = "Simulated Phone"
    #: IMEI, when the device reports one.
    imei: str | None = None
    #: Phone number, when the device reports one.
    phone_number: str | None = None
    #: Mobile operator, when the device reports one (14.0+).
    mobile_operator: str | None = None
    #: User-Agent header (MS-ASHTTP 2.2.1.1.2.7: must not change between requests).
    user_agent: str = "sentry-sim-device/1.0"
    #: Locale id for the base64 query (0x0409 en-US).
    locale: int = 0x0409
    #: Status the device reports when acknowledging a policy (1 applied ... 4 third party).
    policy_ack_status: int = attrs.field(default=1, validator=_policy_ack_status)
    #: Behaviours of real clients to imitate.
    quirks: frozenset[Quirk] = attrs.field(default=frozenset(), converter=_quirks)

    def __attrs_post_init__(self) -> None:
        if self.query_form is QueryForm.BASE64 and not self.version.allows_base64_query:
            raise ValueError(
                f"the base64 query form needs protocol 12.1 or later (MS-ASHTTP 2.2.1.1.1.1), "
                f"this device speaks {self.version.text}"
            )

    @property
    def authorization(self) -> str:
        """The Basic Authorization header value (MS-ASHTTP 2.2.1.1.2.2)."""
        raw = f"{self.user}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")
