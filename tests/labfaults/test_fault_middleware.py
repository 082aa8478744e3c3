"""The aiohttp shell on real loopback sockets: the middleware and the listener switch."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from labfaults import FAULT_HEADER, FaultControl, ListenerSwitch, TcpListener, fault_middleware

HOST = "127.0.0.1"


def build_app(control: FaultControl) -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    def respond(status: int, message: str) -> web.Response:
        return web.Response(status=status, text=message)

    app = web.Application(
        middlewares=[
            fault_middleware(
                control, exempt=lambda r: r.path == "/faults", respond=respond, command_of=None
            )
        ]
    )
    app.router.add_get("/hello", hello)
    app.router.add_get("/faults", hello)
    return app


@contextlib.asynccontextmanager
async def serving(control: FaultControl) -> AsyncIterator[tuple[web.AppRunner, TcpListener, str]]:
    runner = web.AppRunner(build_app(control), handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    listener = TcpListener(runner, HOST, 0)
    await listener.start()
    port = int(runner.addresses[-1][1])
    listener.port = port
    try:
        yield runner, listener, f"http://{HOST}:{port}"
    finally:
        await runner.cleanup()


async def test_latency_waits_at_least_the_fixed_delay() -> None:
    control = FaultControl()
    control.set_mapping({"latency": {"fixed_s": 0.2}})
    async with asyncio.timeout(10), serving(control) as (_, _, url), aiohttp.ClientSession() as s:
        started = time.monotonic()
        async with s.get(url + "/hello") as response:
            assert response.status == 200
        assert time.monotonic() - started >= 0.2


async def test_injected_status_carries_the_fault_header() -> None:
    control = FaultControl()
    control.set_mapping({"error_rate": {"rate": 1, "status": 502}})
    async with asyncio.timeout(10), serving(control) as (_, _, url), aiohttp.ClientSession() as s:
        async with s.get(url + "/hello") as response:
            assert response.status == 502
            assert response.headers[FAULT_HEADER].startswith("error_rate 1")
        async with s.get(url + "/faults") as response:
            assert response.status == 200


async def test_hang_is_released_by_the_next_change_and_then_served() -> None:
    control = FaultControl()
    control.set_mapping({"hang": True})
    async with asyncio.timeout(10), serving(control) as (_, _, url), aiohttp.ClientSession() as s:
        request = asyncio.ensure_future(s.get(url + "/hello"))
        done, _ = await asyncio.wait({request}, timeout=0.3)
        assert not done
        control.clear()
        async with await request as response:
            assert await response.text() == "hello"


async def test_hang_drops_the_connection_at_its_bound() -> None:
    control = FaultControl()
    control.set_mapping({"hang": {"max_s": 0.2}})
    async with asyncio.timeout(10), serving(control) as (_, _, url), aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with s.get(url + "/hello"):
                pass


async def test_down_drops_connections_in_band() -> None:
    control = FaultControl()
    control.set_mapping({"down": True})
    async with asyncio.timeout(10), serving(control) as (_, _, url), aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with s.get(url + "/hello"):
                pass


async def test_listener_switch_refuses_connections_while_down_and_reopens() -> None:
    control = FaultControl()
    async with asyncio.timeout(10), serving(control) as (_, listener, url):
        switch = ListenerSwitch(listener.stop, listener.start)
        switch.follow(control)
        # A fresh connection each time: a kept-alive one would bypass the listener.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as s:
            control.set_mapping({"down": True})
            await switch.settled()
            assert switch.is_down
            assert not listener.listening
            with pytest.raises(aiohttp.ClientConnectorError):
                async with s.get(url + "/hello"):
                    pass
            control.set_mapping({"down": True, "scope": {"path_prefix": "/other"}})
            await switch.settled()
            async with s.get(url + "/hello") as response:
                assert response.status == 200
            control.set_mapping({"down": True})
            control.clear()
            control.set_mapping({"down": True})
            await switch.settled()
            assert switch.is_down
            await switch.close()
            assert listener.listening
            control.clear()
            async with s.get(url + "/hello") as response:
                assert response.status == 200
