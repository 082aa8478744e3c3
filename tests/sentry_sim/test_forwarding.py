"""The hot path over real sockets: headers, query, streaming, upstream down, held Pings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import aiohttp
import pytest

from tests.sentry_sim.fakes import EAS, FakeUem, FakeUpstream, StartSentry, headers, query


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_hop_by_hop_headers_are_stripped_both_ways_and_the_query_passes_unchanged(
    start_sentry: StartSentry, fake_upstream: FakeUpstream
) -> None:
    sentry = await start_sentry()
    raw = query() + "&Unknown=some%20value&SaveInSent=T"
    sent_headers = headers(
        Connection="keep-alive, X-Hop-Request",
        **{"X-Hop-Request": "drop me", "Keep-Alive": "timeout=5", "TE": "trailers"},
        **{"X-Client": "keep me", "Authorization": "Basic YWxpY2U6cHc="},
    )
    async with (
        asyncio.timeout(10),
        aiohttp.ClientSession() as session,
        session.post(sentry.url + raw, data=b"abc", headers=sent_headers) as r,
    ):
        assert r.status == 200
        assert await r.read() == b"upstream:abc"
        assert r.headers["X-End-To-End"] == "kept"
        assert "X-Hop-Only" not in r.headers
    seen = fake_upstream.seen[0]
    assert seen["raw_path"] == raw
    assert {"x-hop-request", "te"}.isdisjoint(seen["header_names"])
    assert seen["headers"]["X-Client"] == "keep me"
    assert seen["headers"]["Authorization"] == "Basic YWxpY2U6cHc="
    assert seen["headers"]["MS-ASProtocolVersion"] == "14.1"


async def test_large_bodies_stream_through_both_ways(
    start_sentry: StartSentry, fake_upstream: FakeUpstream
) -> None:
    sentry = await start_sentry()
    big = bytes(range(256)) * 8192  # 2 MiB: larger than the buffered (retryable) limit

    async def chunks() -> object:
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    async with (
        asyncio.timeout(20),
        aiohttp.ClientSession() as session,
        session.post(sentry.url + query(cmd="SendMail"), data=chunks(), headers=headers()) as r,
    ):
        assert r.status == 200
        assert await r.read() == b"upstream:" + big


async def test_upstream_down_answers_503_with_retry_after(
    start_sentry: StartSentry, fake_uem: FakeUem
) -> None:
    sentry = await start_sentry(upstream_url=closed_port_url(), upstream_retry_after_s=17)
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        async with session.post(sentry.url + query(), headers=headers()) as r:
            assert r.status == 503
            assert r.headers["Retry-After"] == "17"
        async with session.options(sentry.url + EAS) as r:
            assert r.status == 503
    kinds = [e.kind for e in sentry.sentry.bus.recent(100)]
    assert "upstream_failed" in kinds


async def test_held_pings_do_not_starve_other_requests(
    start_sentry: StartSentry, fake_upstream: FakeUpstream
) -> None:
    sentry = await start_sentry()
    async with (
        asyncio.timeout(10),
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
    ):
        async with session.post(sentry.url + query(), headers=headers()) as r:
            assert r.status == 200

        async def ping(device: str) -> int:
            url = sentry.url + query(device=device, cmd="Ping")
            async with session.post(url, headers=headers()) as r:
                await r.read()
                return r.status

        pings = [asyncio.ensure_future(ping("DEV1")) for _ in range(30)]
        await asyncio.sleep(0.2)
        assert not any(p.done() for p in pings)
        for _ in range(10):
            async with session.post(sentry.url + query(cmd="Sync"), headers=headers()) as r:
                assert r.status == 200
        fake_upstream.ping_release.set()
        assert await asyncio.gather(*pings) == [200] * 30


async def test_device_dropping_a_held_ping_is_not_an_error(
    start_sentry: StartSentry, fake_upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    sentry = await start_sentry()
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        async with session.post(sentry.url + query(), headers=headers()) as r:
            assert r.status == 200
        held = asyncio.ensure_future(
            session.post(sentry.url + query(cmd="Ping"), headers=headers())
        )
        await asyncio.sleep(0.2)
        held.cancel()  # the phone goes away while the Ping is held upstream
        with contextlib.suppress(asyncio.CancelledError):
            await held
        with caplog.at_level(logging.ERROR):
            fake_upstream.ping_release.set()
            await asyncio.sleep(0.2)
        async with session.post(sentry.url + query(cmd="Sync"), headers=headers()) as r:
            assert r.status == 200
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
