"""``sentry-sim lab``: every actor of a lab in one process, until Ctrl-C.

Responsibility: read the lab file (or take the embedded default lab), start Exchange, the UEM
and the gatekeeper through ``scenarios.lab.Lab``, print where each listens (never the admin
token: it goes to the ready file, mode 0600), write the ready file once every listener is up,
and shut down cleanly on SIGINT/SIGTERM. A config error is one line naming the file and the
key, and exit status 2; a port that cannot be bound is exit status 1. It must not hold any
logic of the actors.

With ``lab.tls: true`` the URLs are https and the lab's root certificate is written to
``root.pem`` next to the ready file (or, without one, into a temporary directory removed at
stop); the banner and the ready file (``tls_root``) name it, for ``sentry-sim device --ca``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scenarios.lab import EAS_PATH, ROOT_FILE_NAME, Lab, LabConfig, LabConfigError, LabError
from scenarios.serving import run, wait_for_shutdown_signal, write_ready_file
from simclock import Clock, ManualClock, SystemClock


def load(path: Path | None) -> LabConfig:
    """The lab file at ``path``, or the embedded default lab."""
    return LabConfig.default() if path is None else LabConfig.load(path)


def describe(lab: Lab, ready_file: Path | None, token_given: bool) -> list[str]:
    """What the lab prints once it is up: the URLs and where the token is."""
    urls = lab.ready_payload()
    rows = [
        ("gatekeeper (devices)", urls["sentry_url"] + EAS_PATH),
        ("gatekeeper admin API", urls["sentry_admin_url"] + "/api/devices"),
        ("UEM API", urls["uem_url"]),
        ("UEM admin API", urls["uem_admin_url"] + "/api/v1/eas/devices"),
        ("Exchange", urls["exchange_url"] + EAS_PATH),
    ]
    if "dashboard_url" in urls:
        rows.append(("live view (browser)", urls["dashboard_url"] + "/?token=<admin token>"))
    root = lab.tls_root_path
    if root is not None:
        rows.append(("TLS root (trust it)", f"{root} (e.g. sentry-sim device --ca {root})"))
        mode = lab.config.sentry.tls.device.client_certificates.value
        if mode != "off":
            rows.append(("client certificates", f"{mode} on the gatekeeper's device port"))
    width = max(len(name) for name, _ in rows)
    # Passwords stay in the config file: nothing this command prints carries a credential.
    users = ", ".join(u.name for u in lab.config.users)
    lines = [f"sentry-sim lab: every actor is up; config: {lab.config.source}"]
    lines += [f"  {name.ljust(width)}  {url}" for name, url in rows]
    lines.append(f"  {'users'.ljust(width)}  {users}")
    if ready_file is not None:
        token = f"in the ready file {ready_file} (key admin_token, mode 0600)"
    elif token_given:
        token = "the one given with --admin-token"
    else:
        token = "not shown; run with --ready-file FILE to have it written there (mode 0600)"
    lines.append(f"  {'admin token'.ljust(width)}  {token}")
    lines.append("Stop with Ctrl-C (SIGINT) or SIGTERM.")
    return lines


async def serve(
    config: LabConfig,
    ready_file: Path | None,
    admin_token: str | None,
    journal: Path | None = None,
    *,
    virtual_clock: bool = False,
) -> int:
    clock: Clock = ManualClock() if virtual_clock else SystemClock()
    root_file = None if ready_file is None else ready_file.with_name(ROOT_FILE_NAME)
    lab = (
        Lab(config, clock=clock, journal=journal, tls_root_file=root_file)
        if admin_token is None
        else Lab(
            config,
            clock=clock,
            admin_token=admin_token,
            journal=journal,
            tls_root_file=root_file,
        )
    )
    async with lab:
        if ready_file is not None:
            write_ready_file(ready_file, lab.ready_payload())
        for line in describe(lab, ready_file, admin_token is not None):
            print(line, flush=True)
        await wait_for_shutdown_signal()
    print("sentry-sim lab: stopped", flush=True)
    return 0


def main(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
    except LabConfigError as exc:
        print(f"sentry-sim lab: {exc}", file=sys.stderr)
        return 2

    async def go() -> int:
        return await serve(
            config,
            args.ready_file,
            args.admin_token,
            args.journal,
            virtual_clock=args.virtual_clock,
        )

    try:
        return run(go, use_uvloop=not args.no_uvloop)
    except LabError as exc:
        print(f"sentry-sim lab: {exc}", file=sys.stderr)
        return 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "lab",
        help="start Exchange, the UEM and the gatekeeper together and keep running",
        description=(
            "Start every actor of a lab in one process on loopback: the mock Exchange, the mock "
            "UEM (API and admin ports) and the gatekeeper in front of them, sharing one clock "
            "and one admin token. When every listener is up, write the ready file (JSON with "
            "sentry_url, sentry_admin_url, uem_url, uem_admin_url, exchange_url, admin_token; "
            "mode 0600). Point devices at sentry_url + /Microsoft-Server-ActiveSync. "
            "With lab.tls: true the gatekeeper and the UEM speak https with the lab's own CA; "
            "its root is written to root.pem next to the ready file (key tls_root). "
            "The lab file is documented in docs/lab-config.md. Stops on Ctrl-C/SIGTERM."
        ),
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="lab YAML file (default: the embedded default lab, scenarios/labs/default.yaml)",
    )
    parser.add_argument(
        "--ready-file",
        type=Path,
        metavar="FILE",
        help="write the ready file here once every listener is up (holds the admin token)",
    )
    parser.add_argument(
        "--admin-token",
        metavar="TOKEN",
        help="admin token for every admin API (default: a random one, in the ready file)",
    )
    parser.add_argument(
        "--journal",
        type=Path,
        metavar="FILE",
        help="record a whatif journal (JSON Lines) of the reports the UEM receives "
        "(sentry-sim whatif --journal FILE)",
    )
    parser.add_argument(
        "--virtual-clock",
        action="store_true",
        help="run every actor on one virtual clock that moves only when advanced (the live "
        "view's 'Advance clock' control): resyncs, compliance checks and timeouts wait for it",
    )
    parser.add_argument(
        "--no-uvloop", action="store_true", help="use asyncio's own event loop instead of uvloop"
    )
    parser.set_defaults(func=main)
