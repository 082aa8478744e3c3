"""A tiny EAS client and a mock Exchange on 127.0.0.1 for the exchange_sim tests."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import attrs

from activesync.commands.provision import DeviceInformation, ProvisionRequest, ProvisionResponse
from activesync.query import EasRequest
from activesync.versions import ProtocolVersion
from activesync.wbxml import Element, decode, encode
from exchange_sim.app import make_app
from exchange_sim.config import ExchangeConfig
from scenarios.serving import StartedSite, start_site
from simclock import ManualClock

ADMIN_TOKEN = "test-admin-token"

LAB: dict[str, Any] = {
    "users": [
        {"name": "alice", "email": "alice@example.com", "password": "alice-pass"},
        {"name": "bob", "email": "bob@example.com", "password": "bob-pass"},
    ],
    "exchange": {"seed_messages_per_mailbox": 5, "seed": 3},
}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@attrs.define
class Reply:
    status: int
    headers: Any
    body: bytes

    def element(self) -> Element:
        assert self.status == 200, (self.status, self.body[:200])
        assert self.body, "expected a WBXML body, got an empty 200"
        assert self.headers["Content-Type"] == "application/vnd.ms-sync.wbxml"
        return decode(self.body)


@attrs.define
class Phone:
    """Just enough of an EAS client to drive the server in tests."""

    session: aiohttp.ClientSession
    url: str
    user: str = "alice"
    password: str = "alice-pass"
    device_id: str = "PHONE1"
    version: str = "14.1"
    policy_key: int | None = None
    #: Who the Authorization header names; None: the same as ``user``.
    login: str | None = None

    async def post(
        self,
        command: str,
        body: Element | bytes | None = None,
        *,
        content_type: str = "application/vnd.ms-sync.wbxml",
        params: tuple[tuple[str, str], ...] = (),
        save_in_sent: bool = False,
    ) -> Reply:
        eas = EasRequest.create(
            command=command,
            device_id=self.device_id,
            device_type="SmartPhone",
            version=self.version,
            user=self.user,
            policy_key=self.policy_key,
            params=params,
            save_in_sent=save_in_sent,
        )
        query, headers = eas.wire()
        all_headers = dict(headers)
        all_headers["Authorization"] = basic(self.login or self.user, self.password)
        data = encode(body) if isinstance(body, Element) else body
        if data:
            all_headers["Content-Type"] = content_type
        async with self.session.post(
            f"{self.url}/Microsoft-Server-ActiveSync?{query}", data=data or b"", headers=all_headers
        ) as response:
            return Reply(response.status, response.headers, await response.read())

    async def command(self, command: str, body: Element | None) -> Element:
        return (await self.post(command, body)).element()

    async def provision(self) -> int:
        version = ProtocolVersion.from_text(self.version)
        # MS-ASPROV 2.2.2.53: DeviceInformation is required from 14.1 and absent before.
        info = (
            DeviceInformation(model="TestPhone", os="TestOS 1")
            if version >= ProtocolVersion.V14_1
            else None
        )
        initial = ProvisionRequest.initial(version, info)
        first = ProvisionResponse.from_element(
            await self.command("Provision", initial.to_element())
        )
        temporary = first.policy_key_value
        assert temporary is not None
        self.policy_key = temporary
        second = ProvisionResponse.from_element(
            await self.command(
                "Provision", ProvisionRequest.acknowledgement(version, temporary).to_element()
            )
        )
        final = second.policy_key_value
        assert final is not None
        self.policy_key = final
        return final


@attrs.define
class Lab:
    site: StartedSite
    clock: ManualClock
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.site.url

    def phone(self, **kwargs: Any) -> Phone:
        return Phone(self.session, self.site.url, **kwargs)

    async def admin(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with self.session.request(
            method, f"{self.site.url}{path}", headers=headers, **kwargs
        ) as response:
            return response.status, await response.json()


async def start_lab(lab: dict[str, Any] | None = None) -> tuple[StartedSite, ManualClock]:
    clock = ManualClock()
    config = ExchangeConfig.from_mapping(LAB if lab is None else lab, source="test")
    app = make_app(config, clock=clock, admin_token=ADMIN_TOKEN)
    return await start_site(app, "127.0.0.1", 0, shutdown_timeout=0.5), clock
