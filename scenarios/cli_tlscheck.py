"""``sentry-sim tlscheck``: does every configured server speak TLS 1.2 with a trusted chain?

Responsibility: for each server (the ``*_url`` keys of a ready file that ``sentry-sim lab``,
``sentry``, or ``uem`` wrote, and/or URLs on the command line) try one TLS 1.2 handshake, as
a device that trusts only the given root would, and print one aligned line per server, like
the real gatekeeper's TLS check::

    TLS 1.2 OK      uem        https://127.0.0.1:40123  (ECDHE-ECDSA-AES128-GCM-SHA256, chain ok)
    TLS 1.2 FAILED  sentry     https://127.0.0.1:40125  (server speaks only TLSv1.1)
    no TLS          exchange   http://127.0.0.1:40127   (plain http: nothing to check)

Exit status 0 only if every TLS server passed (plain-http servers are reported, not failed),
1 if one failed, 2 for unusable input (no servers, unreadable ready file or CA). Must not:
send any request: it completes a handshake, reads what was negotiated and closes.

Theory of operation: the client context is TLS 1.2 minimum *and* maximum, checks host names,
and trusts ``--ca`` (PEM) or, without it, the ready file's ``tls_root`` (the lab's root), else
the system store. A host name is sent as SNI; an IP address is not (RFC 6066). A handshake
that is merely reset is probed again at TLS 1.0/1.1 (``uem_sim.outgoing_client``'s diagnostic
probe), so a server that speaks only a retired protocol is named as such.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
from yarl import URL

from labpki import PkiError, client_context, read_roots
from uem_sim.outgoing_client import probe_handshake
from uem_sim.outgoing_tls import legacy_probe_context, sni_name

#: Ready-file keys that are not servers.
_NOT_SERVERS: Final = ("admin_token", "tls_root")
_MAX_READY_BYTES: Final = 1 << 20
OK: Final = "TLS 1.2 OK"
FAILED: Final = "TLS 1.2 FAILED"
PLAIN: Final = "no TLS"


class TlsCheckError(Exception):
    """Input the command cannot use (exit status 2)."""


@attrs.frozen
class Target:
    """One server to check: a name for the line and its URL."""

    name: str
    url: str


@attrs.frozen(kw_only=True)
class Outcome:
    """What one check found."""

    target: Target
    #: None for a plain-http server (nothing checked).
    ok: bool | None
    protocol: str | None = None
    cipher: str | None = None
    sni: str | None = None
    detail: str = ""

    @property
    def status(self) -> str:
        return PLAIN if self.ok is None else OK if self.ok else FAILED

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.target.name,
            "url": self.target.url,
            "tls": self.ok is not None,
            "ok": self.ok,
            "status": self.status,
            "protocol": self.protocol,
            "cipher": self.cipher,
            "sni": self.sni,
            "detail": self.detail,
        }


def targets_from_ready(data: object, source: str) -> list[Target]:
    """Every ``*_url`` of a ready file, named without the suffix (``uem_admin_url`` ->
    ``uem_admin``)."""
    if not isinstance(data, Mapping):
        raise TlsCheckError(f"{source}: expected a JSON object (a ready file)")
    targets: list[Target] = []
    for key, value in data.items():
        if key in _NOT_SERVERS or not str(key).endswith("_url"):
            continue
        if not isinstance(value, str):
            raise TlsCheckError(f"{source}: {key}: expected a URL, got {value!r}")
        targets.append(parse_target(f"{str(key).removesuffix('_url')}={value}", source))
    return targets


def parse_target(text: str, source: str = "command line") -> Target:
    """``NAME=URL`` or a bare URL (named by its host)."""
    name, sep, url = text.partition("=")
    if not sep or "://" in name:
        name, url = "", text
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise TlsCheckError(f"{source}: {text!r}: expected an http:// or https:// URL")
    return Target(name or parsed.host, url.rstrip("/"))


def tls12_context(ca_pem: bytes | None) -> ssl.SSLContext:
    """TLS 1.2 only, host names checked, trusting ``ca_pem`` (None: the system store)."""
    if ca_pem is not None:
        return client_context(
            ca_pem, min_version=ssl.TLSVersion.TLSv1_2, max_version=ssl.TLSVersion.TLSv1_2
        )
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def read_ca(path: str) -> bytes:
    try:
        data = read_roots(path)
    except PkiError as exc:
        raise TlsCheckError(f"--ca {exc}") from None  # the message starts with the path
    try:
        client_context(data)  # OpenSSL must accept them too
    except PkiError as exc:
        raise TlsCheckError(f"--ca {path}: {exc}") from None
    return data


def _reason(exc: BaseException, trusted: str) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted: {exc.verify_message}; trusting {trusted}"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        if reason == "WRONG_VERSION_NUMBER":
            return "the server does not speak TLS here (plain http?)"
        if reason in ("TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL"):
            return "the server refused TLS 1.2"
        if "HANDSHAKE_FAILURE" in reason or reason == "NO_SHARED_CIPHER":
            return "no TLS 1.2 cipher suite in common"
        return f"TLS error {reason}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError):
        return (
            "the server closed the connection during the TLS 1.2 handshake: "
            "no protocol version or cipher suite in common?"
        )
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def check(
    target: Target, context: ssl.SSLContext, *, timeout_s: float, trusted: str
) -> Outcome:
    """One TLS 1.2 handshake with ``target`` (nothing is sent after it)."""
    url = URL(target.url)
    if url.scheme != "https":
        return Outcome(target=target, ok=None, detail="plain http: nothing to check")
    host, port = url.host or "", url.port or 443
    sni = sni_name(host)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
        ssl_object = writer.get_extra_info("ssl_object")
        cipher = ssl_object.cipher()[0] if ssl_object is not None and ssl_object.cipher() else "?"
        protocol = ssl_object.version() if ssl_object is not None else None
        return Outcome(
            target=target,
            ok=True,
            protocol=protocol,
            cipher=cipher,
            sni=sni,
            detail=f"{cipher}, chain ok",
        )
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        detail = _reason(exc, trusted)
        if isinstance(exc, ConnectionResetError | ConnectionAbortedError) or (
            isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLCertVerificationError)
        ):
            legacy = await probe_handshake(host, port, legacy_probe_context())
            if legacy is not None:
                detail = f"the server speaks only {legacy[0]}; TLS 1.2 refused"
        if isinstance(exc, TimeoutError):
            detail = f"no answer within {timeout_s:g} s"
        return Outcome(target=target, ok=False, sni=sni, detail=detail)
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await writer.wait_closed()


def format_lines(outcomes: Sequence[Outcome]) -> list[str]:
    """One aligned line per outcome."""
    status_w = max(len(OK), len(FAILED), len(PLAIN))
    name_w = max((len(o.target.name) for o in outcomes), default=0)
    url_w = max((len(o.target.url) for o in outcomes), default=0)
    return [
        f"{o.status.ljust(status_w)}  {o.target.name.ljust(name_w)}  "
        f"{o.target.url.ljust(url_w)}  ({o.detail})"
        for o in outcomes
    ]


def exit_code(outcomes: Sequence[Outcome]) -> int:
    """0 when no TLS server failed, else 1."""
    return 1 if any(o.ok is False for o in outcomes) else 0


def gather_targets(args: argparse.Namespace) -> tuple[list[Target], bytes | None, str]:
    """(targets, trusted roots, what is trusted) from the arguments; ``TlsCheckError``."""
    targets: list[Target] = []
    ca_path: str | None = args.ca
    if args.ready:
        try:
            raw = Path(args.ready).read_bytes()[:_MAX_READY_BYTES]
            data = json.loads(raw)
        except OSError as exc:
            raise TlsCheckError(f"--ready {args.ready}: cannot read: {exc.strerror}") from None
        except ValueError as exc:
            raise TlsCheckError(f"--ready {args.ready}: not JSON ({exc})") from None
        targets += targets_from_ready(data, args.ready)
        root = data.get("tls_root") if isinstance(data, Mapping) else None
        if ca_path is None and isinstance(root, str):
            ca_path = root
    targets += [parse_target(text) for text in args.urls]
    if not targets:
        raise TlsCheckError("no servers to check: give --ready FILE and/or URLs")
    if ca_path is None:
        return targets, None, "the system store"
    return targets, read_ca(ca_path), ca_path


async def run_checks(
    targets: Sequence[Target], ca_pem: bytes | None, trusted: str, timeout_s: float
) -> list[Outcome]:
    context = tls12_context(ca_pem)
    return list(
        await asyncio.gather(
            *(check(t, context, timeout_s=timeout_s, trusted=trusted) for t in targets)
        )
    )


def handle(args: argparse.Namespace) -> int:
    try:
        targets, ca_pem, trusted = gather_targets(args)
    except TlsCheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    outcomes = asyncio.run(run_checks(targets, ca_pem, trusted, args.timeout))
    code = exit_code(outcomes)
    if args.json:
        print(
            json.dumps(
                {"ok": code == 0, "trust": trusted, "servers": [o.to_dict() for o in outcomes]},
                indent=2,
            )
        )
    else:
        for line in format_lines(outcomes):
            print(line)
    return code


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value <= 120:
        raise argparse.ArgumentTypeError(f"expected 0 < seconds <= 120, got {text}")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "tlscheck",
        help="check that every configured server speaks TLS 1.2 with a trusted chain",
        description=(
            "Try one TLS 1.2 handshake with every server of a ready file (--ready) and every "
            "URL given, trusting only --ca (default: the ready file's tls_root, else the "
            "system store). Prints 'TLS 1.2 OK' or 'TLS 1.2 FAILED' with the reason per "
            "server; plain http servers are listed as 'no TLS'. Exit status 0 only if every "
            "TLS server passed."
        ),
    )
    parser.add_argument(
        "urls",
        nargs="*",
        metavar="[NAME=]URL",
        help="servers to check (e.g. uem=https://127.0.0.1:8443)",
    )
    parser.add_argument(
        "--ready", metavar="FILE", help="a ready file written by sentry-sim lab/sentry/uem"
    )
    parser.add_argument("--ca", metavar="ROOT.pem", help="PEM root(s) to trust")
    parser.add_argument("--json", action="store_true", help="print JSON instead of lines")
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=5.0,
        metavar="SECONDS",
        help="per-server handshake timeout (default 5)",
    )
    parser.set_defaults(func=handle)
