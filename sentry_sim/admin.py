"""The gatekeeper's admin API (JSON, bearer token) and the UEM push receiver.

Responsibility: let people and tools see what the gatekeeper knows and why: the device list,
a per-record explanation, statistics, Prometheus metrics, the event stream; and take the UEM's
pushes. It must not change access decisions (the UEM makes them; the push only delivers them).

Routes (all but the push need ``Authorization: Bearer <admin token>``)::

    GET  /api/devices?state=allowed&limit=100&offset=0   the device list
    GET  /api/devices/{user}/{device_id}                  explain one record
    GET  /api/stats                                       counts, UEM and outbox status
    GET  /api/events?limit=100                            the latest events (JSON)
    GET  /api/events/stream                               live events (text/event-stream)
    GET  /metrics                                         Prometheus text format
    POST /uem/push/{secret}                               UEM push (PushMessage JSON)
    GET  /api/v1/certificates                             Certificate Mgmt: both ports' TLS
    GET  /api/v1/certificates/{port}                      one port (device or admin)
    PUT  /api/v1/certificates/{port}                      upload a PKCS#12, served at once

The push URL carries a random secret instead of the admin token: the UEM is given the URL when
the gatekeeper registers, as MobileIron Core is given Sentry's push endpoint (port 9090).

Certificate Mgmt (as the real gatekeeper's admin portal has it): a PKCS#12 upload (base64 in
JSON, with its password) is checked completely (``labpki.ServerCredential.from_pkcs12``: key
matches, validity, chain) before it replaces the port's certificate through its
``SwappableServerContext``; new handshakes get it, open connections keep theirs, nothing
restarts. A refused upload changes nothing. The password is never logged or echoed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import time
from typing import Any, Final

from aiohttp import web

from labauth import Lockout, admin_guard
from labpki import PkiError, ServerCredential
from sentry_sim.config import tls_version_text
from sentry_sim.device_list import DeviceRecord, State, record_key, split_key
from sentry_sim.events import Event
from sentry_sim.handlers import SENTRY
from sentry_sim.metrics import Metrics
from sentry_sim.service import Sentry
from sentry_sim.tls import PORTS, SentryTls
from uem_sim.contract import (
    MAX_REQUEST_BYTES,
    ContractError,
    PushMessage,
    from_json,
    reason_names,
)

logger = logging.getLogger(__name__)

ADMIN_TOKEN: Final = web.AppKey("admin_token", str)
METRICS: Final = web.AppKey("metrics", Metrics)
#: The gatekeeper's TLS (every port plain when the gatekeeper was started without it).
TLS: Final = web.AppKey("tls", SentryTls)

#: Largest Certificate Mgmt upload: the base64 of labpki's 1 MiB bound, with room for the JSON.
MAX_UPLOAD_BYTES: Final = 2 * 1024 * 1024
_UPLOAD_FIELDS: Final = ("pkcs12", "password")
_UPLOAD_HINT: Final = (
    'send {"pkcs12": "<base64 of the .p12 file>", "password": "<its password>"}: the server '
    "certificate, its private key and the chain up to, not including, the root"
)

PUSH_PREFIX: Final = "/uem/push/"
MAX_LIST: Final = 100_000


def _error(status: int, error: str, hint: str = "") -> web.Response:
    return web.json_response({"error": error, "hint": hint}, status=status)


def _needs_token(request: web.Request) -> bool:
    # The push receiver is protected by the secret in its URL instead (module docstring).
    return not request.path.startswith(PUSH_PREFIX)


def record_json(key: str, record: DeviceRecord) -> dict[str, Any]:
    user, device_id = split_key(key)
    return {
        "key": key,
        "user": user,
        "device_id": device_id,
        "state": record.state.value,
        "reasons": record.reasons,
        "reason_names": list(reason_names(record.reasons)),
        "answer": record.answer,
        "fallback": record.is_fallback,
        "policy_version": record.policy_version,
        "decided_at": record.decided_at,
        "last_seen": record.last_seen,
        "requests": record.requests,
    }


def explain(sentry: Sentry, key: str, record: DeviceRecord) -> dict[str, Any]:
    """Everything the gatekeeper knows about one record, and the why in words."""
    body = record_json(key, record)
    reporting = sentry.devices.is_reporting(key)
    names = ", ".join(reason_names(record.reasons)) or "none"
    if record.state is State.UNKNOWN:
        why = "seen but not decided yet: the report to the UEM is in flight"
    elif record.is_fallback:
        rule = sentry.config.uem_unreachable.value
        why = (
            f"{record.state.value} by the unreachable-UEM rule (uem_unreachable: {rule}), "
            "not by the UEM; the report is retried and its answer will replace this"
        )
    else:
        why = (
            f"{record.state.value} by UEM answer #{record.answer} (reasons: {names}), "
            f"cached here since {_iso(record.decided_at)}"
        )
    interval = sentry.config.resync_interval_s
    last = sentry.last_resync_at
    body.update(
        {
            "explanation": why,
            "decided_by": "fallback" if record.is_fallback else f"uem answer #{record.answer}",
            "cached_since": record.decided_at,
            "cached_until_next_resync": None if last is None else last + interval,
            "report_in_flight": reporting,
            "report_attempts": sentry.outbox.attempts(key),
            "policy_mode": sentry.config.activesync_policy_mode.value,
            "policy": "temporary default policy"
            if record.policy_version == 0
            else f"UEM ActiveSync policy v{record.policy_version}",
            "upstream_provisioned": _upstream_provisioned(sentry, key),
        }
    )
    return body


def _upstream_provisioned(sentry: Sentry, key: str) -> str:
    """uem policy mode: whether the gatekeeper holds an upstream key for the record (never
    the key itself)."""
    since = sentry.upstream_keys.issued_at(key)
    if since is None:
        return "no: the upstream has not demanded provisioning of this device (yet)"
    return (
        f"yes, since {_iso(since)}: forwarded requests carry the upstream's own policy key "
        "in place of the device's"
    )


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


async def list_devices(request: web.Request) -> web.Response:
    sentry = request.app[SENTRY]
    state_text = request.query.get("state")
    state = None
    if state_text is not None:
        try:
            state = State(state_text)
        except ValueError:
            allowed = ", ".join(s.value for s in State)
            return _error(400, f"state: expected one of {allowed}, got {state_text[:40]!r}")
    try:
        limit = int(request.query.get("limit", "1000"))
        offset = int(request.query.get("offset", "0"))
    except ValueError:
        return _error(400, "limit and offset: expected integers")
    if not (0 <= limit <= MAX_LIST and offset >= 0):
        return _error(400, f"limit: expected 0..{MAX_LIST}; offset: expected >= 0")
    out: list[dict[str, Any]] = []
    skipped = 0
    for key, record in sentry.devices.items():
        if state is not None and record.state is not state:
            continue
        if skipped < offset:
            skipped += 1
            continue
        if len(out) >= limit:
            break
        out.append(record_json(key, record))
    return web.json_response({"total": len(sentry.devices), "devices": out})


async def explain_device(request: web.Request) -> web.Response:
    sentry = request.app[SENTRY]
    key = record_key(request.match_info["user"], request.match_info["device_id"])
    record = sentry.devices.get(key)
    if record is None:
        return _error(
            404,
            f"no device record {key!r}",
            "records are keyed by the user as the device sends it (lower-cased, DOMAIN\\ "
            "removed) and the device id; GET /api/devices lists them",
        )
    return web.json_response(explain(sentry, key, record))


def stats(sentry: Sentry) -> dict[str, Any]:
    counts = sentry.devices.counts()
    return {
        "gatekeeper_id": sentry.gatekeeper_id,
        "records": len(sentry.devices),
        "by_state": {s.value: counts[s] for s in State},
        "reports_in_flight": len(sentry.devices.reporting),
        "outbox_pending": sentry.outbox.pending,
        "uem_reachable": sentry.uem_reachable,
        "uem_version": sentry.uem_version,
        "push_registered": sentry.registered,
        "last_resync_at": sentry.last_resync_at,
        "events_emitted": sentry.bus.emitted,
        "config": {
            "uem_unreachable": sentry.config.uem_unreachable.value,
            "blocked_response": sentry.config.blocked_response.value,
            "activesync_policy_mode": sentry.config.activesync_policy_mode.value,
            "resync_interval_s": sentry.config.resync_interval_s,
            "first_access_wait_s": sentry.config.first_access_wait_s,
        },
    }


async def get_stats(request: web.Request) -> web.Response:
    return web.json_response(stats(request.app[SENTRY]))


async def get_metrics(request: web.Request) -> web.Response:
    sentry = request.app[SENTRY]
    counts = sentry.devices.counts()
    gauges: list[tuple[str, str, dict[str, str], float]] = [
        ("sentry_devices", "Device records cached, by state.", {"state": s.value}, counts[s])
        for s in State
    ]
    pending = float(sentry.outbox.pending)
    gauges.append(("sentry_outbox_pending", "Reports waiting for the UEM.", {}, pending))
    reachable = 1.0 if sentry.uem_reachable else 0.0
    gauges.append(("sentry_uem_reachable", "1 if the last UEM call got an answer.", {}, reachable))
    text = request.app[METRICS].render(gauges)
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def recent_events(request: web.Request) -> web.Response:
    sentry = request.app[SENTRY]
    try:
        limit = max(0, min(int(request.query.get("limit", "100")), 2000))
    except ValueError:
        return _error(400, "limit: expected an integer")
    return web.json_response({"events": [e.to_json() for e in sentry.bus.recent(limit)]})


async def event_stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one ``data: {json}`` per event, as they happen."""
    sentry = request.app[SENTRY]
    queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=10_000)

    def enqueue(event: Event) -> None:
        # A slow reader loses events rather than slowing the proxy.
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(event)

    unsubscribe = sentry.bus.subscribe(enqueue)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    try:
        await response.prepare(request)
        await response.write(b": sentry-sim event stream\n\n")
        while True:
            event = await queue.get()
            line = json.dumps(event.to_json(), separators=(",", ":"))
            await response.write(f"event: {event.kind}\ndata: {line}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        unsubscribe()
    return response


async def receive_push(request: web.Request) -> web.Response:
    sentry = request.app[SENTRY]
    if not hmac.compare_digest(request.match_info["secret"], sentry.push_secret):
        return _error(404, "unknown push URL", "register again to get the current push URL")
    body = await request.content.read(MAX_REQUEST_BYTES * 64 + 1)
    try:
        message = from_json(PushMessage, body)
    except ContractError as exc:
        return _error(400, f"push body: {exc}", "send a PushMessage as JSON (uem_sim.contract)")
    applied = sentry.receive_push(message)
    return web.json_response({"accepted": applied, "version": sentry.uem_version})


# -- Certificate Mgmt ----------------------------------------------------------------------
def port_json(tls: SentryTls, name: str) -> dict[str, Any]:
    """One port's TLS: settings, the served certificate's summary and how often it changed."""
    settings = tls.port_settings(name)
    swappable = tls.port(name)
    return {
        "port": name,
        "enabled": swappable is not None,
        "min_version": tls_version_text(settings.min_version),
        "max_version": None
        if settings.max_version is None
        else tls_version_text(settings.max_version),
        "ciphers": settings.ciphers,
        "client_certificates": settings.client_certificates.value,
        "certificate": None if swappable is None else swappable.credential.summary(),
        "swaps": 0 if swappable is None else swappable.swaps,
    }


def _port_name(request: web.Request) -> str | web.Response:
    name = request.match_info["port"]
    if name not in PORTS:
        return _error(404, f"no TLS port {name[:40]!r}", f"expected one of {', '.join(PORTS)}")
    return name


async def list_certificates(request: web.Request) -> web.Response:
    tls = request.app[TLS]
    return web.json_response(
        {
            "ports": {name: port_json(tls, name) for name in PORTS},
            "trust": "system store" if tls.trust_pem is None else "configured roots",
        }
    )


async def get_certificate(request: web.Request) -> web.Response:
    name = _port_name(request)
    if isinstance(name, web.Response):
        return name
    return web.json_response(port_json(request.app[TLS], name))


def read_upload(raw: bytes) -> tuple[bytes, bytes | None] | str:
    """(PKCS#12 bytes, password) of an upload body, or what is wrong with it (never the
    password itself)."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        return f"request body: expected JSON ({exc})"
    if not isinstance(body, dict):
        return f"request body: expected a JSON object, got {type(body).__name__}"
    for key in body:
        if key not in _UPLOAD_FIELDS:
            return f"request body: $.{str(key)[:40]}: unknown field; expected pkcs12, password"
    text = body.get("pkcs12")
    if not isinstance(text, str) or not text.strip():
        return "request body: $.pkcs12: expected the PKCS#12 file as base64 text"
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        return f"request body: $.pkcs12: not valid base64 ({exc})"
    password = body.get("password")
    if password is not None and not isinstance(password, str):
        return "request body: $.password: expected a string"
    return data, None if password is None else password.encode("utf-8")


async def put_certificate(request: web.Request) -> web.Response:
    """Replace a TLS port's certificate from an uploaded PKCS#12 (module docstring)."""
    tls = request.app[TLS]
    name = _port_name(request)
    if isinstance(name, web.Response):
        return name
    swappable = tls.port(name)
    if swappable is None:
        return _error(
            409,
            f"the {name} port does not speak TLS, so it has no certificate to replace",
            f"set sentry.tls.{name}.enabled: true in the config and restart the gatekeeper",
        )
    raw = await request.content.read(MAX_UPLOAD_BYTES + 1)
    if len(raw) > MAX_UPLOAD_BYTES:
        return _error(413, f"request body: more than {MAX_UPLOAD_BYTES} bytes", _UPLOAD_HINT)
    upload = read_upload(raw)
    if isinstance(upload, str):
        return _error(400, upload, _UPLOAD_HINT)
    data, password = upload
    try:
        credential = ServerCredential.from_pkcs12(data, password, source="$.pkcs12")
        swappable.replace(credential)
    except PkiError as exc:
        return _error(400, str(exc), _UPLOAD_HINT)
    summary = credential.summary()
    logger.info(
        "the %s port's certificate was replaced by an upload: %s, serial %s, valid until %s",
        name,
        summary["subject"],
        summary["serial"],
        summary["not_after"],
    )
    return web.json_response(port_json(tls, name))


def push_path(sentry: Sentry) -> str:
    """The path of the push receiver (append it to the admin URL)."""
    return PUSH_PREFIX + sentry.push_secret


def make_admin_app(
    sentry: Sentry,
    *,
    admin_token: str,
    metrics: Metrics,
    lockout: Lockout | None = None,
    tls: SentryTls | None = None,
) -> web.Application:
    """The admin app over a running gatekeeper (its lifecycle belongs to the device app).
    ``tls``: the gatekeeper's TLS, for Certificate Mgmt (None: both ports plain).

    Every route but the push needs the admin token (``labauth.admin_guard``: constant time,
    3 wrong tokens lock the client out for 15 minutes on the gatekeeper's clock); ``lockout``
    is the guard's failed-token table (a fresh one with the STIG defaults when None).
    """
    guard = admin_guard(
        admin_token,
        clock=sentry.clock,
        protected=_needs_token,
        lockout=lockout,
        hint="send 'Authorization: Bearer <admin_token>' (the token is in the ready file)",
    )
    app = web.Application(middlewares=[guard])
    app[SENTRY] = sentry
    app[ADMIN_TOKEN] = admin_token
    app[METRICS] = metrics
    app[TLS] = tls if tls is not None else SentryTls()
    app.router.add_get("/api/devices", list_devices)
    app.router.add_get("/api/devices/{user}/{device_id}", explain_device)
    app.router.add_get("/api/stats", get_stats)
    app.router.add_get("/api/events", recent_events)
    app.router.add_get("/api/events/stream", event_stream)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_post(PUSH_PREFIX + "{secret}", receive_push)
    app.router.add_get("/api/v1/certificates", list_certificates)
    app.router.add_get("/api/v1/certificates/{port}", get_certificate)
    app.router.add_put("/api/v1/certificates/{port}", put_certificate)
    return app
