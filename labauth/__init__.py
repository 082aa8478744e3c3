"""Admin API authentication shared by every actor: one token, constant-time, with lockout.

This package is neutral ground like ``simclock`` and ``labfaults``: it imports no project
package, and every actor's app may use it. ``admin_guard`` is the aiohttp middleware;
``Lockout`` the pure failed-attempt table behind it (3 wrong tokens in 15 minutes lock a client
for 15 minutes, as the DISA STIG asks of MobileIron Core's admin portal). See docs/security.md.
"""

from __future__ import annotations

from labauth.lockout import Failure, Locked, Lockout, LockoutPolicy
from labauth.middleware import admin_guard, guards_admin, presented_token, token_matches

__all__ = [
    "Failure",
    "Locked",
    "Lockout",
    "LockoutPolicy",
    "admin_guard",
    "guards_admin",
    "presented_token",
    "token_matches",
]
