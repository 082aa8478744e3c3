"""The lab's certificate authority: root, intermediate and issuing CA, and what they sign.

Responsibility: make a three-level CA hierarchy and issue server certificates (serverAuth) and
device identity certificates (clientAuth) from its issuing CA; write it to a directory and read
it back. It must not build ``ssl`` contexts or open sockets, and it never asks the clock itself
when the caller passed ``now``.

Theory of operation: the shape is the one a device trusting only a federal root meets when it
authenticates an MDM server: the device holds the root, the server sends its certificate plus
every CA below the root, and the device builds the path itself. Path lengths (2, 1, 0) and key
usages are set as RFC 5280 section 4.2.1 asks so that OpenSSL's path validation is exercised
for real. Keys are EC P-256 and certificates ECDSA-SHA256 signed: a hierarchy plus a server
certificate takes milliseconds, so the lab can make a fresh one on every start.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final
from urllib.parse import quote

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labpki.chain import is_self_signed, issued_by
from labpki.credential import (
    Issued,
    PrivateKey,
    ServerCredential,
    check_key_matches,
    load_pem_key,
    parse_host,
    utc,
)
from labpki.errors import PkiError
from labpki.files import read_file

#: The SAN URI prefix that names a device in an identity certificate.
DEVICE_URN_PREFIX: Final = "urn:sentry-sim:device:"

ROOT_DAYS: Final = 3652  #: about 10 years
INTERMEDIATE_DAYS: Final = 1826  #: about 5 years
ISSUING_DAYS: Final = 1096  #: about 3 years
#: Certificates start this much before ``now``, so a peer whose clock lags a little accepts them.
BACKDATE: Final = timedelta(minutes=5)
#: RFC 5280 appendix A: ub-common-name is 64 characters.
MAX_COMMON_NAME: Final = 64
MAX_HIERARCHY_NAME: Final = 40
MAX_DAYS: Final = 3650

_CA_USAGE: Final = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)
# An ECDHE handshake only needs the leaf key to sign (RFC 8422 section 5.10).
_LEAF_USAGE: Final = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
_FILES: Final = ("root", "intermediate", "issuing")


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _sign(
    subject: x509.Name,
    key: PrivateKey,
    issuer: Issued | None,
    *,
    now: datetime,
    days: int,
    extensions: Sequence[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    """Sign a certificate for ``key``; ``issuer=None`` makes it self-signed."""
    signer_key = key if issuer is None else issuer.key
    issuer_name = subject if issuer is None else issuer.certificate.subject
    not_after = now + timedelta(days=days)
    if issuer is not None:
        # A certificate outliving its issuer would fail validation once the issuer expires.
        not_after = min(not_after, issuer.certificate.not_valid_after_utc)
    public = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    aki = (
        x509.AuthorityKeyIdentifier.from_issuer_public_key(public)
        if issuer is None
        else _authority_key_id(issuer.certificate)
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(ski, critical=False)
        .add_extension(aki, critical=False)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    # EdDSA signs the message itself; every other key type signs a SHA-256 digest.
    digest = (
        None
        if isinstance(signer_key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
        else hashes.SHA256()
    )
    return builder.sign(signer_key, digest)


def _authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    # RFC 5280 4.2.1.1: the AKI repeats the issuer's SKI, however the issuer computed it.
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _ca(
    subject: x509.Name, issuer: Issued | None, path_length: int, *, now: datetime, days: int
) -> Issued:
    key = _new_key()
    cert = _sign(
        subject,
        key,
        issuer,
        now=now,
        days=days,
        extensions=[
            (x509.BasicConstraints(ca=True, path_length=path_length), True),
            (_CA_USAGE, True),
        ],
    )
    chain = () if issuer is None else (issuer.certificate, *issuer.chain)
    # The root never travels: drop it from what this CA would send.
    return Issued(cert, key, tuple(c for c in chain if not is_self_signed(c)))


def _check_days(days: int) -> None:
    if not 1 <= days <= MAX_DAYS:
        raise PkiError(f"certificate lifetime: expected 1 to {MAX_DAYS} days, got {days}")


@attrs.frozen
class Hierarchy:
    """A root CA, an intermediate CA below it, and the issuing CA that signs leaves."""

    root: Issued
    intermediate: Issued
    issuing: Issued

    def root_pem(self) -> bytes:
        """The root certificate, PEM: the only thing a device needs to trust the lab."""
        return self.root.cert_pem()

    def server_credential(
        self,
        names: Sequence[str] = ("localhost", "127.0.0.1"),
        *,
        common_name: str | None = None,
        days: int = 365,
        now: datetime | None = None,
    ) -> ServerCredential:
        """A serverAuth certificate for ``names`` (DNS names and IP addresses), with its chain."""
        if isinstance(names, str) or not names:
            raise PkiError(f"server certificate: expected a list of host names, got {names!r}")
        _check_days(days)
        moment = utc(now)
        san = [parse_host(name, "server certificate") for name in names]
        cn = common_name if common_name is not None else names[0].strip()
        if common_name is None and len(cn) > MAX_COMMON_NAME:
            cn = "sentry-sim server"
        _check_common_name(cn, "server certificate")
        key = _new_key()
        cert = _sign(
            _name(cn),
            key,
            self.issuing,
            now=moment,
            days=days,
            extensions=[
                (x509.BasicConstraints(ca=False, path_length=None), True),
                (_LEAF_USAGE, True),
                (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
                (x509.SubjectAlternativeName(san), False),
            ],
        )
        return ServerCredential(
            certificate=cert, key=key, chain=(self.issuing.certificate, *self.issuing.chain)
        )

    def device_identity(
        self,
        user: str,
        device_id: str | None = None,
        *,
        days: int = 365,
        now: datetime | None = None,
    ) -> Issued:
        """A clientAuth certificate: CN=user, SAN URI ``urn:sentry-sim:device:<device_id>``."""
        _check_days(days)
        _check_common_name(user, "device identity user")
        extensions: list[tuple[x509.ExtensionType, bool]] = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_LEAF_USAGE, True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        ]
        if device_id is not None:
            if not device_id or len(device_id) > MAX_COMMON_NAME:
                raise PkiError(
                    f"device identity device_id: expected 1 to {MAX_COMMON_NAME} characters, "
                    f"got {device_id!r}"
                )
            uri = DEVICE_URN_PREFIX + quote(device_id, safe="")
            extensions.append(
                (x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), False)
            )
        key = _new_key()
        cert = _sign(
            _name(user),
            key,
            self.issuing,
            now=utc(now),
            days=days,
            extensions=extensions,
        )
        return Issued(cert, key, (self.issuing.certificate, *self.issuing.chain))

    def write(self, directory: str | os.PathLike[str]) -> dict[str, Path]:
        """Write ``root.pem``, ``intermediate.pem``, ``issuing.pem`` and their ``*.key`` (0600).

        Returns the paths keyed by file name. The directory is created (0700) when missing;
        existing files are overwritten.
        """
        base = Path(directory)
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        for stem in _FILES:
            issued: Issued = getattr(self, stem)
            written[f"{stem}.pem"] = write_file(base / f"{stem}.pem", issued.cert_pem(), 0o644)
            written[f"{stem}.key"] = write_file(base / f"{stem}.key", issued.key_pem(), 0o600)
        return written

    @classmethod
    def read(cls, directory: str | os.PathLike[str]) -> Hierarchy:
        """Read back what ``write`` wrote; ``PkiError`` when a file is missing or does not fit."""
        base = Path(directory)
        loaded: dict[str, tuple[x509.Certificate, PrivateKey]] = {}
        for stem in _FILES:
            pem_path, key_path = base / f"{stem}.pem", base / f"{stem}.key"
            cert = _read_cert(pem_path)
            key = load_pem_key(read_file(key_path), None, str(key_path))
            check_key_matches(cert, key, str(key_path))
            loaded[stem] = (cert, key)
        root_cert, root_key = loaded["root"]
        if not is_self_signed(root_cert):
            raise PkiError(f"{base / 'root.pem'}: the root certificate is not self-signed")
        root = Issued(root_cert, root_key)
        inter_cert, inter_key = loaded["intermediate"]
        _check_signed_by(inter_cert, root_cert, base / "intermediate.pem")
        intermediate = Issued(inter_cert, inter_key)
        issuing_cert, issuing_key = loaded["issuing"]
        _check_signed_by(issuing_cert, inter_cert, base / "issuing.pem")
        issuing = Issued(issuing_cert, issuing_key, (inter_cert,))
        return cls(root=root, intermediate=intermediate, issuing=issuing)


def _check_common_name(value: str, what: str) -> None:
    if not value.strip() or len(value) > MAX_COMMON_NAME:
        raise PkiError(f"{what}: expected 1 to {MAX_COMMON_NAME} characters, got {value!r}")


def _check_signed_by(cert: x509.Certificate, issuer: x509.Certificate, path: Path) -> None:
    if not issued_by(cert, issuer):
        raise PkiError(
            f"{path}: not signed by {issuer.subject.rfc4514_string()} (files from two "
            "different hierarchies?)"
        )


def _read_cert(path: Path) -> x509.Certificate:
    data = read_file(path)
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise PkiError(f"{path}: no PEM certificate") from None


def write_file(path: Path, data: bytes, mode: int) -> Path:
    """Write ``data`` to ``path`` with ``mode``, also when the file existed with another mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), mode)
        handle.write(data)
    return path


def make_hierarchy(name: str = "sentry-sim lab", *, now: datetime | None = None) -> Hierarchy:
    """A fresh root (10 years), intermediate (5) and issuing CA (3), EC P-256.

    ``now`` sets the start of every validity window; tests pass a past moment to get
    certificates that have already expired.
    """
    if not name.strip() or len(name) > MAX_HIERARCHY_NAME:
        raise PkiError(
            f"hierarchy name: expected 1 to {MAX_HIERARCHY_NAME} characters, got {name!r}"
        )
    moment = utc(now)
    root = _ca(_name(f"{name} root CA", name), None, 2, now=moment, days=ROOT_DAYS)
    intermediate = _ca(
        _name(f"{name} intermediate CA", name), root, 1, now=moment, days=INTERMEDIATE_DAYS
    )
    issuing = _ca(_name(f"{name} issuing CA", name), intermediate, 0, now=moment, days=ISSUING_DAYS)
    return Hierarchy(root=root, intermediate=intermediate, issuing=issuing)
