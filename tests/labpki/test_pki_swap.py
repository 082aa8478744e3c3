"""Hot swap of a running server's certificate, on asyncio, uvloop and an aiohttp TCPSite."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop
from aiohttp import web

from labpki import (
    ClientCertMode,
    Hierarchy,
    PkiError,
    ServerCredential,
    SwappableServerContext,
    client_context,
    identity_of,
)
from tests.labpki.tls_peers import connect, echo_server, exchange

TIMEOUT = 10
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def run_on(loop_name: str, scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(scenario())


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_replace_serves_new_connections_and_keeps_established_ones(
    hierarchy: Hierarchy, loop_name: str
) -> None:
    first, second = hierarchy.server_credential(), hierarchy.server_credential()
    swappable = SwappableServerContext(first)
    root = hierarchy.root_pem()

    async def scenario() -> None:
        async with (
            asyncio.timeout(TIMEOUT),
            echo_server(swappable.context) as server,
            connect(server.port, client_context(root)) as old,
        ):
            assert old.leaf.serial_number == first.certificate.serial_number
            swappable.replace(second)
            fresh = await exchange(server.port, client_context(root))
            assert fresh.serial_number == second.certificate.serial_number
            # The connection made before the swap still works, with its certificate.
            assert await old.echo(b"still here") == b"still here"
            assert old.leaf.serial_number == first.certificate.serial_number

    run_on(loop_name, scenario)
    assert swappable.swaps == 1
    assert swappable.credential is second


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_replace_swaps_the_chain_too_not_only_the_leaf(
    hierarchy: Hierarchy, other_hierarchy: Hierarchy, loop_name: str
) -> None:
    # If the old chain lingered beside the new one, the leaf-only credential below would
    # still verify; it must not.
    full = hierarchy.server_credential()
    leaf_only = ServerCredential(certificate=full.certificate, key=full.key, chain=())
    swappable = SwappableServerContext(full)
    root = hierarchy.root_pem()

    async def scenario() -> None:
        async with asyncio.timeout(TIMEOUT), echo_server(swappable.context) as server:
            await exchange(server.port, client_context(root))
            swappable.replace(leaf_only)
            with pytest.raises(ssl.SSLCertVerificationError):
                await exchange(server.port, client_context(root))
            other = other_hierarchy.server_credential()
            swappable.replace(other)
            leaf = await exchange(server.port, client_context(other_hierarchy.root_pem()))
            assert leaf.serial_number == other.certificate.serial_number
            with pytest.raises(ssl.SSLCertVerificationError):
                await exchange(server.port, client_context(root))

    run_on(loop_name, scenario)
    assert swappable.swaps == 2


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_replace_keeps_mutual_tls_settings(hierarchy: Hierarchy, loop_name: str) -> None:
    root = hierarchy.root_pem()
    swappable = SwappableServerContext(
        hierarchy.server_credential(),
        client_cert=ClientCertMode.REQUIRED,
        client_roots_pem=root,
    )
    identity = hierarchy.device_identity("bob", "B1")

    async def scenario() -> None:
        async with asyncio.timeout(TIMEOUT), echo_server(swappable.context) as server:
            swappable.replace(hierarchy.server_credential())
            await exchange(server.port, client_context(root, identity=identity))
            [peercert] = server.peercerts
            found = identity_of(peercert)
            assert found is not None
            assert (found.user, found.device_id) == ("bob", "B1")

    run_on(loop_name, scenario)


def test_replace_with_a_refused_credential_keeps_the_old_one(hierarchy: Hierarchy) -> None:
    first = hierarchy.server_credential()
    swappable = SwappableServerContext(first, ciphers="ECDHE+AESGCM")
    rsa_leaf_key_mismatch = ServerCredential(
        certificate=first.certificate, key=hierarchy.root.key, chain=first.chain
    )
    with pytest.raises(PkiError, match="refused the certificate or key"):
        swappable.replace(rsa_leaf_key_mismatch)
    assert swappable.credential is first
    assert swappable.swaps == 0


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_aiohttp_site_serves_the_replaced_certificate(hierarchy: Hierarchy, loop_name: str) -> None:
    first, second = hierarchy.server_credential(), hierarchy.server_credential()
    swappable = SwappableServerContext(first)
    client = client_context(hierarchy.root_pem())

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    async def leaf_serial(port: int) -> int:
        async with connect(port, client) as connection:
            connection.writer.write(
                b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
            response = await connection.reader.read()
            assert response.startswith(b"HTTP/1.1 200")
            assert response.endswith(b"hello")
            return connection.leaf.serial_number

    async def scenario() -> None:
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=swappable.context)
            await site.start()
            port = runner.addresses[0][1]
            async with asyncio.timeout(TIMEOUT):
                assert await leaf_serial(port) == first.certificate.serial_number
                swappable.replace(second)
                assert await leaf_serial(port) == second.certificate.serial_number
        finally:
            await runner.cleanup()

    run_on(loop_name, scenario)
