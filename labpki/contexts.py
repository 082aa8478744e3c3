"""``ssl.SSLContext`` factories for the lab's servers and clients, TLS 1.2+ by default.

Responsibility: turn a ``ServerCredential`` (or a trusted root and an optional identity) into a
configured ``ssl.SSLContext``, and read TLS version settings. It must not open sockets, and it
never leaves key material on disk.

Theory of operation: the ``ssl`` module loads certificates and keys only from files, so
``_load_chain`` writes the chain and the key into a fresh private directory (0700, files 0600;
on ``/dev/shm`` when it exists, so in RAM), with the key encrypted under a one-time random
password, loads them and removes the directory before returning. Servers send leaf + chain
(never the root); clients trust only the root they are given, not the system store, and check
the host name, as a device that trusts only its MDM's root would. TLS 1.0 and 1.1 (RFC 8996)
are refused by ``server_context`` and ``client_context``; ``legacy_server_context`` and
``legacy_client_context`` build deliberately weak endpoints for tests that prove the refusal,
which needs ``@SECLEVEL=0`` because OpenSSL 3 refuses TLS below 1.2 at its default level.
"""

from __future__ import annotations

import functools
import os
import secrets
import ssl
import tempfile
import warnings
from pathlib import Path
from typing import Final, TypedDict

from cryptography.hazmat.primitives import serialization

from labpki.credential import Issued, PrivateKey, ServerCredential
from labpki.errors import PkiError
from labpki.files import parse_roots
from labpki.settings import ClientCertMode

#: What a deliberately weak legacy endpoint needs: OpenSSL 3 refuses TLS < 1.2 above level 0.
LEGACY_CIPHERS: Final = "DEFAULT:@SECLEVEL=0"

_MODERN: Final = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
_LEGACY: Final = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)
_VERSIONS: Final = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_REFUSED: Final = {"1.0": "1.0", "1": "1.0", "1.1": "1.1"}


class ServerContextOptions(TypedDict, total=False):
    """The keyword options of ``server_context`` (and ``SwappableServerContext``)."""

    min_version: ssl.TLSVersion
    max_version: ssl.TLSVersion | None
    ciphers: str | None
    client_cert: ClientCertMode
    client_roots_pem: bytes | None


