"""Certificates with their keys: what a TLS server presents and what a CA or device holds.

Responsibility: the two values ``Issued`` (one certificate and its key: a CA's, or a device's
client identity for mutual TLS) and ``ServerCredential`` (a server certificate, its key and the
chain up to, not including, the root), their PEM and PKCS#12 codecs, and the checks a credential
read from a file must pass before anyone presents it. It must not open sockets or build ``ssl``
contexts (``labpki.contexts`` does that), it never opens files (callers read them and name them
in ``source``) and it never writes a key to disk.

Theory of operation: the four readers (``Issued.from_pkcs12``/``from_pem`` for a client
identity, ``ServerCredential.from_pkcs12``/``from_pem`` for a server) differ only in the
extended key usage they demand. Each bounds and parses its input (``_pkcs12_parts``,
``_pem_parts``) and funnels into the one ``_checked``: the key belongs to the certificate, the
validity window holds at ``now``, the certificate is for that purpose, and the other
certificates form the leaf's path, ordered leaf-ward with the root dropped
(``labpki.chain``). With extended key usages listed, a server's certificate must allow
serverAuth and a device's clientAuth (RFC 5280 4.2.1.12); the peer's OpenSSL would refuse it
anyway, mid-handshake and with a far vaguer message.
"""

from __future__ import annotations

import contextlib
import ipaddress
import warnings
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final, TypeAlias

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from labpki.chain import is_self_signed, order_chain
from labpki.errors import PkiError

#: Private keys a TLS endpoint may hold (what OpenSSL 3 and the ``ssl`` module can serve with).
PrivateKey: TypeAlias = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)

#: Largest PEM or PKCS#12 input accepted, in bytes; a real chain is a few kilobytes.
MAX_INPUT_BYTES: Final = 1 << 20
#: Smallest RSA key accepted: OpenSSL 3 at Python's security level 2 refuses smaller ones.
MIN_RSA_BITS: Final = 2048

#: What a leaf is for (RFC 5280 4.2.1.12) -> (who uses it, the usage's name) for messages.
_PURPOSES: Final[Mapping[ObjectIdentifier, tuple[str, str]]] = {
    ExtendedKeyUsageOID.SERVER_AUTH: ("TLS servers", "serverAuth"),
    ExtendedKeyUsageOID.CLIENT_AUTH: ("TLS clients", "clientAuth"),
}

#: A leaf, its key and the other certificates that came with it, as parsed (unchecked).
_Parts: TypeAlias = tuple[x509.Certificate, PrivateKey, list[x509.Certificate]]

#: What cryptography raises, at load time or lazily on first use, for a damaged certificate:
#: besides ValueError, an unknown version, a repeated extension, a name of an unknown string
#: type (KeyError) or a general name it cannot represent.
_MALFORMED: Final = (
    ValueError,
    TypeError,
    KeyError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)

_DER: Final = serialization.Encoding.DER
_PEM: Final = serialization.Encoding.PEM
_SPKI: Final = serialization.PublicFormat.SubjectPublicKeyInfo


def utc(moment: datetime | None) -> datetime:
    """``moment`` as an aware UTC datetime (naive means UTC); now when None."""
    if moment is None:
        return datetime.now(UTC)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    """A UTC moment as ISO 8601 with a ``Z``, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_pem(key: PrivateKey) -> bytes:
    """An unencrypted PKCS#8 PEM of ``key``."""
    return key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def certs_pem(certificates: Sequence[x509.Certificate]) -> bytes:
    """The PEM blocks of ``certificates``, in order."""
    return b"".join(cert.public_bytes(_PEM) for cert in certificates)


