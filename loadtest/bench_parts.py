"""The benchmark's helper processes: ``python -m loadtest.bench_parts PART ...``.

Responsibility: the parts of ``sentry-sim bench`` that must run in a process of their own (so
their memory, their core and their file descriptors are theirs): the device-list lookup micro
benchmark (``lookup``), the first-access storm (``storm``: by default as deployed, with
``sentry-sim uem`` (``storm-uem``: its app and server plus a report counter),
``sentry-sim sentry`` and the load generator (``storm-client``) in three processes, each
pinned to a core; ``--mode lab`` against an in-process lab), a backend that answers at once
but holds Pings (``backend``), and a client that holds Pings open through a gatekeeper
(``pings``). Each prints one JSON line or writes a status file; none
decides what the figures mean (``bench`` does). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import attrs
import httptools

#: The initial Provision of a 14.1 device asking for the EAS policy (MS-ASPROV 4.1.1), WBXML.
PROVISION: Final = bytes.fromhex(
    "03016a00000e45464748034d532d4541532d50726f766973696f6e696e672d5742584d4c0001010101"
)
BENCH_USER: Final = "bench"
BENCH_PASSWORD: Final = "bench-pass"
EAS: Final = "/Microsoft-Server-ActiveSync"


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def target(user: str, device: str, cmd: str = "Sync") -> str:
    return f"{EAS}?Cmd={cmd}&User={user}&DeviceId={device}&DeviceType=iPhone"


# -- lookup: the device list with N records ---------------------------------------------------
def _device(i: int) -> tuple[str, str]:
    """A user of a dozen characters and a 16-character hex device id, as phones send."""
    return f"user{i:08d}", f"{i * 2654435761 % 2**64:016x}"


class _Sink:
    """A transport that takes writes and drops them (the in-process request cycle)."""

    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def is_reading(self) -> bool:
        return True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


async def _lookup(records: int, rounds: int = 3, requests: int = 100_000) -> dict[str, Any]:
    """Load ``records`` ALLOWED records into a gatekeeper's list, then time (1) the lookup path
    alone (request line -> record -> verdict) and (2) the lane's whole in-process request cycle
    (parse, verdict, upstream head, answer relayed; transports that drop the bytes), each on
    records picked at random."""
    from sentry_sim.config import SentryConfig
    from sentry_sim.device_list import State
    from sentry_sim.lane.hot_path import ConnectionMemo
    from sentry_sim.lane.pool import Pool, UpstreamConnection
    from sentry_sim.lane.server import DeviceConnection, Lane
    from sentry_sim.service import Sentry
    from simclock import SystemClock

    config = SentryConfig.from_mapping(
        {"activesync_policy_mode": "pass_through", "hot_path_events": False}, "bench"
    )
    sentry = Sentry.create(
        config, upstream_url="http://127.0.0.1:9", uem_url="http://127.0.0.1:9", clock=SystemClock()
    )
    devices = sentry.devices
    gc.collect()
    before = rss_bytes()
    now = time.time()
    for i in range(records):
        user, device = _device(i)
        devices.apply(
            f"{user}/{device}", State.ALLOWED, reasons=0, answer=i + 1, policy_version=1, now=now
        )
    gc.collect()
    # docs/performance.md: a full GC pass over a million records costs ~160 ms of latency;
    # a large list is frozen out of the collector once loaded.
    gc.freeze()
    per_record = (rss_bytes() - before) / records
    rng = random.Random(5)
    targets = [target(*_device(rng.randrange(records))).encode("ascii") for _ in range(20_000)]
    lane = Lane(
        sentry,
        upstream=Pool("127.0.0.1", 9, host_header=b"up"),
        slow=Pool("127.0.0.1", 9, host_header=b"full"),
    )
    version = b"14.1"
    lookup_best = cycle_best = 0.0
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n"
        b"Content-Length: 13\r\n\r\nupstream-body"
    )
    for _ in range(rounds):
        memo = ConnectionMemo()
        started = time.perf_counter()
        for n in range(requests):
            line = memo.read(targets[n % len(targets)], version, None)
            if lane.hot.admit(b"POST", line, None, 0, memo, now) is None:
                raise SystemExit("lookup: a record the benchmark loaded was not found")
        lookup_best = max(lookup_best, requests / (time.perf_counter() - started))
        connection = DeviceConnection(lane)
        connection.connection_made(_Sink())  # type: ignore[arg-type]
        upstream = UpstreamConnection(lane.upstream)
        upstream.connection_made(_Sink())  # type: ignore[arg-type]
        lane.upstream.release(upstream)
        heads = [
            b"POST " + t + b" HTTP/1.1\r\nHost: sentry\r\nMS-ASProtocolVersion: 14.1\r\n"
            b"Content-Type: application/vnd.ms-sync.wbxml\r\nContent-Length: 0\r\n\r\n"
            for t in targets
        ]
        forwarded = lane.forwarded
        started = time.perf_counter()
        for n in range(requests):
            connection.data_received(heads[n % len(heads)])
            upstream.data_received(answer)
        cycle_best = max(cycle_best, requests / (time.perf_counter() - started))
        if lane.forwarded - forwarded != requests:
            raise SystemExit("lookup: a request of the cycle did not take the hot path")
    return {
        "records": records,
        "lookups_per_s": lookup_best,
        "requests_per_s": cycle_best,
        "bytes_per_record": per_record,
    }


# -- storm: N new devices against a lab -------------------------------------------------------
#: Devices per mailbox in the storm (a user with a phone and a tablet).
STORM_DEVICES_PER_USER: Final = 2


def storm_users(devices: int) -> int:
    return max(1, devices // STORM_DEVICES_PER_USER)


def storm_lab_yaml(users: int) -> str:
    listed = "\n".join(
        f"  - name: u{i}\n    email: u{i}@example.com\n    password: pw{i}" for i in range(users)
    )
    # uem policy mode (the default): a new device's first request, its Provision, is answered
    # by the gatekeeper once the UEM decided, so the storm measures the first-access flow.
    return (
        f"users:\n{listed}\n"
        "uem:\n  auto_block_unregistered: false\n  max_devices_per_mailbox: null\n"
        + STORM_SENTRY_YAML
    )


#: The gatekeeper's settings in the storm (the defaults otherwise: uem policy mode, fast lane).
STORM_SENTRY_YAML: Final = "sentry:\n  first_access_wait_s: 30\n"


async def _storm_lab(devices: int, client_core: int | None) -> dict[str, Any]:
    """The storm against an in-process lab (UEM, gatekeeper and Exchange in this process)."""
    import yaml

    from scenarios.lab import Lab, LabConfig
    from uem_sim.events import RecordReported

    config = LabConfig.from_mapping(yaml.safe_load(storm_lab_yaml(storm_users(devices))), "storm")
    reports: Counter[str] = Counter()

    async with Lab(config) as lab:

        def count(event: Any) -> None:
            if isinstance(event, RecordReported):
                reports[event.device_id.lower()] += 1

        lab.uem_events.subscribe(count)
        cmd = [*_pinned(client_core), *_part("storm-client", "--url", lab.sentry_url)]
        cmd += ["--devices", str(devices)]
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        client = json.loads(out.decode().strip().splitlines()[-1])
        await asyncio.sleep(0.5)
    return {"mode": "lab", **_storm_figures(devices, client, reports)}


def _storm_figures(devices: int, client: dict[str, Any], reports: Counter[str]) -> dict[str, Any]:
    expected = {storm_device(i) for i in range(devices)}
    return {
        "devices": devices,
        "seconds": client["seconds"],
        "failed_requests": client["failed"],
        "reports": sum(reports.values()),
        "reported_twice": sum(1 for k in expected if reports.get(k, 0) > 1),
        "never_reported": sum(1 for k in expected if reports.get(k, 0) == 0),
    }


def storm_device(i: int) -> str:
    """The device id of the storm's ``i``-th device (as the UEM's events spell it: lower case)."""
    return f"storm{i:08d}"


def _pinned(core: int | None) -> list[str]:
    return [] if core is None else ["taskset", "-c", str(core)]


def _part(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "loadtest.bench_parts", name, *args]


@attrs.frozen(kw_only=True)
class StormPlacement:
    """Which core each process of the deployed storm runs on (``None``: not pinned)."""

    gatekeeper: int | None
    uem: int | None
    client: int | None

    @classmethod
    def parse(cls, text: str) -> StormPlacement:
        """``gatekeeper=0,uem=1,client=1`` (a missing name or ``-`` means not pinned)."""
        cores: dict[str, int | None] = {"gatekeeper": None, "uem": None, "client": None}
        for item in filter(None, (part.strip() for part in text.split(","))):
            name, sep, value = item.partition("=")
            if not sep or name not in cores:
                raise ValueError(
                    f"storm placement: expected name=core with name one of "
                    f"{', '.join(cores)}, got {item!r}"
                )
            if value != "-" and not value.isdigit():
                raise ValueError(
                    f"storm placement: {name}: expected a core number or -, got {value!r}"
                )
            cores[name] = None if value == "-" else int(value)
        return cls(**cores)

    def text(self) -> str:
        def core(c: int | None) -> str:
            return "-" if c is None else str(c)

        return f"gatekeeper={core(self.gatekeeper)},uem={core(self.uem)},client={core(self.client)}"


def default_storm_placement() -> str:
    """The gatekeeper on the first core this process may use, the UEM and the load generator
    on the second (docs/performance.md says why); nothing pinned with fewer than two."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return "gatekeeper=-,uem=-,client=-"
    return f"gatekeeper={cores[0]},uem={cores[1]},client={cores[1]}"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_file(path: Path, proc: subprocess.Popen[bytes], what: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists():
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        if proc.poll() is not None:
            raise SystemExit(f"storm: {what} exited with {proc.returncode} before it was ready")
        time.sleep(0.05)
    raise SystemExit(f"storm: {what} was not ready within 60 s")


def _storm_deployed(devices: int, placement: StormPlacement) -> dict[str, Any]:
    """The storm as users run it: ``sentry-sim uem`` and ``sentry-sim sentry`` in processes of
    their own, the load generator in a third, each pinned as ``placement`` says."""
    root = str(Path(__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory(prefix="sentry-sim-storm-") as tmp:
        directory = Path(tmp)
        lab = directory / "lab.yaml"
        lab.write_text(storm_lab_yaml(storm_users(devices)), encoding="utf-8")
        # The gatekeeper reads only its own section (not the users, as a real one would not).
        gatekeeper = directory / "sentry.yaml"
        gatekeeper.write_text(STORM_SENTRY_YAML, encoding="utf-8")
        procs: list[subprocess.Popen[bytes]] = []
        log = (directory / "procs.log").open("wb")

        def spawn(cmd: list[str]) -> subprocess.Popen[bytes]:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root)
            procs.append(proc)
            return proc

        try:
            uem_ready, counts = directory / "uem.json", directory / "counts.json"
            uem = spawn(
                [
                    *_pinned(placement.uem),
                    *_part("storm-uem", "--config", str(lab), "--ready-file", str(uem_ready)),
                    "--counts-file",
                    str(counts),
                ]
            )
            uem_url = _wait_file(uem_ready, uem, "the UEM")["uem_url"]
            sentry_ready = directory / "sentry.json"
            sentry = spawn(
                [
                    *_pinned(placement.gatekeeper),
                    sys.executable,
                    "-m",
                    "scenarios.cli",
                    "sentry",
                    "--config",
                    str(gatekeeper),
                    "--uem",
                    uem_url,
                    # uem policy mode answers the Provision itself: the upstream is never asked.
                    "--upstream",
                    "http://127.0.0.1:9",
                    "--ready-file",
                    str(sentry_ready),
                ]
            )
            sentry_url = _wait_file(sentry_ready, sentry, "the gatekeeper")["sentry_url"]
            # Let the gatekeeper register its push URL and finish its start-up pull.
            time.sleep(1.0)
            cpu_before = {"uem": _cpu_seconds(uem.pid), "gatekeeper": _cpu_seconds(sentry.pid)}
            client_cmd = [*_pinned(placement.client), *_part("storm-client", "--url", sentry_url)]
            done = subprocess.run(
                [*client_cmd, "--devices", str(devices)],
                capture_output=True,
                text=True,
                check=True,
                cwd=root,
            )
            client = json.loads(done.stdout.strip().splitlines()[-1])
            cpu = {
                "uem": _cpu_seconds(uem.pid) - cpu_before["uem"],
                "gatekeeper": _cpu_seconds(sentry.pid) - cpu_before["gatekeeper"],
                "client": float(client["cpu_seconds"]),
            }
            for proc in (sentry, uem):
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
            reports: Counter[str] = Counter(json.loads(counts.read_text()))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            log.close()
    return {
        "mode": "deployed",
        "placement": placement.text(),
        "cpu_ms_per_decision": {k: round(1000 * v / devices, 3) for k, v in cpu.items()},
        **_storm_figures(devices, client, reports),
    }


async def _storm_uem(config: str, ready_file: str, counts_file: str) -> None:
    """``sentry-sim uem``'s app and server, plus one subscriber counting the reports it takes
    per device; the counts are written at SIGTERM, after the app stopped."""
    from scenarios.cli_uem import load_config
    from scenarios.serving import start_site, wait_for_shutdown_signal, write_ready_file
    from uem_sim.app import make_app
    from uem_sim.events import EventBus, RecordReported

    reports: Counter[str] = Counter()

    def count(event: Any) -> None:
        if isinstance(event, RecordReported):
            reports[event.device_id.lower()] += 1

    bus = EventBus()
    bus.subscribe(count)
    app = make_app(load_config(config, None), admin_token=secrets.token_urlsafe(16), events=bus)
    site = await start_site(app, "127.0.0.1", 0)
    try:
        write_ready_file(ready_file, {"uem_url": site.url})
        await wait_for_shutdown_signal()
    finally:
        await site.stop()
    Path(counts_file).write_text(json.dumps(reports))  # noqa: ASYNC240


async def _storm_client(url: str, devices: int, connections: int = 200) -> dict[str, Any]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    failed = 0
    queue = list(range(devices))
    users = storm_users(devices)

    async def worker() -> None:
        nonlocal failed
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while queue:
                i = queue.pop()
                user = i % users
                path = target(f"u{user}", storm_device(i), "Provision")
                auth = base64.b64encode(f"u{user}:pw{user}".encode()).decode()
                writer.write(
                    f"POST {path} HTTP/1.1\r\nHost: bench\r\nMS-ASProtocolVersion: 14.1\r\n"
                    f"Authorization: Basic {auth}\r\n"
                    "Content-Type: application/vnd.ms-sync.wbxml\r\n"
                    f"Content-Length: {len(PROVISION)}\r\n\r\n".encode()
                    + PROVISION
                )
                status = await _read_answer(reader)
                if status != 200:
                    failed += 1
        finally:
            writer.close()

    started = time.perf_counter()
    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return {
        "seconds": time.perf_counter() - started,
        "failed": failed,
        "cpu_seconds": time.process_time() - cpu,
    }


async def _read_answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


# -- backend: answers at once, holds Pings ----------------------------------------------------
class _Backend(asyncio.Protocol):
    held = 0
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 18\r\nContent-Type: text/plain\r\n\r\n"
        b"ok-static-backend\n"
    )

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.transport: Any = None
        self.holding = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.holding:
            _Backend.held -= 1

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        if b"Cmd=Ping" in self.url:
            self.holding = True
            _Backend.held += 1
        else:
            self.transport.write(self.answer)
        self.url = b""


async def _backend(port: int, status_file: str) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Backend, "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    status = Path(status_file)
    while not stop.is_set():
        # A few bytes to a local file four times a second: blocking is harmless here.
        status.write_text(json.dumps({"held": _Backend.held}))  # noqa: ASYNC240
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)
    server.close()


