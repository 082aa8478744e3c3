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

The push URL carries a random secret instead of the admin token: the UEM is given the URL when
the gatekeeper registers, as MobileIron Core is given Sentry's push endpoint (port 9090).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from typing import Any, Final

from aiohttp import web

from labauth import Lockout, admin_guard
from sentry_sim.device_list import DeviceRecord, State, record_key, split_key
from sentry_sim.events import Event
from sentry_sim.handlers import SENTRY
from sentry_sim.metrics import Metrics
from sentry_sim.service import Sentry
from uem_sim.contract import (
    MAX_REQUEST_BYTES,
    ContractError,
    PushMessage,
    from_json,
    reason_names,
)

ADMIN_TOKEN: Final = web.AppKey("admin_token", str)
METRICS: Final = web.AppKey("metrics", Metrics)

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


def push_path(sentry: Sentry) -> str:
    """The path of the push receiver (append it to the admin URL)."""
    return PUSH_PREFIX + sentry.push_secret


def make_admin_app(
    sentry: Sentry, *, admin_token: str, metrics: Metrics, lockout: Lockout | None = None
) -> web.Application:
    """The admin app over a running gatekeeper (its lifecycle belongs to the device app).

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
    app.router.add_get("/api/devices", list_devices)
    app.router.add_get("/api/devices/{user}/{device_id}", explain_device)
    app.router.add_get("/api/stats", get_stats)
    app.router.add_get("/api/events", recent_events)
    app.router.add_get("/api/events/stream", event_stream)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_post(PUSH_PREFIX + "{secret}", receive_push)
    return app
