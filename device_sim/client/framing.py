"""How a phone frames an EAS request: path and query, headers, policy key, body.

Responsibility: turn (identity, command, body, policy key) into an ``HttpRequest`` in the
phone's query form (plain or base64). It must not decide which command to send or with which
key: the command modules and the facade pass those in.

Theory of operation: MS-ASHTTP 2.2.1.1 gives two request-line forms. In the plain form the
version and policy key travel in the ``MS-ASProtocolVersion`` and ``X-MS-PolicyKey`` headers;
in the base64 form they travel in the query bytes and the headers are not sent. A policy key of
None sends no key at all (Ping, some phones' first Provision).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from activesync.query import build_base64_query, build_plain_query
from activesync.wbxml import encode
from activesync.wbxml.tree import Element
from device_sim.wire import EAS_PATH, DeviceIdentity, HttpRequest, QueryForm

#: MS-ASHTTP 2.2.1.1.2.3: the WBXML media type.
WBXML: Final = "application/vnd.ms-sync.wbxml"


def base_headers(identity: DeviceIdentity) -> list[tuple[str, str]]:
    """The headers every request carries."""
    return [
        ("Authorization", identity.authorization),
        ("User-Agent", identity.user_agent),
    ]


def post(
    identity: DeviceIdentity,
    command: str,
    root: Element | None,
    *,
    policy_key: int | None,
    raw: bytes | None = None,
    content_type: str = WBXML,
    params: Iterable[tuple[str, str]] = (),
    save_in_sent: bool = False,
) -> HttpRequest:
    """A ``POST`` of ``command`` with a WBXML body (``root``) or a ``raw`` one."""
    headers = base_headers(identity)
    if identity.query_form is QueryForm.BASE64:
        # MS-ASHTTP 2.2.1.1.1.1: version and policy key travel in the query bytes; the
        # headers SHOULD NOT be sent.
        query = build_base64_query(
            command=command,
            device_id=identity.device_id,
            device_type=identity.device_type,
            version=identity.version,
            policy_key=policy_key,
            locale=identity.locale,
            user=identity.user,
            save_in_sent=save_in_sent,
        )
    else:
        extra = list(params)
        if save_in_sent:
            extra.append(("SaveInSent", "T"))
        query = build_plain_query(
            command=command,
            device_id=identity.device_id,
            device_type=identity.device_type,
            user=identity.user,
            params=extra,
        )
        headers.append(("MS-ASProtocolVersion", identity.version.text))
        if policy_key is not None:
            headers.append(("X-MS-PolicyKey", str(policy_key)))
    body = raw if raw is not None else (b"" if root is None else encode(root))
    if body:
        headers.append(("Content-Type", content_type))
    return HttpRequest("POST", f"{EAS_PATH}?{query}", headers, body)
