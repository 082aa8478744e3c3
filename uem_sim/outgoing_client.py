"""The UEM's one outgoing HTTP client: every call the UEM makes goes through it.

Responsibility: own the ``aiohttp.ClientSession`` of outgoing calls (pushes to gatekeepers,
any other external server) with the outgoing TLS policy's context (``uem_sim.outgoing_tls``:
TLS 1.2 only, the selected suites, SNI for host names), record per endpoint what each call
negotiated (``uem_sim.tls_usage``), explain failed handshakes, and apply new settings by
restarting itself. Must not: retry (callers do, e.g. the pusher's backoff) or decide anything.

Theory of operation:
- The session's connector is a ``TCPConnector`` whose ``connect`` (aiohttp's documented
  "get a free connection from the pool or create a new one") reads the TLS transport's
  ``ssl_object`` each time a request gets its connection: protocol, cipher and SNI go to the
  usage table before any byte of the body is read. Reading ``response.connection`` instead
  does not work: aiohttp releases the connection as soon as an empty body (a 204, the
  gatekeeper's push answer) is complete, and ``response.connection`` is then None.
- A handshake that fails (aiohttp reports a refused TLS 1.1-only or cipher-less server as a
  reset connection, which says nothing) is diagnosed with probe handshakes to the same
  endpoint: one offering only the *disabled* suites (repeated without each suite found, up to
  ``MAX_PROBES``) finds the suites the endpoint would need (Core's asterisk), and, if none
  fits, one at TLS 1.0/1.1 finds an endpoint that speaks only a retired protocol. Probes send
  no data, check no certificate and run once per endpoint and error per settings generation.
  The caller gets ``OutgoingError`` whose message names the endpoint and the cause.
- ``apply(settings)`` builds the new context first (an unusable one raises and changes
  nothing), closes the old session (calls in flight fail) and refuses calls for
  ``restart_s`` seconds on the injected clock: Core restarts its outgoing client to apply
  outgoing SSL changes and is briefly unable to reach external servers. ``OutgoingTlsApplied``
  says so; the pusher's backoff redelivers whatever failed meanwhile.
- ``origin`` and ``generation`` are for the admin view only: where the settings in effect came
  from (config, the store, an apply) and how many times settings were applied. The client
  neither reads nor writes the store: ``uem_sim.app`` picks the start-up settings and
  ``uem_sim.handlers`` stores what is applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
import attrs
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from yarl import URL

from simclock import Clock
from uem_sim.events import EventBus, OutgoingTlsApplied, OutgoingTlsFailed
from uem_sim.outgoing_tls import (
    CipherSuite,
    OutgoingTlsSettings,
    SettingsOrigin,
    legacy_probe_context,
    outgoing_context,
    probe_context,
    sni_name,
)
from uem_sim.tls_usage import TlsUsage

#: Seconds outgoing calls are refused after new settings are applied.
RESTART_S: Final = 1.0
#: Most probe handshakes per diagnosis (each finds one more disabled suite).
MAX_PROBES: Final = 4
#: Bound of one probe handshake, seconds.
PROBE_TIMEOUT_S: Final = 2.0
#: Most remembered diagnoses (endpoint and error) per settings generation.
MAX_DIAGNOSED: Final = 1000


class OutgoingError(Exception):
    """An outgoing call that did not get an HTTP answer; the message names the endpoint."""

    def __init__(self, endpoint: str, message: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


@attrs.frozen
class OutgoingAnswer:
    """An HTTP answer to an outgoing call."""

    status: int
    body: bytes


def endpoint_of(url: URL) -> str:
    """``host:port`` of ``url`` (IPv6 hosts in brackets)."""
    host = url.host or ""
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{url.port}"


@attrs.frozen
class _Diagnosis:
    message: str
    needs_disabled: tuple[str, ...]
    speaks_only: str | None


class _RecordingConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` that tells its client what each request's TLS connection is."""

    def __init__(self, client: OutgoingClient, context: ssl.SSLContext) -> None:
        super().__init__(ssl=context, limit_per_host=8)
        self._client = client

    async def connect(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's own signature
    ) -> Connection:
        connection = await super().connect(req, traces, timeout)
        transport = connection.transport
        if transport is not None:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None:
                self._client.record(req.url, ssl_object)
        return connection


