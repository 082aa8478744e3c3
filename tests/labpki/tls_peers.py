"""Real TLS peers on 127.0.0.1 for the labpki tests: an echo server and a probing client.

Both work on whatever event loop runs them (asyncio's or uvloop's), so one test body can prove
a behaviour on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import attrs
from cryptography import x509

#: What a failed handshake looks like to the client, depending on who noticed and when.
HANDSHAKE_FAILURES = (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)


class _Echo(asyncio.Protocol):
    def __init__(self, server: EchoServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called only once the TLS handshake has completed on the server side. uvloop's TLS
        # transport is not an asyncio.Transport subclass, but has the same methods.
        self._transport = cast(asyncio.Transport, transport)
        self._server.peercerts.append(transport.get_extra_info("peercert"))

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(data)


@attrs.define(eq=False)
class EchoServer:
    """A TLS echo server; ``peercerts`` holds ``getpeercert()`` of each completed handshake."""

    port: int = 0
    peercerts: list[dict[str, Any] | None] = attrs.field(factory=list)


@asynccontextmanager
async def echo_server(context: ssl.SSLContext) -> AsyncIterator[EchoServer]:
    loop = asyncio.get_running_loop()
    echo = EchoServer()
    server = await loop.create_server(lambda: _Echo(echo), "127.0.0.1", 0, ssl=context)
    echo.port = server.sockets[0].getsockname()[1]
    try:
        yield echo
    finally:
        server.close()
        await server.wait_closed()


@attrs.define(eq=False)
class Connection:
    """A client connection that completed its handshake."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @property
    def leaf(self) -> x509.Certificate:
        """The certificate the server presented."""
        ssl_object = self.writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der)

    async def echo(self, data: bytes = b"ping") -> bytes:
        self.writer.write(data)
        await self.writer.drain()
        return await self.reader.readexactly(len(data))

    async def close(self) -> None:
        self.writer.close()
        # The server may have aborted first; the socket is closed either way.
        with contextlib.suppress(*HANDSHAKE_FAILURES):
            await self.writer.wait_closed()


@asynccontextmanager
async def connect(
    port: int, context: ssl.SSLContext, host: str = "127.0.0.1"
) -> AsyncIterator[Connection]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=host
    )
    connection = Connection(reader, writer)
    try:
        yield connection
    finally:
        await connection.close()


async def exchange(port: int, context: ssl.SSLContext, host: str = "127.0.0.1") -> x509.Certificate:
    """Connect, echo one message, return the server's leaf; raises on any TLS failure."""
    async with connect(port, context, host) as connection:
        assert await connection.echo() == b"ping"
        return connection.leaf
