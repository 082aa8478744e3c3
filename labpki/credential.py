"""Certificates with their keys: what a TLS server presents and what a CA or device holds.

Responsibility: the two values ``Issued`` (one certificate and its key) and ``ServerCredential``
(a server certificate, its key and the chain up to, not including, the root), their PEM and
PKCS#12 codecs, and the checks an uploaded credential must pass before any server uses it. It
must not open sockets or build ``ssl`` contexts (``labpki.contexts`` does that) and it never
writes a key to disk.

Theory of operation: every named constructor (``from_pkcs12``, ``from_pem``) funnels into
``_checked``, which bounds the input, proves the key belongs to the certificate, checks the
validity window against ``now``, orders the extra certificates leaf-ward by following
issuer names *and* signatures, and drops self-signed roots, because a server never sends the
root: the device already has it, and sending it would only teach a careless client to trust
whatever root the server chooses. Anything in the bundle that is not on the leaf's path is an
error rather than silently sent along.
"""

from __future__ import annotations

import ipaddress
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, TypeAlias

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

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
#: Most extra certificates a bundle may carry (leaf excluded).
MAX_CHAIN: Final = 8
#: Smallest RSA key accepted: OpenSSL 3 at Python's security level 2 refuses smaller ones.
MIN_RSA_BITS: Final = 2048

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
        check_size(data, source)
        loaded = load_pkcs12_file(data, password, source)
        if loaded.key is None:
            raise PkiError(f"{source}: the PKCS#12 file has no private key")
        key = loaded.key
        if not isinstance(key, PrivateKey):
            raise PkiError(f"{source}: {_key_name(key)} keys cannot serve TLS (EC, RSA, EdDSA)")
        extra = [item.certificate for item in loaded.additional_certs]
        if loaded.cert is not None:
            leaf = loaded.cert.certificate
        else:
            # Some exporters do not tie the certificate to the key (no localKeyId): find it.
            leaf = _certificate_of(key, extra, source)
            extra.remove(leaf)
        return _checked(leaf, key, extra, source=source, now=now)

    @classmethod
    def from_pem(
        cls,
        cert_chain_pem: bytes,
        key_pem: bytes,
        *,
        source: str = "PEM",
        password: bytes | None = None,
        now: datetime | None = None,
    ) -> ServerCredential:
        """Read a PEM chain (leaf first, then any CAs in any order) and a PEM private key."""
        check_size(cert_chain_pem, source)
        check_size(key_pem, source)
        try:
            certificates = x509.load_pem_x509_certificates(cert_chain_pem)
        except ValueError:
            raise PkiError(
                f"{source}: no PEM certificate (expected -----BEGIN CERTIFICATE-----)"
            ) from None
        key = load_pem_key(key_pem, password, source)
        return _checked(certificates[0], key, certificates[1:], source=source, now=now)

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
        except (ValueError, UnsupportedAlgorithm):
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
        with warnings.catch_warnings():
            # cryptography warns when it falls back to BER for a slightly malformed file; the
            # outcome (a credential that passes every check below, or PkiError) is what counts.
            warnings.simplefilter("ignore", UserWarning)
            return pkcs12.load_pkcs12(data, password)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        pass
    if password is None:
        raise PkiError(f"{source}: not a PKCS#12 file, or it needs a password")
    raise PkiError(f"{source}: wrong password or not a PKCS#12 file")


def load_pem_key(data: bytes, password: bytes | None, source: str) -> PrivateKey:
    """A PEM private key usable for TLS; ``PkiError`` naming ``source`` otherwise."""
    try:
        key = serialization.load_pem_private_key(data, password)
    except TypeError:
        # The key is encrypted and no password was given, or the other way round.
        raise PkiError(f"{source}: the private key is encrypted; give its password") from None
    except (ValueError, UnsupportedAlgorithm):
        raise PkiError(
            f"{source}: no readable PEM private key (expected -----BEGIN PRIVATE KEY-----, "
            "or a wrong password)"
        ) from None
    if not isinstance(key, PrivateKey):
        raise PkiError(f"{source}: {_key_name(key)} keys cannot serve TLS (EC, RSA, EdDSA)")
    return key


def _checked(
    leaf: x509.Certificate,
    key: PrivateKey,
    extra: Sequence[x509.Certificate],
    *,
    source: str,
    now: datetime | None,
) -> ServerCredential:
    moment = utc(now)
    try:
        check_key_matches(leaf, key, source)
        check_validity(leaf, moment, source)
        _check_server_usage(leaf, source)
        chain = _order_chain(leaf, extra, source)
        for cert in chain:
            check_validity(cert, moment, source)
    except PkiError:
        raise
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # Certificate fields are parsed lazily: a damaged extension surfaces only here.
        raise PkiError(f"{source}: malformed certificate: {exc}") from None
    return ServerCredential(certificate=leaf, key=key, chain=chain)


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


def _check_server_usage(leaf: x509.Certificate, source: str) -> None:
    # RFC 5280 4.2.1.12: with an EKU present, the certificate is only for the listed purposes.
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if ExtendedKeyUsageOID.SERVER_AUTH not in eku:
        raise PkiError(
            f"{source}: certificate {leaf.subject.rfc4514_string()} is not for TLS servers "
            "(its extended key usage lacks serverAuth)"
        )


def is_self_signed(cert: x509.Certificate) -> bool:
    """True when the certificate names itself as issuer and its own key signed it."""
    return cert.subject == cert.issuer and _issued_by(cert, cert)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _order_chain(
    leaf: x509.Certificate, extra: Sequence[x509.Certificate], source: str
) -> tuple[x509.Certificate, ...]:
    if len(extra) > MAX_CHAIN:
        raise PkiError(f"{source}: {len(extra)} CA certificates; at most {MAX_CHAIN} accepted")
    remaining = [cert for cert in extra if cert != leaf]
    chain: list[x509.Certificate] = []
    current = leaf
    while not is_self_signed(current):
        parent = next((c for c in remaining if _issued_by(current, c)), None)
        if parent is None:
            break
        remaining.remove(parent)
        if is_self_signed(parent):
            break  # the root: the device has it already, a server never sends it
        _check_is_ca(parent, source)
        chain.append(parent)
        current = parent
    strays = [cert for cert in remaining if not is_self_signed(cert)]
    if strays:
        raise PkiError(
            f"{source}: certificate {strays[0].subject.rfc4514_string()} is not in the chain of "
            f"{leaf.subject.rfc4514_string()} (no certificate on that path was signed by it)"
        )
    return tuple(chain)


def _check_is_ca(cert: x509.Certificate, source: str) -> None:
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = None
    if basic is None or not basic.ca:
        raise PkiError(
            f"{source}: chain certificate {cert.subject.rfc4514_string()} is not a CA "
            "(basicConstraints CA:TRUE missing)"
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
