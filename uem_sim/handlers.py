"""HTTP handlers of the UEM: the gatekeeper API, the MDM check-in and the admin API.

Responsibility: read and validate a request, call one registry operation, commit, answer JSON.
Must not: decide (``policy``), change state by hand (``registry``) or build error responses
(raise ``UemError`` / ``ContractError``; ``app.error_middleware`` answers them).

Routes (``ROUTES`` below; routes under ``ADMIN_PREFIXES`` need the admin token, checked by
``labauth.admin_guard``, which ``app.make_app`` installs):

* Gatekeeper (contract.py): ``POST /api/v1/sentry/reports``, ``GET /api/v1/sentry/records``,
  ``POST /api/v1/sentry/gatekeepers``, ``DELETE /api/v1/sentry/gatekeepers/{gatekeeper_id}``.
* Device agent: ``POST /api/v1/mdm/checkin``.
* Admin: ``/api/v1/admin/users[/{user}]``, ``/api/v1/admin/devices[/{user}/{device_id}]``,
  ``/api/v1/admin/policy``, ``/api/v1/admin/compliance-check``, ``/api/v1/admin/gatekeepers``,
  ``/api/v1/admin/events``, ``/api/v1/eas/devices[/{user}/{device_id}[/explain|/actions]]``.
* Certificate Mgmt: ``GET /api/v1/certificates[/{port}]``, ``PUT /api/v1/certificates/{port}``
  (``api`` or ``admin``; a PKCS#12 upload swaps the served certificate without a restart).
* Outgoing TLS: ``GET|PUT /api/v1/outgoing-tls``, ``POST /api/v1/outgoing-tls/reset``,
  ``GET /api/v1/outgoing-tls/usage`` (docs/admin-api.md; applying restarts the outgoing client).
  What is applied or reset is written to the store before the answer (not batched), so it
  survives a restart when the UEM has a state directory; usage stays in memory.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import sqlite3
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from labpki import PkiError, ServerCredential
from uem_sim import contract
from uem_sim.config import (
    DEVICE_KEYS,
    POLICY_KEYS,
    POSTURE_KEYS,
    Reader,
    parse_device_id,
    parse_outgoing_tls,
    parse_policy,
    parse_posture,
    parse_user,
)
from uem_sim.contract import reason_names
from uem_sim.errors import Conflict, NotFound, UemError
from uem_sim.events import (
    AdminChanged,
    CertificateReplaced,
    DeviceCheckedIn,
    GatekeeperRegistered,
    RecordReported,
)
from uem_sim.model import DAY, AdminAction, EasRecord, RegisteredDevice, User
from uem_sim.outgoing_client import OutgoingClient
from uem_sim.outgoing_tls import (
    SOURCE_MEMORY,
    SOURCE_STORED,
    SOURCE_UNSTORED,
    OutgoingTlsSettings,
    SettingsOrigin,
    catalogue,
)
from uem_sim.registry import GROUPS, group_of
from uem_sim.service import Uem
from uem_sim.store import (
    StoredOutgoingTls,
    device_to_dict,
    override_to_dict,
    policy_to_dict,
    rule_to_dict,
)
from uem_sim.tls import PORTS, UemTls

log = logging.getLogger("uem_sim.handlers")

UEM: Final = web.AppKey("uem", Uem)
#: The UEM's TLS: its ports' swappable contexts and the outgoing trust.
TLS: Final = web.AppKey("uem_tls", UemTls)
#: The one outgoing client (set while the app runs).
OUTGOING: Final = web.AppKey("uem_outgoing", OutgoingClient)
BODY: Final = Reader("request body")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, separators=(",", ":")), status=status, content_type="application/json"
    )


async def _body(request: web.Request) -> Mapping[str, Any]:
    raw = await request.read()
    try:
        data = json.loads(raw or b"{}")
    except (UnicodeDecodeError, ValueError) as exc:
        raise UemError(f"request body: not valid JSON ({exc})", hint="send a JSON object") from None
    return BODY.mapping(data, "$")


def _user(request: web.Request) -> str:
    return request.match_info["user"]


# --- views ---


def user_view(user: User) -> dict[str, Any]:
    return {"name": user.name, "email": user.email, "mailbox": user.mailbox}


def device_view(uem: Uem, device: RegisteredDevice) -> dict[str, Any]:
    view = device_to_dict(device)
    view["days_since_check_in"] = round(max(0.0, uem.now() - device.last_check_in) / DAY, 3)
    view["policy_up_to_date"] = (
        device.applied_policy_version >= uem.registry.policy.security.version
    )
    return view


def record_view(record: EasRecord) -> dict[str, Any]:
    return {
        "user": record.mailbox,
        "device_id": record.device_id,
        "group": group_of(record),
        "state": record.state.value,
        "reasons": record.reasons,
        "reason_names": list(reason_names(record.reasons)),
        "registered": record.registered,
        "aliases": list(record.aliases),
        "device_type": record.device_type,
        "model": record.model,
        "user_agent": record.user_agent,
        "protocol_version": record.protocol_version,
        "gatekeepers": list(record.gatekeeper_ids),
        "first_seen": record.first_seen,
        "last_seen": record.last_seen,
        "decided_at": record.decided_at,
        "version": record.version,
        "override": None if record.override is None else override_to_dict(record.override),
    }


# --- gatekeeper API (contract.py) ---


async def post_report(request: web.Request) -> web.Response:
    uem = request.app[UEM]
    report = contract.from_json(contract.ReportRequest, await request.read())
    outcome = uem.registry.report(report, uem.now())
    uem.events.emit(
        RecordReported(
            at=uem.now(),
            mailbox=outcome.record.mailbox,
            device_id=outcome.record.device_id,
            gatekeeper_id=report.gatekeeper_id,
            first_report=outcome.first_report,
            correlation_id=report.correlation_id,
        )
    )
    uem.commit(outcome.changes)
    return _json(uem.registry.message(outcome.record).to_dict())


async def get_records(request: web.Request) -> web.Response:
    uem = request.app[UEM]
    raw = request.query.get(contract.SINCE_PARAM, "0")
    if not raw.isdigit() or len(raw) > 18:
        raise UemError(
            f"query parameter since: expected an integer >= 0, got {raw!r}",
            hint="use the version of your last ChangesResponse or PushMessage, or 0",
        )
    return _json(uem.registry.changes_since(int(raw)).to_dict())


async def post_gatekeeper(request: web.Request) -> web.Response:
    uem = request.app[UEM]
    registration = contract.from_json(contract.RegisterGatekeeper, await request.read())
    uem.registry.register_gatekeeper(registration.gatekeeper_id, registration.push_url)
    if uem.pusher is not None:
        uem.pusher.register(registration.gatekeeper_id, registration.push_url)
    uem.events.emit(
        GatekeeperRegistered(
            at=uem.now(),
            gatekeeper_id=registration.gatekeeper_id,
            push_url=registration.push_url,
        )
    )
    uem.commit()
    answer = contract.GatekeeperRegistered(registration.gatekeeper_id, uem.registry.version)
    return _json(answer.to_dict())


async def delete_gatekeeper(request: web.Request) -> web.Response:
    uem = request.app[UEM]
    gatekeeper_id = request.match_info["gatekeeper_id"]
    uem.registry.unregister_gatekeeper(gatekeeper_id)
    if uem.pusher is not None:
        await uem.pusher.unregister(gatekeeper_id)
    uem.commit()
    return _json({"gatekeeper_id": gatekeeper_id, "removed": True})


# --- device agent ---

CHECKIN_KEYS: Final = ("user", "device_id", *POSTURE_KEYS, "applied_policy_version")


async def post_checkin(request: web.Request) -> web.Response:
    uem = request.app[UEM]
    body = BODY.mapping(await _body(request), "$", CHECKIN_KEYS)
    for required in ("user", "device_id"):
        if required not in body:
            raise BODY.fail(required, "missing")
    raw_user = BODY.string(body["user"], "user")
    device_id = parse_device_id(BODY, body["device_id"], "device_id")
    existing = uem.registry.devices.get((uem.registry.mailbox_of(raw_user), device_id))
    posture = parse_posture(BODY, body, "$", None if existing is None else existing.posture)
    applied = None
    if "applied_policy_version" in body:
        applied = BODY.integer(body["applied_policy_version"], "applied_policy_version", 0)
    device, enrolled, changes = uem.registry.check_in(
        raw_user, device_id, posture, uem.now(), applied
    )
    uem.events.emit(
        DeviceCheckedIn(
            at=uem.now(), mailbox=device.mailbox, device_id=device.device_id, enrolled=enrolled
        )
    )
    uem.commit(changes)
    record = uem.registry.records.get(device.key)
    return _json(
        {
            "enrolled": enrolled,
            "device": device_view(uem, device),
            "security_policy_version": uem.registry.policy.security.version,
            "decision": None if record is None else uem.registry.message(record).to_dict(),
        }
    )


# --- admin: users ---


async def list_users(request: web.Request) -> web.Response:
    users = request.app[UEM].registry.users.values()
    return _json({"users": [user_view(u) for u in sorted(users, key=lambda u: u.mailbox)]})


async def create_user(request: web.Request) -> web.Response:
    uem = request.app[UEM]
    user = parse_user(BODY, await _body(request), "$")
    uem.registry.add_user(user)
    uem.events.emit(AdminChanged(at=uem.now(), what="user created", target=user.mailbox))
    uem.commit()
    return _json(user_view(user), status=201)


async def get_user(request: web.Request) -> web.Response:
    return _json(user_view(request.app[UEM].registry.user(_user(request))))


async def patch_user(request: web.Request) -> web.Response:
    uem = request.app[UEM]
    body = BODY.mapping(await _body(request), "$", ("email", "password"))
    email = None if "email" not in body else BODY.string(body["email"], "email")
    password = None if "password" not in body else BODY.string(body["password"], "password")
    user = uem.registry.update_user(_user(request), email=email, password=password)
    uem.events.emit(AdminChanged(at=uem.now(), what="user changed", target=user.mailbox))
    uem.commit()
    return _json(user_view(user))


async def delete_user(request: web.Request) -> web.Response:
    uem = request.app[UEM]
    mailbox = uem.registry.user(_user(request)).mailbox
    changes = uem.registry.delete_user(mailbox, uem.now())
    uem.events.emit(AdminChanged(at=uem.now(), what="user deleted", target=mailbox))
    uem.commit(changes)
    return _json({"user": mailbox, "deleted": True})


# --- admin: registered devices ---


async def list_devices(request: web.Request) -> web.Response:
    uem = request.app[UEM]
    devices = sorted(uem.registry.devices.values(), key=lambda d: d.key)
    return _json({"devices": [device_view(uem, d) for d in devices]})


async def create_device(request: web.Request) -> web.Response:
    uem = request.app[UEM]
    body = BODY.mapping(await _body(request), "$", DEVICE_KEYS)
    for required in ("user", "device_id"):
        if required not in body:
            raise BODY.fail(required, "missing")
    raw_user = BODY.string(body["user"], "user")
    device_id = parse_device_id(BODY, body["device_id"], "device_id")
    posture = parse_posture(BODY, body, "$", None)
    now = uem.now()
    device, changes = uem.registry.enrol(raw_user, device_id, posture, now)
    if "last_check_in_days_ago" in body:
        days = BODY.number(body["last_check_in_days_ago"], "last_check_in_days_ago")
        more = uem.registry.set_check_in(raw_user, device_id, now - days * DAY, now)
        changes = changes.then(more)
        device = uem.registry.device(raw_user, device_id)
    uem.events.emit(
        AdminChanged(at=now, what="device enrolled", target=f"{device.mailbox}/{device_id}")
    )
    uem.commit(changes)
    return _json(device_view(uem, device), status=201)


async def get_device(request: web.Request) -> web.Response:
    uem = request.app[UEM]
    device = uem.registry.device(_user(request), request.match_info["device_id"])
    return _json(device_view(uem, device))


async def patch_device(request: web.Request) -> web.Response:
    uem = request.app[UEM]
    allowed = (*POSTURE_KEYS, "last_check_in_days_ago")
    body = BODY.mapping(await _body(request), "$", allowed)
    raw_user, device_id = _user(request), request.match_info["device_id"]
    device = uem.registry.device(raw_user, device_id)
    posture = parse_posture(BODY, body, "$", device.posture)
    now = uem.now()
    device, changes = uem.registry.update_posture(raw_user, device_id, posture, now)
    if "last_check_in_days_ago" in body:
        days = BODY.number(body["last_check_in_days_ago"], "last_check_in_days_ago")
        changes = changes.then(
            uem.registry.set_check_in(raw_user, device_id, now - days * DAY, now)
        )
        device = uem.registry.device(raw_user, device_id)
    uem.events.emit(
        AdminChanged(at=now, what="posture changed", target=f"{device.mailbox}/{device_id}")
    )
    uem.commit(changes)
    return _json(device_view(uem, device))


async def delete_device(request: web.Request) -> web.Response:
    uem = request.app[UEM]
    raw_user, device_id = _user(request), request.match_info["device_id"]
    device = uem.registry.device(raw_user, device_id)
    changes = uem.registry.retire(raw_user, device_id, uem.now())
    uem.events.emit(
        AdminChanged(at=uem.now(), what="device retired", target=f"{device.mailbox}/{device_id}")
    )
    uem.commit(changes)
    return _json({"user": device.mailbox, "device_id": device_id, "retired": True})


# --- admin: policy, compliance, gatekeepers, events ---


async def get_policy(request: web.Request) -> web.Response:
    return _json(policy_to_dict(request.app[UEM].registry.policy))


async def patch_policy(request: web.Request) -> web.Response:
    uem = request.app[UEM]
    body = BODY.mapping(await _body(request), "", POLICY_KEYS)
    policy = parse_policy(BODY, body, "", uem.registry.policy)
    changes = uem.registry.set_policy(policy, uem.now())
    uem.events.emit(
        AdminChanged(at=uem.now(), what="policy changed", target=", ".join(sorted(body)))
    )
    uem.commit(changes)
    return _json(policy_to_dict(policy))


async def post_compliance_check(request: web.Request) -> web.Response:
    uem = request.app[UEM]
    changes = uem.registry.reevaluate_all(uem.now())
    uem.commit(changes)
    return _json({"changed": [record_view(r) for r in changes.records], "version": changes.version})


async def list_gatekeepers(request: web.Request) -> web.Response:
    uem = request.app[UEM]
    gatekeepers = [
        {
            "gatekeeper_id": gid,
            "push_url": url,
            "pending_pushes": 0 if uem.pusher is None else uem.pusher.pending(gid),
        }
        for gid, url in sorted(uem.registry.gatekeepers.items())
    ]
    return _json({"gatekeepers": gatekeepers})


async def list_events(request: web.Request) -> web.Response:
    raw = request.query.get("after", "0")
    if not raw.isdigit() or len(raw) > 18:
        raise UemError(f"query parameter after: expected an integer >= 0, got {raw!r}")
    events = request.app[UEM].events.recent(int(raw))
    return _json({"events": [{"n": n, **e.to_dict()} for n, e in events]})


# --- admin: the ActiveSync devices view ---


async def eas_devices(request: web.Request) -> web.Response:
    registry = request.app[UEM].registry
    groups = registry.groups()
    return _json(
        {
            "version": registry.version,
            "counts": {g: len(groups[g]) for g in GROUPS},
            "groups": {g: [record_view(r) for r in groups[g]] for g in GROUPS},
        }
    )


async def eas_device(request: web.Request) -> web.Response:
    record = request.app[UEM].registry.record(_user(request), request.match_info["device_id"])
    return _json(record_view(record))


async def eas_explain(request: web.Request) -> web.Response:
    uem = request.app[UEM]
    record = uem.registry.record(_user(request), request.match_info["device_id"])
    view = record_view(record)
    view["explanation"] = record.explanation
    view["trace"] = [rule_to_dict(r) for r in record.trace]
    view["activesync_policy"] = uem.registry.policy.activesync.to_dict()
    return _json(view)


async def eas_action(request: web.Request) -> web.Response:
    uem = request.app[UEM]
    body = BODY.mapping(await _body(request), "$", ("action", "note"))
    if "action" not in body:
        raise BODY.fail(
            "action", "missing", hint="one of: " + ", ".join(a.value for a in AdminAction)
        )
    raw = body["action"]
    try:
        action = AdminAction(raw)
    except ValueError:
        choices = ", ".join(a.value for a in AdminAction)
        raise BODY.fail("action", f"expected one of {choices}, got {json.dumps(raw)}") from None
    note = BODY.string(body.get("note", ""), "note")
    record = uem.registry.record(_user(request), request.match_info["device_id"])
    changes = uem.registry.admin_action(record.mailbox, record.device_id, action, note, uem.now())
    uem.events.emit(
        AdminChanged(
            at=uem.now(),
            what=action.value,
            target=f"{record.mailbox}/{record.device_id}",
            note=note,
        )
    )
    uem.commit(changes)
    if action is AdminAction.REMOVE:
        return _json({"user": record.mailbox, "device_id": record.device_id, "removed": True})
    return _json(record_view(uem.registry.records[record.key]))


# --- Certificate Mgmt ---

_UPLOAD_FIELDS: Final = ("pkcs12", "password")
_UPLOAD_HINT: Final = (
    'send {"pkcs12": "<the .p12 file, base64>", "password": "<its password>"}: the server '
    "certificate, its key and the chain up to (not including) the root"
)


def _port_name(request: web.Request) -> str:
    name = request.match_info["port"]
    if name not in PORTS:
        raise NotFound(f"no TLS port {name[:40]!r}", hint=f"expected one of {', '.join(PORTS)}")
    return name


async def list_certificates(request: web.Request) -> web.Response:
    tls = request.app[TLS]
    return _json(
        {
            "ports": {name: tls.port_view(name) for name in PORTS},
            "outgoing_trust": "system store"
            if tls.outgoing_trust_pem is None
            else "configured roots",
        }
    )


async def get_certificate(request: web.Request) -> web.Response:
    return _json(request.app[TLS].port_view(_port_name(request)))


def read_upload(data: Mapping[str, Any]) -> tuple[bytes, bytes | None]:
    """(PKCS#12 bytes, password) of an upload body; ``UemError`` naming the field (never
    the password itself)."""
    BODY.mapping(data, "$", _UPLOAD_FIELDS)
    text = data.get("pkcs12")
    if not isinstance(text, str) or not text.strip():
        raise UemError(
            "request body: $.pkcs12: expected the PKCS#12 file as base64 text", hint=_UPLOAD_HINT
        )
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UemError(
            f"request body: $.pkcs12: not valid base64 ({exc})", hint=_UPLOAD_HINT
        ) from None
    password = data.get("password")
    if password is not None and not isinstance(password, str):
        raise UemError("request body: $.password: expected a string", hint=_UPLOAD_HINT)
    return raw, None if password is None else password.encode("utf-8")


async def put_certificate(request: web.Request) -> web.Response:
    """Replace a TLS port's certificate from an uploaded PKCS#12; new handshakes get it."""
    tls = request.app[TLS]
    name = _port_name(request)
    swappable = tls.port(name)
    if swappable is None:
        raise Conflict(
            f"the {name} port does not speak TLS, so it has no certificate to replace",
            hint=f"set uem.tls.{name}.enabled: true in the config and restart the UEM",
        )
    data, password = read_upload(await _body(request))
    try:
        credential = ServerCredential.from_pkcs12(data, password, source="$.pkcs12")
        swappable.replace(credential)
    except PkiError as exc:
        raise UemError(f"request body: {exc}", hint=_UPLOAD_HINT) from None
    summary = credential.summary()
    uem = request.app[UEM]
    uem.events.emit(
        CertificateReplaced(
            at=uem.now(),
            port=name,
            subject=str(summary["subject"]),
            serial=str(summary["serial"]),
            not_after=str(summary["not_after"]),
        )
    )
    log.info(
        "the %s port's certificate was replaced by an upload: %s, serial %s, valid until %s",
        name,
        summary["subject"],
        summary["serial"],
        summary["not_after"],
    )
    return _json(tls.port_view(name))


