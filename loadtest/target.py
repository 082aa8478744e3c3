"""Where a load run may send traffic: loopback only, and what a lab must offer the generator.

Responsibility: the loopback rule (a target URL must name 127.0.0.0/8, ::1 or ``localhost``;
a host name is resolved and *every* address it resolves to must be loopback), the ``Target``
value (the URLs of a running lab), reading a lab's ready file, and the ``LabControl`` seam
through which profile events (``uem: down`` / ``up``) act on a lab. It must not send a single
packet: resolution uses ``getaddrinfo`` only, and only after a literal address has been ruled
out.

Theory of operation: ``check_loopback(url, where)`` parses the URL, accepts a literal loopback
address at once, refuses any other literal address at once, and resolves a name (``resolve``
is injectable so tests never touch DNS). Every URL of a ``Target`` passes through it, so
neither the generator nor the Locust file can be pointed anywhere else.

TLS: an ``https://`` target is reached trusting only the root named by ``TlsFiles`` (a
profile's ``target.tls``, or the ``tls_root`` a TLS lab writes into its ready file), never
the system store, optionally presenting one client certificate for mutual TLS.
``TlsFiles.load`` reads the files and says which setting and which file is wrong. The loopback
rule is the same for https.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import urlsplit

import attrs

from device_sim.shell import DeviceTls, TlsSetupError, read_identity, read_root

#: Names accepted without asking the resolver (RFC 6761 6.3: localhost is loopback).
LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})
#: Ready files are small JSON documents; anything bigger is not one.
MAX_READY_FILE: Final = 64 * 1024


class TargetError(ValueError):
    """A target that may not or cannot be used; the message says which and why."""


Resolver = Callable[[str], list[str]]


def resolve(host: str) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise TargetError(f"cannot resolve {host!r}: {exc.strerror or exc}") from None
    return sorted({str(info[4][0]) for info in infos})


def _is_loopback(text: str) -> bool | None:
    """True/False for an address literal, None for a name."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_loopback(url: str, where: str, *, resolver: Resolver = resolve) -> str:
    """Return ``url`` without a trailing slash if it names a loopback host; else raise.

    ``where`` names the setting in the message (``hot_path.yaml: target.sentry_url``).
    """
    if not isinstance(url, str) or not url:
        raise TargetError(f"{where}: expected an http:// URL, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TargetError(f"{where}: expected an http:// or https:// URL, got {url!r}")
    host = parts.hostname
    if not host:
        raise TargetError(f"{where}: the URL names no host: {url!r}")
    literal = _is_loopback(host)
    refusal = (
        f"{where}: {host} is not a loopback address; load runs may only target "
        "127.0.0.0/8, ::1 or localhost (this simulator never sends load elsewhere)"
    )
    if literal is False:
        raise TargetError(refusal)
    if literal is None and host.lower() not in LOOPBACK_NAMES:
        addresses = resolver(host)
        if not addresses:
            raise TargetError(f"{where}: {host} resolves to no address")
        outside = [a for a in addresses if _is_loopback(a) is not True]
        if outside:
            raise TargetError(f"{refusal}; it resolves to {', '.join(outside)}")
    return url.rstrip("/")


@attrs.frozen(kw_only=True)
class TlsFiles:
    """How the generator speaks https: the root PEM it trusts and an optional client
    certificate (PKCS#12, or PEM with ``client_key``); ``source`` names the setting
    (``hot.yaml: target.tls``) in every message."""

    #: PEM root(s): the only certificates trusted (not the system store).
    ca: str
    #: PKCS#12 file, or a PEM certificate with ``client_key``, for mutual TLS.
    client_cert: str | None = None
    client_key: str | None = None
    #: Environment variable holding the PKCS#12 (or encrypted key) password.
    password_env: str | None = None
    #: The setting these came from: ``hot.yaml: target.tls``, or ``ready.json:`` (top level).
    source: str = "target.tls"
    #: The key of ``source`` that names the root (``ca``, or ``tls_root`` in a ready file).
    ca_key: str = "ca"

    def at(self, key: str) -> str:
        """The full name of one setting: ``hot.yaml: target.tls.ca``, ``ready.json: tls_root``."""
        if self.source.endswith(":"):
            return f"{self.source} {key}"
        return f"{self.source}.{key}"

    def load(self, environ: Mapping[str, str] = os.environ) -> DeviceTls:
        """Read the files: a ``DeviceTls`` trusting only ``ca``. ``TargetError`` names the
        setting and the file."""
        try:
            root = read_root(self.ca)
        except TlsSetupError as exc:
            raise TargetError(f"{self.at(self.ca_key)}: {exc}") from None
        identity = None
        if self.client_cert is not None:
            password: bytes | None = None
            if self.password_env is not None:
                value = environ.get(self.password_env)
                if value is None:
                    raise TargetError(
                        f"{self.at('password_env')}: environment variable {self.password_env} is "
                        f"not set (it should hold the password of {self.client_cert})"
                    )
                password = value.encode("utf-8")
            try:
                identity = read_identity(self.client_cert, self.client_key, password=password)
            except TlsSetupError as exc:
                key = self.client_key
                which = "client_key" if key and str(exc).startswith(f"{key}:") else "client_cert"
                raise TargetError(f"{self.at(which)}: {exc}") from None
        try:
            return DeviceTls.from_root(
                root,
                identity=identity,
                ca_hint=f"does {self.at(self.ca_key)} ({self.ca}) name the lab's root?",
                client_hint=(
                    "a server that requires a client certificate closes the connection when "
                    f"none (or an untrusted one) is presented: check {self.at('client_cert')}"
                ),
            )
        except TlsSetupError as exc:
            raise TargetError(f"{self.source.rstrip(':')}: {exc}") from None


@attrs.frozen(kw_only=True)
class Target:
    """A running lab, as its ready file describes it (URLs without trailing slash)."""

    #: The gatekeeper's device-facing base (devices append /Microsoft-Server-ActiveSync).
    sentry_url: str
    sentry_admin_url: str | None = None
    uem_url: str | None = None
    uem_admin_url: str | None = None
    exchange_url: str | None = None
    admin_token: str | None = attrs.field(default=None, repr=False)
    #: The root a TLS lab wrote (the ready file's ``tls_root``), None for a plain lab.
    tls: TlsFiles | None = None

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, object], source: str, *, resolver: Resolver = resolve
    ) -> Target:
        """Read a ready payload; every URL must pass the loopback rule."""
        urls: dict[str, str | None] = {}
        for key in ("sentry_url", "sentry_admin_url", "uem_url", "uem_admin_url", "exchange_url"):
            value = data.get(key)
            if value is None:
                if key == "sentry_url":
                    raise TargetError(f"{source}: sentry_url: missing (the gatekeeper's URL)")
                urls[key] = None
                continue
            if not isinstance(value, str):
                raise TargetError(f"{source}: {key}: expected a URL string, got {value!r}")
            urls[key] = check_loopback(value, f"{source}: {key}", resolver=resolver)
        token = data.get("admin_token")
        if token is not None and not isinstance(token, str):
            raise TargetError(f"{source}: admin_token: expected a string")
        root = data.get("tls_root")
        if root is not None and (not isinstance(root, str) or not root):
            raise TargetError(f"{source}: tls_root: expected the path of a PEM root, got {root!r}")
        tls = None if root is None else TlsFiles(ca=root, source=f"{source}:", ca_key="tls_root")
        sentry_url = urls.pop("sentry_url")
        assert sentry_url is not None
        return cls(sentry_url=sentry_url, admin_token=token, tls=tls, **urls)


def read_ready_file(path: str | Path, *, resolver: Resolver = resolve) -> Target:
    """The ``Target`` a lab's ready file describes."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()[: MAX_READY_FILE + 1]
    except OSError as exc:
        raise TargetError(f"{name}: cannot read the ready file: {exc.strerror or exc}") from None
    if len(raw) > MAX_READY_FILE:
        raise TargetError(f"{name}: larger than {MAX_READY_FILE} bytes; not a ready file")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TargetError(f"{name}: not a JSON ready file: {exc}") from None
    if not isinstance(data, dict):
        raise TargetError(f"{name}: expected a JSON object, got {type(data).__name__}")
    return Target.from_mapping(data, name, resolver=resolver)


class LabControl(Protocol):
    """What a lab offers a load run besides its URLs: the faults that profile events inject.

    ``scenarios.cli_load`` fulfils it for the lab it embeds; a lab started elsewhere (a ready
    file) offers none, so profiles with events need ``target: {lab: default}``.
    """

    async def set_uem_reachable(self, reachable: bool) -> None:
        """Make the UEM unreachable from the gatekeeper (False) or reachable again (True)."""
        ...
