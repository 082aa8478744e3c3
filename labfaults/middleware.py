"""The aiohttp shell of fault injection: one middleware that applies a ``FaultControl``.

Responsibility: for each request a server receives, ask its ``FaultControl`` what to do and do
it: wait (latency), answer with the chosen status (through the server's own ``respond`` so the
body has the server's error format), hang until the plan changes, or drop the connection. It
must not decide anything (``labfaults.state`` does) and never touches exempt requests (the
fault admin routes, so a fault can always be cleared).

Theory of operation: with no active plan the middleware costs one attribute read. Waiting uses
real time (``asyncio.sleep``), never the server's injected clock: on a lab's virtual clock a
delay would otherwise last until someone advances the clock, and a scenario would stall.
A hung request parks on a future that the control's subscriber resolves at the next change
(set or clear); it then proceeds normally. At its bound (``Hang.max_s``) the connection is
dropped. Dropping aborts the transport (the client sees a reset, not an answer): this is the
in-band half of ``down``; ``labfaults.listener`` is the other half, closing the listener so
new connections are refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from labfaults.control import FaultControl
from labfaults.plan import FaultPlan
from labfaults.state import Outcome, RequestFacts

#: Response header naming the fault that produced an injected answer.
FAULT_HEADER: Final = "X-SentrySim-Fault"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Builds the server's error response for an injected status: (status, message) -> response.
Responder = Callable[[int, str], web.StreamResponse]


class _Releases:
    """Futures of hung requests, resolved together at the next plan change."""

    def __init__(self) -> None:
        self._waiting: set[asyncio.Future[None]] = set()

    def release(self, _: FaultPlan | None) -> None:
        waiting, self._waiting = self._waiting, set()
        for future in waiting:
            if not future.done():
                future.set_result(None)

    async def wait(self, bound_s: float) -> bool:
        """True when released by a change, False when ``bound_s`` seconds passed first."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.add(future)
        try:
            done, _ = await asyncio.wait({future}, timeout=bound_s)
            return future in done
        finally:
            self._waiting.discard(future)
            if not future.done():
                future.cancel()

    @property
    def count(self) -> int:
        return len(self._waiting)


def drop_connection(request: web.Request) -> web.StreamResponse:
    """Abort the request's connection; the returned response is never sent (the transport is
    gone, so aiohttp sees a client disconnection and closes quietly)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=503, text="connection dropped by an injected fault")


def fault_middleware(
    control: FaultControl,
    *,
    exempt: Callable[[web.Request], bool],
    respond: Responder,
    command_of: Callable[[web.Request], str | None] | None = None,
) -> Middleware:
    """The middleware applying ``control``; put it first so faults apply to every answer.

    ``exempt(request)`` is true for requests never faulted (the fault admin routes);
    ``command_of(request)`` names the request's command when a rule is scoped by command.
    """
    releases = _Releases()
    control.subscribe(releases.release)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not control.active or exempt(request):
            return await handler(request)
        command = None
        if command_of is not None and control.needs_command:
            command = command_of(request)
        action = control.decide(RequestFacts(request.method, request.path, command))
        if action.delay_s > 0:
            await asyncio.sleep(action.delay_s)
        if action.outcome is Outcome.PROCEED:
            return await handler(request)
        if action.outcome is Outcome.RESPOND:
            assert action.status is not None
            response = respond(action.status, f"injected fault: {action.reason}")
            response.headers[FAULT_HEADER] = action.reason
            return response
        if action.outcome is Outcome.HANG:
            assert action.hang_max_s is not None
            if await releases.wait(action.hang_max_s):
                return await handler(request)
        return drop_connection(request)

    return middleware