class OutgoingClient:
    """Outgoing HTTP(S) for the UEM (module docstring)."""

    def __init__(
        self,
        settings: OutgoingTlsSettings,
        *,
        clock: Clock,
        events: EventBus,
        trust_pem: bytes | None = None,
        restart_s: float = RESTART_S,
        usage: TlsUsage | None = None,
        generation: int = 0,
        origin: SettingsOrigin | None = None,
    ) -> None:
        self._settings = settings
        self._context = outgoing_context(settings, trust_pem)
        self._trust_pem = trust_pem
        self._clock = clock
        self._events = events
        self._restart_s = restart_s
        self.usage = usage if usage is not None else TlsUsage(clock.now())
        self._session: aiohttp.ClientSession | None = None
        self._unavailable_until = -1.0
        self._generation = generation
        #: Where the settings in effect came from (admin view); the shell updates it.
        self.origin = origin if origin is not None else SettingsOrigin()
        #: (endpoint, error) already diagnosed in this generation -> diagnosis.
        self._diagnosed: dict[tuple[str, str], _Diagnosis] = {}
        self._closed = False

    @property
    def settings(self) -> OutgoingTlsSettings:
        return self._settings

    @property
    def trust_pem(self) -> bytes | None:
        return self._trust_pem

    @property
    def generation(self) -> int:
        """How many times settings were applied (0: never; continues from the stored count
        when the start-up settings came from the store)."""
        return self._generation

    def unavailable_for(self) -> float:
        """Seconds until outgoing calls work again after a restart (0 when they do)."""
        return max(0.0, self._unavailable_until - self._clock.now())

    def usage_view(self) -> dict[str, Any]:
        """``GET /api/v1/outgoing-tls/usage``."""
        return self.usage.view(self._settings, self._clock.now())

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the outgoing client is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=_RecordingConnector(self, self._context)
            )
        return self._session

    def record(self, url: URL, ssl_object: ssl.SSLObject) -> None:
        """A request got a TLS connection: note what it negotiated."""
        cipher = ssl_object.cipher()
        self.usage.succeeded(
            endpoint_of(url),
            sni=sni_name(url.host or ""),
            protocol=ssl_object.version() or "?",
            openssl_cipher=cipher[0] if cipher else "?",
            now=self._clock.now(),
        )

    async def post(
        self,
        url: str,
        *,
        data: bytes | str,
        headers: Mapping[str, str],
        client_timeout: aiohttp.ClientTimeout,
    ) -> OutgoingAnswer:
        """POST ``data``; the answer, or ``OutgoingError`` naming the endpoint."""
        target = URL(url)
        endpoint = endpoint_of(target)
        wait = self.unavailable_for()
        if wait > 0:
            raise OutgoingError(
                endpoint,
                f"outgoing client restarting to apply new TLS settings; calls to {endpoint} "
                f"resume in {wait:.1f} s",
            )
        session = self._ensure_session()
        try:
            async with session.post(
                target, data=data, headers=dict(headers), timeout=client_timeout
            ) as response:
                return OutgoingAnswer(response.status, await response.read())
        except aiohttp.ClientConnectorCertificateError as exc:
            raise await self._tls_failed(
                target, f"certificate of {endpoint} not trusted: {exc.certificate_error}", False
            ) from None
        except aiohttp.ClientConnectorError as exc:
            if target.scheme == "https" and not isinstance(
                exc.os_error, ConnectionRefusedError | TimeoutError
            ):
                raise await self._tls_failed(target, str(exc.os_error) or repr(exc), True) from None
            raise OutgoingError(endpoint, f"{type(exc).__name__}: {exc} ({url})") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise OutgoingError(endpoint, f"{type(exc).__name__}: {exc} ({url})") from None

    async def _tls_failed(self, target: URL, error: str, probe: bool) -> OutgoingError:
        endpoint = endpoint_of(target)
        key = (endpoint, error)
        diagnosis = self._diagnosed.get(key)
        fresh = diagnosis is None
        if diagnosis is None:
            diagnosis = (
                await self._diagnose(target, error)
                if probe
                else _Diagnosis(f"TLS 1.2 handshake with {endpoint} failed: {error}", (), None)
            )
            if len(self._diagnosed) >= MAX_DIAGNOSED:
                self._diagnosed.clear()  # bounded; at worst an endpoint is probed again
            self._diagnosed[key] = diagnosis
        self.usage.failed(
            endpoint,
            sni=sni_name(target.host or ""),
            error=diagnosis.message,
            now=self._clock.now(),
            needs_disabled=diagnosis.needs_disabled,
            speaks_only=diagnosis.speaks_only,
        )
        if fresh:
            self._events.emit(
                OutgoingTlsFailed(
                    at=self._clock.now(),
                    endpoint=endpoint,
                    error=diagnosis.message,
                    needs_disabled=diagnosis.needs_disabled,
                    speaks_only=diagnosis.speaks_only,
                )
            )
        return OutgoingError(endpoint, diagnosis.message)

    async def _diagnose(self, target: URL, error: str) -> _Diagnosis:
        endpoint = endpoint_of(target)
        host, port = target.host or "", target.port or 443
        found: list[CipherSuite] = []
        offered = list(self._settings.disabled)
        for _ in range(MAX_PROBES):
            if not offered:
                break
            negotiated = await probe_handshake(host, port, probe_context(offered))
            suite = next((s for s in offered if negotiated and s.openssl == negotiated[1]), None)
            if suite is None:
                break
            found.append(suite)
            offered.remove(suite)
        if found:
            names = ", ".join(s.iana for s in found)
            return _Diagnosis(
                f"TLS 1.2 handshake with {endpoint} failed: no selected cipher suite is "
                f"acceptable to it; it would need the disabled suite(s) {names}",
                tuple(s.iana for s in found),
                None,
            )
        legacy = await probe_handshake(host, port, legacy_probe_context())
        if legacy is not None:
            return _Diagnosis(
                f"TLS 1.2 handshake with {endpoint} failed: the endpoint speaks only "
                f"{legacy[0]}, which the UEM never uses for outgoing connections (TLS 1.2 only)",
                (),
                legacy[0],
            )
        return _Diagnosis(
            f"TLS 1.2 handshake with {endpoint} failed: {error}; no disabled suite and no "
            "older protocol would have worked either",
            (),
            None,
        )

    async def apply(
        self, settings: OutgoingTlsSettings, *, origin: SettingsOrigin | None = None
    ) -> None:
        """Use ``settings`` from now on: restart the client (module docstring). ``origin``
        (default: unchanged) is what the admin view says about where they came from."""
        context = outgoing_context(settings, self._trust_pem)
        old, self._session = self._session, None
        self._settings = settings
        if origin is not None:
            self.origin = origin
        self._context = context
        self._generation += 1
        self._diagnosed.clear()
        self._unavailable_until = self._clock.now() + self._restart_s
        self._events.emit(
            OutgoingTlsApplied(
                at=self._clock.now(),
                selected=tuple(s.iana for s in settings.selected),
                disabled=tuple(s.iana for s in settings.disabled),
                is_default=settings.is_default,
                unavailable_s=self._restart_s,
            )
        )
        if old is not None:
            await old.close()

    async def close(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def probe_handshake(host: str, port: int, context: ssl.SSLContext) -> tuple[str, str] | None:
    """(protocol, OpenSSL cipher) a diagnostic handshake negotiated, or None if it failed."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            _, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=sni_name(host) or ""
            )
            ssl_object = writer.get_extra_info("ssl_object")
            cipher = ssl_object.cipher() if ssl_object is not None else None
            if cipher is None:
                return None
            return (ssl_object.version() or "?", cipher[0])
    except (OSError, ssl.SSLError, TimeoutError):
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    await writer.wait_closed()
