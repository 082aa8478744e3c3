"""HTTP Basic authentication of EAS requests against the configured users.

Responsibility: decide, from the ``Authorization`` header alone, which configured user a
request belongs to (MS-ASHTTP 2.2.1.1.2.2: ``Basic base64(user:password)``), accepting the
user as login name, SMTP address or ``DOMAIN\\user``. It must not build HTTP responses: a
refusal is a result (``AuthDenied`` with the reason), and the shell answers 401 with
``challenge(realm)``. Passwords are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Final

import attrs

from exchange_sim.config import ExchangeConfig, UserConfig

#: Longest Authorization header we look at; anything longer is refused unread.
MAX_AUTHORIZATION_LENGTH: Final = 4096


@attrs.frozen
class AuthDenied:
    """Why a request was not authenticated (shown in the 401 body; never the password)."""

    reason: str


def challenge(realm: str) -> str:
    """The ``WWW-Authenticate`` value of a 401 (RFC 7617)."""
    escaped = realm.replace("\\", "\\\\").replace('"', '\\"')
    return f'Basic realm="{escaped}", charset="UTF-8"'


def login_part(user: str) -> str:
    """``DOMAIN\\alice`` -> ``alice``; other forms unchanged."""
    return user.rpartition("\\")[2]


def authenticate(header: str | None, config: ExchangeConfig) -> UserConfig | AuthDenied:
    """The configured user the header's credentials name, or why not."""
    if not header:
        return AuthDenied("no Authorization header; send Basic credentials")
    if len(header) > MAX_AUTHORIZATION_LENGTH:
        return AuthDenied(f"Authorization header longer than {MAX_AUTHORIZATION_LENGTH} characters")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return AuthDenied(f"Authorization scheme {scheme[:20]!r} is not supported; use Basic")
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return AuthDenied("Basic credentials are not base64 of UTF-8 'user:password'")
    name, sep, password = decoded.partition(":")
    if not sep or not name:
        return AuthDenied("Basic credentials must be 'user:password'")
    user = config.user(login_part(name))
    # Compare against something even for an unknown user, so timing does not tell them apart.
    expected = user.password if user is not None else "\x00unknown-user"
    if not hmac.compare_digest(password.encode("utf-8"), expected.encode("utf-8")) or user is None:
        return AuthDenied("unknown user or wrong password")
    return user
