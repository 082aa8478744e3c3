"""Fault injection in the mock UEM: its admin routes and its fault middleware.

Responsibility: give the UEM app one ``labfaults.FaultControl`` (``FAULTS``), the middleware
applying it, and the admin API that sets it: ``PUT /api/v1/admin/faults`` (a plan, the mapping
of docs/faults.md), ``GET`` (the active plan and its counters), ``DELETE`` (clear). It must not
decide which requests fail (``labfaults`` does) or fault its own admin route, so a fault can
always be cleared.

The UEM names no commands: scope a fault by path, e.g. ``{"path_prefix":
"/api/v1/sentry/reports"}`` for the gatekeeper's reports only. Injected error answers have the
UEM's error shape, ``{"error": "injected fault: ...", "hint": ...}``, and the
``X-SentrySim-Fault`` header.
"""

from __future__ import annotations

import json
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from labfaults import FaultControl, FaultError, fault_middleware
from uem_sim.errors import UemError
from uem_sim.handlers import _json

#: The fault admin route (admin token required, never faulted).
FAULTS_PATH: Final = "/api/v1/admin/faults"
#: The UEM's active fault plan; a scenario step may call ``set_mapping``/``clear`` on it.
FAULTS: Final = web.AppKey("uem_faults", FaultControl)
#: Largest plan body.
MAX_PLAN_BYTES: Final = 64 * 1024
HINT: Final = "see docs/faults.md for the fault plan format"


def is_fault_admin(request: web.Request) -> bool:
    return request.path.rstrip("/") == FAULTS_PATH


def injected_answer(status: int, message: str) -> web.StreamResponse:
    """An injected error in the UEM's error format."""
    return _json(
        {"error": message, "hint": "a fault is active; DELETE " + FAULTS_PATH + " to clear it"},
        status=status,
    )


def middleware(control: FaultControl) -> Middleware:
    """The UEM's fault middleware (first in the chain)."""
    return fault_middleware(control, exempt=is_fault_admin, respond=injected_answer)


async def put_faults(request: web.Request) -> web.StreamResponse:
    """PUT /api/v1/admin/faults: validate and activate a plan (counters restart)."""
    if request.content_length is not None and request.content_length > MAX_PLAN_BYTES:
        raise UemError(f"request body: larger than {MAX_PLAN_BYTES} bytes", hint=HINT)
    raw = await request.content.read(MAX_PLAN_BYTES + 1)
    if len(raw) > MAX_PLAN_BYTES:
        raise UemError(f"request body: larger than {MAX_PLAN_BYTES} bytes", hint=HINT)
    try:
        mapping = json.loads(raw or b"null")
    except (UnicodeDecodeError, ValueError) as exc:
        raise UemError(f"request body: not valid JSON ({exc})", hint=HINT) from None
    control = request.app[FAULTS]
    try:
        control.set_mapping(mapping, f"PUT {FAULTS_PATH}")
    except FaultError as exc:
        raise UemError(str(exc), hint=HINT) from None
    return _json(control.describe())


async def get_faults(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/admin/faults: the active plan (or none) and its counters."""
    return _json(request.app[FAULTS].describe())


async def delete_faults(request: web.Request) -> web.StreamResponse:
    """DELETE /api/v1/admin/faults: clear every fault; hung requests are released."""
    control = request.app[FAULTS]
    control.clear()
    return _json(control.describe())


ROUTES: Final = [
    web.put(FAULTS_PATH, put_faults),
    web.get(FAULTS_PATH, get_faults, allow_head=False),
    web.delete(FAULTS_PATH, delete_faults),
]
