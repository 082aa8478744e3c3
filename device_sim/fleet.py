"""Many simulated phones at once, for load runs, scenarios and the demo.

Responsibility: build a fleet of device identities from a template, and run the same script
on every device concurrently through one shared ``aiohttp.ClientSession`` (one connection
pool), with a bound on how many devices are active at a time. It must not decide anything
about EAS (each device's ``DeviceClient`` does) nor print (results go to a callback).

Theory of operation: ``make_identities`` numbers users and device ids from templates;
``run_fleet`` gives each identity a ``DeviceClient`` and a ``DeviceRunner`` and gathers their
``ScriptReport``s under a semaphore. One device's transport failure ends only that device's
script; the fleet report counts how many succeeded, were blocked, wiped or failed.

TLS: ``tls`` (a ``DeviceTls``, an ``ssl.SSLContext`` or a root PEM path) is shared by every
device of the fleet; ``tls_for`` gives each device its own (a per-device client certificate
for mutual TLS), and wins over ``tls`` for the devices it answers.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Callable, Sequence
from typing import Final

import aiohttp
import attrs

from activesync.versions import ProtocolVersion
from device_sim.client import DeviceClient, DeviceState, Step, StepResult
from device_sim.shell import (
    DEFAULT_TIMEOUT,
    AiohttpTransport,
    DeviceRunner,
    DeviceTls,
    ScriptReport,
)
from device_sim.wire import DeviceIdentity, QueryForm, Quirk
from simclock import Clock

#: Fleets larger than this are a load generator's job (``loadtest``), not this helper's.
MAX_FLEET: Final = 100_000


def make_identities(
    count: int,
    *,
    user: str = "user{n}",
    password: str = "password",
    device_id: str = "SIM{n:08d}",
    device_type: str = "iPhone",
    version: ProtocolVersion | str = ProtocolVersion.V16_1,
    query_form: QueryForm = QueryForm.PLAIN,
    quirks: frozenset[Quirk] = frozenset(),
    start: int = 1,
) -> list[DeviceIdentity]:
    """``count`` identities; ``{n}`` in ``user``/``password``/``device_id`` is the number."""
    if not 1 <= count <= MAX_FLEET:
        raise ValueError(f"fleet size: expected 1..{MAX_FLEET}, got {count}")
    return [
        DeviceIdentity(
            user=user.format(n=n),
            password=password.format(n=n),
            device_id=device_id.format(n=n),
            device_type=device_type,
            version=version,
            query_form=query_form,
            quirks=quirks,
        )
        for n in range(start, start + count)
    ]


@attrs.frozen(kw_only=True)
class FleetReport:
    """Every device's report, and the totals people ask for first."""

    reports: tuple[ScriptReport, ...]

    @property
    def succeeded(self) -> int:
        return sum(r.succeeded for r in self.reports)

    @property
    def blocked(self) -> int:
        return sum(r.state is DeviceState.BLOCKED for r in self.reports)

    @property
    def wiped(self) -> int:
        return sum(r.state is DeviceState.WIPED for r in self.reports)

    @property
    def errors(self) -> int:
        return sum(r.error is not None for r in self.reports)


async def run_fleet(
    identities: Sequence[DeviceIdentity],
    steps: Sequence[Step],
    *,
    base_url: str,
    clock: Clock,
    concurrency: int = 100,
    request_timeout: float = DEFAULT_TIMEOUT,
    on_result: Callable[[DeviceIdentity, StepResult], None] | None = None,
    session: aiohttp.ClientSession | None = None,
    tls: DeviceTls | ssl.SSLContext | str | os.PathLike[str] | None = None,
    tls_for: Callable[[DeviceIdentity], DeviceTls | None] | None = None,
) -> FleetReport:
    """Run ``steps`` on every identity against ``base_url``; at most ``concurrency`` at once.

    Pass ``session`` to share a pool the caller owns; otherwise one is made (its connection
    limit is ``concurrency``) and closed before returning. ``tls``: how every device speaks
    https (the root it trusts); ``tls_for(identity)``: a device's own, e.g. its client
    certificate (None: fall back to ``tls``).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency: expected at least 1, got {concurrency}")
    gate = asyncio.Semaphore(concurrency)
    shared = None if tls is None else DeviceTls.coerce(tls)

    async def one(http: aiohttp.ClientSession, identity: DeviceIdentity) -> ScriptReport:
        def forward(result: StepResult) -> None:
            if on_result is not None:
                on_result(identity, result)

        own = tls_for(identity) if tls_for is not None else None
        runner = DeviceRunner(
            DeviceClient(identity),
            AiohttpTransport(http, base_url, tls=own or shared),
            clock,
            on_result=forward,
            request_timeout=request_timeout,
        )
        async with gate:
            return await runner.run_script(steps)

    async def all_of(http: aiohttp.ClientSession) -> FleetReport:
        reports = await asyncio.gather(*(one(http, identity) for identity in identities))
        return FleetReport(reports=tuple(reports))

    if session is not None:
        return await all_of(session)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as own:
        return await all_of(own)
