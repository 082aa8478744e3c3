"""Reading certificate files named in a configuration: trusted roots and server credentials.

Responsibility: the one place that turns a root PEM file, a PKCS#12 file (with its password
from an environment variable) or a PEM chain and key file into ``labpki`` values, with errors
that name the file and, for a configuration, the setting to fix. It must not know any actor's
configuration modules or error classes: the gatekeeper and the UEM each turn a
``CredentialFileError`` into their own ``ConfigError`` (``setting`` appended to their config
key, ``problem`` as the message); other callers catch it as a plain ``PkiError``.

Theory of operation: ``load_configured_credential`` takes an actor's ``certificate`` setting
as the shared values of ``labpki.settings`` (``Pkcs12File``, ``PemFiles``), so the actors share
this code without importing each other. Files are read bounded (``MAX_INPUT_BYTES``), then handed to
the checks of ``labpki.credential``; ``ServerCredential.from_pem`` names the key file for
problems with the key. A root file must hold at least one CA certificate (RFC 5280 4.2.1.9,
basicConstraints CA:TRUE): a server's own certificate given as a "root" would only fail later,
mid-handshake.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from cryptography import x509

from labpki.credential import (
    _MALFORMED,
    MAX_INPUT_BYTES,
    ServerCredential,
    _lenient_parsing,
    check_size,
)
from labpki.errors import PkiError
from labpki.settings import PemFiles, Pkcs12File

#: Problem of a config's ``certificate`` key that names no file where no lab stands in.
NO_CREDENTIAL_FILES: Final = (
    "expected {pkcs12: path, password_env: VARIABLE} or {cert_chain: path, key: path}; only "
    "the in-process lab supplies a certificate of its own"
)


class CredentialFileError(PkiError):
    """A ``PkiError`` that also says which setting of a certificate source to fix.

    ``setting`` is ``"pkcs12"``, ``"password_env"``, ``"cert_chain"``, ``"key"`` or ``""``
    (the source as a whole); ``problem`` is what to show after that setting's config key (it
    names the file).
    """

    def __init__(self, message: str, *, setting: str, problem: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting
        self.problem = message if problem is None else problem

    def key(self, where: str) -> str:
        """The config key to blame: ``where`` (the source's key) plus ``setting``."""
        return f"{where}.{self.setting}" if self.setting else where


def read_file(path: str | os.PathLike[str], *, setting: str = "") -> bytes:
    """The bytes of ``path`` (at most ``MAX_INPUT_BYTES``); ``CredentialFileError`` naming it."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CredentialFileError(
            f"{name}: cannot read: {reason}",
            setting=setting,
            problem=f"cannot read {name}: {reason}",
        ) from None
    if len(data) > MAX_INPUT_BYTES:
        raise CredentialFileError(
            f"{name}: larger than {MAX_INPUT_BYTES} bytes; not a certificate file", setting=setting
        )
    return data


def parse_roots(data: bytes, *, source: str) -> list[x509.Certificate]:
    """The certificates of a root PEM bundle, at least one of them a CA; ``PkiError``."""
    check_size(data, source)
    try:
        with _lenient_parsing():
            certificates = x509.load_pem_x509_certificates(data)
            authorities = sum(1 for cert in certificates if _is_ca(cert))
    except _MALFORMED:
        raise PkiError(
            f"{source}: no PEM certificate (expected -----BEGIN CERTIFICATE-----)"
        ) from None
    if not authorities:
        raise PkiError(
            f"{source}: none of the {len(certificates)} certificates is a CA (basicConstraints "
            "CA:TRUE); trust the CA that issued the server's certificate, e.g. the lab's root.pem"
        )
    return certificates


def read_roots(
    path_or_bytes: str | os.PathLike[str] | bytes, *, source: str | None = None
) -> bytes:
    """PEM roots from a file (or the PEM itself), unchanged, once ``parse_roots`` accepts them.

    ``source`` names the roots in messages (default: the file's path, else ``"roots"``). Raises
    ``CredentialFileError`` (``setting`` ``""``; ``problem`` says "cannot read" for a file that
    could not be read).
    """
    if isinstance(path_or_bytes, bytes):
        data, name = path_or_bytes, "roots"
    else:
        data, name = read_file(path_or_bytes), os.fspath(path_or_bytes)
    try:
        parse_roots(data, source=name if source is None else source)
    except CredentialFileError:
        raise
    except PkiError as exc:
        raise CredentialFileError(str(exc), setting="") from None
    return data


def password_from_env(
    variable: str | None, *, of: str, environ: Mapping[str, str] | None = None
) -> bytes | None:
    """The password in environment variable ``variable`` (None: no password) for file ``of``.

    ``environ`` defaults to ``os.environ``; an unset variable is a ``CredentialFileError`` for
    the ``password_env`` setting. The password itself never appears in a message.
    """
    if variable is None:
        return None
    value = (os.environ if environ is None else environ).get(variable)
    if value is None:
        problem = (
            f"environment variable {variable} is not set (it should hold the password of {of})"
        )
        raise CredentialFileError(f"{of}: {problem}", setting="password_env", problem=problem)
    return value.encode("utf-8")


def load_credential_files(
    *,
    pkcs12: str | None = None,
    password: bytes | None = None,
    cert_chain: str | None = None,
    key: str | None = None,
    source: str = "certificate",
) -> ServerCredential:
    """The server credential in a PKCS#12 file, or in a PEM chain file and a PEM key file.

    Give ``pkcs12`` (and its ``password``) or both ``cert_chain`` and ``key``. Raises
    ``CredentialFileError``: ``setting`` is the file's setting for an unreadable file or a bad
    PKCS#12 file, ``""`` for a chain and key that do not make a credential (the message names
    the key file for problems with the key). ``source`` names the setting in the message when
    the files given do not fit either form.
    """
    if pkcs12 is not None and cert_chain is None and key is None:
        data = read_file(pkcs12, setting="pkcs12")
        try:
            return ServerCredential.from_pkcs12(data, password, source=pkcs12)
        except PkiError as exc:
            raise CredentialFileError(str(exc), setting="pkcs12") from None
    if pkcs12 is None and cert_chain is not None and key is not None:
        chain_pem = read_file(cert_chain, setting="cert_chain")
        key_pem = read_file(key, setting="key")
        try:
            return ServerCredential.from_pem(
                chain_pem, key_pem, source=cert_chain, key_source=key, password=password
            )
        except PkiError as exc:
            raise CredentialFileError(str(exc), setting="") from None
    problem = "expected pkcs12 (and its password), or cert_chain and key"
    raise CredentialFileError(f"{source}: {problem}", setting="", problem=problem)


def load_configured_credential(
    files: Pkcs12File | PemFiles | None,
    *,
    lab_credential: ServerCredential | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServerCredential:
    """The credential a config's ``certificate`` setting names; ``CredentialFileError``.

    ``None`` (the setting is null) serves ``lab_credential``, the one the in-process lab made
    from its CA; without one that is an error. A PKCS#12 password comes from the environment
    variable ``password_env`` in ``environ`` (default ``os.environ``).
    """
    if files is None:
        if lab_credential is None:
            message = f"certificate: {NO_CREDENTIAL_FILES}"
            raise CredentialFileError(message, setting="", problem=NO_CREDENTIAL_FILES)
        return lab_credential
    if isinstance(files, PemFiles):
        return load_credential_files(cert_chain=files.cert_chain, key=files.key)
    password = password_from_env(files.password_env, of=files.path, environ=environ)
    return load_credential_files(pkcs12=files.path, password=password)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return basic.ca
