"""``sentry-sim uem``: run only the mock UEM (MobileIron Core's role).

Reads the ``users`` and ``uem`` sections of a lab YAML file (optional), listens on two
loopback ports served by the same app (API and admin; see ``uem_sim.app``), writes a ready
file with ``uem_url``, ``uem_admin_url`` and ``admin_token``, and runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

import attrs
import yaml
from aiohttp import web

from scenarios.serving import run, start_site, wait_for_shutdown_signal, write_ready_file
from uem_sim.app import make_app
from uem_sim.config import UemConfig
from uem_sim.errors import ConfigError


def load_config(path: str | None, state_dir: str | None) -> UemConfig:
    """Read and validate a lab file (or start empty); ``--state-dir`` wins over the file."""
    data: object = {}
    source = "(no config)"
    if path is not None:
        source = path
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(path, "(file)", f"cannot read: {exc.strerror or exc}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(path, "(file)", f"not valid YAML: {exc}") from None
    config = UemConfig.from_mapping(data, source=Path(source).name if path else source)
    if state_dir is not None:
        config = attrs.evolve(config, state_dir=state_dir)
    return config


async def serve(args: argparse.Namespace, config: UemConfig, token: str) -> int:
    app = make_app(config, admin_token=token)
    api = await start_site(app, args.host, args.port)
    try:
        admin_site = web.TCPSite(api.runner, args.host, args.admin_port, reuse_address=True)
        try:
            await admin_site.start()
        except OSError as exc:
            print(f"cannot listen on {args.host}:{args.admin_port}: {exc}", file=sys.stderr)
            return 1
        admin_port = admin_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        host = f"[{args.host}]" if ":" in args.host else args.host
        payload = {
            "uem_url": api.url,
            "uem_admin_url": f"http://{host}:{admin_port}",
            "admin_token": token,
        }
        if args.ready_file:
            write_ready_file(args.ready_file, payload)
        print(f"UEM listening: API {payload['uem_url']}, admin {payload['uem_admin_url']}")
        if not args.ready_file and not args.admin_token:
            print(f"admin token: {token}")
        await wait_for_shutdown_signal()
        return 0
    finally:
        await api.stop()


def handle(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config, args.state_dir)
    except ConfigError as exc:
        print(f"error: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""), file=sys.stderr)
        return 2
    token = args.admin_token or secrets.token_urlsafe(24)
    return run(lambda: serve(args, config, token))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "uem",
        help="run only the mock UEM (MobileIron Core's role)",
        description="Run the mock UEM: registry, policy engine, gatekeeper API (reports, "
        "resync, push) and admin API (token). Reads the users: and uem: sections of a lab file.",
    )
    parser.add_argument("--config", metavar="FILE", help="lab YAML file (users: and uem: sections)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="API port; 0 picks a free one")
    parser.add_argument(
        "--admin-port", type=int, default=0, help="admin API port; 0 picks a free one"
    )
    parser.add_argument(
        "--state-dir", metavar="DIR", help="keep state in DIR/uem.sqlite3 (default: in memory)"
    )
    parser.add_argument(
        "--ready-file",
        metavar="FILE",
        help="write JSON with uem_url, uem_admin_url, admin_token once listening",
    )
    parser.add_argument(
        "--admin-token", metavar="TOKEN", help="admin token (default: a random one)"
    )
    parser.set_defaults(func=handle)
