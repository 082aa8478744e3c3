"""The UEM as an aiohttp application: ``make_app(config, *, clock, admin_token)``.

Responsibility: compose the registry, store, events, pusher and handlers into one app, with
its middlewares (errors as JSON, admin token) and background work (push workers, the periodic
compliance check) in ``cleanup_ctx``. Must not: decide, or hold state outside the app's keys.

One app serves both APIs. The gatekeeper API (``/api/v1/sentry/...``) and the device agent's
check-in (``/api/v1/mdm/checkin``) are open, as Sentry and Mobile@Work reach Core; everything
under ``/api/v1/admin/`` and ``/api/v1/eas/`` needs the admin token (``Authorization: Bearer
<token>`` or ``X-Admin-Token: <token>``, compared in constant time; three wrong tokens lock
the client out for 15 minutes: ``labauth``). The lab and
``sentry-sim uem`` listen on two ports (``uem_url`` and ``uem_admin_url``) served by this same
app, so both URLs work for every route and the token is what protects the admin API.

Faults (``uem_sim.faults``, docs/faults.md): the first middleware applies the active fault
plan of ``app[uem_faults.FAULTS]`` (latency, injected errors, hang, dropped connections) to
every route but ``/api/v1/admin/faults`` itself.

Start-up: with a state directory holding a database, the stored registry wins over the config
(delete the directory to reseed); otherwise the registry is seeded from the config.

TLS (docs/tls.md, "UEM TLS"): ``tls`` (``uem_sim.tls.UemTls``) carries the swappable server
contexts of the two ports, which the caller gives its listeners (``tls.context("api")``), and
the roots the outgoing client trusts. Every outgoing call (the pusher's) goes through one
``uem_sim.outgoing_client.OutgoingClient`` made in ``cleanup_ctx`` from
``config.outgoing_tls``; the admin API's Certificate Mgmt and outgoing-TLS routes
(``uem_sim.handlers``) change both at run time. Outgoing TLS settings applied or reset through
the admin API are stored (``SqliteStore.save_outgoing_tls``) and win over ``config.outgoing_tls``
at start; a stored row this version cannot use (an unknown suite name...) is logged as a
WARNING and the config is used instead (the admin view's ``source_problem`` says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

from aiohttp import web

from labauth import Lockout, admin_guard
from labfaults import FaultControl
from simclock import Clock, SystemClock
from uem_sim import faults as uem_faults
from uem_sim.config import UemConfig
from uem_sim.contract import ContractError
from uem_sim.errors import UemError
from uem_sim.events import EventBus
from uem_sim.handlers import ADMIN_PREFIXES, OUTGOING, ROUTES, TLS, UEM, _json
from uem_sim.outgoing_client import RESTART_S, OutgoingClient
from uem_sim.outgoing_tls import (
    SOURCE_CONFIG,
    SOURCE_STORED,
    OutgoingTlsError,
    OutgoingTlsSettings,
    SettingsOrigin,
)
from uem_sim.push import Pusher
from uem_sim.registry import Registry
from uem_sim.service import Uem
from uem_sim.store import SqliteStore, StoredOutgoingTls
from uem_sim.tls import UemTls, read_roots

log = logging.getLogger("uem_sim")

ADMIN_TOKEN: Final = web.AppKey("admin_token", str)
MAX_BODY_BYTES: Final = 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as ``{"error": ..., "hint": ...}`` with the right status."""
    try:
        return await handler(request)
    except UemError as exc:
        return _json({"error": exc.message, "hint": exc.hint}, status=exc.http_status)
    except ContractError as exc:
        return _json(
            {"error": f"request body: {exc}", "hint": "see uem_sim/contract.py for the message"},
            status=400,
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        hint = ""
        if exc.status == 404:
            hint = "see uem_sim/handlers.py for the routes"
        elif exc.status == 405:
            hint = f"allowed methods: {exc.headers.get('Allow', '?')}"
        elif exc.status == 413:
            hint = f"bodies are limited to {MAX_BODY_BYTES} bytes"
        return _json({"error": exc.reason, "hint": hint}, status=exc.status)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _json({"error": "internal error", "hint": "see the UEM's log"}, status=500)


def _is_admin_route(request: web.Request) -> bool:
    return request.path.startswith(ADMIN_PREFIXES)


def _stored_outgoing(store: SqliteStore) -> tuple[StoredOutgoingTls | None, str | None]:
    """The stored outgoing TLS settings, or None and why they cannot be used (logged)."""
    try:
        return store.load_outgoing_tls(), None
    except OutgoingTlsError as exc:
        return None, _fallback_warning(str(exc))


def _fallback_warning(problem: str) -> str:
    message = (
        f"stored outgoing TLS settings not used: {problem}; using the config's "
        "uem.outgoing_tls instead (PUT /api/v1/outgoing-tls or POST /api/v1/outgoing-tls/reset "
        "replaces the stored settings)"
    )
    log.warning("%s", message)
    return message


def make_app(
    config: UemConfig,
    *,
    clock: Clock | None = None,
    admin_token: str,
    events: EventBus | None = None,
    push_timeout_s: float = 2.0,
    faults: FaultControl | None = None,
    lockout: Lockout | None = None,
    tls: UemTls | None = None,
    outgoing_restart_s: float = RESTART_S,
) -> web.Application:
    """Build the UEM app; nothing starts until the app runs (see the module docstring).

    ``tls``: the UEM's TLS (``UemTls.from_config``); None means both ports plain HTTP and
    outgoing calls trusting ``uem.outgoing_tls.trust`` (read here) or the system store.
    ``outgoing_restart_s``: how long outgoing calls are refused after new outgoing TLS
    settings are applied (the restart of the outgoing client).

    ``faults``: the fault switch to use (a fresh one by default); it is ``app[uem_faults.FAULTS]``
    either way, and its middleware comes first so injected faults cover every answer.
    ``lockout``: the failed-token table of the admin guard (a fresh one with the STIG
    defaults when None).
    """
    if not admin_token:
        raise ValueError("admin_token must not be empty")
    the_clock: Clock = clock if clock is not None else SystemClock()
    bus = events if events is not None else EventBus()
    control = faults if faults is not None else FaultControl()
    # Admin routes need the admin token (labauth: constant time, 3 wrong tokens lock the
    # client out for 15 minutes); the gatekeeper and check-in routes do not.
    guard = admin_guard(
        admin_token,
        clock=the_clock,
        protected=_is_admin_route,
        lockout=lockout,
        accept_x_admin_token=True,
        hint="send 'Authorization: Bearer <admin_token>' (the ready file has it)",
    )
    app = web.Application(
        middlewares=[uem_faults.middleware(control), error_middleware, guard],
        client_max_size=MAX_BODY_BYTES,
    )
    app[ADMIN_TOKEN] = admin_token
    app[uem_faults.FAULTS] = control
    if tls is None:
        trust = None
        if config.outgoing_trust is not None:
            trust = read_roots(config.outgoing_trust, config.source, "uem.outgoing_tls.trust")
        tls = UemTls(outgoing_trust_pem=trust, settings=config.tls)
    app[TLS] = tls
    the_tls = tls
    app.add_routes(ROUTES)
    app.add_routes(uem_faults.ROUTES)

    async def state(app: web.Application) -> AsyncIterator[None]:
        store = SqliteStore(config.state_dir)
        try:
            snapshot = store.load()
            if snapshot is None:
                registry = Registry.from_config(config, the_clock.now())
            else:
                log.info(
                    "UEM state loaded from %s (config users/devices not reapplied)", store.path
                )
                registry = Registry.from_snapshot(snapshot)
            uem = Uem(registry=registry, store=store, events=bus, clock=the_clock)
            uem.commit(registry.reevaluate_all(the_clock.now()))
            app[UEM] = uem
            yield
        finally:
            store.close()

    async def pushing(app: web.Application) -> AsyncIterator[None]:
        uem = app[UEM]

        def outgoing_client(
            settings: OutgoingTlsSettings, generation: int, origin: SettingsOrigin
        ) -> OutgoingClient:
            return OutgoingClient(
                settings,
                clock=the_clock,
                events=bus,
                trust_pem=the_tls.outgoing_trust_pem,
                restart_s=outgoing_restart_s,
                generation=generation,
                origin=origin,
            )

        stored, problem = _stored_outgoing(uem.store)
        fallback = SettingsOrigin(SOURCE_CONFIG, problem)
        if stored is None:
            client = outgoing_client(config.outgoing_tls, 0, fallback)
        else:
            try:
                client = outgoing_client(
                    stored.settings, stored.applied, SettingsOrigin(SOURCE_STORED)
                )
                log.info(
                    "outgoing TLS settings loaded from %s (applied %d time(s) through the "
                    "admin API; they win over uem.outgoing_tls)",
                    uem.store.path,
                    stored.applied,
                )
            except OutgoingTlsError as exc:
                # Valid names this OpenSSL cannot offer (a build without CHACHA20...).
                fallback = SettingsOrigin(SOURCE_CONFIG, _fallback_warning(str(exc)))
                client = outgoing_client(config.outgoing_tls, 0, fallback)
        app[OUTGOING] = client
        pusher = Pusher(client, the_clock, bus, timeout_s=push_timeout_s)
        try:
            for gatekeeper_id, url in uem.registry.gatekeepers.items():
                pusher.register(gatekeeper_id, url)
            uem.pusher = pusher
            yield
        finally:
            uem.pusher = None
            await pusher.close()
            await client.close()

    async def compliance_checks(app: web.Application) -> AsyncIterator[None]:
        uem = app[UEM]

        async def loop() -> None:
            while True:
                await the_clock.sleep(config.compliance_check_interval_s)
                uem.commit(uem.registry.reevaluate_all(the_clock.now()))

        task = asyncio.get_running_loop().create_task(loop(), name="uem-compliance-check")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.extend([state, pushing, compliance_checks])
    return app
