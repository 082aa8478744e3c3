"""``sentry-sim exchange``: run the mock Exchange ActiveSync server on its own.

Responsibility: read the lab file (or use a small embedded default), start the mock Exchange
on the requested address, write the ready file once it listens, and stop cleanly on
SIGINT/SIGTERM. It must not hold protocol logic: ``exchange_sim.make_app`` is the server.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Final

from exchange_sim.app import make_app
from exchange_sim.config import ConfigError, ExchangeConfig
from scenarios.serving import run, start_site, wait_for_shutdown_signal, write_ready_file
from scenarios.yaml_text import YamlSyntaxError, parse_yaml
from simclock import Clock

#: Used when no --config is given: two users, a little seeded mail.
DEFAULT_LAB: Final[dict[str, Any]] = {
    "users": [
        {"name": "alice", "email": "alice@example.com", "password": "alice-pass"},
        {"name": "bob", "email": "bob@example.com", "password": "bob-pass"},
    ],
    "exchange": {"seed_messages_per_mailbox": 5},
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "exchange",
        help="run the mock Exchange ActiveSync server alone",
        description=(
            "Serve /Microsoft-Server-ActiveSync (OPTIONS, Provision, FolderSync, Sync, Ping, "
            "Settings, SendMail, GetItemEstimate, ItemOperations) for the users of a lab file, "
            "with Basic auth, two-phase provisioning and seeded mail; plus an admin API "
            "(Bearer token) to inject mail (POST /admin/mail) and inspect mailboxes "
            "(GET /admin/mailboxes[/USER]). Stops on Ctrl-C."
        ),
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="lab YAML file: top-level users[] and an exchange: section "
        "(default: two users, alice and bob)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=0, help="port to bind; 0 picks a free one (default 0)"
    )
    parser.add_argument(
        "--ready-file",
        type=Path,
        help="write JSON {exchange_url, exchange_admin_url, admin_token} here once listening",
    )
    parser.add_argument(
        "--admin-token", help="token for the admin API (default: a random one, in the ready file)"
    )
    parser.add_argument(
        "--no-uvloop", action="store_true", help="use asyncio's own event loop instead of uvloop"
    )
    parser.set_defaults(func=main)


def load_config(path: Path | None) -> ExchangeConfig:
    """The config from ``path`` (YAML), or the embedded default; ``ConfigError`` if unusable."""
    if path is None:
        return ExchangeConfig.from_mapping(DEFAULT_LAB, source="embedded default")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason}") from None
    try:
        # Any: from_mapping checks the shape itself (a top-level list is its ConfigError).
        mapping: Any = parse_yaml(text, str(path))
    except YamlSyntaxError as exc:
        raise ConfigError(str(exc)) from None
    return ExchangeConfig.from_mapping(mapping or {}, source=str(path))


async def serve(
    config: ExchangeConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ready_file: Path | None = None,
    admin_token: str | None = None,
    clock: Clock | None = None,
    stop: Awaitable[object] | None = None,
) -> int:
    """Run until ``stop`` completes (default: SIGINT/SIGTERM)."""
    token = admin_token or secrets.token_urlsafe(24)
    site = await start_site(make_app(config, clock=clock, admin_token=token), host, port)
    try:
        if ready_file is not None:
            write_ready_file(
                ready_file,
                {"exchange_url": site.url, "exchange_admin_url": site.url, "admin_token": token},
            )
        print(
            f"sentry-sim exchange: serving {site.url}/Microsoft-Server-ActiveSync for "
            f"{', '.join(u.name for u in config.users)}; admin API at {site.url}/admin/",
            flush=True,
        )
        await (wait_for_shutdown_signal() if stop is None else stop)
    finally:
        await site.stop()
    return 0


def main(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"sentry-sim exchange: {exc}", file=sys.stderr)
        return 2

    async def go() -> int:
        return await serve(
            config,
            host=args.host,
            port=args.port,
            ready_file=args.ready_file,
            admin_token=args.admin_token,
        )

    try:
        return run(go, use_uvloop=not args.no_uvloop)
    except asyncio.CancelledError:
        return 130
