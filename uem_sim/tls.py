"""The UEM's TLS at run time: served certificates of its two ports, trust for its own calls.

Responsibility: turn ``uem.tls`` and ``uem.outgoing_tls.trust`` (``uem_sim.config``) into what
the listeners and the outgoing client use: one ``labpki.SwappableServerContext`` per TLS port
(an admin upload through ``PUT /api/v1/certificates/{api|admin}`` swaps its certificate for new
handshakes without a restart) and the PEM roots the outgoing client trusts. It reads the files
the config names and reports a bad one as a ``ConfigError`` naming the config file and the
key. Must not: listen, call out, or log or echo a password.

How to use it (the lab and ``sentry-sim uem`` do this)::

    tls = UemTls.from_config(config, lab_credential=cred, lab_root_pem=root)   # or without
    app = make_app(config, admin_token=token, tls=tls)
    api = await start_site(app, host, port, ssl_context=tls.context("api"))
    # admin listener: a second site on the same runner with ssl_context=tls.context("admin")

A port whose ``certificate`` is null serves ``lab_credential`` (the in-process lab makes one
from its CA); without one that is a ``ConfigError``. ``outgoing_trust_pem`` is the file of
``uem.outgoing_tls.trust``, else ``lab_root_pem``, else None (the system store).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any, Final

import attrs

import labpki
from labpki import (
    CredentialFileError,
    ListenerTls,
    PemFiles,
    Pkcs12File,
    PkiError,
    ServerCredential,
    SwappableServerContext,
    load_configured_credential,
)
from uem_sim.config import TlsConfig, UemConfig, tls_version_text
from uem_sim.errors import ConfigError

#: The two ports that can speak TLS.
PORTS: Final = ("api", "admin")


def read_roots(path: str, source: str, where: str) -> bytes:
    """PEM roots from ``path``; ``ConfigError`` when the file holds no CA certificate."""
    try:
        return labpki.read_roots(path)
    except CredentialFileError as exc:
        raise ConfigError(source, where, exc.problem) from None


def load_credential(
    files: Pkcs12File | PemFiles | None,
    where: str,
    source: str,
    lab_credential: ServerCredential | None,
    environ: Mapping[str, str] | None = None,
) -> ServerCredential:
    """The credential ``files`` name (or ``lab_credential`` for None); ``ConfigError``."""
    try:
        return load_configured_credential(files, lab_credential=lab_credential, environ=environ)
    except CredentialFileError as exc:
        raise ConfigError(source, exc.key(where), exc.problem) from None


def _port(
    settings: ListenerTls,
    where: str,
    source: str,
    lab_credential: ServerCredential | None,
    environ: Mapping[str, str] | None,
) -> SwappableServerContext | None:
    if not settings.enabled:
        return None
    credential = load_credential(
        settings.certificate, f"{where}.certificate", source, lab_credential, environ
    )
    try:
        return SwappableServerContext(
            credential,
            min_version=settings.min_version,
            max_version=settings.max_version,
            ciphers=settings.ciphers,
        )
    except PkiError as exc:
        raise ConfigError(source, where, str(exc)) from None


@attrs.define(eq=False)
class UemTls:
    """The UEM's TLS: its two ports (None: plain HTTP) and the roots of its outgoing calls."""

    api: SwappableServerContext | None = None
    admin: SwappableServerContext | None = None
    #: PEM roots for outgoing calls (None: the system store).
    outgoing_trust_pem: bytes | None = None
    #: The settings the ports were built from (shown by ``GET /api/v1/certificates``).
    settings: TlsConfig = attrs.field(factory=TlsConfig)

    @classmethod
    def from_config(
        cls,
        config: UemConfig,
        *,
        lab_credential: ServerCredential | None = None,
        lab_root_pem: bytes | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> UemTls:
        """Build from ``uem.tls`` and ``uem.outgoing_tls.trust``, reading their files (module
        docstring). ``environ`` (default ``os.environ``) holds PKCS#12 passwords."""
        source = config.source
        trust = lab_root_pem
        if config.outgoing_trust is not None:
            trust = read_roots(config.outgoing_trust, source, "uem.outgoing_tls.trust")
        return cls(
            api=_port(config.tls.api, "uem.tls.api", source, lab_credential, environ),
            admin=_port(config.tls.admin, "uem.tls.admin", source, lab_credential, environ),
            outgoing_trust_pem=trust,
            settings=config.tls,
        )

    def port(self, name: str) -> SwappableServerContext | None:
        """The swappable context of ``"api"`` or ``"admin"`` (None: plain HTTP)."""
        if name == "api":
            return self.api
        if name == "admin":
            return self.admin
        raise ValueError(f"TLS port: expected one of {', '.join(PORTS)}, got {name!r}")

    def context(self, name: str) -> ssl.SSLContext | None:
        """The ``ssl_context`` to give the listener of port ``name`` (None: plain HTTP)."""
        swappable = self.port(name)
        return None if swappable is None else swappable.context

    def port_view(self, name: str) -> dict[str, Any]:
        """One port's TLS for ``GET /api/v1/certificates``: settings, served certificate."""
        swappable = self.port(name)
        settings = self.settings.api if name == "api" else self.settings.admin
        return {
            "port": name,
            "enabled": swappable is not None,
            "min_version": tls_version_text(settings.min_version),
            "max_version": None
            if settings.max_version is None
            else tls_version_text(settings.max_version),
            "ciphers": settings.ciphers,
            "certificate": None if swappable is None else swappable.credential.summary(),
            "swaps": 0 if swappable is None else swappable.swaps,
        }
