"""The aiohttp shell around a ``DeviceClient``: send its requests, wait, sleep, report.

Responsibility: the I/O the pure client core leaves out. ``AiohttpTransport`` sends one
``HttpRequest`` over a shared ``aiohttp.ClientSession`` and returns the ``HttpResponse``;
``DeviceRunner`` drives a client through a script of steps, honouring ``Backoff`` actions on
the injected clock, bounding every request by a timeout, and handing each ``StepResult`` to a
callback (the CLI prints them, the fleet collects them). It must not decide anything about
EAS: every decision is the client's.

Theory of operation: for each step, ``begin()`` gives the first request; the loop sends it,
feeds the response to ``receive()`` and follows the action (``Send``: go on; ``Backoff``: sleep
on the clock, then resend; ``Done``: next step; ``Halt``: stop the script). A transport failure
(connection refused, timeout, oversized body) ends the step through ``client.abandon()`` and
stops the script with an error message that names the URL.

TLS: ``DeviceTls`` is how a phone speaks https: an ``ssl.SSLContext`` that trusts only the
root it was given (``labpki.client_context``: no system store, host names checked), like a
device that trusts only its MDM's root, and optionally presents a client certificate for
mutual TLS. ``DeviceTls.from_files`` reads the root PEM and the identity (PEM certificate and
key, or PKCS#12) and names the file in every error (``TlsSetupError``). The transport passes
the context per request, so devices with different identities can share one session (the pool
keys connections by context). TLS failures become one-line ``TransportError`` messages: a
server whose chain does not lead to the trusted root gives ``TLS: certificate verify failed
for https://127.0.0.1:PORT — does --ca name the lab's root?``; a server that refuses the
client certificate (TLS 1.3 reports that only as a closed connection) gets a hint about it.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final, Protocol

import aiohttp
import attrs
from yarl import URL

from device_sim.client import (
    Backoff,
    Block,
    DeviceClient,
    DeviceState,
    Done,
    Halt,
    Ping,
    Send,
    Step,
    StepResult,
)
from device_sim.wire import HttpRequest, HttpResponse
from labpki import Issued, PkiError, client_context, parse_roots
from simclock import Clock

#: Largest response body read (a Sync window of 100 mails fits many times over).
MAX_BODY: Final = 16 * 1024 * 1024
#: Seconds allowed for one ordinary request.
DEFAULT_TIMEOUT: Final = 30.0


#: Largest root, certificate, key or PKCS#12 file read (real ones are a few kilobytes).
MAX_TLS_FILE: Final = 1 << 20
#: What a device asks when the server's chain does not lead to its root (the CLI's wording).
CA_HINT: Final = "does --ca name the lab's root?"
#: What a device asks when a TLS server closes the connection on it (mutual TLS refused).
CLIENT_CERT_HINT: Final = (
    "a server that requires a client certificate closes the connection when none (or an "
    "untrusted one) is presented: check the device's client certificate (--client-cert)"
)


class TransportError(Exception):
    """No usable response: connection refused, timeout, a body beyond ``MAX_BODY``."""


class TlsSetupError(ValueError):
    """A root, client certificate, key or PKCS#12 file that cannot be used; names the file."""


def _read_tls_file(path: str | os.PathLike[str], what: str) -> bytes:
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            data = handle.read(MAX_TLS_FILE + 1)
    except OSError as exc:
        raise TlsSetupError(f"{name}: cannot read the {what}: {exc.strerror or exc}") from None
    if not data:
        raise TlsSetupError(f"{name}: the {what} file is empty")
    if len(data) > MAX_TLS_FILE:
        raise TlsSetupError(f"{name}: larger than {MAX_TLS_FILE} bytes; not a {what}")
    return data


def read_root(path: str | os.PathLike[str]) -> bytes:
    """The PEM root certificate(s) in ``path``; ``TlsSetupError`` naming the file otherwise."""
    data = _read_tls_file(path, "root certificate (PEM)")
    try:
        parse_roots(data, source=os.fspath(path))
    except PkiError as exc:
        raise TlsSetupError(f"{exc}; give the lab's root.pem") from None
    return data


def read_identity(
    cert: str | os.PathLike[str],
    key: str | os.PathLike[str] | None = None,
    *,
    password: bytes | None = None,
) -> Issued:
    """A client identity for mutual TLS: a PKCS#12 file (``key`` None; ``.p12``/``.pfx``) or
    a PEM certificate (optionally followed by its CAs) and its PEM key.

    The CAs on the certificate's path are sent after it, so a server that trusts only the root
    can build the path; a root in the bundle is dropped. ``labpki`` checks the rest (key
    matches, validity window, clientAuth, chain): see ``Issued.from_pkcs12``. ``TlsSetupError``
    names the file that is wrong: the key file for problems with the key itself.
    """
    cert_name = os.fspath(cert)
    data = _read_tls_file(cert, "client certificate")
    try:
        if key is not None:
            key_data = _read_tls_file(key, "client key")
            return Issued.from_pem(
                data, key_data, source=cert_name, key_source=os.fspath(key), password=password
            )
        if data.lstrip().startswith(b"-----BEGIN"):
            raise TlsSetupError(
                f"{cert_name}: a PEM certificate needs its key too (--client-key FILE); only a "
                "PKCS#12 file (.p12) carries the key inside"
            )
        return Issued.from_pkcs12(data, password, source=cert_name)
    except PkiError as exc:
        # labpki's message already starts with the file it names (source or key_source).
        raise TlsSetupError(str(exc)) from None


