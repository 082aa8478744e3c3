"""The gatekeeper's TLS at run time: served certificates, mutual TLS, trust for its own calls.

Responsibility: turn ``sentry.tls`` (``config.TlsConfig``) into what the listeners and clients
use: one ``labpki.SwappableServerContext`` per TLS port (an admin upload swaps its certificate
without a restart), the PEM roots trusted for the gatekeeper's own calls to the UEM and an
https upstream, and the mutual-TLS check of the device port (``ClientCheck``): a request whose
client certificate names another user or device than the request gets HTTP 403 with the
reason. It reads the certificate files named in the config (the config module only checks
their shape) and reports a bad one as a ``ConfigError`` naming the config file and the key. It
must not decide access otherwise (the gate does), and it never logs or echoes a password.

Theory of operation:
- ``SentryTls.from_config`` loads each enabled port's credential: the PKCS#12 or PEM files of
  ``certificate``, or, when that is null, the ``lab_credential`` the in-process lab made from
  its CA. ``client_ca`` (or the lab's root) is what device certificates must chain to;
  OpenSSL verifies them during the handshake (``required`` without a certificate fails it).
- The identity in a verified certificate (``labpki.identity_of``) is read once per
  connection. On the aiohttp device app (``fast_lane: false``) ``ClientCheck.middleware`` reads
  it from the request's TLS transport. Behind the fast lane the device app listens on plain
  loopback, so the lane checks every request whose identity it can read itself
  (``Peer.refuse``, before its hot-path verdict) and hands every request it passes to the full
  path with an ``X-Sentry-Sim-Client-Identity`` header carrying the connection's identity and
  a per-gatekeeper secret; the middleware believes only a header with that secret (a device
  cannot forge it, nor can a local process that reaches the internal port directly) and
  removes it before anything is forwarded upstream.
- A refusal is a ``RequestDenied`` event (``why="client_certificate"``, HTTP 403) and an
  answer whose body and ``X-Sentry-Sim-Reason`` header say what did not match.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import ssl
from collections.abc import Mapping
from typing import Any, Final

import attrs
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict

from activesync.errors import ActiveSyncError
from activesync.query import parse_request
from labpki import (
    ClientCertMode,
    CredentialFileError,
    DeviceIdentity,
    ListenerTls,
    PemFiles,
    Pkcs12File,
    PkiError,
    ServerCredential,
    SwappableServerContext,
    client_context,
    identity_mismatch,
    identity_of,
    load_configured_credential,
    read_roots,
)
from sentry_sim.config import ConfigError, SentryConfig, TlsConfig
from sentry_sim.device_list import record_key, split_key
from sentry_sim.events import RequestDenied, next_request_id
from sentry_sim.service import Sentry

#: Header of the gatekeeper's own 403 that says why (also in the body).
REASON_HEADER: Final = "X-Sentry-Sim-Reason"
#: Header the fast lane adds to requests it hands to the full path (module docstring).
IDENTITY_HEADER: Final = "X-Sentry-Sim-Client-Identity"
#: ``RequestDenied.why`` of a mutual-TLS refusal.
DENIED_WHY: Final = "client_certificate"
#: The two ports that can speak TLS.
PORTS: Final = ("device", "admin")

_NO_CERTIFICATE: Final = "-"
_REQUIRED_REASON: Final = "a client certificate is required on this port"


def _header_safe(text: str) -> str:
    """``text`` as one header line (no CR/LF, ASCII, bounded)."""
    flat = " ".join(text.split())
    return flat.encode("ascii", "replace").decode("ascii")[:300]


def _roots(path: str, source: str, where: str) -> bytes:
    try:
        return read_roots(path)
    except CredentialFileError as exc:
        raise ConfigError(source, where, exc.problem) from None


def _credential(
    files: Pkcs12File | PemFiles | None,
    where: str,
    source: str,
    lab_credential: ServerCredential | None,
) -> ServerCredential:
    try:
        return load_configured_credential(files, lab_credential=lab_credential)
    except CredentialFileError as exc:
        raise ConfigError(source, exc.key(where), exc.problem) from None


def _port(
    settings: ListenerTls,
    where: str,
    source: str,
    lab_credential: ServerCredential | None,
    lab_root_pem: bytes | None,
) -> SwappableServerContext | None:
    if not settings.enabled:
        return None
    credential = _credential(settings.certificate, f"{where}.certificate", source, lab_credential)
    client_roots: bytes | None = None
    if settings.client_certificates is not ClientCertMode.OFF:
        if settings.client_ca is not None:
            client_roots = _roots(settings.client_ca, source, f"{where}.client_ca")
        elif lab_root_pem is not None:
            client_roots = lab_root_pem
        else:
            raise ConfigError(
                source,
                f"{where}.client_ca",
                f"client_certificates: {settings.client_certificates.value} needs the PEM "
                "root(s) device certificates chain to (only the in-process lab supplies its own)",
            )
    try:
        return SwappableServerContext(
            credential,
            min_version=settings.min_version,
            max_version=settings.max_version,
            ciphers=settings.ciphers,
            client_cert=settings.client_certificates,
            client_roots_pem=client_roots,
        )
    except PkiError as exc:
        raise ConfigError(source, where, str(exc)) from None


@attrs.define(eq=False)
class SentryTls:
    """The TLS of one gatekeeper: its two ports and the roots it trusts for its own calls.

    Pass it to ``scenarios.cli_sentry.serve(..., tls=...)``. ``device``/``admin`` are None for
    a plain-HTTP port; each listener gets ``.context`` once, and ``replace`` on it (the admin
    API's ``PUT /api/v1/certificates/{port}``) swaps the served certificate for new handshakes.
    """

    device: SwappableServerContext | None = None
    admin: SwappableServerContext | None = None
    #: PEM roots for calls to the UEM and an https upstream (None: the system store).
    trust_pem: bytes | None = None
    #: Mutual TLS on the device port.
    client_cert: ClientCertMode = ClientCertMode.OFF
    #: The settings the ports were built from (shown by ``GET /api/v1/certificates``).
    settings: TlsConfig = attrs.field(factory=TlsConfig)

    @classmethod
    def from_config(
        cls,
        config: SentryConfig | TlsConfig,
        *,
        lab_credential: ServerCredential | None = None,
        lab_root_pem: bytes | None = None,
    ) -> SentryTls:
        """Build from ``sentry.tls``, reading its files. A port whose ``certificate`` is null
        serves ``lab_credential``; ``lab_root_pem`` stands in for a null ``client_ca`` and a
        null ``trust``. Raises ``ConfigError`` (file and key named) for a bad file."""
        settings = config.tls if isinstance(config, SentryConfig) else config
        source = settings.source
        trust = lab_root_pem
        if settings.trust is not None:
            trust = _roots(settings.trust, source, "sentry.tls.trust")
        return cls(
            device=_port(
                settings.device, "sentry.tls.device", source, lab_credential, lab_root_pem
            ),
            admin=_port(settings.admin, "sentry.tls.admin", source, lab_credential, lab_root_pem),
            trust_pem=trust,
            client_cert=settings.device.client_certificates
            if settings.device.enabled
            else ClientCertMode.OFF,
            settings=settings,
        )

    def port(self, name: str) -> SwappableServerContext | None:
        """The swappable context of ``"device"`` or ``"admin"`` (None: plain HTTP)."""
        if name == "device":
            return self.device
        if name == "admin":
            return self.admin
        raise ValueError(f"TLS port: expected one of {', '.join(PORTS)}, got {name!r}")

    def port_settings(self, name: str) -> ListenerTls:
        self.port(name)
        return self.settings.device if name == "device" else self.settings.admin

    def outgoing_context(self) -> ssl.SSLContext | None:
        """The client context for the gatekeeper's own https calls: only ``trust_pem``'s roots,
        host names checked; None means the system store (``ssl.create_default_context``)."""
        return None if self.trust_pem is None else client_context(self.trust_pem)

    def client_check(self, sentry: Sentry) -> ClientCheck | None:
        """The device port's mutual-TLS check, or None when client certificates are off."""
        if self.device is None or self.client_cert is ClientCertMode.OFF:
            return None
        return ClientCheck(self.client_cert, sentry)


class Peer:
    """The client identity of one device connection, read once after its handshake."""

    __slots__ = ("allowed", "check", "handoff", "identity")

    def __init__(self, check: ClientCheck, identity: DeviceIdentity | None) -> None:
        self.check = check
        self.identity = identity
        #: The header line that tells the full path this connection's identity.
        self.handoff = check.handoff_line(identity)
        #: The last record let through: a phone's keep-alive connection repeats it.
        self.allowed = ""

    def refuse(self, key: str, command: str) -> str | None:
        """The reason to refuse a request of record ``key`` on this connection (and its
        ``RequestDenied`` event emitted), or None to let it through."""
        if key == self.allowed:
            return None
        reason = self.check.reason(self.identity, key)
        if reason is None:
            self.allowed = key
        else:
            self.check.denied(key, command, reason)
        return reason


@attrs.define(eq=False)
class ClientCheck:
    """Mutual TLS on the device port: does a request match its connection's certificate?"""

    mode: ClientCertMode
    sentry: Sentry
    #: Proves that an ``IDENTITY_HEADER`` came from this gatekeeper's fast lane.
    secret: str = attrs.field(factory=lambda: secrets.token_urlsafe(24))

    def reason(self, identity: DeviceIdentity | None, key: str) -> str | None:
        """Why a request of record ``key`` may not pass with ``identity``, or None."""
        if identity is None:
            # optional: a device without a certificate is let through as before.
            return _REQUIRED_REASON if self.mode is ClientCertMode.REQUIRED else None
        user, device_id = split_key(key)
        mismatch = identity_mismatch(identity, user, device_id)
        if mismatch is None:
            return None
        # The same text goes into the body and the reason header: one line of ASCII.
        return _header_safe(f"client certificate mismatch: {mismatch}")

    def denied(self, key: str, command: str, reason: str) -> None:
        self.sentry.emit(
            RequestDenied(
                at=self.sentry.clock.now(),
                request_id=next_request_id(),
                record=key,
                command=command,
                why=DENIED_WHY,
                http_status=403,
                eas_status=None,
            )
        )

    # -- the fast lane's side --------------------------------------------------------------
    def peer(self, transport: asyncio.BaseTransport) -> Peer:
        """The identity of a TLS connection the lane just accepted (handshake done)."""
        peercert: Mapping[str, Any] | None = transport.get_extra_info("peercert")
        return Peer(self, identity_of(peercert))

    def handoff_line(self, identity: DeviceIdentity | None) -> bytes:
        if identity is None:
            value = f"{self.secret} {_NO_CERTIFICATE}"
        else:
            value = f"{self.secret} {json.dumps([identity.user, identity.device_id])}"
        return f"{IDENTITY_HEADER}: {value}\r\n".encode("ascii")

    def _handed_over(self, values: list[str]) -> tuple[bool, DeviceIdentity | None]:
        """(came from the lane, identity) of the ``IDENTITY_HEADER`` values of a request."""
        for value in values:
            secret, _, rest = value.partition(" ")
            if not hmac.compare_digest(secret.encode(), self.secret.encode()):
                continue
            if rest == _NO_CERTIFICATE:
                return True, None
            try:
                user, device_id = json.loads(rest)
            except (ValueError, TypeError):
                return True, None
            if isinstance(user, str) and (device_id is None or isinstance(device_id, str)):
                return True, DeviceIdentity(user=user, device_id=device_id)
            return True, None
        return False, None

    # -- the full path's side --------------------------------------------------------------
    def request_identity(self, request: web.BaseRequest) -> DeviceIdentity | None:
        """The identity behind a request of the device app: its own TLS connection's, or the
        one the fast lane handed over with the secret (None: no certificate)."""
        transport = request.transport
        if transport is not None and transport.get_extra_info("ssl_object") is not None:
            peercert: Mapping[str, Any] | None = transport.get_extra_info("peercert")
            return identity_of(peercert)
        _, identity = self._handed_over(request.headers.getall(IDENTITY_HEADER, []))
        return identity

    def middleware(self) -> Middleware:
        """The device app's check (``sentry_sim.app.make_app`` installs it)."""

        @web.middleware
        async def client_certificate(request: web.Request, handler: Handler) -> web.StreamResponse:
            identity = self.request_identity(request)
            if IDENTITY_HEADER in request.headers:
                # Never forwarded upstream: it carries the secret.
                headers = CIMultiDict(request.headers)
                headers.popall(IDENTITY_HEADER)
                request = request.clone(headers=headers)
            if request.method != "OPTIONS":
                refusal = self._refusal(request, identity)
                if refusal is not None:
                    return web.Response(status=403, text=refusal, headers={REASON_HEADER: refusal})
            return await handler(request)

        return client_certificate

    def _refusal(self, request: web.Request, identity: DeviceIdentity | None) -> str | None:
        try:
            eas = parse_request(
                request.method, request.path, request.rel_url.raw_query_string, request.headers
            )
        except ActiveSyncError:
            return None  # the handler answers malformed requests as it always did
        if eas.user is None:
            return None
        key = record_key(eas.user, eas.device_id)
        reason = self.reason(identity, key)
        if reason is not None:
            self.denied(key, eas.command, reason)
        return reason