def tls_version(name: str | float, *, source: str, key: str) -> ssl.TLSVersion:
    """``"1.2"``, ``"TLSv1.2"``, ``"TLS 1.3"``, ``1.3`` (a YAML float) -> ``ssl.TLSVersion``.

    TLS 1.0 and 1.1 are refused with a ``PkiError`` naming ``source`` and ``key``.
    """
    text = str(name).strip().lower().replace(" ", "").replace("_", ".")
    ssl_prefix = text.startswith("ssl")
    for prefix in ("tlsv", "tls", "sslv", "ssl", "v"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    if ssl_prefix and text in ("2", "3", "2.0", "3.0"):
        refused = f"SSL {text[0]}.0"
    elif not ssl_prefix and text in _VERSIONS:
        return _VERSIONS[text]
    elif not ssl_prefix and text in _REFUSED:
        refused = f"TLS {_REFUSED[text]}"
    else:
        refused = ""
    if refused:
        raise PkiError(
            f"{source}: {key}: {refused} is not allowed; use 1.2 or 1.3 "
            "(RFC 8996 retires TLS 1.0 and 1.1)"
        )
    raise PkiError(f"{source}: {key}: expected a TLS version 1.2 or 1.3, got {name!r}")


def _check_versions(
    min_version: ssl.TLSVersion, max_version: ssl.TLSVersion | None, what: str
) -> None:
    if min_version not in _MODERN:
        raise PkiError(
            f"{what}: minimum TLS version {min_version.name} is below TLSv1_2; "
            "legacy_server_context/legacy_client_context build deliberately weak test endpoints"
        )
    if max_version is not None and max_version not in (*_MODERN, ssl.TLSVersion.MAXIMUM_SUPPORTED):
        raise PkiError(f"{what}: maximum TLS version {max_version.name} is below TLSv1_2")
    if max_version in _MODERN and max_version is not None and max_version < min_version:
        raise PkiError(
            f"{what}: maximum TLS version {max_version.name} is below the minimum "
            f"{min_version.name}"
        )


@functools.cache
def _scratch_parent() -> str | None:
    """A RAM-backed directory when there is one (Linux ``/dev/shm``), else the temp default.

    Keys then never reach a disk at all, and creating and removing the directory is ~100
    times faster than on an overlay file system.
    """
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return None


def _load_chain(
    context: ssl.SSLContext, chain_pem: bytes, key: PrivateKey, what: str
) -> ssl.SSLContext:
    """Load certificate chain and key into ``context`` through a short-lived private directory."""
    password = secrets.token_bytes(32)
    # Even for the microseconds it exists, the key file is encrypted and only we can read it.
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    with tempfile.TemporaryDirectory(prefix="labpki-", dir=_scratch_parent()) as directory:
        os.chmod(directory, 0o700)
        cert_path, key_path = Path(directory, "chain.pem"), Path(directory, "key.pem")
        for path, data in ((cert_path, chain_pem), (key_path, encrypted)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        try:
            context.load_cert_chain(cert_path, key_path, password=password)
        except ssl.SSLError as exc:
            raise PkiError(f"{what}: OpenSSL refused the certificate or key: {exc}") from None
    return context


def _load_roots(context: ssl.SSLContext, roots_pem: bytes, what: str) -> None:
    roots = parse_roots(roots_pem, source=what)
    pem = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in roots)
    try:
        context.load_verify_locations(cadata=pem.decode("ascii"))
    except ssl.SSLError as exc:
        raise PkiError(f"{what}: OpenSSL refused a trusted root: {exc}") from None


def _set_ciphers(context: ssl.SSLContext, ciphers: str | None) -> None:
    if ciphers is None:
        return
    try:
        # Only affects TLS 1.2 and below; TLS 1.3 suites are all strong and always on.
        context.set_ciphers(ciphers)
    except ssl.SSLError:
        raise PkiError(f"ciphers: no cipher matches {ciphers!r} (OpenSSL cipher list)") from None


def server_context(
    credential: ServerCredential,
    *,
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    max_version: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
    client_cert: ClientCertMode = ClientCertMode.OFF,
    client_roots_pem: bytes | None = None,
) -> ssl.SSLContext:
    """A server context presenting ``credential`` (leaf + chain), TLS 1.2 or newer.

    With ``client_cert`` OPTIONAL or REQUIRED, client certificates must chain to one of
    ``client_roots_pem`` and carry the clientAuth purpose (OpenSSL checks it); the client has
    to send its intermediates, as ``client_context`` does.
    """
    _check_versions(min_version, max_version, "server TLS")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = min_version
    if max_version is not None:
        context.maximum_version = max_version
    _set_ciphers(context, ciphers)
    _load_chain(context, credential.chain_pem(), credential.key, "server certificate")
    if client_cert is not ClientCertMode.OFF:
        if not client_roots_pem:
            raise PkiError(
                f"client certificates {client_cert.value}: no client_roots_pem to verify them with"
            )
        _load_roots(context, client_roots_pem, "client certificate roots")
        context.verify_mode = (
            ssl.CERT_REQUIRED if client_cert is ClientCertMode.REQUIRED else ssl.CERT_OPTIONAL
        )
    return context


def client_context(
    root_pem: bytes,
    *,
    identity: Issued | None = None,
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    max_version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """A client context that trusts only ``root_pem`` (one or more PEM roots) and checks names.

    With ``identity`` it presents that certificate followed by ``identity.chain`` (the CAs up
    to, not including, the root), so a server that trusts only the root can build the path.
    ``Hierarchy.device_identity`` fills that chain; an ``Issued`` made elsewhere without it
    sends the leaf alone.
    """
    _check_versions(min_version, max_version, "client TLS")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname on
    context.minimum_version = min_version
    if max_version is not None:
        context.maximum_version = max_version
    _load_roots(context, root_pem, "trusted root")
    if identity is not None:
        _load_chain(context, identity.chain_pem(), identity.key, "client identity")
    return context


def _legacy(context: ssl.SSLContext, version: ssl.TLSVersion) -> ssl.SSLContext:
    if version not in _LEGACY:
        raise PkiError(f"legacy TLS: expected TLSv1 or TLSv1_1, got {version.name}")
    with warnings.catch_warnings():
        # The ssl module deprecates these versions; here they are the point of the exercise.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = version
        context.maximum_version = version
    context.set_ciphers(LEGACY_CIPHERS)
    return context


def legacy_server_context(credential: ServerCredential, version: ssl.TLSVersion) -> ssl.SSLContext:
    """FOR TESTS: a server that speaks only TLS 1.0 or only TLS 1.1 (to prove clients refuse it)."""
    context = _legacy(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), version)
    return _load_chain(context, credential.chain_pem(), credential.key, "server certificate")


def legacy_client_context(root_pem: bytes, version: ssl.TLSVersion) -> ssl.SSLContext:
    """FOR TESTS: a client that speaks only TLS 1.0 or only TLS 1.1 (to prove servers refuse it)."""
    context = _legacy(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), version)
    _load_roots(context, root_pem, "trusted root")
    return context
