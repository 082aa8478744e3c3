"""Stand-ins shared by the UEM's tests: a gatekeeper's push listener on real loopback HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import attrs
from aiohttp import web

from scenarios.serving import start_site
from uem_sim import contract
from uem_sim.contract import DecisionMessage, PushMessage


@attrs.define
class PushReceiver:
    """One gatekeeper's push port: keeps every batch that arrives and answers 204."""

    received: list[PushMessage] = attrs.field(factory=list)
    arrived: asyncio.Event = attrs.field(factory=asyncio.Event)

    async def push(self, request: web.Request) -> web.Response:
        self.received.append(contract.from_json(PushMessage, await request.read()))
        self.arrived.set()
        return web.Response(status=204)

    async def next_batch(self) -> PushMessage:
        await asyncio.wait_for(self.arrived.wait(), 2.0)
        self.arrived.clear()
        return self.received[-1]

    def records(self) -> list[DecisionMessage]:
        return [r for m in self.received for r in m.records]


@contextlib.asynccontextmanager
async def push_receiver() -> AsyncIterator[tuple[PushReceiver, str]]:
    """A ``PushReceiver`` listening on 127.0.0.1, and its push URL."""
    box = PushReceiver()
    app = web.Application()
    app.router.add_post("/push", box.push)
    site = await start_site(app)
    try:
        yield box, f"{site.url}/push"
    finally:
        await site.stop()