# --- outgoing TLS ---

_OUTGOING_BODY_KEYS: Final = (
    "selected_ciphers",
    "disabled_ciphers",
    "protocols",
    "disabled_protocols",
)
_SNI_NOTE: Final = (
    "SNI is sent on every call to a host name; a URL with an IP address sends none "
    "(RFC 6066 forbids IP addresses in SNI)"
)


def outgoing_view(client: OutgoingClient) -> dict[str, Any]:
    """``GET /api/v1/outgoing-tls``: current settings, the default and every known suite."""
    return {
        "settings": client.settings.to_dict(),
        "default": OutgoingTlsSettings.default().to_dict(),
        "suites": catalogue(),
        "sni": _SNI_NOTE,
        "trust": "system store" if client.trust_pem is None else "configured roots",
        "generation": client.generation,
        "unavailable_for_s": round(client.unavailable_for(), 3),
        "source": client.origin.source,
        "source_problem": client.origin.problem,
    }


async def get_outgoing_tls(request: web.Request) -> web.Response:
    return _json(outgoing_view(request.app[OUTGOING]))


async def _apply_outgoing(request: web.Request, settings: OutgoingTlsSettings, what: str) -> None:
    """Apply (restarting the outgoing client), then store at once: durable when we answer."""
    client = request.app[OUTGOING]
    uem = request.app[UEM]
    store = uem.store
    await client.apply(
        settings, origin=SettingsOrigin(SOURCE_STORED if store.persistent else SOURCE_MEMORY)
    )
    uem.events.emit(
        AdminChanged(at=uem.now(), what=what, target=", ".join(s.iana for s in settings.selected))
    )
    try:
        store.save_outgoing_tls(StoredOutgoingTls(settings, client.generation, uem.now()))
    except sqlite3.Error as exc:
        problem = (
            f"outgoing TLS settings applied but not stored in {store.path}: {exc}; a restart "
            "goes back to the stored settings or the config"
        )
        client.origin = SettingsOrigin(SOURCE_UNSTORED, problem)
        log.error("%s", problem)
        raise UemError(
            problem,
            http_status=500,
            hint="check that the state directory is writable and has space, then apply again",
        ) from None


