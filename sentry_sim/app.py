"""Building and starting the gatekeeper's apps.

Responsibility: compose the device-facing app (``/Microsoft-Server-ActiveSync``), the admin
app (which also receives the UEM's pushes) and the running ``Sentry`` behind both; start and
stop them. Nothing is built at import time. It must not hold logic of its own.

Theory of operation: ``make_app`` returns the device-facing ``web.Application``; its cleanup
context starts the gatekeeper (sessions, persisted state, loops) and stops it (final persist).
The admin app is ``app[ADMIN_APP]``; it shares the gatekeeper and has no lifecycle of its own,
so start the device app first and stop it last, then tell the gatekeeper its push URL
(``Sentry.set_push_url(admin_url + admin.push_path(sentry))``): ``scenarios.cli_sentry.serve``
does exactly that, and with ``sentry.fast_lane`` it puts the device app on an internal loopback
port behind the fast lane (``sentry_sim.lane``), which takes the device port.

With ``tls`` (``sentry_sim.tls.SentryTls``) the admin app serves the Certificate Mgmt routes,
and when the device port asks for client certificates the device app checks each request
against its connection's certificate (``CLIENT_CHECK``, a middleware after the error one; the
fast lane gets the same check from ``app[CLIENT_CHECK]``).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from sentry_sim.admin import METRICS, make_admin_app
from sentry_sim.config import SentryConfig
from sentry_sim.events import EventBus
from sentry_sim.handlers import SENTRY, activesync, error_middleware
from sentry_sim.metrics import Metrics
from sentry_sim.service import Sentry
from sentry_sim.tls import ClientCheck, SentryTls
from simclock import Clock, SystemClock

#: The admin app that belongs to a device-facing app.
ADMIN_APP: Final = web.AppKey("admin_app", web.Application)
#: The admin token of the admin app.
TOKEN: Final = web.AppKey("token", str)
#: The device port's mutual-TLS check (absent when client certificates are off).
CLIENT_CHECK: Final = web.AppKey("client_check", ClientCheck)


def make_app(
    config: SentryConfig,
    *,
    upstream_url: str,
    uem_url: str,
    clock: Clock | None = None,
    admin_token: str | None = None,
    bus: EventBus | None = None,
    policy_key_secret: str | None = None,
    tls: SentryTls | None = None,
) -> web.Application:
    """The device-facing app of a gatekeeper in front of ``upstream_url``, asking ``uem_url``
    (``policy_key_secret``: see ``Sentry.create``; ``tls``: the module docstring). The
    listeners are not started here: ``scenarios.cli_sentry.serve`` gives them the contexts."""
    sentry = Sentry.create(
        config,
        upstream_url=upstream_url,
        uem_url=uem_url,
        clock=clock or SystemClock(),
        bus=bus,
        policy_key_secret=policy_key_secret,
        client_tls=None if tls is None else tls.outgoing_context(),
    )
    metrics = Metrics()
    metrics.follow(sentry.bus)
    token = admin_token or secrets.token_urlsafe(24)
    check = None if tls is None else tls.client_check(sentry)
    middlewares = [error_middleware] if check is None else [error_middleware, check.middleware()]
    app = web.Application(middlewares=middlewares)
    app[SENTRY] = sentry
    app[METRICS] = metrics
    app[TOKEN] = token
    if check is not None:
        app[CLIENT_CHECK] = check
    app[ADMIN_APP] = make_admin_app(sentry, admin_token=token, metrics=metrics, tls=tls)
    # Every path reaches the handler: the EAS path is matched case-insensitively there, like
    # IIS, and anything else gets the request-line parser's 404.
    app.router.add_route("*", "/{tail:.*}", activesync)
    app.cleanup_ctx.append(_lifecycle)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    sentry = app[SENTRY]
    await sentry.start()
    yield
    await sentry.stop()
