"""Running actors: start aiohttp apps on loopback, write the ready file, stop on a signal.

Every ``sentry-sim`` server command (``exchange``, ``uem``, ``sentry``, ``lab``) goes through
here so that they all bind the same way (port 0 picks a free port and the real one is reported),
write the same ready-file format, run on uvloop by default and shut down cleanly on
SIGINT/SIGTERM.

Binding: 127.0.0.1 unless told otherwise. Every admin API is protected by a token only (no
TLS), so a listener on any other address gets a loud WARNING on stderr naming the address and,
for apps with an admin API (those guarded by ``labauth.admin_guard``), saying that the admin
API is exposed beyond this machine (``warn_if_exposed``; docs/security.md).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import ssl
import sys
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TextIO

import attrs
from aiohttp import web

from labauth import guards_admin


@attrs.frozen
class StartedSite:
    """A running app and the URL it answers on (no trailing slash)."""

    runner: web.AppRunner
    url: str
    port: int

    async def stop(self) -> None:
        await self.runner.cleanup()


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; False for everything else (0.0.0.0, "",
    "::", a LAN address, any other name: a name is not resolved, so it counts as exposed)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, port: int, *, admin: bool) -> str | None:
    """The warning for a listener on ``host:port``, or None when it is loopback only."""
    if is_loopback_host(host):
        return None
    where = "every interface" if host in ("", "0.0.0.0", "::") else host
    text = f"WARNING: listening on {where} ({host or '*'}:{port}), not 127.0.0.1: "
    if admin:
        text += (
            "admin API exposed beyond this machine; anyone who can reach this port and holds "
            "(or guesses) the admin token controls the lab. Bind 127.0.0.1 unless you mean it."
        )
    else:
        text += "reachable beyond this machine. Bind 127.0.0.1 unless you mean it."
    return text


def warn_if_exposed(
    host: str, port: int, *, admin: bool, stream: TextIO | None = None
) -> str | None:
    """Print the loud warning for a non-loopback listener to stderr; return what was printed."""
    text = exposure_warning(host, port, admin=admin)
    if text is not None:
        out = sys.stderr if stream is None else stream
        print(text, file=out, flush=True)
    return text


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def start_site(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    shutdown_timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
) -> StartedSite:
    """Start ``app`` on ``host:port``; port 0 picks a free one, and the URL names the real port.

    With ``ssl_context`` the site speaks TLS and its URL is ``https://``; the context object is
    kept, so a context whose certificate is swapped later (``labpki``) serves the new one.

    A host other than loopback gets the loud warning of ``warn_if_exposed`` (admin wording
    when ``app`` is guarded by ``labauth.admin_guard``).
    """
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise SystemExit(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    # The runner lists the bound addresses (the real port when 0 was asked for).
    bound_port = int(runner.addresses[-1][1])
    warn_if_exposed(host, bound_port, admin=guards_admin(app))
    scheme = "http" if ssl_context is None else "https"
    return StartedSite(runner, f"{scheme}://{_host_for_url(host)}:{bound_port}", bound_port)


def write_ready_file(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> None:
    """Write the ready file atomically with mode 0600 (it may hold the admin token)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(dict(payload), fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)


async def wait_for_shutdown_signal() -> None:
    """Return when SIGINT or SIGTERM arrives."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(main: Callable[[], Coroutine[Any, Any, int]], *, use_uvloop: bool = True) -> int:
    """Run ``main`` to completion on uvloop (the default) or asyncio's own loop."""
    if use_uvloop and sys.platform != "win32":
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())
