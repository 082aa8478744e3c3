"""Who a client certificate says the device is, and whether a request matches it.

Responsibility: read the user (subject CN) and device id (SAN URI
``urn:sentry-sim:device:<id>``) out of a verified peer certificate, and compare them with the
user and device id an ActiveSync request claims. It must not verify certificates (OpenSSL did
that during the handshake) or decide what a mismatch leads to: the gatekeeper turns the reason
string into a denial.

Theory of operation: ``identity_of`` takes ``SSLObject.getpeercert()`` (the dict form the
``ssl`` module and aiohttp's ``transport.get_extra_info("peercert")`` give), which is empty
unless the certificate was verified. Users compare case-insensitively with the domain part
ignored (``CORP\\alice``, ``alice@corp.example`` and ``alice`` are one user, as the gatekeeper's
device list keys them) unless both sides name a domain the same way and the domains differ.
Device ids compare case-insensitively, like the device list keys. A certificate without a
device URI is a per-user identity: any device of that user matches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import attrs
from cryptography import x509
from cryptography.x509.oid import NameOID

from labpki.hierarchy import DEVICE_URN_PREFIX


@attrs.frozen
class DeviceIdentity:
    """The user and (when the certificate names one) device a client certificate is for."""

    user: str
    device_id: str | None

    def describe(self) -> str:
        """``alice (device ABC)`` or ``alice (any device)``."""
        device = f"device {self.device_id}" if self.device_id else "any device"
        return f"{self.user} ({device})"


def _device_from_uri(uri: str) -> str | None:
    if uri.lower().startswith(DEVICE_URN_PREFIX):
        device = unquote(uri[len(DEVICE_URN_PREFIX) :])
        return device or None
    return None


def identity_of(peercert: Mapping[str, Any] | None) -> DeviceIdentity | None:
    """The identity in ``getpeercert()``; None without a (verified) certificate or a CN."""
    if not peercert:
        return None
    user: str | None = None
    for rdn in peercert.get("subject", ()):
        for attribute, value in rdn:
            if attribute == "commonName" and user is None:
                user = str(value)
    device: str | None = None
    email: str | None = None
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "URI" and device is None:
            device = _device_from_uri(str(value))
        elif kind == "email" and email is None:
            email = str(value)
    user = user or email
    if not user:
        return None
    return DeviceIdentity(user=user, device_id=device)


def identity_of_certificate(cert: x509.Certificate) -> DeviceIdentity | None:
    """The same as ``identity_of`` for a parsed certificate (e.g. ``getpeercert(True)``)."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    user = str(names[0].value) if names else None
    device: str | None = None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
            device = device or _device_from_uri(uri)
        if user is None:
            emails = san.get_values_for_type(x509.RFC822Name)
            user = emails[0] if emails else None
    if not user:
        return None
    return DeviceIdentity(user=user, device_id=device)


def _split_user(user: str) -> tuple[str, str | None, str | None]:
    """(name, domain, form) of ``DOMAIN\\user`` / ``user@domain`` / ``user``, case-folded."""
    text = user.strip().casefold()
    if "\\" in text:
        domain, _, name = text.rpartition("\\")
        return name, domain, "netbios"
    if "@" in text:
        name, _, domain = text.rpartition("@")
        return name, domain, "upn"
    return text, None, None


def same_user(left: str, right: str) -> bool:
    """Whether two spellings of a user name one user (see the module docstring)."""
    left_name, left_domain, left_form = _split_user(left)
    right_name, right_domain, right_form = _split_user(right)
    if left_name != right_name:
        return False
    return not (left_form is not None and left_form == right_form and left_domain != right_domain)


def identity_mismatch(identity: DeviceIdentity, user: str, device_id: str) -> str | None:
    """None when the request's user and device match the certificate, else the reason."""
    user_ok = same_user(identity.user, user)
    device_ok = identity.device_id is None or identity.device_id.casefold() == (
        device_id.strip().casefold()
    )
    if user_ok and device_ok:
        return None
    return f"certificate is for {identity.describe()}, request is for {user} (device {device_id})"
