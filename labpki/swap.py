"""A server ``SSLContext`` whose certificate can be replaced while the server runs.

Responsibility: give a listener one ``ssl.SSLContext`` for its whole lifetime and let an admin
action swap the certificate, key and chain behind it: new handshakes get the new credential,
established connections keep theirs, nothing restarts. It must not read files or decide when
to swap; the admin API calls ``replace``.

Theory of operation: the listener's context (``context``) carries an ``sni_callback``. OpenSSL
calls it for every ClientHello, with or without SNI, before it picks the certificate; the
callback points the connection's ``SSLObject`` at the current inner context
(``SSLObject.context = ...``, which is ``SSL_set_SSL_CTX``), whose certificate, key *and*
chain then serve that handshake. ``replace`` builds a complete new inner context first, so a
credential OpenSSL refuses raises ``PkiError`` and leaves the old one serving. Both asyncio's
and uvloop's TLS transports wrap connections with ``SSLContext.wrap_bio``, so the callback sees
an ``SSLObject`` in both. Re-calling ``load_cert_chain`` on the live context was rejected: it
would keep the old certificate beside the new one when the key type changes (OpenSSL holds one
per key type) and would briefly pair a new certificate with the old key.

Protocol versions, ciphers and the client-certificate mode are fixed when the listener
starts (OpenSSL copies them into each connection before the callback runs); every inner
context is built with the same options so verification of client certificates, which reads
the inner context's trust store, stays the same. A resumed TLS session keeps the certificate
it was established with, as on any server.
"""

from __future__ import annotations

import ssl
from typing import Unpack

from labpki.contexts import ServerContextOptions, server_context
from labpki.credential import ServerCredential


class SwappableServerContext:
    """One SSLContext for ``loop.create_server`` / ``web.TCPSite``; ``replace`` hot-swaps it."""

    def __init__(
        self, credential: ServerCredential, **server_context_options: Unpack[ServerContextOptions]
    ) -> None:
        self._options = server_context_options
        self._outer = server_context(credential, **server_context_options)
        self._current = self._outer
        self._credential = credential
        self._swaps = 0
        self._outer.sni_callback = self._select

    @property
    def context(self) -> ssl.SSLContext:
        """The context to give the listener, once, for its whole lifetime."""
        return self._outer

    @property
    def credential(self) -> ServerCredential:
        """The credential new handshakes are served with."""
        return self._credential

    @property
    def swaps(self) -> int:
        """How many times ``replace`` has swapped the credential."""
        return self._swaps

    def replace(self, credential: ServerCredential) -> None:
        """Serve ``credential`` from the next handshake on; ``PkiError`` keeps the old one."""
        inner = server_context(credential, **self._options)
        self._current = inner
        self._credential = credential
        self._swaps += 1

    def _select(
        self,
        connection: ssl.SSLObject | ssl.SSLSocket,
        server_name: str | None,
        listener: ssl.SSLContext,
    ) -> None:
        current = self._current
        if current is not listener:
            connection.context = current