@attrs.frozen
class Issued:
    """One certificate and its private key (EC P-256 when ``labpki`` made it).

    ``chain`` holds the certificates between this one and the root, leaf-ward first, root
    excluded: what the holder sends after its own certificate (empty for the root and for a CA
    signed directly by the root).
    """

    certificate: x509.Certificate
    #: Not compared: the certificate already pins the key (and keys have no equality).
    key: PrivateKey = attrs.field(eq=False)
    chain: tuple[x509.Certificate, ...] = ()

    @classmethod
    def from_pkcs12(
        cls,
        data: bytes,
        password: bytes | None,
        *,
        source: str = "PKCS#12 file",
        now: datetime | None = None,
    ) -> Issued:
        """Read a client identity for mutual TLS from a PKCS#12 file (certificate, key, CAs).

        The same checks as ``ServerCredential.from_pkcs12``, except that the certificate must
        allow clientAuth, not serverAuth, when it lists extended key usages. ``password=None``
        also opens a file protected by the empty password. Raises ``PkiError`` naming ``source``.
        """
        return _read_pkcs12(data, password, source, now, ExtendedKeyUsageOID.CLIENT_AUTH)

    @classmethod
    def from_pem(
        cls,
        cert_pem: bytes,
        key_pem: bytes,
        *,
        source: str = "PEM",
        key_source: str | None = None,
        password: bytes | None = None,
        now: datetime | None = None,
    ) -> Issued:
        """Read a client identity from a PEM certificate (then any CAs, in any order) and key.

        Problems with the key itself (unreadable, encrypted, not this certificate's) name
        ``key_source`` (default ``source``); everything else names ``source``.
        """
        sources = (source, key_source)
        return _read_pem(cert_pem, key_pem, password, sources, now, ExtendedKeyUsageOID.CLIENT_AUTH)

    def cert_pem(self) -> bytes:
        """This certificate alone, PEM."""
        return self.certificate.public_bytes(_PEM)

    def chain_pem(self) -> bytes:
        """This certificate followed by ``chain``, PEM: what a TLS peer presents."""
        return certs_pem((self.certificate, *self.chain))

    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return key_pem(self.key)


@attrs.frozen
class ServerCredential:
    """What a TLS server presents: its certificate, key and chain (never the root).

    Build one with ``Hierarchy.server_credential``, ``from_pkcs12`` or ``from_pem``; the named
    constructors check everything a handshake would trip over later.
    """

    certificate: x509.Certificate
    #: Not compared: the certificate already pins the key (and keys have no equality).
    key: PrivateKey = attrs.field(eq=False)
    #: Issuing CA first, then its issuer, up to but not including the root.
    chain: tuple[x509.Certificate, ...]

    @classmethod
    def from_pkcs12(
        cls,
        data: bytes,
        password: bytes | None,
        *,
        source: str = "PKCS#12 file",
        now: datetime | None = None,
    ) -> ServerCredential:
        """Read a PKCS#12 file (certificate, key and chain), as an admin uploads it.

        ``password=None`` also opens a file protected by the empty password (what ``openssl
        pkcs12 -passout pass:`` writes). Raises ``PkiError`` naming ``source``.
        """
        return cls._of(_read_pkcs12(data, password, source, now, ExtendedKeyUsageOID.SERVER_AUTH))

    @classmethod
    def from_pem(
        cls,
        cert_chain_pem: bytes,
        key_pem: bytes,
        *,
        source: str = "PEM",
        key_source: str | None = None,
        password: bytes | None = None,
        now: datetime | None = None,
    ) -> ServerCredential:
        """Read a PEM chain (leaf first, then any CAs in any order) and a PEM private key.

        Problems with the key itself name ``key_source`` (default ``source``).
        """
        sources = (source, key_source)
        purpose = ExtendedKeyUsageOID.SERVER_AUTH
        return cls._of(_read_pem(cert_chain_pem, key_pem, password, sources, now, purpose))

    @classmethod
    def _of(cls, checked: Issued) -> ServerCredential:
        return cls(certificate=checked.certificate, key=checked.key, chain=checked.chain)

    def to_pkcs12(self, password: bytes | None = None, *, name: str = "sentry-sim") -> bytes:
        """This credential as a PKCS#12 file (AES-256 encrypted when ``password`` is given)."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return pkcs12.serialize_key_and_certificates(
            name.encode("utf-8"), self.key, self.certificate, list(self.chain), encryption
        )

    def chain_pem(self) -> bytes:
        """Leaf then chain, PEM: exactly what the server sends."""
        return certs_pem((self.certificate, *self.chain))

    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return key_pem(self.key)

    def summary(self) -> dict[str, object]:
        """A JSON-ready description: names, serial, validity, fingerprint and chain subjects."""
        return {
            **certificate_summary(self.certificate),
            "key": _key_name(self.key),
            "chain": [c.subject.rfc4514_string() for c in self.chain],
        }


def certificate_summary(cert: x509.Certificate) -> dict[str, object]:
    """A JSON-ready description of one certificate (no key, no chain)."""
    dns, ips = san_names(cert)
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = basic.ca
    except x509.ExtensionNotFound:
        is_ca = False
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "not_before": iso(cert.not_valid_before_utc),
        "not_after": iso(cert.not_valid_after_utc),
        "sha256": fingerprint(cert),
        "dns_names": dns,
        "ip_addresses": ips,
        "ca": is_ca,
        "self_signed": is_self_signed(cert),
    }


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint as colon-separated upper-case hex, as browsers show it."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def san_names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of the subjectAltName extension; empty lists without one."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    dns = [str(name) for name in san.get_values_for_type(x509.DNSName)]
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return dns, ips


def _key_name(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PrivateKey):
        return "Ed448"
    return type(key).__name__


def _certificate_of(
    key: PrivateKey, certificates: Sequence[x509.Certificate], source: str
) -> x509.Certificate:
    mine = key.public_key().public_bytes(_DER, _SPKI)
    for cert in certificates:
        try:
            if cert.public_key().public_bytes(_DER, _SPKI) == mine:
                return cert
        except _MALFORMED:
            continue
    raise PkiError(f"{source}: the PKCS#12 file has no certificate for its private key")


def check_size(data: bytes, source: str) -> None:
    """``PkiError`` for empty input or input larger than ``MAX_INPUT_BYTES``."""
    if not data:
        raise PkiError(f"{source}: empty input")
    if len(data) > MAX_INPUT_BYTES:
        raise PkiError(f"{source}: {len(data)} bytes, more than the {MAX_INPUT_BYTES} accepted")


def load_pkcs12_file(
    data: bytes, password: bytes | None, source: str
) -> pkcs12.PKCS12KeyAndCertificates:
    """The parsed PKCS#12 file, unchecked; ``PkiError`` naming ``source`` when unreadable."""
    # password=None also opens a file protected by the empty password (openssl -passout pass:).
    try:
        with _lenient_parsing():
            return pkcs12.load_pkcs12(data, password)
    except _MALFORMED:
        pass
    if password is None:
        raise PkiError(f"{source}: not a PKCS#12 file, or it needs a password")
    raise PkiError(f"{source}: wrong password or not a PKCS#12 file")


