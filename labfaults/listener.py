"""True "connection refused" for a whole-server ``down``: close the listener, reopen it later.

Responsibility: follow a ``FaultControl`` and, while its plan takes the whole server down
(``FaultPlan.down``), keep one listener closed, reopening it on the same port when the fault is
cleared. It must not decide what is down (the plan says) and does nothing to connections that
are already open: the fault middleware drops those.

Theory of operation: the control calls ``ListenerSwitch``'s subscriber synchronously on every
change, from inside the event loop (an admin request or a scenario step). The subscriber only
records the wanted state and starts one reconciling task; the task calls ``stop``/``start``
until the listener matches the latest wanted state, so quick down/up/down changes end in the
right state. ``settled()`` waits for that. ``TcpListener`` is the stop/start pair for an aiohttp
``AppRunner``: the lab gives each listener of an actor its own switch, and should keep the
listener serving the fault admin API up (the UEM's admin port), or nothing could clear the
fault but the lab itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import attrs
from aiohttp import web

from labfaults.control import FaultControl
from labfaults.plan import FaultPlan


@attrs.define(eq=False)
class TcpListener:
    """One ``TCPSite`` of a running ``AppRunner`` that can be closed and reopened on its port."""

    runner: web.AppRunner
    host: str
    port: int
    _site: web.TCPSite | None = attrs.field(default=None, init=False)

    @classmethod
    def adopt(cls, runner: web.AppRunner, site: web.TCPSite, host: str, port: int) -> TcpListener:
        """Take charge of a site that is already listening on ``host:port``."""
        listener = cls(runner, host, port)
        listener._site = site
        return listener

    @property
    def listening(self) -> bool:
        return self._site is not None

    async def start(self) -> None:
        if self._site is None:
            site = web.TCPSite(self.runner, self.host, self.port, reuse_address=True)
            await site.start()
            self._site = site

    async def stop(self) -> None:
        site, self._site = self._site, None
        if site is not None:
            await site.stop()


@attrs.define(eq=False)
class ListenerSwitch:
    """Calls ``stop`` when the followed control goes down, ``start`` when it comes back."""

    stop: Callable[[], Awaitable[None]]
    start: Callable[[], Awaitable[None]]
    _wanted_down: bool = attrs.field(default=False, init=False)
    _is_down: bool = attrs.field(default=False, init=False)
    _task: asyncio.Task[None] | None = attrs.field(default=None, init=False)
    _unsubscribe: Callable[[], None] | None = attrs.field(default=None, init=False)

    def follow(self, control: FaultControl) -> None:
        """Subscribe to ``control`` (one control per switch)."""
        if self._unsubscribe is not None:
            raise RuntimeError("this ListenerSwitch already follows a FaultControl")
        self._unsubscribe = control.subscribe(self._changed)
        self._changed(control.plan)

    @property
    def is_down(self) -> bool:
        """Whether the listener is closed now."""
        return self._is_down

    def _changed(self, plan: FaultPlan | None) -> None:
        self._wanted_down = plan is not None and plan.down
        if self._wanted_down != self._is_down and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(
                self._reconcile(), name="labfaults-listener-switch"
            )

    async def _reconcile(self) -> None:
        while self._wanted_down != self._is_down:
            if self._wanted_down:
                await self.stop()
                self._is_down = True
            else:
                await self.start()
                self._is_down = False

    async def settled(self) -> None:
        """Wait until the listener matches the latest plan (re-raises a failed stop/start)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        if self._task is not None and self._task.done() and not self._task.cancelled():
            self._task.result()

    async def close(self) -> None:
        """Stop following, and reopen the listener if it is closed."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._wanted_down = False
        await self.settled()
        if self._is_down:
            await self.start()
            self._is_down = False
