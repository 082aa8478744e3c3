"""``sentry-sim pki``: make the lab's CA hierarchy, bundle PKCS#12 files, show certificates.

Responsibility: the command-line shell around ``labpki``: read and write files, read passwords
from environment variables (never from the command line, where ``ps`` would show them), print
what happened. It decides nothing itself; every ``PkiError`` or unreadable file becomes one
line on stderr naming the file, and exit status 2.

    sentry-sim pki init ./pki                         # root, intermediate, issuing CA, server.p12
    sentry-sim pki p12 --cert-chain server.pem --key server.key --out upload.p12 \\
        --password-env P12_PASSWORD
    sentry-sim pki show upload.p12 --password-env P12_PASSWORD
    sentry-sim pki show ./pki/root.pem --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import attrs
from cryptography import x509

from labpki import PkiError, ServerCredential, make_hierarchy
from labpki.credential import (
    MAX_INPUT_BYTES,
    certificate_summary,
    check_size,
    load_pkcs12_file,
)
from labpki.hierarchy import write_file

DEFAULT_HOSTS: Final = ("localhost", "127.0.0.1")
EXIT_ERROR: Final = 2


class _Failure(Exception):
    """A problem to report as one line on stderr, exit status 2."""


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise _Failure(f"{path}: cannot read: {exc.strerror or exc}") from None
    check_size(data, path)
    return data


def _password(variable: str | None) -> bytes | None:
    if variable is None:
        return None
    value = os.environ.get(variable)
    if value is None:
        raise _Failure(f"--password-env {variable}: the environment variable is not set")
    return value.encode("utf-8")


def _write(path: Path, data: bytes, mode: int) -> None:
    try:
        write_file(path, data, mode)
    except OSError as exc:
        raise _Failure(f"{path}: cannot write: {exc.strerror or exc}") from None


def _run(args: argparse.Namespace, action: str) -> int:
    handlers = {"init": _init, "p12": _p12, "show": _show}
    try:
        handlers[action](args)
    except (_Failure, PkiError) as exc:
        print(f"sentry-sim pki {action}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def _init(args: argparse.Namespace) -> None:
    directory = Path(args.directory)
    if (directory / "root.key").exists() and not args.force:
        raise _Failure(
            f"{directory}: already holds a hierarchy (root.key); pass --force to replace it"
        )
    hosts = tuple(args.host) or DEFAULT_HOSTS
    password = _password(args.password_env)
    hierarchy = make_hierarchy(args.name)
    credential = hierarchy.server_credential(hosts)
    try:
        written = hierarchy.write(directory)
    except OSError as exc:
        raise _Failure(f"{directory}: cannot write: {exc.strerror or exc}") from None
    _write(directory / "server.p12", credential.to_pkcs12(password), 0o600)
    _write(directory / "server.pem", credential.chain_pem(), 0o644)
    _write(directory / "server.key", credential.key_pem(), 0o600)
    roles = {
        "root.pem": "root CA certificate: the ONLY file a device needs to trust",
        "root.key": "root CA key (0600): keep it offline; it can sign anything",
        "intermediate.pem": "intermediate CA certificate",
        "intermediate.key": "intermediate CA key (0600)",
        "issuing.pem": "issuing CA certificate (signs servers and device identities)",
        "issuing.key": "issuing CA key (0600)",
    }
    print(f'Wrote the CA hierarchy "{args.name}" to {directory}:')
    for name in written:
        print(f"  {name:<17} {roles[name]}")
    protection = f"password from ${args.password_env}" if password else "no password"
    print(f"  {'server.p12':<17} server certificate + key + chain, {protection}")
    print(f"  {'server.pem':<17} server certificate then issuing and intermediate CA, PEM")
    print(f"  {'server.key':<17} server key (0600)")
    print(
        f"Server certificate for {', '.join(hosts)}, valid until "
        f"{credential.summary()['not_after']}."
    )
    print("Servers send server.pem (leaf + issuing + intermediate), never the root.")
    print(f"A device trusts the lab by trusting {directory / 'root.pem'} alone, e.g.")
    print(f"  curl --cacert {directory / 'root.pem'} https://127.0.0.1:PORT/")
    print("  python: labpki.client_context(Path('root.pem').read_bytes())")
    print("Upload server.p12 to the gatekeeper's admin API to serve it without a restart.")


def _p12(args: argparse.Namespace) -> None:
    password = _password(args.password_env)
    chain_pem, key_data = _read(args.cert_chain), _read(args.key)
    credential = ServerCredential.from_pem(
        chain_pem, key_data, source=args.cert_chain, key_source=args.key
    )
    _write(Path(args.out), credential.to_pkcs12(password, name=args.friendly_name), 0o600)
    chain = "; ".join(c.subject.rfc4514_string() for c in credential.chain) or "none"
    protection = "password-protected" if password else "no password"
    print(f"Wrote {args.out} ({protection}): {credential.certificate.subject.rfc4514_string()}")
    print(f"  chain sent after it: {chain}")


@attrs.frozen
class _Description:
    file: str
    format: str
    certificates: list[dict[str, object]]
    #: For PKCS#12: None when the gatekeeper would accept it, else why not.
    problem: str | None = None

    def to_json(self) -> dict[str, object]:
        described: dict[str, object] = {
            "file": self.file,
            "format": self.format,
            "certificates": self.certificates,
        }
        if self.format == "PKCS#12":
            described["usable_as_server_credential"] = self.problem is None
            described["problem"] = self.problem
        return described


def _describe(path: str, password: bytes | None) -> _Description:
    data = _read(path)
    problem: str | None = None
    if b"-----BEGIN" in data:
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise _Failure(f"{path}: PEM without a certificate") from None
        kind = "PEM"
    else:
        loaded = load_pkcs12_file(data, password, path)
        certs = [c.certificate for c in loaded.additional_certs]
        if loaded.cert is not None:
            certs.insert(0, loaded.cert.certificate)
        kind = "PKCS#12"
        try:
            ServerCredential.from_pkcs12(data, password, source=path)
        except PkiError as exc:
            problem = str(exc)
    if not certs:
        raise _Failure(f"{path}: no certificate inside")
    now = datetime.now(UTC)
    summaries = []
    for cert in certs:
        summary = certificate_summary(cert)
        summary["valid_now"] = cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
        summaries.append(summary)
    return _Description(file=path, format=kind, certificates=summaries, problem=problem)


def _show(args: argparse.Namespace) -> None:
    described = _describe(args.file, _password(args.password_env))
    if args.json:
        print(json.dumps(described.to_json(), indent=2))
        return
    print(f"{described.file} ({described.format})")
    for index, summary in enumerate(described.certificates):
        role = "certificate" if index == 0 else f"chain[{index - 1}]"
        state = "valid now" if summary["valid_now"] else "NOT valid now"
        print(f"  {role}: {summary['subject']}")
        print(f"    issuer:    {summary['issuer']}")
        print(f"    serial:    {summary['serial']}")
        print(f"    validity:  {summary['not_before']} .. {summary['not_after']} ({state})")
        print(f"    sha256:    {summary['sha256']}")
        names = [str(n) for key in ("dns_names", "ip_addresses") for n in _strings(summary[key])]
        if names:
            print(f"    names:     {', '.join(names)}")
        if summary["ca"]:
            root = " (self-signed root)" if summary["self_signed"] else ""
            print(f"    CA:        yes{root}")
    if described.format == "PKCS#12":
        verdict = "yes" if described.problem is None else f"no: {described.problem}"
        print(f"  usable as a server credential: {verdict}")


def _strings(value: object) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sentry-sim pki init|p12|show`` to the ``sentry-sim`` command."""
    parser = sub.add_parser(
        "pki",
        help="make the lab's CA hierarchy, bundle PKCS#12 files, show certificates",
        description=(
            "The lab's PKI: a root, intermediate and issuing CA (EC P-256); servers send their "
            "certificate plus the CAs below the root, devices trust only the root. "
            "See docs/tls.md."
        ),
    )
    parser.set_defaults(func=lambda _args: _usage(parser))
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    init = actions.add_parser(
        "init",
        help="write a new CA hierarchy and a server certificate",
        description=(
            "Write root/intermediate/issuing CA certificates and keys (keys 0600) to DIR, "
            "plus server.p12, server.pem and server.key for the given host names."
        ),
    )
    init.add_argument("directory", metavar="DIR", help="directory to write (created if missing)")
    init.add_argument("--name", default="sentry-sim lab", help="hierarchy name in the CA subjects")
    init.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME",
        help="server certificate DNS name or IP (repeatable; default localhost and 127.0.0.1)",
    )
    init.add_argument(
        "--password-env", metavar="VAR", help="protect server.p12 with the password in $VAR"
    )
    init.add_argument("--force", action="store_true", help="replace an existing hierarchy")
    init.set_defaults(func=lambda args: _run(args, "init"))

    p12 = actions.add_parser(
        "p12",
        help="bundle a PEM chain and key into a PKCS#12 file for upload",
        description=(
            "Check a PEM certificate chain (leaf first) and its PEM key, then write them as a "
            "PKCS#12 file (0600). A root inside the chain is left out: servers never send it."
        ),
    )
    p12.add_argument("--cert-chain", required=True, metavar="PEM", help="leaf then CA certs")
    p12.add_argument("--key", required=True, metavar="PEM", help="the leaf's private key")
    p12.add_argument("--out", required=True, metavar="FILE", help="PKCS#12 file to write")
    p12.add_argument("--password-env", metavar="VAR", help="protect it with the password in $VAR")
    p12.add_argument("--friendly-name", default="sentry-sim", help="name stored in the file")
    p12.set_defaults(func=lambda args: _run(args, "p12"))

    show = actions.add_parser(
        "show",
        help="describe a PEM or PKCS#12 file",
        description=(
            "Print subject, issuer, serial, validity, SHA-256 fingerprint and names of every "
            "certificate in a PEM or PKCS#12 file; for PKCS#12, also whether the gatekeeper "
            "would accept it as a server credential."
        ),
    )
    show.add_argument("file", metavar="FILE", help="PEM or PKCS#12 file")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.add_argument("--password-env", metavar="VAR", help="PKCS#12 password is in $VAR")
    show.set_defaults(func=lambda args: _run(args, "show"))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_ERROR
