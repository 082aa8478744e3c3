"""The gatekeeper's first-access shortcuts: Provision answers encoded once per shape, and
reports over pooled raw keep-alive connections, each checked against the plain way."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from activesync.commands.provision import ProvisionResponse
from activesync.versions import ProtocolVersion
from activesync.wbxml import encode
from scenarios.serving import start_site
from sentry_sim.handlers import ProvisionBodies
from sentry_sim.policy_gate import settings_doc
from sentry_sim.store import Store
from sentry_sim.uem_client import Outbox, UemClient, UemUnavailable
from simclock import SystemClock
from uem_sim import contract
from uem_sim.contract import AccessState, ReportRequest

DOCS = [
    settings_doc({"DevicePasswordEnabled": True, "MinDevicePasswordLength": 4}, "test"),
    settings_doc({"RequireDeviceEncryption": True, "MaxInactivityTimeDeviceLock": 900}, "test"),
]
BODIES = ProvisionBodies()


@given(
    key=st.integers(min_value=0, max_value=2**32 - 1),
    version=st.sampled_from(list(ProtocolVersion)),
    doc=st.sampled_from(DOCS),
    device_information=st.booleans(),
)
def test_a_cached_provision_answer_is_byte_for_byte_the_direct_encoding(
    key: int, version: ProtocolVersion, doc: object, device_information: bool
) -> None:
    response = ProvisionResponse.initial(
        version=version,
        policy_key=key,
        doc=doc,  # type: ignore[arg-type]
        device_information_sent=device_information,
    )
    direct = encode(response.to_element())
    assert BODIES.encode(response) == direct
    assert BODIES.encode(response) == direct  # the second use comes from the cache


@given(key=st.integers(min_value=0, max_value=2**32 - 1))
def test_acknowledgements_and_keyless_answers_encode_as_directly(key: int) -> None:
    acknowledged = ProvisionResponse.acknowledged(version=ProtocolVersion.V14_1, policy_key=key)
    wipe = ProvisionResponse.wipe_directive(version=ProtocolVersion.V14_1)
    for response in (acknowledged, acknowledged, wipe):
        assert BODIES.encode(response) == encode(response.to_element())


def test_a_new_policy_document_is_never_answered_from_an_old_shape() -> None:
    bodies = ProvisionBodies()
    old = settings_doc({"MinDevicePasswordLength": 4}, "test")
    new = settings_doc({"MinDevicePasswordLength": 8}, "test")
    v = ProtocolVersion.V14_1
    bodies.encode(ProvisionResponse.initial(version=v, policy_key=7, doc=old))
    response = ProvisionResponse.initial(version=v, policy_key=7, doc=new)
    assert bodies.encode(response) == encode(response.to_element())


# --- reports over the raw keep-alive line -------------------------------------------------


def decision(report: ReportRequest, version: int = 1) -> dict[str, object]:
    return {
        "user": report.user,
        "device_id": report.device_id,
        "state": "ALLOW",
        "reasons": 0,
        "explanation": "ALLOW",
        "activesync_policy": {"version": 1, "settings": {"DevicePasswordEnabled": True}},
        "record_version": version,
        "decided_at": 1.0,
        "registered": False,
    }


class FakeUem:
    """Answers reports; remembers each request's client port (one per connection)."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        self.answer_status = 200
        self.close_after_answer = False

    async def report(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.ports.append(peer[1] if peer else -1)
        report = contract.from_json(ReportRequest, await request.read())
        if self.answer_status != 200:
            return web.json_response(
                {"error": "no such thing", "hint": ""}, status=self.answer_status
            )
        headers = {"Connection": "close"} if self.close_after_answer else {}
        return web.json_response(decision(report, len(self.ports)), headers=headers)


async def started(uem: FakeUem) -> tuple[object, str]:
    app = web.Application()
    app.router.add_post(contract.REPORTS_PATH, uem.report)
    site = await start_site(app)
    return site, site.url


def report(device_id: str) -> ReportRequest:
    return ReportRequest(gatekeeper_id="gk", user="alice", device_id=device_id, seen_at=1.0)


async def test_reports_share_one_keep_alive_connection_when_sent_one_after_another() -> None:
    uem = FakeUem()
    async with asyncio.timeout(10):
        site, url = await started(uem)
        client = UemClient(url)
        await client.open()
        try:
            answers = [await client.report(report(f"D{i}")) for i in range(5)]
        finally:
            await client.close()
            await site.stop()  # type: ignore[attr-defined]
    assert [a.device_id for a in answers] == [f"D{i}" for i in range(5)]
    assert all(a.state is AccessState.ALLOW for a in answers)
    assert len(set(uem.ports)) == 1


async def test_concurrent_reports_each_get_their_own_answer() -> None:
    uem = FakeUem()
    async with asyncio.timeout(10):
        site, url = await started(uem)
        client = UemClient(url)
        await client.open()
        try:
            answers = await asyncio.gather(*(client.report(report(f"D{i}")) for i in range(50)))
        finally:
            await client.close()
            await site.stop()  # type: ignore[attr-defined]
    assert [a.device_id for a in answers] == [f"D{i}" for i in range(50)]


async def test_a_connection_the_uem_closed_is_not_reused() -> None:
    uem = FakeUem()
    uem.close_after_answer = True
    async with asyncio.timeout(10):
        site, url = await started(uem)
        client = UemClient(url)
        await client.open()
        try:
            for i in range(3):
                assert (await client.report(report(f"D{i}"))).device_id == f"D{i}"
        finally:
            await client.close()
            await site.stop()  # type: ignore[attr-defined]
    assert len(set(uem.ports)) == 3


async def test_a_report_on_a_connection_closed_without_an_answer_goes_out_on_a_fresh_one() -> None:
    """The keep-alive race: the UEM closes an idle connection as the next report is written."""
    connections = 0
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writers.append(writer)
        first_connection = connections == 1
        answered = 0
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
            if first_connection and answered == 1:
                break  # closed with the request unread: no byte of an answer goes back
            text = json.dumps(decision(contract.from_json(ReportRequest, body))).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text))
            answered += 1
        writer.close()

    async with asyncio.timeout(10):
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = UemClient(f"http://127.0.0.1:{port}")
        await client.open()
        try:
            assert (await client.report(report("D1"))).device_id == "D1"
            assert (await client.report(report("D2"))).device_id == "D2"
        finally:
            await client.close()
            server.close()
            for writer in writers:
                writer.close()
            await server.wait_closed()
    assert connections == 2


