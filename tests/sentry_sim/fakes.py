"""Fakes for the gatekeeper's integration tests: a UEM and an EAS upstream on loopback.

Both are small aiohttp apps on 127.0.0.1 port 0 that speak just enough of their protocol (the
UEM through ``uem_sim.contract``) and record what they were sent. No mocks: real sockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import attrs
from aiohttp import web

from scenarios.serving import StartedSite
from uem_sim.contract import (
    GATEKEEPERS_PATH,
    RECORDS_PATH,
    REPORTS_PATH,
    AccessState,
    ActiveSyncPolicy,
    ChangesResponse,
    DecisionMessage,
    GatekeeperRegistered,
    PushMessage,
    RegisterGatekeeper,
    ReportRequest,
    from_json,
    to_json,
)

EAS = "/Microsoft-Server-ActiveSync"
POLICY_V1 = ActiveSyncPolicy(
    version=1, settings={"DevicePasswordEnabled": 1, "MinDevicePasswordLength": 6}
)


def decision(
    user: str,
    device_id: str,
    state: AccessState = AccessState.ALLOW,
    *,
    version: int,
    reasons: int = 0,
    policy: ActiveSyncPolicy = POLICY_V1,
    removed: bool = False,
) -> DecisionMessage:
    return DecisionMessage(
        user=user,
        device_id=device_id,
        state=state,
        reasons=reasons,
        explanation=f"test decision {state.value}",
        activesync_policy=policy,
        record_version=version,
        decided_at=1.0,
        registered=True,
        removed=removed,
    )


@attrs.define(eq=False)
class FakeUem:
    """Answers reports with ``verdicts[(user, device)]`` (ALLOW by default)."""

    verdicts: dict[tuple[str, str], tuple[AccessState, int]] = attrs.field(factory=dict)
    reports: list[ReportRequest] = attrs.field(factory=list)
    registrations: list[RegisterGatekeeper] = attrs.field(factory=list)
    changes: list[DecisionMessage] = attrs.field(factory=list)
    changes_asked: list[int] = attrs.field(factory=list)
    down: bool = False
    report_delay_s: float = 0.0
    version: int = 0
    policy: ActiveSyncPolicy = POLICY_V1
    site: StartedSite | None = None

    @property
    def url(self) -> str:
        assert self.site is not None
        return self.site.url

    def next_version(self) -> int:
        self.version += 1
        return self.version

    async def on_report(self, request: web.Request) -> web.Response:
        if self.down:
            return web.json_response({"error": "down for the test"}, status=503)
        report = from_json(ReportRequest, await request.read())
        self.reports.append(report)
        if self.report_delay_s:
            await asyncio.sleep(self.report_delay_s)
        state, reasons = self.verdicts.get((report.user, report.device_id), (AccessState.ALLOW, 0))
        answer = decision(
            report.user,
            report.device_id,
            state,
            version=self.next_version(),
            reasons=reasons,
            policy=self.policy,
        )
        self.changes.append(answer)
        return web.Response(text=to_json(answer), content_type="application/json")

    async def on_records(self, request: web.Request) -> web.Response:
        if self.down:
            return web.json_response({"error": "down for the test"}, status=503)
        since = int(request.query.get("since", "0"))
        self.changes_asked.append(since)
        records = [c for c in self.changes if c.record_version > since]
        answer = ChangesResponse(version=self.version, records=tuple(records), full=since == 0)
        return web.Response(text=to_json(answer), content_type="application/json")

    async def on_register(self, request: web.Request) -> web.Response:
        if self.down:
            return web.json_response({"error": "down for the test"}, status=503)
        message = from_json(RegisterGatekeeper, await request.read())
        self.registrations.append(message)
        answer = GatekeeperRegistered(message.gatekeeper_id, self.version)
        return web.Response(text=to_json(answer), content_type="application/json")

    async def push(self, *decisions: DecisionMessage, since: int | None = None) -> int:
        """POST a push to the last registered URL; returns the HTTP status."""
        self.changes.extend(decisions)
        target = self.registrations[-1]
        message = PushMessage(
            gatekeeper_id=target.gatekeeper_id,
            since=self.version - len(decisions) if since is None else since,
            version=self.version,
            records=decisions,
        )
        async with (
            aiohttp.ClientSession() as session,
            session.post(target.push_url, data=to_json(message)) as response,
        ):
            return response.status

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(REPORTS_PATH, self.on_report)
        app.router.add_get(RECORDS_PATH, self.on_records)
        app.router.add_post(GATEKEEPERS_PATH, self.on_register)
        return app


@attrs.define(eq=False)
class FakeUpstream:
    """Records every request; answers 200 with a small body (or what ``respond`` says)."""

    seen: list[dict[str, Any]] = attrs.field(factory=list)
    ping_release: asyncio.Event = attrs.field(factory=asyncio.Event)
    site: StartedSite | None = None
    respond: Callable[[web.Request, bytes], web.StreamResponse | None] | None = None

    @property
    def url(self) -> str:
        assert self.site is not None
        return self.site.url

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "headers": dict(request.headers),
                "header_names": {k.lower() for k in request.headers},
                "body": body,
            }
        )
        if request.method == "OPTIONS":
            return web.Response(
                status=200,
                headers={
                    "MS-ASProtocolVersions": "2.5,12.0,12.1,14.0,14.1,16.0,16.1",
                    "MS-ASProtocolCommands": "Sync,FolderSync,Ping,Provision",
                },
            )
        if "Cmd=Ping" in request.raw_path:
            await self.ping_release.wait()
        if self.respond is not None:
            custom = self.respond(request, body)
            if custom is not None:
                return custom
        return web.Response(
            status=200,
            body=b"upstream:" + body,
            headers={
                "Content-Type": "application/vnd.ms-sync.wbxml",
                "Connection": "X-Hop-Only",
                "X-Hop-Only": "must not reach the device",
                "X-End-To-End": "kept",
            },
        )

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


def query(user: str = "alice", device: str = "DEV1", cmd: str = "FolderSync") -> str:
    """A plain-form EAS request path."""
    return f"{EAS}?Cmd={cmd}&User={user}&DeviceId={device}&DeviceType=iPhone"


def headers(version: str = "14.1", **extra: str) -> dict[str, str]:
    """The protocol headers of a plain-form request."""
    return {
        "MS-ASProtocolVersion": version,
        "Content-Type": "application/vnd.ms-sync.wbxml",
        **extra,
    }


StartSentry = Callable[..., Any]


async def eventually(check: Callable[[], bool], *, within: float = 2.0) -> None:
    """Poll ``check`` until it holds (bounded)."""
    async with asyncio.timeout(within):
        # The state is changed by another actor over a socket: polling is the honest wait.
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