async def put_outgoing_tls(request: web.Request) -> web.Response:
    """Replace the outgoing TLS settings and restart the outgoing client."""
    body = await _body(request)
    BODY.mapping(body, "$", _OUTGOING_BODY_KEYS)
    if "selected_ciphers" not in body:
        raise UemError(
            "request body: $.selected_ciphers: missing (the ordered list of suites to offer)",
            hint="POST /api/v1/outgoing-tls/reset restores the default",
        )
    settings = parse_outgoing_tls(BODY, body, "$", _OUTGOING_BODY_KEYS)
    await _apply_outgoing(request, settings, "outgoing_tls")
    return _json(outgoing_view(request.app[OUTGOING]))


async def reset_outgoing_tls(request: web.Request) -> web.Response:
    """Back to the documented default (restarts the outgoing client too)."""
    await _apply_outgoing(request, OutgoingTlsSettings.default(), "outgoing_tls_reset")
    return _json(outgoing_view(request.app[OUTGOING]))


async def get_outgoing_usage(request: web.Request) -> web.Response:
    return _json(request.app[OUTGOING].usage_view())


ADMIN_PREFIXES: Final = (
    "/api/v1/admin/",
    "/api/v1/eas/",
    "/api/v1/certificates",
    "/api/v1/outgoing-tls",
)