@attrs.frozen
class DeviceTls:
    """How a device speaks https: a context trusting only one root, and the hints to give."""

    #: Trusts only the given root(s), checks host names, presents the identity if any.
    context: ssl.SSLContext
    #: Said after ``TLS: certificate verify failed for URL —``.
    ca_hint: str = CA_HINT
    #: Said when a TLS server closes the connection on the device (mutual TLS refused).
    client_hint: str = CLIENT_CERT_HINT

    @classmethod
    def from_root(
        cls,
        root_pem: bytes,
        *,
        identity: Issued | None = None,
        ca_hint: str = CA_HINT,
        client_hint: str = CLIENT_CERT_HINT,
    ) -> DeviceTls:
        """Trust only ``root_pem`` (PEM bytes); present ``identity`` for mutual TLS."""
        try:
            context = client_context(root_pem, identity=identity)
        except PkiError as exc:
            raise TlsSetupError(str(exc)) from None
        return cls(context, ca_hint=ca_hint, client_hint=client_hint)

    @classmethod
    def from_files(
        cls,
        ca: str | os.PathLike[str],
        *,
        client_cert: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
        password: bytes | None = None,
        ca_hint: str = CA_HINT,
        client_hint: str = CLIENT_CERT_HINT,
    ) -> DeviceTls:
        """Trust only the root PEM file ``ca``; with ``client_cert`` (PKCS#12, or PEM with
        ``client_key``) present that identity. ``TlsSetupError`` names the file."""
        if client_key is not None and client_cert is None:
            raise TlsSetupError(f"{os.fspath(client_key)}: a client key without its certificate")
        root = read_root(ca)
        identity = None
        if client_cert is not None:
            identity = read_identity(client_cert, client_key, password=password)
        try:
            context = client_context(root, identity=identity)
        except PkiError as exc:
            where = os.fspath(client_cert) if client_cert is not None else os.fspath(ca)
            raise TlsSetupError(f"{where}: {exc}") from None
        return cls(context, ca_hint=ca_hint, client_hint=client_hint)

    @classmethod
    def coerce(cls, value: DeviceTls | ssl.SSLContext | str | os.PathLike[str]) -> DeviceTls:
        """A ``DeviceTls`` from itself, a ready ``ssl.SSLContext`` or a root PEM path."""
        if isinstance(value, DeviceTls):
            return value
        if isinstance(value, ssl.SSLContext):
            return cls(value)
        return cls.from_files(Path(value))


class Transport(Protocol):
    """Anything that turns a request into a response (aiohttp, a fake in tests)."""

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        """Send ``request``; raise ``TransportError`` when no response can be had.

        The caller bounds the call with ``asyncio.timeout``."""
        ...


