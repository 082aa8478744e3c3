"""The admin token check every admin API shares: ``admin_guard(token, clock=..., ...)``.

Responsibility: an aiohttp middleware that lets a request through to a protected route only
with the lab's admin token, compared in constant time, and refuses clients that failed too
often (``labauth.lockout``). It must not know any app's routes (the ``protected`` predicate
says which requests it guards) and must never write a presented credential anywhere: not in a
log line, not in an answer.

Theory of operation, per protected request:
1. The client (its remote address) is locked: 429 Too Many Requests with ``Retry-After``
   (RFC 6585 section 4), whatever the token. 429 rather than 403: the refusal is about the
   rate of attempts and ends by itself, and ``Retry-After`` says when; a 403 would read as
   "this token is not allowed", which may be false.
2. No token presented (no ``Authorization: Bearer``, nor ``X-Admin-Token`` where the app
   accepts it): 401 with ``WWW-Authenticate: Bearer`` (RFC 6750 section 3). Not counted as a
   failed attempt: nothing was guessed (a browser or a health probe without the token must
   not lock the operator out).
3. A token that does not match: 401, counted; the failure that reaches the limit locks.
4. The right token: the client's count starts over and the request goes on.
The comparison is ``hmac.compare_digest`` over UTF-8 bytes, so its time does not depend on
how much of a guess was right. Times come from the app's injected clock (``now()``), so a
manual clock drives the lockout in tests.
"""

from __future__ import annotations

import hmac
import logging
import weakref
from collections.abc import Callable
from typing import Final, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from labauth.lockout import Lockout, LockoutPolicy

log = logging.getLogger("labauth")

#: RFC 6750 section 3: the challenge a 401 for a bearer-token resource carries.
CHALLENGE: Final = 'Bearer realm="sentry-sim admin"'
DEFAULT_HINT: Final = "send 'Authorization: Bearer <admin_token>' (the lab's ready file has it)"
#: The longest token considered at all (a longer header is refused as wrong, not compared).
MAX_TOKEN_CHARS: Final = 4096


#: Every middleware ``admin_guard`` made (``guards_admin`` asks it).
_GUARDS: weakref.WeakSet[Middleware] = weakref.WeakSet()


class Clock(Protocol):
    """What the guard needs of a clock (``simclock.Clock`` fits)."""

    def now(self) -> float: ...


def everything(_request: web.Request) -> bool:
    """The default ``protected`` predicate: every route needs the token."""
    return True


def presented_token(request: web.Request, *, accept_x_admin_token: bool = False) -> str | None:
    """The admin token the request presents, or None when it presents none."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if accept_x_admin_token:
        alternative = request.headers.get("X-Admin-Token", "").strip()
        if alternative:
            return alternative
    return None


def token_matches(presented: str, expected: str) -> bool:
    """Constant-time comparison (the time does not depend on where the first mismatch is)."""
    if len(presented) > MAX_TOKEN_CHARS:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def client_of(request: web.Request) -> str:
    """The key the lockout counts under: the peer's address."""
    return request.remote or "unknown"


def _refusal(status: int, error: str, hint: str, headers: dict[str, str]) -> web.Response:
    return web.json_response({"error": error, "hint": hint}, status=status, headers=headers)


def admin_guard(
    token: str,
    *,
    clock: Clock,
    protected: Callable[[web.Request], bool] = everything,
    lockout: Lockout | None = None,
    accept_x_admin_token: bool = False,
    hint: str = DEFAULT_HINT,
) -> Middleware:
    """A middleware that guards the requests ``protected`` selects with ``token``.

    ``lockout``: the failure table to use (a fresh one with the STIG defaults when None; pass
    one to share it between apps or to set a ``LockoutPolicy``).
    """
    if not token:
        raise ValueError("admin_guard: the admin token must not be empty")
    table = lockout if lockout is not None else Lockout(LockoutPolicy())

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not protected(request):
            return await handler(request)
        client = client_of(request)
        now = clock.now()
        lock = table.locked(client, now)
        if lock is not None:
            return _refusal(
                429,
                f"too many wrong admin tokens from {client}: locked out for "
                f"{lock.retry_after_s} more seconds",
                f"wait {lock.retry_after_s} s (Retry-After), then send the right token; "
                f"{table.policy.max_failures} wrong tokens lock a client for "
                f"{table.policy.lock_s:g} s",
                {"Retry-After": str(lock.retry_after_s)},
            )
        presented = presented_token(request, accept_x_admin_token=accept_x_admin_token)
        if presented is None:
            return _refusal(401, "missing admin token", hint, {"WWW-Authenticate": CHALLENGE})
        if not token_matches(presented, token):
            failure = table.failed(client, now)
            # The log names the client and the count, never what was presented.
            log.warning(
                "admin API: wrong admin token from %s on %s %s (%d of %d)",
                client,
                request.method,
                request.path,
                failure.failures,
                failure.max_failures,
            )
            headers = {"WWW-Authenticate": CHALLENGE}
            error = "wrong admin token"
            if failure.locked is not None:
                log.warning(
                    "admin API: %s locked out for %d s after %d wrong admin tokens",
                    client,
                    failure.locked.retry_after_s,
                    failure.failures,
                )
                error += (
                    f"; {failure.failures} wrong tokens: {client} is locked out for "
                    f"{failure.locked.retry_after_s} s"
                )
            return _refusal(401, error, hint, headers)
        table.succeeded(client)
        return await handler(request)

    _GUARDS.add(guard)
    return guard


def guards_admin(app: web.Application) -> bool:
    """Whether ``app`` has an ``admin_guard`` among its middlewares: it serves an admin API.

    ``scenarios.serving`` asks it to word its warning for a listener beyond loopback.
    """
    return any(m in _GUARDS for m in app.middlewares)
