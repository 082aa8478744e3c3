"""Multi-worker mode: several gatekeeper processes sharing one device port (SO_REUSEPORT).

Responsibility: plan the workers of ``sentry.workers: N`` (each its own gatekeeper id, admin
port and state directory, all sharing the policy-key secret), start them as processes, wait
until each reports ready, and supervise them until a signal or a worker's death; then stop them
all. It must not know what a worker runs: the caller gives the entry point (a module-level
function, so the ``spawn`` start method can import it), which starts one gatekeeper with
``reuse_port`` and reports ``WorkerReady`` through its pipe.

Theory of operation: the kernel spreads new connections over every socket listening on the
port with SO_REUSEPORT, so each worker is a complete gatekeeper with its own device list, as
several real gatekeepers in front of one UEM are: each reports the devices it meets (a device
that meets two workers is reported by both, once each), each registers its own push URL, each
resyncs. The policy-key secret is shared so a key issued by one worker is valid at all of them
(``policy_gate``: keys are derived, not stored). Port 0 is resolved once by the parent, which
holds a bound (not listening) SO_REUSEPORT socket on the port until the workers listen. This is
for ``sentry-sim sentry`` only: the in-process lab runs one gatekeeper.

Limit (documented in docs/performance.md): in ``uem`` policy mode with an upstream that demands
provisioning, each worker provisions with the upstream on its own; the upstream keeps one key
per device, so a device whose connections land on different workers makes them re-provision
in turn.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import signal
import socket
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Any, Final

import attrs

#: Seconds the parent waits for every worker to report ready.
READY_TIMEOUT_S: Final = 60.0
#: Seconds a worker gets to stop after SIGTERM before it is killed.
STOP_TIMEOUT_S: Final = 15.0
#: Longest base gatekeeper id (the worker suffix ``-wNN`` must fit the 64-character limit).
_BASE_ID_MAX: Final = 58


@attrs.frozen(kw_only=True)
class WorkerSpec:
    """What one worker process is told to be."""

    index: int
    host: str
    port: int
    admin_port: int
    gatekeeper_id: str
    state_dir: str | None
    policy_key_secret: str


@attrs.frozen(kw_only=True)
class WorkerReady:
    """What a worker reports once it listens."""

    index: int
    pid: int
    sentry_url: str
    admin_url: str


def plan(
    count: int,
    *,
    host: str,
    port: int,
    admin_port: int,
    base_id: str,
    state_dir: str | None,
    policy_key_secret: str,
) -> list[WorkerSpec]:
    """The specs of ``count`` workers on ``port`` (already resolved); admin ports count up
    from ``admin_port`` (0: each picks a free one)."""
    return [
        WorkerSpec(
            index=i,
            host=host,
            port=port,
            admin_port=admin_port + i if admin_port else 0,
            gatekeeper_id=f"{base_id[:_BASE_ID_MAX]}-w{i}",
            state_dir=None if state_dir is None else str(Path(state_dir) / f"worker-{i}"),
            policy_key_secret=policy_key_secret,
        )
        for i in range(count)
    ]


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, not listening, SO_REUSEPORT socket on ``host:port`` (0: a free port), so the
    port is the workers' until they listen on it themselves."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


WorkerMain = Callable[[WorkerSpec, Any, Connection], None]


class WorkerFailed(Exception):
    """A worker did not come up, or died while the others ran."""


def supervise(
    target: WorkerMain,
    specs: list[WorkerSpec],
    payload: Any,
    *,
    on_ready: Callable[[list[WorkerReady]], None],
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> int:
    """Run one process per spec (``target(spec, payload, pipe)``), call ``on_ready`` once all
    listen, and return 0 after SIGINT/SIGTERM stopped them all; raise ``WorkerFailed`` if one
    does not come up or dies."""
    context = multiprocessing.get_context("spawn")
    processes: list[Any] = []
    pipes: list[Connection] = []
    stop = _StopFlag()
    try:
        for spec in specs:
            parent_end, child_end = context.Pipe(duplex=False)
            process = context.Process(
                target=target,
                args=(spec, payload, child_end),
                name=f"sentry-worker-{spec.index}",
                daemon=False,
            )
            process.start()
            child_end.close()
            processes.append(process)
            pipes.append(parent_end)
        ready = [
            _wait_ready(p, proc, ready_timeout_s) for p, proc in zip(pipes, processes, strict=True)
        ]
        on_ready(ready)
        sentinels = [p.sentinel for p in processes]
        while not stop.raised:
            gone = multiprocessing.connection.wait(sentinels, timeout=0.5)
            if gone:
                dead = [p for p in processes if p.sentinel in gone]
                raise WorkerFailed(
                    ", ".join(f"worker {p.name} exited with code {p.exitcode}" for p in dead)
                )
        return 0
    finally:
        stop.restore()
        _stop_all(processes)
        for pipe in pipes:
            pipe.close()


def _wait_ready(pipe: Connection, process: Any, timeout_s: float) -> WorkerReady:
    if not pipe.poll(timeout_s):
        raise WorkerFailed(f"worker {process.name} did not report ready within {timeout_s:g} s")
    try:
        message = pipe.recv()
    except EOFError:
        raise WorkerFailed(
            f"worker {process.name} exited before it was ready (code {process.exitcode})"
        ) from None
    if not isinstance(message, WorkerReady):
        raise WorkerFailed(f"worker {process.name} failed: {message}")
    return message


def _stop_all(processes: list[Any]) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()  # SIGTERM: the worker stops its gatekeeper and persists
    for process in processes:
        process.join(STOP_TIMEOUT_S)
        if process.is_alive():
            process.kill()
            process.join()


class _StopFlag:
    """SIGINT/SIGTERM set ``raised`` (the supervisor polls it) while installed."""

    def __init__(self) -> None:
        self.raised = False
        self._previous = {
            sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)
        }

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.raised = True

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
