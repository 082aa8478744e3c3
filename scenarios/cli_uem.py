"""``sentry-sim uem``: run only the mock UEM (MobileIron Core's role).

Reads the ``users`` and ``uem`` sections of a lab YAML file (optional), listens on two
loopback ports served by the same app (API and admin; see ``uem_sim.app``), writes a ready
file with ``uem_url``, ``uem_admin_url`` and ``admin_token``, and runs until SIGINT/SIGTERM.

TLS: ``uem.tls.api`` / ``uem.tls.admin`` with ``enabled: true`` and a ``certificate`` (PKCS#12
or PEM files; outside the lab there is no lab CA to make one) make that port speak https
(``uem_sim.tls.UemTls``); its URL in the ready file then starts with ``https://``. The admin
token is never printed: it goes to the ready file (mode 0600), or is the one given with
``--admin-token``.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

import attrs
from aiohttp import web

from scenarios.serving import (
    run,
    start_site,
    wait_for_shutdown_signal,
    warn_if_exposed,
    write_ready_file,
)
from scenarios.yaml_text import YamlSyntaxError, parse_yaml
from uem_sim.app import make_app
from uem_sim.config import UemConfig
from uem_sim.errors import ConfigError
from uem_sim.tls import UemTls


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
        except UnicodeDecodeError as exc:
            raise ConfigError(path, "(file)", f"not UTF-8 text: {exc.reason}") from None
        try:
            data = parse_yaml(text, path)
        except YamlSyntaxError as exc:
            where = exc.where or "(file)"
            raise ConfigError(path, where, f"not valid YAML: {exc.problem}") from None
        if data is not None and not isinstance(data, dict):
            # uem_sim's reader would name the empty key path ("list.yaml: : expected ...").
            raise ConfigError(path, "", f"expected a mapping at the top level, got {_kind(data)}")
    config = UemConfig.from_mapping(
        data,
        source=Path(source).name if path else source,
        base_dir=str(Path(path).resolve().parent) if path else None,
    )
    if state_dir is not None:
        config = attrs.evolve(config, state_dir=state_dir)
    return config


def _kind(value: object) -> str:
    """``a list``, ``a string``: what a YAML document was, for a message."""
    names = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return names.get(type(value), f"a {type(value).__name__}")


def describe(exc: ConfigError) -> str:
    """The error as one line for the terminal: ``FILE: KEY: PROBLEM (HINT)``, without the
    empty key of a top-level problem."""
    where = f"{exc.source}: {exc.path}: " if exc.path else f"{exc.source}: "
    return where + exc.problem + (f" ({exc.hint})" if exc.hint else "")


def token_note(ready_file: str | None, token_given: bool) -> str:
    """Where the admin token is (never the token itself)."""
    if ready_file:
        return f"admin token: in the ready file {ready_file} (key admin_token, mode 0600)"
    if token_given:
        return "admin token: the one given with --admin-token"
    return (
        "admin token: not shown; run with --ready-file FILE to have it written there "
        "(mode 0600), or choose one with --admin-token"
    )


async def serve(
    args: argparse.Namespace, config: UemConfig, token: str, tls: UemTls | None = None
) -> int:
    the_tls = tls if tls is not None else UemTls()
    app = make_app(config, admin_token=token, tls=the_tls)
    api = await start_site(app, args.host, args.port, ssl_context=the_tls.context("api"))
    try:
        admin_context = the_tls.context("admin")
        admin_site = web.TCPSite(
            api.runner, args.host, args.admin_port, reuse_address=True, ssl_context=admin_context
        )
        try:
            await admin_site.start()
        except OSError as exc:
            print(f"cannot listen on {args.host}:{args.admin_port}: {exc}", file=sys.stderr)
            return 1
        admin_port = admin_site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        # start_site warned for the API port; the admin port is a second site on its runner.
        warn_if_exposed(args.host, admin_port, admin=True)
        host = f"[{args.host}]" if ":" in args.host else args.host
        scheme = "https" if admin_context is not None else "http"
        payload = {
            "uem_url": api.url,
            "uem_admin_url": f"{scheme}://{host}:{admin_port}",
            "admin_token": token,
        }
        if args.ready_file:
            write_ready_file(args.ready_file, payload)
        print(f"UEM listening: API {payload['uem_url']}, admin {payload['uem_admin_url']}")
        print(token_note(args.ready_file, bool(args.admin_token)), flush=True)
        await wait_for_shutdown_signal()
        return 0
    finally:
        await api.stop()


def handle(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config, args.state_dir)
        tls = UemTls.from_config(config)
    except ConfigError as exc:
        print(f"error: {describe(exc)}", file=sys.stderr)
        return 2
    token = args.admin_token or secrets.token_urlsafe(24)
    return run(lambda: serve(args, config, token, tls))


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