# -- pings: hold N Pings open through a gatekeeper -------------------------------------------
async def _pings(url: str, count: int, status_file: str) -> None:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    writers = []
    opened = 0
    request = (
        f"POST {target(BENCH_USER, 'BENCHDEV1', 'Ping')} HTTP/1.1\r\nHost: bench\r\n"
        "MS-ASProtocolVersion: 14.1\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    for start in range(0, count, 500):
        batch = await asyncio.gather(
            *(asyncio.open_connection(host, int(port)) for _ in range(min(500, count - start))),
            return_exceptions=True,
        )
        for item in batch:
            if isinstance(item, BaseException):
                continue
            _reader, writer = item
            writer.write(request)
            writers.append(writer)
            opened += 1
    Path(status_file).write_text(json.dumps({"opened": opened}))  # noqa: ASYNC240
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for writer in writers:
        writer.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_parts")
    sub = parser.add_subparsers(dest="part", required=True)
    p = sub.add_parser("lookup")
    p.add_argument("--records", type=int, required=True)
    p = sub.add_parser("storm")
    p.add_argument("--devices", type=int, required=True)
    p.add_argument(
        "--mode",
        choices=("deployed", "lab"),
        default="deployed",
        help="deployed: UEM, gatekeeper and load generator in separate processes; lab: the "
        "UEM and the gatekeeper in one in-process lab",
    )
    p.add_argument(
        "--placement",
        default=None,
        help="deployed mode: cores, e.g. gatekeeper=0,uem=1,client=1 (- for not pinned); "
        "default: the gatekeeper on the first core, the UEM and the client on the second",
    )
    p.add_argument("--client-core", type=int, default=None, help="lab mode: the client's core")
    p = sub.add_parser("storm-uem")
    p.add_argument("--config", required=True)
    p.add_argument("--ready-file", required=True)
    p.add_argument("--counts-file", required=True)
    p = sub.add_parser("storm-client")
    p.add_argument("--url", required=True)
    p.add_argument("--devices", type=int, required=True)
    p = sub.add_parser("backend")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--status-file", required=True)
    p = sub.add_parser("pings")
    p.add_argument("--url", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--status-file", required=True)
    args = parser.parse_args(argv)
    import uvloop

    if args.part == "lookup":
        print(json.dumps(uvloop.run(_lookup(args.records))), flush=True)
    elif args.part == "storm" and args.mode == "lab":
        print(json.dumps(uvloop.run(_storm_lab(args.devices, args.client_core))), flush=True)
    elif args.part == "storm":
        placement = StormPlacement.parse(args.placement or default_storm_placement())
        print(json.dumps(_storm_deployed(args.devices, placement)), flush=True)
    elif args.part == "storm-uem":
        uvloop.run(_storm_uem(args.config, args.ready_file, args.counts_file))
    elif args.part == "storm-client":
        print(json.dumps(uvloop.run(_storm_client(args.url, args.devices))), flush=True)
    elif args.part == "backend":
        uvloop.run(_backend(args.port, args.status_file))
    elif args.part == "pings":
        uvloop.run(_pings(args.url, args.count, args.status_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
