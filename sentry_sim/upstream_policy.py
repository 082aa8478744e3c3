"""uem policy mode, upstream side: the upstream's own policy keys, kept away from the device.

Responsibility: the pure parts of provisioning with the upstream EAS server on a device's
behalf. Recognise an upstream answer that demands provisioning; translate a device's request
line for the upstream (the gatekeeper's policy key out, the upstream's key of that record in);
build the two Provision requests the gatekeeper sends upstream and read their answers; keep
the upstream's final key per record and the DeviceInformation a device last reported. It must
not do I/O (``service.Sentry.provision_upstream`` sends, ``handlers`` replays), decide access,
or ever put an upstream key in anything the device receives.

Theory of operation:
- Two keys per (user, device). The device holds the gatekeeper's key (``policy_gate``); the
  upstream holds its own. Every forwarded request that carries a key (``X-MS-PolicyKey``, the
  base64 query's key field, or a ``PolicyKey`` query parameter) gets the upstream key of the
  record in its place, or no key when none is known yet; nothing else of the request line
  changes (``upstream_line``). So a UEM policy change re-provisions the device with the
  gatekeeper only, and an upstream policy change re-provisions the gatekeeper with the
  upstream only.
- A demand (``demand_of``) is HTTP 449 (below 14.0, MS-ASCMD 2.2.2), or HTTP 200 whose body
  is the command's root holding only ``<Status>`` 141, 142, 143 or 144 (14.0 and later, notes
  3.3). Such a body is 13 to 17 bytes, so only 200 answers of known length up to
  ``MAX_DEMAND_BODY`` bytes are decoded; every larger answer streams to the device untouched.
- On a demand the shell runs the two-phase Provision upstream with the device's credentials
  and identity, in the device's own query form and version (``provision_line``,
  ``initial_body`` with DeviceInformation from 14.1, ``ack_body`` with Status 1), reads each
  answer (``read_phase``), stores the final key (``UpstreamKeys``) and replays the request.
- Keys are decimal uint32 (MS-ASPROV 2.2.2.42: Exchange always issues one); an upstream key
  that is not one cannot ride in a base64 query, so it counts as a failed provisioning.
- A RemoteWipe directive from the upstream is never acknowledged on a device's behalf: that
  would tell the upstream a wipe happened that did not. It counts as a failed provisioning.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Final, Literal
from urllib.parse import unquote

import attrs

from activesync.commands.provision import (
    DeviceInformation,
    ProvisionRequest,
    ProvisionResponse,
)
from activesync.errors import ActiveSyncError
from activesync.query import DEFAULT_LOCALE, EasRequest, build_base64_query, build_plain_query
from activesync.status import PolicyStatus, ProvisionStatus, Status
from activesync.versions import ProtocolVersion
from activesync.wbxml import decode, encode

#: HTTP 449 "Retry after sending a PROVISION command" (MS-ASCMD 2.2.2, below 14.0).
HTTP_RETRY_WITH_PROVISION: Final = 449

#: Body statuses that demand provisioning (MS-ASCMD 2.2.2): 141 LegacyDeviceOnStrictPolicy (the
#: gatekeeper sent no key), 142 DeviceNotProvisioned, 143 PolicyRefresh, 144 InvalidPolicyKey.
DEMAND_STATUSES: Final = frozenset(
    {
        int(Status.LegacyDeviceOnStrictPolicy),
        int(Status.DeviceNotProvisioned),
        int(Status.PolicyRefresh),
        int(Status.InvalidPolicyKey),
    }
)

#: Largest 200 body read to look for a demand. ``<Root><Status>144</Status></Root>`` is 15
#: bytes, 17 with a code-page switch; 64 leaves room for an upstream that adds a string table.
MAX_DEMAND_BODY: Final = 64

#: Request headers of the device that go with the gatekeeper's own Provision upstream: the
#: credentials and what identifies the client (MS-ASHTTP 2.2.1.1.2).
CARRIED_HEADERS: Final = ("Authorization", "User-Agent", "Cookie", "Accept-Language")

#: DeviceInformation kept per record (the most recently seen go last; the oldest are dropped).
MAX_DEVICE_INFORMATION: Final = 10_000

_WBXML: Final = "application/vnd.ms-sync.wbxml"
_POLICY_KEY_HEADER: Final = "X-MS-PolicyKey"


def demand_of(http_status: int, body: bytes) -> int | None:
    """449, or the body status 141-144, when this upstream answer demands provisioning."""
    if http_status == HTTP_RETRY_WITH_PROVISION:
        return HTTP_RETRY_WITH_PROVISION
    if http_status != 200 or not body or len(body) > MAX_DEMAND_BODY:
        return None
    try:
        root = decode(body)
    except ActiveSyncError:
        return None
    # Notes 3.3: the error shape is the root holding only Status, for every command.
    if len(root.children) != 1:
        return None
    status = root.children[0]
    if status.tag != "Status" or status.page != root.page or status.text is None:
        return None
    text = status.text.strip()
    if not text.isdigit() or int(text) not in DEMAND_STATUSES:
        return None
    return int(text)


def is_demand(http_status: int, body: bytes) -> bool:
    """``demand_of`` as a yes/no (the forwarder's intercept predicate)."""
    return demand_of(http_status, body) is not None


@attrs.frozen
class UpstreamLine:
    """How a request goes to the upstream: path and query, and the header changes."""

    raw_path: str
    set_headers: tuple[tuple[str, str], ...] = ()
    drop_headers: tuple[str, ...] = (_POLICY_KEY_HEADER,)


def upstream_line(
    eas: EasRequest, raw_path: str, upstream_key: int | None, *, force: bool = False
) -> UpstreamLine:
    """The request line of a device request, translated for the upstream.

    The device's key (the gatekeeper's) never goes upstream. Where the device sent a key, the
    upstream key of the record takes its place, or no key at all when none is known yet;
    ``force`` puts the upstream key in even where the device sent none (the replay after the
    upstream demanded provisioning). Every other byte of the path, query and headers is kept.
    """
    path, _, query = raw_path.partition("?")
    carries = eas.policy_key is not None or eas.param("PolicyKey") is not None
    key = upstream_key if (carries or force) else None
    if eas.form == "base64":
        if eas.policy_key is None and key is None:
            return UpstreamLine(raw_path)
        assert eas.protocol_version is not None
        # MS-ASHTTP 2.2.1.1.1.1: the key is a field of the query bytes; rebuild them from the
        # parsed request with only that field changed (params keep their order and values, the
        # Options byte included, so the flags are not passed again).
        rebuilt = build_base64_query(
            command=eas.command,
            device_id=eas.device_id_bytes,
            device_type=eas.device_type,
            version=eas.protocol_version,
            policy_key=key,
            locale=DEFAULT_LOCALE if eas.locale is None else eas.locale,
            params=eas.params,
        )
        return UpstreamLine(f"{path}?{rebuilt}")
    if eas.param("PolicyKey") is not None:
        query = _without_param(query, "PolicyKey")
        raw_path = f"{path}?{query}"
    headers = () if key is None else ((_POLICY_KEY_HEADER, str(key)),)
    return UpstreamLine(raw_path, headers)


def _without_param(query: str, name: str) -> str:
    """A plain query without parameter ``name`` (any case); the other pairs byte for byte."""
    lowered = name.lower()
    kept = [
        part
        for part in query.split("&")
        if unquote(part.partition("=")[0], errors="replace").lower() != lowered
    ]
    return "&".join(kept)


def provision_line(eas: EasRequest, raw_path: str, key: int) -> UpstreamLine:
    """The request line of the gatekeeper's Provision upstream for the device of ``eas``:
    the device's query form, version, ids and user; ``key`` 0 in phase 1, the temporary key
    in phase 2 (MS-ASPROV 3.1.5.1.1, 3.1.5.1.2.1)."""
    version = eas.protocol_version
    assert version is not None
    path = raw_path.partition("?")[0]
    if eas.form == "base64":
        query = build_base64_query(
            command="Provision",
            device_id=eas.device_id_bytes,
            device_type=eas.device_type,
            version=version,
            policy_key=key,
            locale=DEFAULT_LOCALE if eas.locale is None else eas.locale,
            params=[(n, v) for n, v in eas.params if n == "User"],
        )
        return UpstreamLine(f"{path}?{query}", (("Content-Type", _WBXML),))
    query = build_plain_query(
        command="Provision",
        device_id=eas.param("DeviceId") or eas.device_id,
        device_type=eas.param("DeviceType") or eas.device_type,
        user=eas.param("User"),
    )
    headers = (
        ("MS-ASProtocolVersion", version.text),
        (_POLICY_KEY_HEADER, str(key)),
        ("Content-Type", _WBXML),
    )
    return UpstreamLine(f"{path}?{query}", headers)


def initial_body(version: ProtocolVersion, information: DeviceInformation | None) -> bytes:
    """Phase 1: the policy request; DeviceInformation only from 14.1 (MS-ASPROV 2.2.2.53)."""
    info = information if version >= ProtocolVersion.V14_1 else None
    return encode(ProvisionRequest.initial(version, info).to_element())


def ack_body(version: ProtocolVersion, temporary_key: int) -> bytes:
    """Phase 2: acknowledge the temporary key with Status 1, policy applied (2.2.2.54.1)."""
    return encode(ProvisionRequest.acknowledgement(version, temporary_key, 1).to_element())


Phase = Literal["policy", "acknowledgement"]


def read_phase(phase: Phase, http_status: int, body: bytes) -> int | str:
    """The key an upstream Provision answer gives (temporary in phase 1, final in phase 2),
    or, as a string, why it gives none."""
    if http_status != 200:
        return f"{phase} request: upstream answered HTTP {http_status}"
    try:
        answer = ProvisionResponse.from_element(decode(body))
    except ActiveSyncError as exc:
        return f"{phase} request: unreadable Provision answer ({exc.message})"
    if answer.remote_wipe or answer.account_only_remote_wipe:
        return (
            f"{phase} request: the upstream asked for a remote wipe; the gatekeeper never "
            "acknowledges a wipe on a device's behalf"
        )
    if answer.status != ProvisionStatus.Success:
        return f"{phase} request: Provision Status {answer.status} ({_name(answer.status)})"
    if answer.policy_status != PolicyStatus.Success:
        return f"{phase} request: Policy Status {answer.policy_status}"
    key = answer.policy_key_value
    if key is None or key == 0:
        return (
            f"{phase} request: PolicyKey {answer.policy_key!r} is not a non-zero decimal "
            "uint32 (MS-ASPROV 2.2.2.42)"
        )
    return key


def _name(status: int) -> str:
    try:
        return ProvisionStatus(status).name
    except ValueError:
        try:
            return Status(status).name
        except ValueError:
            return "unknown"


@attrs.define(eq=False)
class UpstreamKeys:
    """The upstream's final policy key of each record, with when it was issued."""

    _keys: dict[str, tuple[int, float]] = attrs.field(factory=dict)

    def get(self, record: str) -> int | None:
        found = self._keys.get(record)
        return None if found is None else found[0]

    def issued_at(self, record: str) -> float | None:
        found = self._keys.get(record)
        return None if found is None else found[1]

    def set(self, record: str, key: int, now: float) -> None:
        self._keys[record] = (key, now)

    def load(self, rows: Iterable[tuple[str, int, float]]) -> int:
        """Add persisted (record, key, issued at) rows; returns how many."""
        n = 0
        for record, key, at in rows:
            self._keys[record] = (key, at)
            n += 1
        return n

    def __len__(self) -> int:
        return len(self._keys)


@attrs.define(eq=False)
class DeviceInformationBook:
    """The DeviceInformation each record last sent in its Provision (bounded, newest kept)."""

    limit: int = MAX_DEVICE_INFORMATION
    _known: OrderedDict[str, DeviceInformation] = attrs.field(factory=OrderedDict)

    def remember(self, record: str, information: DeviceInformation) -> None:
        self._known[record] = information
        self._known.move_to_end(record)
        while len(self._known) > self.limit:
            self._known.popitem(last=False)

    def for_upstream(self, record: str, device_type: str, user_agent: str) -> DeviceInformation:
        """What the gatekeeper tells the upstream: the device's own, else the least it knows
        (MS-ASPROV 2.2.2.53: at least Model; the device type stands in for it)."""
        known = self._known.get(record)
        if known is not None:
            return known
        return DeviceInformation(model=device_type, user_agent=user_agent[:1024] or None)
