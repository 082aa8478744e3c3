"""What a configuration says about one TLS listener: shared values for every actor's config.

Responsibility: the frozen values the gatekeeper's and the UEM's configurations parse their
``tls`` sections into (which certificate files, which versions, ciphers and client-certificate
mode), so the actors describe a listener the same way without importing each other. It must
not read files or parse YAML: each actor's config module validates its own keys and reports
its own errors; ``labpki.files.load_configured_credential`` reads the files a value names.
"""

from __future__ import annotations

import enum
import ssl

import attrs

from labpki.errors import PkiError


class ClientCertMode(enum.Enum):
    """Whether a server asks devices for a client certificate (mutual TLS)."""

    #: No CertificateRequest; any device may connect.
    OFF = "off"
    #: Ask; a device without a certificate still connects, one with a bad certificate does not.
    OPTIONAL = "optional"
    #: A device without a certificate the configured roots vouch for fails the handshake.
    REQUIRED = "required"

    @classmethod
    def parse(cls, value: str, *, source: str, key: str) -> ClientCertMode:
        """The mode named ``off``/``optional``/``required``; ``PkiError`` naming the setting."""
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise PkiError(
                f"{source}: {key}: expected off, optional or required, got {value!r}"
            ) from None


@attrs.frozen
class Pkcs12File:
    """A PKCS#12 file (certificate, key, chain) and the environment variable with its password
    (None: no password, or the empty one)."""

    path: str
    password_env: str | None = None


@attrs.frozen
class PemFiles:
    """A PEM certificate chain (leaf first) and its PEM private key."""

    cert_chain: str
    key: str


@attrs.frozen(kw_only=True)
class ListenerTls:
    """TLS of one listening port; disabled by default, TLS 1.2 at least when enabled."""

    enabled: bool = False
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    #: None: the newest version the ssl module speaks.
    max_version: ssl.TLSVersion | None = None
    #: OpenSSL cipher string for TLS 1.2 (None: Python's defaults).
    ciphers: str | None = None
    #: None: the in-process lab supplies a certificate from its CA.
    certificate: Pkcs12File | PemFiles | None = None
    #: Mutual TLS (only the gatekeeper's device port asks for client certificates).
    client_certificates: ClientCertMode = ClientCertMode.OFF
    #: PEM roots client certificates must chain to (None: the lab's root).
    client_ca: str | None = None