def load_pem_key(data: bytes, password: bytes | None, source: str) -> PrivateKey:
    """A PEM private key usable for TLS; ``PkiError`` naming ``source`` otherwise."""
    try:
        key = serialization.load_pem_private_key(data, password)
    except TypeError:
        # cryptography raises TypeError both ways round; the password tells which it was.
        if password is None:
            raise PkiError(f"{source}: the private key is encrypted; give its password") from None
        raise PkiError(
            f"{source}: a password was given, but the private key is not encrypted"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise PkiError(
            f"{source}: no readable PEM private key (expected -----BEGIN PRIVATE KEY-----, "
            "or a wrong password)"
        ) from None
    if not isinstance(key, PrivateKey):
        raise PkiError(f"{source}: {_key_name(key)} keys cannot serve TLS (EC, RSA, EdDSA)")
    return key


def _read_pkcs12(
    data: bytes,
    password: bytes | None,
    source: str,
    now: datetime | None,
    purpose: ObjectIdentifier,
) -> Issued:
    """A checked certificate, key and chain from a PKCS#12 file, for ``purpose``."""
    parts = _pkcs12_parts(data, password, source)
    return _checked(*parts, purpose=purpose, source=source, key_source=source, now=now)


def _read_pem(
    cert_pem: bytes,
    key_pem: bytes,
    password: bytes | None,
    sources: tuple[str, str | None],
    now: datetime | None,
    purpose: ObjectIdentifier,
) -> Issued:
    """A checked certificate, key and chain from PEM, for ``purpose``.

    ``sources`` names the certificate input and the key input (None: as the certificate).
    """
    source = sources[0]
    key_source = source if sources[1] is None else sources[1]
    parts = _pem_parts(cert_pem, key_pem, password, source, key_source)
    return _checked(*parts, purpose=purpose, source=source, key_source=key_source, now=now)


def _pkcs12_parts(data: bytes, password: bytes | None, source: str) -> _Parts:
    """Leaf, key and extra certificates of a PKCS#12 file, unchecked; ``PkiError`` otherwise."""
    check_size(data, source)
    loaded = load_pkcs12_file(data, password, source)
    if loaded.key is None:
        raise PkiError(f"{source}: the PKCS#12 file has no private key")
    key = loaded.key
    if not isinstance(key, PrivateKey):
        raise PkiError(f"{source}: {_key_name(key)} keys cannot serve TLS (EC, RSA, EdDSA)")
    extra = [item.certificate for item in loaded.additional_certs]
    if loaded.cert is not None:
        return loaded.cert.certificate, key, extra
    # Some exporters do not tie the certificate to the key (no localKeyId): find it.
    leaf = _certificate_of(key, extra, source)
    extra.remove(leaf)
    return leaf, key, extra


def _pem_parts(
    cert_pem: bytes, key_pem: bytes, password: bytes | None, source: str, key_source: str
) -> _Parts:
    """Leaf (the first certificate), key and the other certificates of a PEM pair, unchecked."""
    check_size(cert_pem, source)
    check_size(key_pem, key_source)
    try:
        with _lenient_parsing():
            certificates = x509.load_pem_x509_certificates(cert_pem)
    except _MALFORMED as exc:
        if b"-----BEGIN CERTIFICATE-----" in cert_pem:
            raise PkiError(f"{source}: malformed certificate: {exc}") from None
        raise PkiError(
            f"{source}: no PEM certificate (expected -----BEGIN CERTIFICATE-----)"
        ) from None
    key = load_pem_key(key_pem, password, key_source)
    return certificates[0], key, certificates[1:]


def _checked(
    leaf: x509.Certificate,
    key: PrivateKey,
    extra: Sequence[x509.Certificate],
    *,
    purpose: ObjectIdentifier,
    source: str,
    key_source: str,
    now: datetime | None,
) -> Issued:
    """The one check every reader shares: key, validity, ``purpose``, and the ordered chain."""
    moment = utc(now)
    try:
        with _lenient_parsing():
            check_key_matches(leaf, key, key_source)
            check_validity(leaf, moment, source)
            _check_usage(leaf, purpose, source)
            chain = order_chain(leaf, extra, source)
            for cert in chain:
                check_validity(cert, moment, source)
    except PkiError:
        raise
    except _MALFORMED as exc:
        # Certificate fields are parsed lazily: a damaged extension surfaces only here.
        raise PkiError(f"{source}: malformed certificate: {exc}") from None
    return Issued(leaf, key, chain)


@contextlib.contextmanager
def _lenient_parsing() -> Iterator[None]:
    """Silence cryptography's warnings about lax encodings while a credential is read.

    It warns when it falls back to BER, meets a non-positive serial or a country name that is
    not two letters; the outcome (a credential that passes every check, or ``PkiError``) is the
    verdict, and a warning turned into an error (as under pytest) must not escape as another
    exception.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def check_key_matches(leaf: x509.Certificate, key: PrivateKey, source: str) -> None:
    """``PkiError`` unless ``key`` is the private half of the certificate's public key."""
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        raise PkiError(
            f"{source}: RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} are needed"
        )
    mine = key.public_key().public_bytes(_DER, _SPKI)
    theirs = leaf.public_key().public_bytes(_DER, _SPKI)
    if mine != theirs:
        raise PkiError(
            f"{source}: the private key does not belong to certificate "
            f"{leaf.subject.rfc4514_string()}"
        )


def check_validity(cert: x509.Certificate, now: datetime, source: str) -> None:
    """``PkiError`` unless ``now`` lies inside the certificate's validity window."""
    who = cert.subject.rfc4514_string() or "(empty subject)"
    if now < cert.not_valid_before_utc:
        raise PkiError(
            f"{source}: certificate {who} is not valid before {iso(cert.not_valid_before_utc)}"
            f" (now {iso(now)})"
        )
    if now > cert.not_valid_after_utc:
        raise PkiError(
            f"{source}: certificate {who} expired {iso(cert.not_valid_after_utc)} (now {iso(now)})"
        )


def _check_usage(leaf: x509.Certificate, purpose: ObjectIdentifier, source: str) -> None:
    # RFC 5280 4.2.1.12: with an EKU present, the certificate is only for the listed purposes.
    # No EKU at all means any purpose. anyExtendedKeyUsage is not enough: OpenSSL's TLS purpose
    # checks refuse it too.
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if purpose not in eku:
        users, usage = _PURPOSES[purpose]
        raise PkiError(
            f"{source}: certificate {leaf.subject.rfc4514_string()} is not for {users} "
            f"(its extended key usage lacks {usage})"
        )


def parse_host(name: str, source: str) -> x509.GeneralName:
    """A subjectAltName entry for ``name``: an IP address when it parses as one, else DNS."""
    text = name.strip()
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    labels = text.rstrip(".").split(".")
    valid = (
        0 < len(text) <= 253
        and all(_dns_label_ok(label) for label in labels[1:])
        and ((labels[0] == "*" and len(labels) > 2) or _dns_label_ok(labels[0]))
    )
    if not valid:
        raise PkiError(
            f"{source}: {name!r} is neither an IP address nor a DNS name "
            "(letters, digits and hyphens, dot-separated; '*.' only as the first label)"
        )
    return x509.DNSName(text.rstrip(".").lower())


def _dns_label_ok(label: str) -> bool:
    return (
        0 < len(label) <= 63
        and label.isascii()
        and all(ch.isalnum() or ch == "-" for ch in label)
        and not label.startswith("-")
        and not label.endswith("-")
    )
