"""The one error type of ``labpki``.

Responsibility: name what went wrong with a certificate, key or TLS setting, and where. It must
not carry HTTP or ActiveSync semantics: the admin API and the CLI that call ``labpki`` turn a
``PkiError`` into their own response (HTTP 400, exit status 2).
"""

from __future__ import annotations


class PkiError(ValueError):
    """A certificate, key, PKCS#12 file or TLS setting that cannot be used.

    The message starts with the source (a file name, ``upload.p12``, ``lab.yaml: sentry.tls``)
    and says what is wrong and what was expected, e.g.
    ``upload.p12: wrong password or not a PKCS#12 file`` or
    ``server.pem: certificate CN=mail.example.com expired 2026-01-01T00:00:00Z``.
    """
