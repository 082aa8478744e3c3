"""HTTP handlers of the UEM: the gatekeeper API, the MDM check-in and the admin API.

Responsibility: read and validate a request, call one registry operation, commit, answer JSON.
Must not: decide (``policy``), change state by hand (``registry``) or build error responses
(raise ``UemError`` / ``ContractError``; ``app.error_middleware`` answers them).

Routes (``ROUTES`` below; admin routes need the admin token, see ``app.auth_middleware``):

* Gatekeeper (contract.py): ``POST /api/v1/sentry/reports``, ``GET /api/v1/sentry/records``,
  ``POST /api/v1/sentry/gatekeepers``, ``DELETE /api/v1/sentry/gatekeepers/{gatekeeper_id}``.
* Device agent: ``POST /api/v1/mdm/checkin``.
* Admin: ``/api/v1/admin/users[/{user}]``, ``/api/v1/admin/devices[/{user}/{device_id}]``,
  ``/api/v1/admin/policy``, ``/api/v1/admin/compliance-check``, ``/api/v1/admin/gatekeepers``,
  ``/api/v1/admin/events``, ``/api/v1/eas/devices[/{user}/{device_id}[/explain|/actions]]``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from uem_sim import contract
from uem_sim.config import (
    DEVICE_KEYS,
    POLICY_KEYS,
    POSTURE_KEYS,
    Reader,
    parse_device_id,
    parse_policy,
    parse_posture,
    parse_user,
)
from uem_sim.contract import reason_names
from uem_sim.errors import UemError
from uem_sim.events import AdminChanged, DeviceCheckedIn, GatekeeperRegistered, RecordReported
from uem_sim.model import DAY, AdminAction, EasRecord, RegisteredDevice, User
from uem_sim.registry import GROUPS, group_of
from uem_sim.service import Uem
from uem_sim.store import device_to_dict, override_to_dict, policy_to_dict, rule_to_dict

UEM: Final = web.AppKey("uem", Uem)
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


ADMIN_PREFIXES: Final = ("/api/v1/admin/", "/api/v1/eas/")

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
]
