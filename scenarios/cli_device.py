"""``sentry-sim device``: one simulated phone talks to an EAS server and says what happened.

Responsibility: turn command-line options into a ``DeviceIdentity`` and a script of steps, run
them with ``device_sim.shell`` against ``--url`` (a gatekeeper, the mock Exchange or a real
server), print every exchange in plain words (or one JSON document with ``--json``) and map
the end to an exit code. It must not hold protocol logic: the client core decides everything.

TLS: for an ``https://`` URL, ``--ca ROOT.pem`` makes the phone trust only that root (as a
device trusting only its MDM's root does; the lab writes its ``root.pem`` and names it), and
``--client-cert`` presents a client certificate for mutual TLS: a PKCS#12 file (its password
in the environment variable named by ``--client-cert-password-env``) or a PEM certificate with
``--client-key``. A file that cannot be used is one line naming it (exit status 2); a server
whose chain does not lead to the root is ``TLS: certificate verify failed for URL — does --ca
name the lab's root?``.

Exit codes: 0 every step succeeded; 3 the device was blocked (the code and its meaning are
printed); 4 the device was remotely wiped; 1 anything else (connection refused, credentials
refused, a step failed); 2 bad options (argparse).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Final, TextIO

import aiohttp

from activesync.versions import ProtocolVersion
from device_sim.client import (
    DeviceClient,
    DeviceState,
    FolderSync,
    Options,
    Ping,
    Provision,
    SendMail,
    Settings,
    Step,
    StepResult,
    Sync,
)
from device_sim.shell import (
    AiohttpTransport,
    DeviceRunner,
    DeviceTls,
    ScriptReport,
    TlsSetupError,
    read_identity,
    read_root,
)
from device_sim.wire import DeviceIdentity, QueryForm, Quirk
from scenarios.serving import run
from simclock import SystemClock

#: The versions a simulated phone speaks (the base64 form needs 12.1+, MS-ASHTTP 2.2.1.1.1.1).
VERSIONS: Final = ("12.1", "14.0", "14.1", "16.0", "16.1")
#: Words accepted by --steps.
STEP_WORDS: Final = ("options", "provision", "foldersync", "sync", "ping", "sendmail", "settings")
DEFAULT_STEPS: Final = "options,provision,foldersync,sync,ping"

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_BLOCKED: Final = 3
EXIT_WIPED: Final = 4


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "device",
        help="run one simulated phone against an ActiveSync server",
        description=(
            "Act as a phone: OPTIONS, Provision (both phases, applying the policy), FolderSync, "
            "Sync, Ping and more against URL/Microsoft-Server-ActiveSync, printing each "
            "exchange and its result. Reacts as a phone does: re-provisions on 449/142-144, "
            "stops as blocked on 129/177/403, acknowledges a remote wipe, backs off on 503."
        ),
        epilog=(
            "exit codes: 0 every step succeeded, 3 the device was blocked, "
            "4 the device was wiped, 1 any other failure"
        ),
    )
    parser.add_argument(
        "--url",
        required=True,
        help="server base URL, e.g. http://127.0.0.1:8443 (the phone appends "
        "/Microsoft-Server-ActiveSync)",
    )
    parser.add_argument("--user", required=True, help="mailbox user (also the Basic auth name)")
    parser.add_argument("--password", required=True, help="password for Basic auth")
    parser.add_argument("--device-id", required=True, help="EAS DeviceId: 1-32 letters or digits")
    parser.add_argument("--device-type", required=True, help="EAS DeviceType, e.g. iPhone, Android")
    parser.add_argument(
        "--version",
        default="16.1",
        choices=VERSIONS,
        help="EAS protocol version (default 16.1)",
    )
    parser.add_argument(
        "--base64",
        action="store_true",
        help="use the base64-encoded query form instead of the plain Cmd=... form",
    )
    parser.add_argument(
        "--steps",
        default=DEFAULT_STEPS,
        help=f"comma-separated steps from {', '.join(STEP_WORDS)} (default {DEFAULT_STEPS})",
    )
    parser.add_argument(
        "--ping-heartbeat",
        type=int,
        default=60,
        help="Ping heartbeat in seconds (default 60)",
    )
    parser.add_argument("--model", default="Simulated Phone", help="device model to report")
    parser.add_argument("--os", default="SimOS 17.1", help="operating system to report")
    parser.add_argument(
        "--user-agent", default="sentry-sim-device/1.0", help="User-Agent header to send"
    )
    parser.add_argument(
        "--quirk",
        action="append",
        default=[],
        choices=[q.value for q in Quirk],
        help="imitate a real client's deviation (repeatable)",
    )
    parser.add_argument("--mail-to", default=None, help="recipient for the sendmail step")
    parser.add_argument(
        "--subject", default="Hello from sentry-sim", help="subject for the sendmail step"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds allowed per request (a Ping gets its heartbeat on top; default 30)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of text lines"
    )
    tls = parser.add_argument_group("TLS (https:// URLs)")
    tls.add_argument(
        "--ca",
        metavar="ROOT.pem",
        help="trust only this PEM root (the lab's root.pem) instead of the system store",
    )
    tls.add_argument(
        "--client-cert",
        metavar="FILE",
        help="client certificate for mutual TLS: a PKCS#12 file (.p12/.pfx) or a PEM "
        "certificate (with --client-key)",
    )
    tls.add_argument("--client-key", metavar="FILE", help="the PEM private key of --client-cert")
    tls.add_argument(
        "--client-cert-password-env",
        metavar="VAR",
        help="environment variable holding the password of the PKCS#12 file (or of an "
        "encrypted PEM key); never give a password on the command line",
    )
    parser.set_defaults(func=main)


def load_tls(args: argparse.Namespace, url: str) -> DeviceTls | None:
    """The phone's TLS from ``--ca``/``--client-cert``/``--client-key``; None for the system
    store. ``ValueError`` naming the option and the file."""
    cert, key, env = args.client_cert, args.client_key, args.client_cert_password_env
    if args.ca is None:
        given = [name for name, value in (("--client-cert", cert), ("--client-key", key)) if value]
        if given:
            raise ValueError(f"{given[0]}: needs --ca ROOT.pem (the root the server chains to)")
        return None
    if not url.lower().startswith("https://"):
        raise ValueError(f"--ca: the URL is plain http ({url}); use https:// for TLS")
    if key is not None and cert is None:
        raise ValueError("--client-key: needs --client-cert (the certificate of that key)")
    password: bytes | None = None
    if env is not None:
        if cert is None:
            raise ValueError("--client-cert-password-env: needs --client-cert")
        value = os.environ.get(env)
        if value is None:
            raise ValueError(
                f"--client-cert-password-env: environment variable {env} is not set (it should "
                f"hold the password of {cert})"
            )
        password = value.encode("utf-8")
    try:
        root = read_root(args.ca)
    except TlsSetupError as exc:
        raise ValueError(f"--ca: {exc}") from None
    identity = None
    if cert is not None:
        try:
            identity = read_identity(cert, key, password=password)
        except TlsSetupError as exc:
            wrong_key = key is not None and str(exc).startswith(f"{key}:")
            raise ValueError(f"{'--client-key' if wrong_key else '--client-cert'}: {exc}") from None
    try:
        return DeviceTls.from_root(root, identity=identity)
    except TlsSetupError as exc:
        # labpki names the part OpenSSL refused: "trusted root: ..." or "client identity: ...".
        option, name = (
            ("--client-cert", cert) if "client identity" in str(exc) else ("--ca", args.ca)
        )
        raise ValueError(f"{option}: {name}: {exc}") from None


def parse_steps(text: str, *, heartbeat: int, mail_to: str, subject: str) -> list[Step]:
    """``"options,provision,sync"`` -> steps; ``ValueError`` naming an unknown word."""
    steps: list[Step] = []
    for raw in text.split(","):
        word = raw.strip().lower()
        if not word:
            continue
        if word == "options":
            steps.append(Options())
        elif word == "provision":
            steps.append(Provision())
        elif word == "foldersync":
            steps.append(FolderSync())
        elif word == "sync":
            steps.append(Sync())
        elif word == "ping":
            steps.append(Ping(heartbeat))
        elif word == "sendmail":
            steps.append(SendMail(to=mail_to, subject=subject, body="Sent by sentry-sim device."))
        elif word == "settings":
            steps.append(Settings())
        else:
            raise ValueError(
                f"--steps: unknown step {raw.strip()!r}; expected {', '.join(STEP_WORDS)}"
            )
    if not steps:
        raise ValueError(f"--steps: expected at least one of {', '.join(STEP_WORDS)}")
    return steps


def format_result(number: int, result: StepResult) -> str:
    """``3 FolderSync  HTTP 200  Status 1  6 folders  sync key 1``."""
    http = f"HTTP {result.http_status}" if result.http_status else "no response"
    return f"{number} {result.label}  {http}  {result.summary}"


def exit_code(report: ScriptReport) -> int:
    if report.state is DeviceState.BLOCKED:
        return EXIT_BLOCKED
    if report.state is DeviceState.WIPED:
        return EXIT_WIPED
    return EXIT_OK if report.succeeded else EXIT_ERROR


def main(args: argparse.Namespace) -> int:
    try:
        identity = DeviceIdentity(
            user=args.user,
            password=args.password,
            device_id=args.device_id,
            device_type=args.device_type,
            version=ProtocolVersion.from_text(args.version),
            query_form=QueryForm.BASE64 if args.base64 else QueryForm.PLAIN,
            model=args.model,
            os=args.os,
            user_agent=args.user_agent,
            quirks=frozenset(Quirk(q) for q in args.quirk),
        )
        if not 1 <= args.ping_heartbeat <= 3540:
            raise ValueError(
                f"--ping-heartbeat: expected 1..3540 seconds, got {args.ping_heartbeat}"
            )
        if args.timeout <= 0:
            raise ValueError(f"--timeout: expected a positive number, got {args.timeout}")
        steps = parse_steps(
            args.steps,
            heartbeat=args.ping_heartbeat,
            mail_to=args.mail_to or args.user,
            subject=args.subject,
        )
    except ValueError as exc:
        print(f"sentry-sim device: {exc}", file=sys.stderr)
        return 2
    url = str(args.url).rstrip("/")
    if not url.startswith(("http://", "https://")):
        print(f"sentry-sim device: --url: expected http://HOST:PORT, got {url!r}", file=sys.stderr)
        return 2
    try:
        tls = load_tls(args, url)
    except ValueError as exc:
        print(f"sentry-sim device: {exc}", file=sys.stderr)
        return 2

    async def go() -> int:
        return await run_device(
            identity,
            steps,
            url=url,
            as_json=args.json,
            request_timeout=args.timeout,
            out=sys.stdout,
            tls=tls,
        )

    return run(go)


async def run_device(
    identity: DeviceIdentity,
    steps: Sequence[Step],
    *,
    url: str,
    as_json: bool,
    request_timeout: float,
    out: TextIO,
    tls: DeviceTls | None = None,
) -> int:
    """Run the script and print it; the exit code. ``tls``: how to speak https (None: the
    system's trust store)."""
    counter = 0

    def show(result: StepResult) -> None:
        nonlocal counter
        counter += 1
        if not as_json:
            print(format_result(counter, result), file=out, flush=True)

    client = DeviceClient(identity)
    async with aiohttp.ClientSession() as session:
        runner = DeviceRunner(
            client,
            AiohttpTransport(session, url, tls=tls),
            SystemClock(),
            on_result=show,
            request_timeout=request_timeout,
        )
        report = await runner.run_script(steps)
    code = exit_code(report)
    form = identity.query_form.value
    who = f"{identity.device_id} ({identity.user}, {identity.version.text} {form} query)"
    if as_json:
        document = {
            "url": url,
            "device": {
                "user": identity.user,
                "device_id": identity.device_id,
                "device_type": identity.device_type,
                "version": identity.version.text,
                "query_form": form,
            },
            "results": [r.to_json() for r in report.results],
            "state": report.state.value,
            "steps_run": report.steps_run,
            "steps_succeeded": report.steps_succeeded,
            "blocked": None
            if report.block is None
            else {
                "code": report.block.code,
                "kind": report.block.kind.value,
                "meaning": report.block.meaning,
                "http_status": report.block.http_status,
            },
            "error": report.error,
            "exit_code": code,
        }
        print(json.dumps(document, indent=2), file=out)
        return code
    if report.error is not None:
        where = "" if url in report.error else f" (server {url})"
        print(f"error: {report.error}{where}", file=out)
    if report.block is not None:
        print(f"{who}: BLOCKED with code {report.block.code}: {report.block.meaning}", file=out)
    elif report.state is DeviceState.WIPED:
        print(
            f"{who}: WIPED: the server ordered a remote wipe; the device erased its data", file=out
        )
    elif report.state is DeviceState.AUTH_FAILED:
        print(f"{who}: credentials refused by {url}", file=out)
    else:
        print(
            f"{who}: {report.state.name}, {report.steps_succeeded}/{report.steps_run} steps "
            "succeeded",
            file=out,
        )
    return code
