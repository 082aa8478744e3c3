"""The benchmark's real runner: nginx, wrk and the simulator's own commands, pinned to cores.

Responsibility: carry out what ``bench.run_bench`` asks (``bench.BenchRunner``) on this
machine: find or install nginx and wrk (``apt-get install -y nginx-light wrk``, only when the
bench runs), start on loopback ports a static nginx backend, nginx ``proxy_pass`` with upstream
keep-alive in front of it, the mock UEM and the mock Exchange (``sentry-sim uem|exchange``),
gatekeepers (``sentry-sim sentry``) in front of each backend, a Ping-holding backend, and run
wrk; stop every process it started (by its own handle) at the end. It must not judge figures.

Theory of operation: with two or more cores, every proxy (the gatekeepers, nginx proxy_pass)
runs on the first core and everything else (wrk, the backends, the mocks) on the second, so a
proxy's figure is one core's worth (taskset). wrk runs one thread and ``--latency``; its Lua
script sends the EAS POST a phone sends. Paced runs use wrk's ``delay()`` hook: each connection
waits 1 ms after an answer, and the number of connections sets the rate. Every gatekeeper's
bench device is allowed by the mock UEM (``auto_block_unregistered: false``) on a first request
sent before any measurement, so measured requests take the hot path.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from loadtest.bench import STATIC, LookupResult, StormResult, WrkResult
from loadtest.bench_parts import BENCH_PASSWORD, BENCH_USER, StormPlacement, target

#: Where wrk's one connection waits after each answer in a paced run (ms).
PACED_DELAY_MS: Final = 1
#: The gatekeepers the bench starts: name -> (backend it fronts, hot_path_events).
GATEKEEPERS: Final = {
    "sentry": ("backend", True),
    "sentry_no_events": ("backend", False),
    "sentry_exchange": ("exchange", True),
    "sentry_ping": ("ping_backend", False),
}
#: FolderSync with SyncKey 0, WBXML: what the mock Exchange is asked in the Exchange runs.
FOLDER_SYNC: Final = bytes.fromhex("03016a00000756520330000101")
_START_TIMEOUT_S: Final = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{b}" for b in data) + '"'


class SystemRunner:
    """``bench.BenchRunner`` on this machine."""

    def __init__(self, *, install: bool = True) -> None:
        self.install = install
        self.dir = Path(tempfile.mkdtemp(prefix="sentry-sim-bench-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports: dict[str, int] = {}
        cores = sorted(os.sched_getaffinity(0))
        self.proxy_core = str(cores[0]) if len(cores) >= 2 else None
        self.load_core = str(cores[1]) if len(cores) >= 2 else None
        self.wrk_path = ""
        self.nginx_path = ""

    # -- set-up ----------------------------------------------------------------------------
    def prepare(self) -> list[str]:
        notes = self._tools()
        for name in ("backend", "nginx", "exchange", "uem", "ping_backend", *GATEKEEPERS):
            self.ports[name] = free_port()
        self._nginx()
        lab = self.dir / "lab.yaml"
        lab.write_text(
            f"users:\n  - name: {BENCH_USER}\n    email: {BENCH_USER}@example.com\n"
            f"    password: {BENCH_PASSWORD}\n"
            "uem:\n  auto_block_unregistered: false\n"
            "exchange:\n  provisioning_required: false\n",
            encoding="utf-8",
        )
        self._start_command("uem", ["uem", "--config", str(lab), "--port", str(self.ports["uem"])])
        self._start_command(
            "exchange", ["exchange", "--config", str(lab), "--port", str(self.ports["exchange"])]
        )
        status = self.dir / "ping-backend.json"
        self._spawn(
            [
                sys.executable,
                "-m",
                "loadtest.bench_parts",
                "backend",
                "--port",
                str(self.ports["ping_backend"]),
                "--status-file",
                str(status),
            ],
            core=self.load_core,
        )
        for name, (backend, events) in GATEKEEPERS.items():
            config = self.dir / f"{name}.yaml"
            config.write_text(
                "sentry:\n  activesync_policy_mode: pass_through\n"
                f"  hot_path_events: {'true' if events else 'false'}\n",
                encoding="utf-8",
            )
            self._start_command(
                name,
                [
                    "sentry",
                    "--upstream",
                    self.url(backend),
                    "--uem",
                    self.url("uem"),
                    "--config",
                    str(config),
                    "--port",
                    str(self.ports[name]),
                ],
                core=self.proxy_core,
            )
        for name in ("backend", "nginx", "exchange", "ping_backend", *GATEKEEPERS):
            self._wait_listening(name)
        for name in GATEKEEPERS:
            self._first_access(name)
        notes.append(
            f"cores: proxies on {self.proxy_core}, wrk and backends on {self.load_core}"
            if self.proxy_core
            else "one core: nothing pinned; figures are of a shared core"
        )
        return notes

    def _tools(self) -> list[str]:
        wrk, nginx = shutil.which("wrk"), shutil.which("nginx") or _sbin("nginx")
        notes = []
        if (wrk is None or nginx is None) and self.install:
            notes.append("installed nginx-light and wrk with apt-get")
            done = subprocess.run(
                ["apt-get", "install", "-y", "nginx-light", "wrk"], capture_output=True
            )
            if done.returncode != 0:
                subprocess.run(["apt-get", "install", "-y", "nginx", "wrk"], check=True)
            wrk, nginx = shutil.which("wrk"), shutil.which("nginx") or _sbin("nginx")
        if wrk is None or nginx is None:
            raise SystemExit(
                "sentry-sim bench: needs wrk and nginx (apt-get install nginx-light wrk)"
            )
        self.wrk_path, self.nginx_path = wrk, nginx
        version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
        notes.append(f"{version}; wrk {wrk}")
        return notes

    def _nginx(self) -> None:
        for name, core, body in (
            ("backend", self.load_core, 'location / { return 200 "ok-static-backend\\n"; }'),
            (
                "nginx",
                self.proxy_core,
                "location / { proxy_pass http://backend; proxy_http_version 1.1; "
                'proxy_set_header Connection ""; }',
            ),
        ):
            conf = self.dir / f"nginx-{name}.conf"
            upstream = (
                f"upstream backend {{ server 127.0.0.1:{self.ports['backend']}; keepalive 64; "
                "keepalive_requests 1000000; }"
            )
            conf.write_text(
                "worker_processes 1;\ndaemon off;\n"
                f"pid {self.dir}/nginx-{name}.pid;\nerror_log {self.dir}/nginx-{name}.log warn;\n"
                "events { worker_connections 4096; }\n"
                f"http {{ access_log off; {upstream}\n"
                f"  client_body_temp_path {self.dir}/body-{name};\n"
                f"  proxy_temp_path {self.dir}/proxy-{name};\n"
                f"  server {{ listen 127.0.0.1:{self.ports[name]} backlog=4096; "
                f"keepalive_requests 1000000; {body} }} }}\n",
                encoding="utf-8",
            )
            self._spawn([self.nginx_path, "-c", str(conf), "-p", str(self.dir)], core=core)

    def _start_command(self, name: str, argv: list[str], core: str | None = None) -> None:
        ready = self.dir / f"{name}.ready.json"
        cmd = [sys.executable, "-m", "scenarios.cli", *argv, "--ready-file", str(ready)]
        self._spawn(cmd, core=core if core is not None else self.load_core)

    def _spawn(self, cmd: list[str], *, core: str | None) -> subprocess.Popen[bytes]:
        if core is not None:
            cmd = ["taskset", "-c", core, *cmd]
        log = (self.dir / f"proc-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=_root())
        self.procs.append(proc)
        return proc

    def _wait_listening(self, name: str) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.ports[name]), timeout=1),
            ):
                return
            time.sleep(0.1)
        raise SystemExit(f"sentry-sim bench: {name} did not listen within {_START_TIMEOUT_S:g} s")

    def _first_access(self, name: str) -> None:
        request = urllib.request.Request(
            self.url(name) + self._path(name),
            data=self._body(name),
            method="POST",
            headers=self._headers(name),
        )
        for _ in range(50):
            with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=10) as r:
                if r.status == 200:
                    return
            time.sleep(0.1)
        raise SystemExit(f"sentry-sim bench: the bench device is not allowed through {name}")

    # -- what a request looks like per target ----------------------------------------------
    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @staticmethod
    def _exchange_side(name: str) -> bool:
        return name in ("exchange", "sentry_exchange")

    def _path(self, name: str) -> str:
        return target(
            BENCH_USER, "BENCHDEV1", "FolderSync" if self._exchange_side(name) else "Sync"
        )

    def _body(self, name: str) -> bytes:
        return FOLDER_SYNC if self._exchange_side(name) else b""

    def _headers(self, name: str) -> dict[str, str]:
        headers = {
            "MS-ASProtocolVersion": "14.1",
            "Content-Type": "application/vnd.ms-sync.wbxml",
        }
        if self._exchange_side(name):
            import base64

            token = base64.b64encode(f"{BENCH_USER}:{BENCH_PASSWORD}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return headers

    def _script(self, name: str, paced: bool) -> Path:
        script = self.dir / f"{name}{'-paced' if paced else ''}.lua"
        lines = ['wrk.method = "POST"']
        lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in self._headers(name).items()]
        body = self._body(name)
        if body:
            lines.append(f"wrk.body = {lua_string(body)}")
        if paced:
            lines.append(f"function delay() return {PACED_DELAY_MS} end")
        script.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return script

    # -- measuring -------------------------------------------------------------------------
    def _wrk(self, name: str, *, duration_s: float, connections: int, paced: bool) -> WrkResult:
        cmd = [
            self.wrk_path,
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            "--latency",
            "-s",
            str(self._script(name, paced)),
            self.url(name) + self._path(name),
        ]
        if self.load_core is not None:
            cmd = ["taskset", "-c", self.load_core, *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60)
        if done.returncode != 0:
            raise SystemExit(f"sentry-sim bench: wrk failed against {name}: {done.stderr[-300:]}")
        return WrkResult.from_output(done.stdout)

    def wrk(self, target: str, *, duration_s: float, connections: int) -> WrkResult:
        name = "nginx" if target == "nginx" else target
        return self._wrk(name, duration_s=duration_s, connections=connections, paced=False)

    def paced(self, target: str, *, rate: float, duration_s: float) -> WrkResult:
        # Each connection sends about one request per (delay + ~0.3 ms answer).
        connections = max(1, math.ceil(rate * (PACED_DELAY_MS + 0.3) / 1000))
        return self._wrk(target, duration_s=duration_s, connections=connections, paced=True)

    def ping_gatekeeper_wrk(self, *, duration_s: float, connections: int) -> WrkResult:
        return self._wrk("sentry_ping", duration_s=duration_s, connections=connections, paced=False)

    def lookup(self, records: int) -> LookupResult:
        cmd = [sys.executable, "-m", "loadtest.bench_parts", "lookup", "--records", str(records)]
        if self.proxy_core is not None:
            cmd = ["taskset", "-c", self.proxy_core, *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=_root())
        data = json.loads(done.stdout.strip().splitlines()[-1])
        return LookupResult(**data)

    def storm(self, devices: int) -> StormResult:
        # The gatekeeper on the proxies' core, the UEM and the load generator on the other
        # (bench_parts pins each process itself).
        placement = StormPlacement(
            gatekeeper=_core(self.proxy_core),
            uem=_core(self.load_core),
            client=_core(self.load_core),
        )
        cmd = [sys.executable, "-m", "loadtest.bench_parts", "storm", "--devices", str(devices)]
        cmd += ["--placement", placement.text()]
        return self._storm(cmd)

    def storm_lab(self, devices: int) -> StormResult:
        cmd = [sys.executable, "-m", "loadtest.bench_parts", "storm", "--mode", "lab"]
        cmd += ["--devices", str(devices)]
        if self.load_core is not None:
            cmd += ["--client-core", self.load_core]
        if self.proxy_core is not None:
            cmd = ["taskset", "-c", self.proxy_core, *cmd]
        return self._storm(cmd)

    @staticmethod
    def _storm(cmd: list[str]) -> StormResult:
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=_root())
        return StormResult(**json.loads(done.stdout.strip().splitlines()[-1]))

    @staticmethod
    def ping_capacity() -> int:
        """Most Pings one gatekeeper process can hold here: each takes a device connection and
        an upstream connection, and the file-descriptor limit binds (RLIMIT_NOFILE)."""
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        return max(0, (soft - 200) // 2)

    @contextlib.contextmanager
    def held_pings(self, count: int) -> Iterator[int]:
        count = min(count, self.ping_capacity())
        status = self.dir / "pings.json"
        backend_status = self.dir / "ping-backend.json"
        status.unlink(missing_ok=True)
        proc = self._spawn(
            [
                sys.executable,
                "-m",
                "loadtest.bench_parts",
                "pings",
                "--url",
                self.url("sentry_ping"),
                "--count",
                str(count),
                "--status-file",
                str(status),
            ],
            core=self.load_core,
        )
        try:
            held = 0
            deadline = time.monotonic() + _START_TIMEOUT_S
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError, ValueError):
                    held = int(json.loads(backend_status.read_text())["held"])
                if status.exists() and held >= int(json.loads(status.read_text())["opened"]):
                    break
                time.sleep(0.2)
            yield held
        finally:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            self.procs.remove(proc)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            # The gatekeeper lets go of the held connections before the next run.
            time.sleep(2)

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


def _core(core: str | None) -> int | None:
    return None if core is None else int(core)


def _sbin(name: str) -> str | None:
    path = Path("/usr/sbin") / name
    return str(path) if path.exists() else None


def _root() -> str:
    return str(Path(__file__).resolve().parents[1])


__all__ = ["STATIC", "SystemRunner"]
