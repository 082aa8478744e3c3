"""The lab's PKI: a CA hierarchy, server credentials, TLS contexts and device identities.

This package is neutral ground like ``simclock`` and ``labauth``: it imports no project
package, and every actor may use it. ``make_hierarchy`` makes root -> intermediate -> issuing
CA; servers present ``ServerCredential`` (leaf + chain, never the root) through
``server_context`` or, to let an admin upload a new PKCS#12 without a restart,
``SwappableServerContext``; devices trust only the root through ``client_context`` and may
present a ``Hierarchy.device_identity`` (or one read from files with ``Issued.from_pkcs12`` or
``Issued.from_pem``) for mutual TLS, which ``identity_of`` and ``identity_mismatch`` read back
on the server. ``labpki.files`` reads the root, PKCS#12 and PEM files a configuration names
(``read_roots``, ``load_configured_credential``, ``load_credential_files``). See docs/tls.md.
"""

from __future__ import annotations

from labpki.contexts import (
    LEGACY_CIPHERS,
    ServerContextOptions,
    client_context,
    legacy_client_context,
    legacy_server_context,
    server_context,
    tls_version,
)
from labpki.credential import Issued, PrivateKey, ServerCredential, fingerprint
from labpki.errors import PkiError
from labpki.files import (
    CredentialFileError,
    load_configured_credential,
    load_credential_files,
    parse_roots,
    password_from_env,
    read_file,
    read_roots,
)
from labpki.hierarchy import DEVICE_URN_PREFIX, Hierarchy, make_hierarchy
from labpki.identity import (
    DeviceIdentity,
    identity_mismatch,
    identity_of,
    identity_of_certificate,
    same_user,
)
from labpki.settings import ClientCertMode, ListenerTls, PemFiles, Pkcs12File
from labpki.swap import SwappableServerContext

__all__ = [
    "DEVICE_URN_PREFIX",
    "LEGACY_CIPHERS",
    "ClientCertMode",
    "CredentialFileError",
    "DeviceIdentity",
    "Hierarchy",
    "Issued",
    "ListenerTls",
    "PemFiles",
    "Pkcs12File",
    "PkiError",
    "PrivateKey",
    "ServerContextOptions",
    "ServerCredential",
    "SwappableServerContext",
    "client_context",
    "fingerprint",
    "identity_mismatch",
    "identity_of",
    "identity_of_certificate",
    "legacy_client_context",
    "legacy_server_context",
    "load_configured_credential",
    "load_credential_files",
    "make_hierarchy",
    "parse_roots",
    "password_from_env",
    "read_file",
    "read_roots",
    "same_user",
    "server_context",
    "tls_version",
]