class AiohttpTransport:
    """Sends requests to ``base_url`` (e.g. ``http://127.0.0.1:8443``) over ``session``.

    ``tls`` (a ``DeviceTls``, an ``ssl.SSLContext`` or a root PEM path) is used for an
    ``https://`` URL instead of the session's default (the system's trust store).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        tls: DeviceTls | ssl.SSLContext | str | os.PathLike[str] | None = None,
    ) -> None:
        self._session = session
        self.base_url = base_url.rstrip("/")
        self.tls = None if tls is None else DeviceTls.coerce(tls)
        self._secure = self.base_url.lower().startswith("https://")
        # aiohttp's default (True) verifies against the system store.
        self._ssl: ssl.SSLContext | bool = True if self.tls is None else self.tls.context

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        # The query is already escaped (plain form) or base64 (which must keep its '+', '/'
        # and '='): tell yarl not to touch it.
        url = URL(self.base_url + request.path_and_query, encoded=True)
        try:
            async with self._session.request(
                request.method,
                url,
                headers=list(request.headers),
                data=request.body or None,
                allow_redirects=False,
                ssl=self._ssl,
            ) as response:
                body = await response.content.read(MAX_BODY + 1)
                if len(body) > MAX_BODY:
                    raise TransportError(
                        f"{self.base_url}: response body larger than {MAX_BODY} bytes"
                    )
                return HttpResponse(response.status, list(response.headers.items()), body)
        except aiohttp.ClientConnectorCertificateError as exc:
            raise TransportError(self._verify_failed(exc)) from None
        except aiohttp.ClientConnectorSSLError as exc:
            raise TransportError(self._handshake_failed(exc)) from None
        except aiohttp.ClientConnectorError as exc:
            raise TransportError(
                f"cannot connect to {self.base_url}: {exc.os_error.strerror or exc}"
            ) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            # TLS 1.3 finishes the client's side of the handshake before the server checks the
            # client certificate, so a refusal arrives as a closed or reset connection.
            text = f"{self.base_url}: {type(exc).__name__}: {exc}"
            if self._secure:
                text += f" ({self._client_hint()})"
            raise TransportError(text) from None
        except aiohttp.ClientError as exc:
            raise TransportError(f"{self.base_url}: {type(exc).__name__}: {exc}") from None

    def _ca_hint(self) -> str:
        return CA_HINT if self.tls is None else self.tls.ca_hint

    def _client_hint(self) -> str:
        return CLIENT_CERT_HINT if self.tls is None else self.tls.client_hint

    def _verify_failed(self, exc: aiohttp.ClientConnectorCertificateError) -> str:
        error = exc.certificate_error
        detail = getattr(error, "verify_message", None) or str(error)
        return (
            f"TLS: certificate verify failed for {self.base_url} — {self._ca_hint()} "
            f"(OpenSSL: {detail})"
        )

    def _handshake_failed(self, exc: aiohttp.ClientConnectorSSLError) -> str:
        reason = getattr(exc.os_error, "reason", None) or str(exc.os_error)
        text = f"TLS: handshake with {self.base_url} failed: {reason}"
        if reason == "WRONG_VERSION_NUMBER":
            # The answer was not TLS at all.
            text += " (the server speaks plain http? try http://)"
        elif "ALERT" in str(reason).upper():
            text += f" ({self._client_hint()})"
        return text


@attrs.frozen(kw_only=True)
class ScriptReport:
    """How a script went for one device."""

    #: Every exchange in order.
    results: tuple[StepResult, ...]
    #: Steps that finished with Done(True).
    steps_succeeded: int
    #: Steps attempted.
    steps_run: int
    #: The device's state at the end.
    state: DeviceState
    #: Why the device is blocked, when it ended BLOCKED.
    block: Block | None
    #: A transport failure that stopped the script, or None.
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        """Every step ran and succeeded, and the device is neither blocked nor wiped."""
        return (
            self.error is None
            and self.steps_succeeded == self.steps_run
            and self.state not in (DeviceState.BLOCKED, DeviceState.WIPED, DeviceState.AUTH_FAILED)
        )

    @property
    def blocked(self) -> bool:
        return self.state is DeviceState.BLOCKED


@attrs.define(eq=False)
class DeviceRunner:
    """Runs one client's steps over a transport, on a clock."""

    client: DeviceClient
    transport: Transport
    clock: Clock
    #: Called with every exchange's result as it happens.
    on_result: Callable[[StepResult], None] | None = None
    #: Seconds allowed for one ordinary request; a Ping gets its heartbeat on top.
    request_timeout: float = DEFAULT_TIMEOUT

    async def run_step(self, step: Step) -> tuple[list[StepResult], bool]:
        """Run one step to its end; its results and whether it succeeded.

        Raises ``TransportError`` when no response could be had (the abandoned exchange has
        already been reported to ``on_result``).
        """
        results: list[StepResult] = []
        ok = await self._run_step(step, results)
        return results, ok

    async def run_script(self, steps: Iterable[Step]) -> ScriptReport:
        """Run ``steps`` in order; stop early when the device halts or the transport fails."""
        results: list[StepResult] = []
        run = succeeded = 0
        error: str | None = None
        for step in steps:
            run += 1
            try:
                ok = await self._run_step(step, results)
            except TransportError as exc:
                error = str(exc)
                break
            succeeded += ok
            if results and isinstance(results[-1].action, Halt):
                break
        return ScriptReport(
            results=tuple(results),
            steps_succeeded=succeeded,
            steps_run=run,
            state=self.client.state,
            block=self.client.block if self.client.state is DeviceState.BLOCKED else None,
            error=error,
        )

    async def _run_step(self, step: Step, results: list[StepResult]) -> bool:
        timeout = self.request_timeout
        if isinstance(step, Ping):
            # A Ping is held by the server for up to its heartbeat (MS-ASCMD 2.2.1.13).
            timeout += step.heartbeat
        request: HttpRequest = self.client.begin(step)
        while True:
            try:
                async with asyncio.timeout(timeout):
                    response = await self.transport(request)
            except TimeoutError:
                why = f"no response within {timeout:g} s"
                self._emit(self.client.abandon(why, self.clock.now()), results)
                raise TransportError(why) from None
            except TransportError as exc:
                self._emit(self.client.abandon(str(exc), self.clock.now()), results)
                raise
            result = self.client.receive(response, self.clock.now())
            self._emit(result, results)
            action = result.action
            if isinstance(action, Send):
                request = action.request
            elif isinstance(action, Backoff):
                await self.clock.sleep(action.seconds)
                request = action.request
            elif isinstance(action, Done):
                return action.succeeded
            else:
                assert isinstance(action, Halt)
                return False

    def _emit(self, result: StepResult, results: list[StepResult]) -> None:
        results.append(result)
        if self.on_result is not None:
            self.on_result(result)
