"""Running actors: start aiohttp apps on loopback, write the ready file, stop on a signal.

Every ``sentry-sim`` server command (``exchange``, ``uem``, ``sentry``, ``lab``) goes through
here so that they all bind the same way (port 0 picks a free port and the real one is reported),
write the same ready-file format, run on uvloop by default and shut down cleanly on
SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

import attrs
from aiohttp import web


@attrs.frozen
class StartedSite:
    """A running app and the URL it answers on (no trailing slash)."""

    runner: web.AppRunner
    url: str
    port: int

    async def stop(self) -> None:
        await self.runner.cleanup()


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def start_site(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    shutdown_timeout: float = 5.0,
) -> StartedSite:
    """Start ``app`` on ``host:port``; port 0 picks a free one, and the URL names the real port."""
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise SystemExit(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    # The runner lists the bound addresses (the real port when 0 was asked for).
    bound_port = int(runner.addresses[-1][1])
    return StartedSite(runner, f"http://{_host_for_url(host)}:{bound_port}", bound_port)


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