async def test_an_error_answer_names_the_status_and_the_uems_error() -> None:
    uem = FakeUem()
    uem.answer_status = 409
    async with asyncio.timeout(10):
        site, url = await started(uem)
        client = UemClient(url)
        await client.open()
        try:
            with pytest.raises(UemUnavailable, match=r"POST /api/v1/sentry/reports: HTTP 409: no"):
                await client.report(report("D1"))
        finally:
            await client.close()
            await site.stop()  # type: ignore[attr-defined]


async def raw_server(answer: bytes) -> tuple[asyncio.Server, str]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", "malformed HTTP answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{nope", "answer breaks the contract"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}", "ConnectionResetError"),
    ],
)
async def test_a_broken_answer_is_uem_unavailable(answer: bytes, expected: str) -> None:
    async with asyncio.timeout(10):
        server, url = await raw_server(answer)
        client = UemClient(url)
        await client.open()
        try:
            with pytest.raises(UemUnavailable, match=expected):
                await client.report(report("D1"))
        finally:
            await client.close()
            server.close()
            await server.wait_closed()


async def test_a_uem_that_does_not_answer_in_time_is_uem_unavailable() -> None:
    hung_up = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()
        hung_up.set()

    async with asyncio.timeout(10):
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = UemClient(f"http://127.0.0.1:{port}", timeout_s=0.2)
        await client.open()
        try:
            with pytest.raises(UemUnavailable, match="TimeoutError"):
                await client.report(report("D1"))
            await hung_up.wait()
        finally:
            await client.close()
            server.close()
            await server.wait_closed()


