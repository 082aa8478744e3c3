"""``sentry-sim sentry``: run only the gatekeeper, in front of any EAS server and UEM.

Reads the ``sentry:`` section of a lab YAML file (optional), listens on two loopback ports (the
device-facing ``/Microsoft-Server-ActiveSync`` and the admin API, which also takes the UEM's
pushes), writes a ready file with ``sentry_url``, ``sentry_admin_url`` and ``admin_token``, and
runs until SIGINT/SIGTERM. ``serve`` is the same start-up for the lab and for tests.

With ``sentry.fast_lane`` (the default) the device port is the fast lane (``sentry_sim.lane``)
and the aiohttp device app listens behind it on an internal loopback port. With
``sentry.workers: N`` (or ``--workers N``) the command supervises N worker processes sharing
the device port with SO_REUSEPORT, each a whole gatekeeper with its own cache, admin port and
push URL (``sentry_sim.lane.workers``); the in-process lab always runs one.

TLS (``sentry.tls``, ``sentry_sim.tls``): the device port (the lane's listener, or the aiohttp
site without the lane; the hop to the full path stays plain loopback) and the admin port
(where the UEM pushes too, so the push URL becomes https) each speak TLS when enabled, with the
certificate files of the config; each worker process loads the same files. A PKCS#12 uploaded
through the admin API (``PUT /api/v1/certificates/{port}``) replaces the certificate of the
worker whose admin port took it, and only that one, until the next restart: the other
workers keep serving the files.

The admin token is never printed: it is in the ready file (mode 0600), or it is the one given
with ``--admin-token``; without either the banner says so.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import secrets
import sys
from multiprocessing.connection import Connection
from pathlib import Path

import attrs

from scenarios.serving import (
    StartedSite,
    run,
    start_site,
    wait_for_shutdown_signal,
    write_ready_file,
)
from scenarios.yaml_text import YamlSyntaxError, parse_yaml
from sentry_sim.admin import push_path
from sentry_sim.app import ADMIN_APP, CLIENT_CHECK, TOKEN, make_app
from sentry_sim.config import MAX_WORKERS, ConfigError, SentryConfig
from sentry_sim.events import EventBus
from sentry_sim.handlers import SENTRY
from sentry_sim.lane import Lane, start_lane
from sentry_sim.lane.workers import (
    WorkerFailed,
    WorkerReady,
    WorkerSpec,
    plan,
    reserve_port,
    supervise,
)
from sentry_sim.service import Sentry
from sentry_sim.store import Store
from sentry_sim.tls import SentryTls
from simclock import Clock


@attrs.frozen
class RunningSentry:
    """A gatekeeper listening on its device and admin ports.

    With the fast lane, ``device_site`` names the lane's public URL and port, and its runner is
    the full path's (the aiohttp device app on an internal loopback port, ``full_path_url``).
    """

    sentry: Sentry
    device_site: StartedSite
    admin_site: StartedSite
    admin_token: str
    lane: Lane | None = None
    full_path_url: str = ""
    tls: SentryTls | None = None

    @property
    def url(self) -> str:
        return self.device_site.url

    @property
    def admin_url(self) -> str:
        return self.admin_site.url

    def ready_payload(self) -> dict[str, str]:
        """The ready-file keys of ``sentry-sim sentry`` (the lab's names)."""
        return {
            "sentry_url": self.url,
            "sentry_admin_url": self.admin_url,
            "admin_token": self.admin_token,
        }

    async def stop(self) -> None:
        """Drain the lane, stop the admin site, then the device app (whose cleanup persists).

        The lane first: it relays requests to the device app (the full path), and a request
        it waits for may be a first access whose decision the UEM pushes to the admin port.
        The device app last: its runner drains its own handlers, then persists the list."""
        if self.lane is not None:
            await self.lane.stop()
        await self.admin_site.stop()
        await self.device_site.stop()


async def serve(
    config: SentryConfig,
    *,
    upstream_url: str,
    uem_url: str,
    clock: Clock | None = None,
    admin_token: str | None = None,
    bus: EventBus | None = None,
    host: str | None = None,
    port: int | None = None,
    admin_port: int | None = None,
    reuse_port: bool = False,
    policy_key_secret: str | None = None,
    tls: SentryTls | None = None,
) -> RunningSentry:
    """Start the gatekeeper (``host``/ports from config unless given) and register its push
    URL with the UEM once the admin port is known. With ``config.fast_lane`` the device port
    is the lane's and the aiohttp device app listens on an internal loopback port behind it;
    ``reuse_port`` lets worker processes share the device port (``sentry.workers``).

    ``tls`` (``SentryTls.from_config(config)``, or the lab's) makes the device and/or admin
    port TLS; ``config.tls`` alone starts nothing: pass ``tls`` (the module docstring)."""
    app = make_app(
        config,
        upstream_url=upstream_url,
        uem_url=uem_url,
        clock=clock,
        admin_token=admin_token,
        bus=bus,
        policy_key_secret=policy_key_secret,
        tls=tls,
    )
    bind = host or config.host
    device_port = config.port if port is None else port
    device_tls = None if tls is None or tls.device is None else tls.device.context
    admin_tls = None if tls is None or tls.admin is None else tls.admin.context
    lane: Lane | None = None
    if config.fast_lane:
        full_path = await start_site(app, "127.0.0.1", 0)
        try:
            lane = await start_lane(
                app[SENTRY],
                upstream_url=upstream_url,
                full_path_url=full_path.url,
                host=bind,
                port=device_port,
                reuse_port=reuse_port,
                upstream_tls=None if tls is None else tls.outgoing_context(),
                events=config.hot_path_events,
                ssl=device_tls,
                client_check=app.get(CLIENT_CHECK),
            )
        except OSError as exc:
            await full_path.stop()
            raise SystemExit(
                f"cannot listen on {bind}:{device_port}: {exc.strerror or exc}"
            ) from exc
        url = _url(bind, lane.port, secure=device_tls is not None)
        device_site = StartedSite(full_path.runner, url, lane.port)
    else:
        full_path = device_site = await start_site(app, bind, device_port, ssl_context=device_tls)
    try:
        admin_site = await start_site(
            app[ADMIN_APP],
            bind,
            config.admin_port if admin_port is None else admin_port,
            ssl_context=admin_tls,
        )
    except BaseException:
        if lane is not None:
            await lane.stop()
        await device_site.stop()
        raise
    sentry = app[SENTRY]
    sentry.set_push_url(admin_site.url + push_path(sentry))
    return RunningSentry(
        sentry,
        device_site,
        admin_site,
        app[TOKEN],
        lane=lane,
        full_path_url=full_path.url,
        tls=tls,
    )


def _url(host: str, port: int, *, secure: bool = False) -> str:
    scheme = "https" if secure else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def load_config(path: str | None) -> SentryConfig:
    """The ``sentry:`` section of a lab file (defaults without one); relative certificate
    paths in it start at the file's folder."""
    if path is None:
        return SentryConfig()
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(name, "(file)", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(name, "(file)", f"not UTF-8 text: {exc.reason}") from None
    try:
        data = parse_yaml(text, name)
    except YamlSyntaxError as exc:
        raise ConfigError(name, exc.where or "(file)", f"not valid YAML: {exc.problem}") from None
    if data is None:
        return SentryConfig()
    if not isinstance(data, dict):
        raise ConfigError(name, "(top level)", f"expected a mapping, got {type(data).__name__}")
    return SentryConfig.from_mapping(
        data.get("sentry"), name, base_dir=str(Path(path).resolve().parent)
    )


def _check_url(value: str, flag: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ConfigError(
            "command line", flag, f"expected an http:// or https:// URL, got {value!r}"
        )
    return value.rstrip("/")


def token_note(ready_file: str | None, token_given: bool) -> str:
    """Where the admin token is (the banner's line): never the token itself."""
    if ready_file:
        return f"admin token: in the ready file {ready_file} (key admin_token, mode 0600)"
    if token_given:
        return "admin token: the one given with --admin-token"
    return "admin token: not shown; run with --ready-file FILE to have it written there (mode 0600)"


def load_tls(config: SentryConfig) -> SentryTls | None:
    """The TLS of ``sentry-sim sentry`` from ``sentry.tls`` (its files read now), or None when
    nothing in it is set. Raises ``ConfigError`` naming the file and key of a bad setting."""
    if not config.tls.enabled and config.tls.trust is None:
        return None
    return SentryTls.from_config(config)


async def _main(
    args: argparse.Namespace, config: SentryConfig, token: str, tls: SentryTls | None
) -> int:
    running = await serve(
        config,
        upstream_url=args.upstream,
        uem_url=args.uem,
        admin_token=token,
        host=args.host,
        port=args.port,
        admin_port=args.admin_port,
        tls=tls,
    )
    # Start-up objects (apps, routes, the loaded device list) move out of the collector's
    # reach: later full collections do not walk them (docs/performance.md, GC pauses).
    gc.collect()
    gc.freeze()
    # The signal handlers go in before anyone is told the gatekeeper is ready, so a SIGTERM
    # sent right after the ready file or the banner stops it cleanly.
    stopping = asyncio.ensure_future(wait_for_shutdown_signal())
    try:
        await asyncio.sleep(0)
        payload = running.ready_payload()
        if args.ready_file:
            write_ready_file(args.ready_file, payload)
        print(
            f"gatekeeper listening: devices {running.url}/Microsoft-Server-ActiveSync, "
            f"admin {running.admin_url} (upstream {args.upstream}, UEM {args.uem})",
            flush=True,
        )
        print(token_note(args.ready_file, bool(args.admin_token)), flush=True)
        await stopping
        return 0
    finally:
        stopping.cancel()
        await running.stop()


def handle(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        args.upstream = _check_url(args.upstream, "--upstream")
        args.uem = _check_url(args.uem, "--uem")
        # Read now so that a bad certificate file stops the command before anything listens
        # (workers read the same files again: an SSLContext does not cross processes).
        tls = load_tls(config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.state_dir is not None:
        config = attrs.evolve(config, state_dir=args.state_dir)
    if args.workers is not None:
        if not 1 <= args.workers <= MAX_WORKERS:
            print(
                f"error: --workers: expected 1..{MAX_WORKERS}, got {args.workers}", file=sys.stderr
            )
            return 2
        config = attrs.evolve(config, workers=args.workers)
    token = args.admin_token or secrets.token_urlsafe(24)
    if config.workers > 1:
        return _serve_workers(args, config, token)
    return run(lambda: _main(args, config, token, tls))


# -- multi-worker mode (sentry.workers > 1; sentry_sim.lane.workers explains it) -------------
@attrs.frozen
class _WorkerPayload:
    config: SentryConfig
    upstream: str
    uem: str
    token: str


def _serve_workers(args: argparse.Namespace, config: SentryConfig, token: str) -> int:
    host = args.host or config.host
    store = Store.open(config.state_dir)
    try:
        secret = store.get("policy_key_secret") or secrets.token_hex(32)
        store.put("policy_key_secret", secret)
        base_id = (
            config.gatekeeper_id or store.get("gatekeeper_id") or f"sentry-{secrets.token_hex(4)}"
        )
        store.put("gatekeeper_id", base_id)
    finally:
        store.close()
    try:
        reserved = reserve_port(host, config.port if args.port is None else args.port)
    except OSError as exc:
        print(f"error: cannot listen on {host}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    specs = plan(
        config.workers,
        host=host,
        port=int(reserved.getsockname()[1]),
        admin_port=config.admin_port if args.admin_port is None else args.admin_port,
        base_id=base_id,
        state_dir=config.state_dir,
        policy_key_secret=secret,
    )

    def ready(workers: list[WorkerReady]) -> None:
        reserved.close()
        first = workers[0]
        if args.ready_file:
            write_ready_file(
                args.ready_file,
                {
                    "sentry_url": first.sentry_url,
                    "sentry_admin_url": first.admin_url,
                    "admin_token": token,
                    "workers": [attrs.asdict(w) for w in workers],
                },
            )
        print(
            f"gatekeeper listening with {len(workers)} workers: devices "
            f"{first.sentry_url}/Microsoft-Server-ActiveSync; admin "
            + ", ".join(w.admin_url for w in workers),
            flush=True,
        )
        print(token_note(args.ready_file, bool(args.admin_token)), flush=True)

    try:
        return supervise(
            _worker_main,
            specs,
            _WorkerPayload(config, args.upstream, args.uem, token),
            on_ready=ready,
        )
    except WorkerFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        reserved.close()


def _worker_main(spec: WorkerSpec, payload: _WorkerPayload, ready: Connection) -> None:
    """One worker process: a whole gatekeeper on the shared port (``reuse_port``)."""
    config = attrs.evolve(
        payload.config, gatekeeper_id=spec.gatekeeper_id, state_dir=spec.state_dir, workers=1
    )

    async def main() -> int:
        try:
            tls = load_tls(config)
            running = await serve(
                config,
                upstream_url=payload.upstream,
                uem_url=payload.uem,
                admin_token=payload.token,
                host=spec.host,
                port=spec.port,
                admin_port=spec.admin_port,
                reuse_port=True,
                policy_key_secret=spec.policy_key_secret,
                tls=tls,
            )
        except (SystemExit, OSError, ConfigError) as exc:
            ready.send(f"cannot start: {exc}")
            return 1
        gc.collect()
        gc.freeze()
        try:
            ready.send(
                WorkerReady(
                    index=spec.index,
                    pid=os.getpid(),
                    sentry_url=running.url,
                    admin_url=running.admin_url,
                )
            )
            await wait_for_shutdown_signal()
            return 0
        finally:
            await running.stop()

    sys.exit(run(main))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "sentry",
        help="run only the gatekeeper (MobileIron Standalone Sentry's role)",
        description="Run the ActiveSync gatekeeper in front of any EAS server (a real one "
        "too): first access reported to the UEM, decisions cached, blocked devices answered "
        "per protocol version, the UEM's ActiveSync policy provisioned. Reads the sentry: "
        "section of a lab file, TLS on the device and admin ports included (sentry.tls).",
    )
    parser.add_argument(
        "--upstream",
        required=True,
        metavar="URL",
        help="the EAS server, e.g. http://127.0.0.1:8080",
    )
    parser.add_argument("--uem", required=True, metavar="URL", help="the UEM's API base URL")
    parser.add_argument("--config", metavar="FILE", help="lab YAML file (its sentry: section)")
    parser.add_argument(
        "--host", default=None, help="address to bind (default: config, else 127.0.0.1)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="device port; 0 picks a free one (default: config, else 0)",
    )
    parser.add_argument(
        "--admin-port",
        type=int,
        default=None,
        help="admin API port; 0 picks a free one (default: config, else 0)",
    )
    parser.add_argument(
        "--state-dir", metavar="DIR", help="persist the device list in DIR/sentry.sqlite3"
    )
    parser.add_argument(
        "--ready-file",
        metavar="FILE",
        help="write JSON with sentry_url, sentry_admin_url, admin_token once listening",
    )
    parser.add_argument(
        "--admin-token",
        metavar="TOKEN",
        help="admin token (default: a random one, written only to the ready file; never printed)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes sharing the device port (SO_REUSEPORT), each a gatekeeper with "
        "its own cache, admin port and push URL (default: config sentry.workers, else 1)",
    )
    parser.set_defaults(func=handle)
