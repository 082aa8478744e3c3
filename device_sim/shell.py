"""The aiohttp shell around a ``DeviceClient``: send its requests, wait, sleep, report.

Responsibility: the I/O the pure client core leaves out. ``AiohttpTransport`` sends one
``HttpRequest`` over a shared ``aiohttp.ClientSession`` and returns the ``HttpResponse``;
``DeviceRunner`` drives a client through a script of steps, honouring ``Backoff`` actions on
the injected clock, bounding every request by a timeout, and handing each ``StepResult`` to a
callback (the CLI prints them, the fleet collects them). It must not decide anything about
EAS: every decision is the client's.

Theory of operation: for each step, ``begin()`` gives the first request; the loop sends it,
feeds the response to ``receive()`` and follows the action (``Send``: go on; ``Backoff``: sleep
on the clock, then resend; ``Done``: next step; ``Halt``: stop the script). A transport failure
(connection refused, timeout, oversized body) ends the step through ``client.abandon()`` and
stops the script with an error message that names the URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Final, Protocol

import aiohttp
import attrs
from yarl import URL

from device_sim.client import (
    Backoff,
    Block,
    DeviceClient,
    DeviceState,
    Done,
    Halt,
    Ping,
    Send,
    Step,
    StepResult,
)
from device_sim.wire import HttpRequest, HttpResponse
from simclock import Clock

#: Largest response body read (a Sync window of 100 mails fits many times over).
MAX_BODY: Final = 16 * 1024 * 1024
#: Seconds allowed for one ordinary request.
DEFAULT_TIMEOUT: Final = 30.0


class TransportError(Exception):
    """No usable response: connection refused, timeout, a body beyond ``MAX_BODY``."""


class Transport(Protocol):
    """Anything that turns a request into a response (aiohttp, a fake in tests)."""

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        """Send ``request``; raise ``TransportError`` when no response can be had.

        The caller bounds the call with ``asyncio.timeout``."""
        ...


class AiohttpTransport:
    """Sends requests to ``base_url`` (e.g. ``http://127.0.0.1:8443``) over ``session``."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self.base_url = base_url.rstrip("/")

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        # The query is already escaped (plain form) or base64 (which must keep its '+', '/'
        # and '='): tell yarl not to touch it.
        url = URL(self.base_url + request.path_and_query, encoded=True)
        try:
            async with self._session.request(
                request.method,
                url,
                headers=list(request.headers),
                data=request.body or None,
                allow_redirects=False,
            ) as response:
                body = await response.content.read(MAX_BODY + 1)
                if len(body) > MAX_BODY:
                    raise TransportError(
                        f"{self.base_url}: response body larger than {MAX_BODY} bytes"
                    )
                return HttpResponse(response.status, list(response.headers.items()), body)
        except aiohttp.ClientConnectorError as exc:
            raise TransportError(
                f"cannot connect to {self.base_url}: {exc.os_error.strerror or exc}"
            ) from None
        except aiohttp.ClientError as exc:
            raise TransportError(f"{self.base_url}: {type(exc).__name__}: {exc}") from None


@attrs.frozen(kw_only=True)
class ScriptReport:
    """How a script went for one device."""

    #: Every exchange in order.
    results: tuple[StepResult, ...]
    #: Steps that finished with Done(True).
    steps_succeeded: int
    #: Steps attempted.
    steps_run: int
    #: The device's state at the end.
    state: DeviceState
    #: Why the device is blocked, when it ended BLOCKED.
    block: Block | None
    #: A transport failure that stopped the script, or None.
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        """Every step ran and succeeded, and the device is neither blocked nor wiped."""
        return (
            self.error is None
            and self.steps_succeeded == self.steps_run
            and self.state not in (DeviceState.BLOCKED, DeviceState.WIPED, DeviceState.AUTH_FAILED)
        )

    @property
    def blocked(self) -> bool:
        return self.state is DeviceState.BLOCKED


@attrs.define(eq=False)
class DeviceRunner:
    """Runs one client's steps over a transport, on a clock."""

    client: DeviceClient
    transport: Transport
    clock: Clock
    #: Called with every exchange's result as it happens.
    on_result: Callable[[StepResult], None] | None = None
    #: Seconds allowed for one ordinary request; a Ping gets its heartbeat on top.
    request_timeout: float = DEFAULT_TIMEOUT

    async def run_step(self, step: Step) -> tuple[list[StepResult], bool]:
        """Run one step to its end; its results and whether it succeeded.

        Raises ``TransportError`` when no response could be had (the abandoned exchange has
        already been reported to ``on_result``).
        """
        results: list[StepResult] = []
        ok = await self._run_step(step, results)
        return results, ok

    async def run_script(self, steps: Iterable[Step]) -> ScriptReport:
        """Run ``steps`` in order; stop early when the device halts or the transport fails."""
        results: list[StepResult] = []
        run = succeeded = 0
        error: str | None = None
        for step in steps:
            run += 1
            try:
                ok = await self._run_step(step, results)
            except TransportError as exc:
                error = str(exc)
                break
            succeeded += ok
            if results and isinstance(results[-1].action, Halt):
                break
        return ScriptReport(
            results=tuple(results),
            steps_succeeded=succeeded,
            steps_run=run,
            state=self.client.state,
            block=self.client.block if self.client.state is DeviceState.BLOCKED else None,
            error=error,
        )

    async def _run_step(self, step: Step, results: list[StepResult]) -> bool:
        timeout = self.request_timeout
        if isinstance(step, Ping):
            # A Ping is held by the server for up to its heartbeat (MS-ASCMD 2.2.1.13).
            timeout += step.heartbeat
        request: HttpRequest = self.client.begin(step)
        while True:
            try:
                async with asyncio.timeout(timeout):
                    response = await self.transport(request)
            except TimeoutError:
                why = f"no response within {timeout:g} s"
                self._emit(self.client.abandon(why, self.clock.now()), results)
                raise TransportError(why) from None
            except TransportError as exc:
                self._emit(self.client.abandon(str(exc), self.clock.now()), results)
                raise
            result = self.client.receive(response, self.clock.now())
            self._emit(result, results)
            action = result.action
            if isinstance(action, Send):
                request = action.request
            elif isinstance(action, Backoff):
                await self.clock.sleep(action.seconds)
                request = action.request
            elif isinstance(action, Done):
                return action.succeeded
            else:
                assert isinstance(action, Halt)
                return False

    def _emit(self, result: StepResult, results: list[StepResult]) -> None:
        results.append(result)
        if self.on_result is not None:
            self.on_result(result)