async def test_a_refused_connection_is_uem_unavailable() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    client = UemClient(f"http://127.0.0.1:{port}")
    await client.open()
    try:
        async with asyncio.timeout(10):
            with pytest.raises(UemUnavailable, match="POST /api/v1/sentry/reports"):
                await client.report(report("D1"))
    finally:
        await client.close()


def test_the_report_body_is_the_contract_encoding() -> None:
    body = json.loads(contract.to_json(report("D1")))
    assert contract.ReportRequest.from_dict(body) == report("D1")


# --- the outbox's batched writes ------------------------------------------------------------


def test_outbox_writes_apply_in_order_in_one_transaction() -> None:
    store = Store.open(None)
    store.outbox_apply([("a/1", "{first}", 1.0), ("a/1", None, 0.0), ("a/1", "{again}", 2.0)])
    store.outbox_apply([("b/2", "{b}", 3.0), ("b/2", "{ignored}", 4.0)])
    assert [(e.key, e.payload) for e in store.outbox()] == [("a/1", "{again}"), ("b/2", "{b}")]
    store.close()


async def test_reports_are_stored_before_their_first_attempt_and_dropped_once_answered() -> None:
    store = Store.open(None)
    stored_when_sent: dict[str, bool] = {}
    answered: list[str] = []
    all_answered = asyncio.Event()

    async def check_store_then_answer(request: web.Request) -> web.StreamResponse:
        sent = contract.from_json(ReportRequest, await request.read())
        key = f"alice/{sent.device_id}"
        stored_when_sent[key] = key in {e.key for e in store.outbox()}
        return web.json_response(decision(sent))

    def on_answer(key: str, _decision: contract.DecisionMessage) -> None:
        answered.append(key)
        if len(answered) == 3:
            all_answered.set()

    app = web.Application()
    app.router.add_post(contract.REPORTS_PATH, check_store_then_answer)
    async with asyncio.timeout(10):
        site = await start_site(app)
        client = UemClient(site.url)
        await client.open()
        outbox = Outbox(
            client, store, SystemClock(), on_answer=on_answer, on_failure=lambda *_args: None
        )
        try:
            for i in range(3):
                assert outbox.submit(f"alice/d{i}", report(f"d{i}"))
            assert not outbox.submit("alice/d0", report("d0"))  # one report per record
            await all_answered.wait()
            await asyncio.sleep(0)  # the end of the iteration that drops the answered rows
        finally:
            await outbox.close()
            await client.close()
            await site.stop()
    assert stored_when_sent == {"alice/d0": True, "alice/d1": True, "alice/d2": True}
    assert store.outbox() == []
    store.close()


async def test_a_report_the_uem_cannot_take_stays_in_the_store() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    store = Store.open(None)
    failures: list[int] = []
    failed = asyncio.Event()

    def on_failure(_key: str, attempt: int, _error: str, _delay: float) -> None:
        failures.append(attempt)
        failed.set()

    client = UemClient(f"http://127.0.0.1:{port}")
    await client.open()
    outbox = Outbox(
        client,
        store,
        SystemClock(),
        on_answer=lambda *_args: None,
        on_failure=on_failure,
        initial_delay_s=10.0,
    )
    try:
        async with asyncio.timeout(10):
            outbox.submit("alice/d1", report("d1"))
            await failed.wait()
    finally:
        await outbox.close()
        await client.close()
    [entry] = store.outbox()
    assert (entry.key, entry.attempts) == ("alice/d1", 1)
    assert contract.from_json(ReportRequest, entry.payload) == report("d1")
    store.close()