ROUTES: Final = [
    web.post(contract.REPORTS_PATH, post_report),
    web.get(contract.RECORDS_PATH, get_records),
    web.post(contract.GATEKEEPERS_PATH, post_gatekeeper),
    web.delete(contract.GATEKEEPERS_PATH + "/{gatekeeper_id}", delete_gatekeeper),
    web.post("/api/v1/mdm/checkin", post_checkin),
    web.get("/api/v1/admin/users", list_users),
    web.post("/api/v1/admin/users", create_user),
    web.get("/api/v1/admin/users/{user}", get_user),
    web.patch("/api/v1/admin/users/{user}", patch_user),
    web.delete("/api/v1/admin/users/{user}", delete_user),
    web.get("/api/v1/admin/devices", list_devices),
    web.post("/api/v1/admin/devices", create_device),
    web.get("/api/v1/admin/devices/{user}/{device_id}", get_device),
    web.patch("/api/v1/admin/devices/{user}/{device_id}", patch_device),
    web.delete("/api/v1/admin/devices/{user}/{device_id}", delete_device),
    web.get("/api/v1/admin/policy", get_policy),
    web.patch("/api/v1/admin/policy", patch_policy),
    web.post("/api/v1/admin/compliance-check", post_compliance_check),
    web.get("/api/v1/admin/gatekeepers", list_gatekeepers),
    web.get("/api/v1/admin/events", list_events),
    web.get("/api/v1/eas/devices", eas_devices),
    web.get("/api/v1/eas/devices/{user}/{device_id}", eas_device),
    web.get("/api/v1/eas/devices/{user}/{device_id}/explain", eas_explain),
    web.post("/api/v1/eas/devices/{user}/{device_id}/actions", eas_action),
    web.get("/api/v1/certificates", list_certificates),
    web.get("/api/v1/certificates/{port}", get_certificate),
    web.put("/api/v1/certificates/{port}", put_certificate),
    web.get("/api/v1/outgoing-tls", get_outgoing_tls),
    web.put("/api/v1/outgoing-tls", put_outgoing_tls),
    web.post("/api/v1/outgoing-tls/reset", reset_outgoing_tls),
    web.get("/api/v1/outgoing-tls/usage", get_outgoing_usage),
]
