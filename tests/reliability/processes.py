"""Real processes for the restart tests: ``sentry-sim exchange``, ``uem`` and ``sentry``.

Each actor runs as its own ``python -m scenarios.cli`` subprocess on 127.0.0.1 with free ports
and a ready file, exactly as an operator starts them, so a test can send the gatekeeper a real
SIGTERM or SIGKILL and start it again on the same state directory. Output goes to files in the
test's temporary directory (a full pipe could block a child); every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import attrs

from activesync.wbxml.encoder import encode
from activesync.wbxml.tree import E

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LAB = ROOT / "scenarios" / "labs" / "default.yaml"
TOKEN = "reliability-test-token-0123456789"
#: Generous: a loaded 2-core CI machine starts a Python process in seconds, not milliseconds.
START_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 20.0
EAS_PATH = "/Microsoft-Server-ActiveSync"


@attrs.define(eq=False)
class Actor:
    """One ``sentry-sim`` subprocess and what its ready file said."""

    name: str
    process: asyncio.subprocess.Process
    ready: dict[str, str]
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    async def wait_exit(self, within: float = EXIT_TIMEOUT_S) -> int:
        async with asyncio.timeout(within):
            return await self.process.wait()

    async def terminate(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await self.wait_exit()

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


async def start_actor(tmp: Path, name: str, *args: str) -> Actor:
    """``python -m scenarios.cli <args> --ready-file ...``; returns once the ready file exists."""
    ready_file = tmp / f"{name}.ready.json"
    ready_file.unlink(missing_ok=True)
    log = tmp / f"{name}.log"
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "scenarios.cli",
            *args,
            "--ready-file",
            str(ready_file),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd=str(ROOT),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    actor = Actor(name, process, {}, log)
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while not ready_file.exists() or not ready_file.stat().st_size:
                if process.returncode is not None:
                    raise AssertionError(f"{name} exited {process.returncode}:\n{actor.output()}")
                await asyncio.sleep(0.05)
    except BaseException:
        actor.kill()
        await actor.process.wait()
        raise
    actor.ready = json.loads(ready_file.read_text(encoding="utf-8"))
    return actor


@attrs.define(eq=False)
class Stack:
    """Exchange and the UEM running; gatekeepers started on demand on one state directory."""

    tmp: Path
    exchange: Actor
    uem: Actor
    session: aiohttp.ClientSession
    state_dir: Path
    sentry_config: Path
    actors: list[Actor] = attrs.field(factory=list)

    async def start_sentry(self) -> Actor:
        actor = await start_actor(
            self.tmp,
            f"sentry{len(self.actors)}",
            "sentry",
            "--upstream",
            self.exchange.ready["exchange_url"],
            "--uem",
            self.uem.ready["uem_url"],
            "--config",
            str(self.sentry_config),
            "--state-dir",
            str(self.state_dir),
            "--admin-token",
            TOKEN,
            "--port",
            "0",
            "--admin-port",
            "0",
        )
        self.actors.append(actor)
        return actor

    async def admin(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with self.session.request(method, url, json=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)

    async def exchange_faults(self, method: str, plan: Any = None) -> Any:
        status, view = await self.admin(
            method, self.exchange.ready["exchange_url"] + "/admin/faults", plan
        )
        assert status == 200, view
        return view

    async def uem_faults(self, method: str, plan: Any = None) -> Any:
        status, view = await self.admin(
            method, self.uem.ready["uem_admin_url"] + "/api/v1/admin/faults", plan
        )
        assert status == 200, view
        return view


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def folder_sync_body() -> bytes:
    return encode(E("FolderHierarchy", "FolderSync", E("FolderHierarchy", "SyncKey", text="0")))
