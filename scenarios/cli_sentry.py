"""``sentry-sim sentry``: run only the gatekeeper, in front of any EAS server and UEM.

Reads the ``sentry:`` section of a lab YAML file (optional), listens on two loopback ports (the
device-facing ``/Microsoft-Server-ActiveSync`` and the admin API, which also takes the UEM's
pushes), writes a ready file with ``sentry_url``, ``sentry_admin_url`` and ``admin_token``, and
runs until SIGINT/SIGTERM. ``serve`` is the same start-up for the lab and for tests.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

import attrs
import yaml

from scenarios.serving import (
    StartedSite,
    run,
    start_site,
    wait_for_shutdown_signal,
    write_ready_file,
)
from sentry_sim.admin import push_path
from sentry_sim.app import ADMIN_APP, TOKEN, make_app
from sentry_sim.config import ConfigError, SentryConfig
from sentry_sim.events import EventBus
from sentry_sim.handlers import SENTRY
from sentry_sim.service import Sentry
from simclock import Clock


@attrs.frozen
class RunningSentry:
    """A gatekeeper listening on its device and admin ports."""

    sentry: Sentry
    device_site: StartedSite
    admin_site: StartedSite
    admin_token: str

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
        """Stop the admin site, then the device site (whose cleanup persists and closes)."""
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
) -> RunningSentry:
    """Start the gatekeeper (``host``/ports from config unless given) and register its push
    URL with the UEM once the admin port is known."""
    app = make_app(
        config,
        upstream_url=upstream_url,
        uem_url=uem_url,
        clock=clock,
        admin_token=admin_token,
        bus=bus,
    )
    bind = host or config.host
    device_site = await start_site(app, bind, config.port if port is None else port)
    try:
        admin_site = await start_site(
            app[ADMIN_APP], bind, config.admin_port if admin_port is None else admin_port
        )
    except BaseException:
        await device_site.stop()
        raise
    sentry = app[SENTRY]
    sentry.set_push_url(admin_site.url + push_path(sentry))
    return RunningSentry(sentry, device_site, admin_site, app[TOKEN])


def load_config(path: str | None) -> SentryConfig:
    """The ``sentry:`` section of a lab file (defaults without one)."""
    if path is None:
        return SentryConfig()
    name = Path(path).name
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(name, "(file)", f"cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(name, "(file)", f"not valid YAML: {exc}") from None
    if data is None:
        return SentryConfig()
    if not isinstance(data, dict):
        raise ConfigError(name, "(top level)", f"expected a mapping, got {type(data).__name__}")
    return SentryConfig.from_mapping(data.get("sentry"), name)


def _check_url(value: str, flag: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ConfigError(
            "command line", flag, f"expected an http:// or https:// URL, got {value!r}"
        )
    return value.rstrip("/")


async def _main(args: argparse.Namespace, config: SentryConfig, token: str) -> int:
    running = await serve(
        config,
        upstream_url=args.upstream,
        uem_url=args.uem,
        admin_token=token,
        host=args.host,
        port=args.port,
        admin_port=args.admin_port,
    )
    try:
        payload = running.ready_payload()
        if args.ready_file:
            write_ready_file(args.ready_file, payload)
        print(
            f"gatekeeper listening: devices {running.url}/Microsoft-Server-ActiveSync, "
            f"admin {running.admin_url} (upstream {args.upstream}, UEM {args.uem})",
            flush=True,
        )
        if not args.ready_file and not args.admin_token:
            print(f"admin token: {token}", flush=True)
        await wait_for_shutdown_signal()
        return 0
    finally:
        await running.stop()


def handle(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        args.upstream = _check_url(args.upstream, "--upstream")
        args.uem = _check_url(args.uem, "--uem")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.state_dir is not None:
        config = attrs.evolve(config, state_dir=args.state_dir)
    token = args.admin_token or secrets.token_urlsafe(24)
    # scenarios.serving.start_site reads the port from an asyncio Server, which uvloop's is
    # not (as cli_uem notes): use the asyncio loop until that helper is loop-neutral.
    return run(lambda: _main(args, config, token))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "sentry",
        help="run only the gatekeeper (MobileIron Standalone Sentry's role)",
        description="Run the ActiveSync gatekeeper in front of any EAS server (a real one "
        "too): first access reported to the UEM, decisions cached, blocked devices answered "
        "per protocol version, the UEM's ActiveSync policy provisioned. Reads the sentry: "
        "section of a lab file.",
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
        "--admin-token", metavar="TOKEN", help="admin token (default: a random one)"
    )
    parser.set_defaults(func=handle)
