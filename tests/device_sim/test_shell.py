"""The runner over fake transports (functions from request to response) and a manual clock."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import aiohttp
import pytest
from device_canned import (
    folder_list,
    identity,
    parsed,
    provision_final,
    provision_initial,
)

from activesync.answers import blocked_answer
from device_sim.client import DeviceClient, DeviceState, FolderSync, Provision, StepResult, Sync
from device_sim.shell import AiohttpTransport, DeviceRunner, TransportError
from device_sim.wire import HttpRequest, HttpResponse
from simclock import ManualClock


class FakeTransport:
    """Answers with ``reply(request)``; records what was sent."""

    def __init__(self, reply: Callable[[HttpRequest], HttpResponse]) -> None:
        self.reply = reply
        self.sent: list[HttpRequest] = []

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        self.sent.append(request)
        return self.reply(request)


def exchange_like(version: str) -> Callable[[HttpRequest], HttpResponse]:
    """Provision in two phases, then a folder list; anything else blocked."""

    def reply(request: HttpRequest) -> HttpResponse:
        line = parsed(request)
        if line.command == "Provision":
            if line.policy_key == 0:
                return provision_initial(version)
            return provision_final(version)
        if line.command == "FolderSync":
            return folder_list()
        answer = blocked_answer(line.command, version)
        return HttpResponse(answer.http_status, answer.headers, answer.body)

    return reply


async def test_script_runs_until_the_device_is_blocked_and_reports_the_code() -> None:
    async with asyncio.timeout(5):
        transport = FakeTransport(exchange_like("16.1"))
        log: list[StepResult] = []
        runner = DeviceRunner(
            DeviceClient(identity("16.1")), transport, ManualClock(), on_result=log.append
        )
        report = await runner.run_script([Provision(), FolderSync(), Sync(), FolderSync()])
        assert report.state is DeviceState.BLOCKED
        assert report.block is not None
        assert report.block.code == 129
        assert report.steps_run == 3
        assert report.steps_succeeded == 2
        assert not report.succeeded
        assert [r.label for r in log] == [
            "Provision",
            "Provision (acknowledge)",
            "FolderSync",
            "Sync Inbox",
        ]
        assert list(report.results) == log


async def test_backoff_sleeps_on_the_injected_clock_before_resending() -> None:
    async with asyncio.timeout(5):
        answers = [HttpResponse(503, [("Retry-After", "30")]), provision_initial("16.1")]

        def reply(request: HttpRequest) -> HttpResponse:
            return answers.pop(0) if answers else provision_final("16.1")

        clock = ManualClock()
        transport = FakeTransport(reply)
        runner = DeviceRunner(DeviceClient(identity("16.1")), transport, clock)
        task = asyncio.create_task(runner.run_step(Provision()))
        for _ in range(1000):
            if clock.pending_sleepers:
                break
            await asyncio.sleep(0)
        assert len(transport.sent) == 1
        await clock.advance(29)
        assert len(transport.sent) == 1
        await clock.advance(1)
        results, ok = await task
        assert ok
        assert transport.sent[1] == transport.sent[0]
        assert len(transport.sent) == 3
        assert results[0].details["backoff_seconds"] == 30.0


async def test_a_request_without_answer_times_out_and_stops_the_script() -> None:
    async with asyncio.timeout(5):

        class Silent:
            async def __call__(self, request: HttpRequest) -> HttpResponse:
                await asyncio.sleep(3600)
                raise AssertionError("unreachable")

        runner = DeviceRunner(
            DeviceClient(identity("16.1")), Silent(), ManualClock(), request_timeout=0.05
        )
        report = await runner.run_script([Provision(), FolderSync()])
        assert report.error is not None
        assert "no response within 0.05 s" in report.error
        assert report.steps_run == 1
        assert report.results[-1].http_status == 0
        # The half-done provisioning is dropped; the device can start again.
        assert report.state is DeviceState.NEW


async def test_connection_refused_names_the_url() -> None:
    async with asyncio.timeout(5), aiohttp.ClientSession() as session:
        # Port 9 (discard) on loopback is closed in test environments.
        transport = AiohttpTransport(session, "http://127.0.0.1:9/")
        with pytest.raises(TransportError, match=re.escape("cannot connect to http://127.0.0.1:9")):
            await transport(HttpRequest("OPTIONS", "/Microsoft-Server-ActiveSync"))
