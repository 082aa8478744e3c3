"""The UEM's outgoing TLS policy: protocol, selected and disabled cipher suites, trust.

Responsibility: say which TLS the UEM speaks when *it* calls out (pushes to gatekeepers, any
other external server), as MobileIron Core's "Security > Advanced > Outgoing SSL
Configuration" does: TLS 1.2 only (1.0 and 1.1 are not supported and 1.2 cannot be disabled),
SNI always sent, an ordered list of *selected* cipher suites and a list of *disabled* ones, a
documented default and "reset to default". It validates settings (unknown suite names, a suite
both selected and disabled, an empty selection, a protocol other than TLS 1.2 are errors that
say why) and builds the ``ssl.SSLContext`` for outgoing calls and the diagnostic probe
contexts. Must not: open sockets, read files, or keep state (``uem_sim.outgoing_client`` is the
shell that uses these contexts; ``uem_sim.tls_usage`` keeps what endpoints negotiated).

Theory of operation: ``SUITES`` is the catalogue of TLS 1.2 suites the UEM knows, each with
its IANA name (what the admin API shows, as Core does) and its OpenSSL name (what
``SSLContext.set_ciphers`` takes); either spelling is accepted on input, any case. Every
catalogue suite is either selected or disabled: a suite named in neither list is disabled
(appended in catalogue order), so the two lists always partition the catalogue. The outgoing
context offers exactly the selected suites, in the admin's order, at TLS 1.2 minimum *and*
maximum.

Default (``OutgoingTlsSettings.default()``), chosen for forward secrecy and AEAD only:

* selected, in this order: ECDHE with AES-128-GCM (ECDSA, then RSA certificates), ECDHE with
  AES-256-GCM (ECDSA, RSA), ECDHE with CHACHA20-POLY1305 (ECDSA, RSA). AES-128-GCM first
  because it is as strong as needed and fastest with AES-NI; CHACHA20 last, for servers
  without AES hardware that prefer it.
* disabled: DHE-RSA with AES-GCM (forward secret but slow, and finite-field DH parameters
  are the server's choice), every CBC suite (ECDHE and RSA key exchange; Lucky Thirteen-style
  padding oracles, and the SHA-1 ones are what PCI-DSS 3.1 asks to retire), and every suite
  with RSA key exchange (no forward secrecy; ROBOT).

SNI: the context checks host names, and the client passes the URL's host as
``server_hostname``, so every call to a host *name* sends SNI. RFC 6066 section 3 forbids an
IP address in SNI, and Python's ``ssl`` module does not send one for an IP literal, so a call
to ``https://127.0.0.1:...`` sends no SNI (the certificate is still checked against the IP
address). ``sni_name`` says which case applies; the usage view shows it per endpoint.
"""

from __future__ import annotations

import ipaddress
import ssl
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from labpki import PkiError, client_context


class OutgoingTlsError(ValueError):
    """Outgoing TLS settings that cannot be used; ``path`` names the setting."""

    def __init__(self, path: str, problem: str, *, hint: str = "") -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
        self.hint = hint


@attrs.frozen
class CipherSuite:
    """One TLS 1.2 cipher suite: IANA name, OpenSSL name, key exchange and bulk cipher."""

    iana: str
    openssl: str
    #: ``ECDHE``, ``DHE`` or ``RSA`` (no forward secrecy).
    kx: str
    #: True for AEAD ciphers (GCM, CHACHA20-POLY1305); False for CBC with HMAC.
    aead: bool

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.iana, "openssl_name": self.openssl, "kx": self.kx, "aead": self.aead}


def _suite(iana: str, openssl: str) -> CipherSuite:
    kx = "ECDHE" if "_ECDHE_" in iana else "DHE" if "_DHE_" in iana else "RSA"
    return CipherSuite(iana, openssl, kx, "GCM" in iana or "CHACHA20" in iana)


#: The TLS 1.2 suites the UEM knows, default-selected first (module docstring).
SUITES: Final[tuple[CipherSuite, ...]] = (
    _suite("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    _suite("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
    _suite("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"),
    _suite("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"),
    _suite("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"),
    _suite("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"),
    _suite("TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "DHE-RSA-AES128-GCM-SHA256"),
    _suite("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "DHE-RSA-AES256-GCM-SHA384"),
    _suite("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256"),
    _suite("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256"),
    _suite("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", "ECDHE-ECDSA-AES256-SHA384"),
    _suite("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", "ECDHE-RSA-AES256-SHA384"),
    _suite("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA"),
    _suite("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"),
    _suite("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA"),
    _suite("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"),
    _suite("TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"),
    _suite("TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"),
    _suite("TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"),
    _suite("TLS_RSA_WITH_AES_256_CBC_SHA256", "AES256-SHA256"),
    _suite("TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"),
    _suite("TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"),
)
#: How many of ``SUITES`` (from the start) are selected by default.
_DEFAULT_SELECTED_COUNT: Final = 6

_BY_NAME: Final[dict[str, CipherSuite]] = {
    name.upper(): suite for suite in SUITES for name in (suite.iana, suite.openssl)
}
_BY_OPENSSL: Final[dict[str, CipherSuite]] = {suite.openssl: suite for suite in SUITES}

#: The only protocol of outgoing connections (Core: "TLS v1.0 and TLS v1.1 are not supported").
PROTOCOL: Final = "TLSv1.2"
PROTOCOLS: Final = (PROTOCOL,)
_PROTOCOL_NAMES: Final = {
    "tlsv1.2": "TLSv1.2",
    "tls1.2": "TLSv1.2",
    "1.2": "TLSv1.2",
    "tlsv1.3": "TLSv1.3",
    "tls1.3": "TLSv1.3",
    "1.3": "TLSv1.3",
    "tlsv1.1": "TLSv1.1",
    "tls1.1": "TLSv1.1",
    "1.1": "TLSv1.1",
    "tlsv1": "TLSv1.0",
    "tlsv1.0": "TLSv1.0",
    "tls1.0": "TLSv1.0",
    "1.0": "TLSv1.0",
    "1": "TLSv1.0",
    "sslv3": "SSLv3",
    "sslv2": "SSLv2",
}
_MAX_NAMES: Final = 64
_SUITE_HINT: Final = (
    "use IANA names such as TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 or OpenSSL names such as "
    "ECDHE-ECDSA-AES128-GCM-SHA256 (GET /api/v1/outgoing-tls lists every known suite)"
)


def find_suite(name: str) -> CipherSuite | None:
    """The catalogue suite called ``name`` (IANA or OpenSSL spelling, any case), or None."""
    return _BY_NAME.get(name.strip().upper())


def suite_for_openssl(name: str) -> CipherSuite | None:
    """The catalogue suite OpenSSL calls ``name`` (what ``SSLObject.cipher()`` reports)."""
    return _BY_OPENSSL.get(name)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suite_list(value: object, path: str) -> list[CipherSuite]:
    if not isinstance(value, list | tuple):
        raise OutgoingTlsError(path, f"expected a list of cipher suite names, got {_show(value)}")
    if len(value) > _MAX_NAMES:
        raise OutgoingTlsError(path, f"expected at most {_MAX_NAMES} names, got {len(value)}")
    suites: list[CipherSuite] = []
    for i, raw in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(raw, str) or len(raw) > 128:
            raise OutgoingTlsError(where, f"expected a cipher suite name, got {_show(raw)}")
        suite = find_suite(raw)
        if suite is None:
            raise OutgoingTlsError(where, f"unknown TLS 1.2 cipher suite {raw!r}", hint=_SUITE_HINT)
        if suite in suites:
            raise OutgoingTlsError(where, f"{suite.iana} is listed twice")
        suites.append(suite)
    return suites


def parse_protocols(value: object, path: str) -> tuple[str, ...]:
    """``protocols``: must be exactly TLS 1.2; anything else is an error that says why."""
    if not isinstance(value, list | tuple):
        raise OutgoingTlsError(path, f'expected ["TLSv1.2"], got {_show(value)}')
    names: list[str] = []
    for i, raw in enumerate(value[:_MAX_NAMES]):
        text = str(raw).strip().lower().replace(" ", "") if isinstance(raw, str | float) else ""
        name = _PROTOCOL_NAMES.get(text)
        if name is None:
            raise OutgoingTlsError(f"{path}[{i}]", f'expected "TLSv1.2", got {_show(raw)}')
        if name != PROTOCOL:
            raise OutgoingTlsError(f"{path}[{i}]", protocol_refusal(name))
        names.append(name)
    if PROTOCOL not in names:
        raise OutgoingTlsError(path, disable_refusal())
    return PROTOCOLS


def protocol_refusal(name: str) -> str:
    """Why ``name`` (``TLSv1.1``, ``TLSv1.3``...) cannot be enabled for outgoing calls."""
    if name == "TLSv1.3":
        return (
            "TLSv1.3 cannot be enabled: outgoing connections use TLS 1.2 only, as Core's "
            "outgoing SSL configuration does"
        )
    return (
        f"{name} cannot be enabled: outgoing connections never use TLS 1.0 or 1.1 (Core does "
        "not support them; RFC 8996 retires them); TLSv1.2 is the only protocol"
    )


def disable_refusal() -> str:
    """Why TLS 1.2 cannot be disabled."""
    return (
        "TLSv1.2 cannot be disabled: it is the only protocol of outgoing connections, so "
        'the list must be ["TLSv1.2"]'
    )


@attrs.frozen
class OutgoingTlsSettings:
    """Selected (ordered) and disabled suites; together they are exactly ``SUITES``."""

    selected: tuple[CipherSuite, ...]
    disabled: tuple[CipherSuite, ...]

    @classmethod
    def default(cls) -> OutgoingTlsSettings:
        """The documented default (module docstring)."""
        return cls(SUITES[:_DEFAULT_SELECTED_COUNT], SUITES[_DEFAULT_SELECTED_COUNT:])

    @classmethod
    def from_lists(
        cls,
        selected: object,
        disabled: object = None,
        *,
        path: str = "outgoing_tls",
    ) -> OutgoingTlsSettings:
        """Validate the two lists (either spelling of each name); a suite in neither is
        disabled. Raises ``OutgoingTlsError`` naming ``path.selected_ciphers[i]`` etc."""
        chosen = _suite_list(selected, f"{path}.selected_ciphers")
        if not chosen:
            raise OutgoingTlsError(
                f"{path}.selected_ciphers",
                "no cipher suite selected: the UEM could not make any outgoing TLS connection",
                hint="select at least one suite, or reset to the default",
            )
        off = [] if disabled is None else _suite_list(disabled, f"{path}.disabled_ciphers")
        for i, suite in enumerate(off):
            if suite in chosen:
                raise OutgoingTlsError(
                    f"{path}.disabled_ciphers[{i}]",
                    f"{suite.iana} is both selected and disabled",
                    hint="a suite is in exactly one of the two lists",
                )
        rest = [s for s in SUITES if s not in chosen and s not in off]
        return cls(tuple(chosen), (*off, *rest))

    @classmethod
    def from_mapping(
        cls, value: Mapping[str, Any], *, path: str = "outgoing_tls"
    ) -> OutgoingTlsSettings:
        """Read ``selected_ciphers``/``disabled_ciphers``/``protocols`` from an already
        key-checked mapping (absent ``selected_ciphers``: the default selection)."""
        if "protocols" in value:
            parse_protocols(value["protocols"], f"{path}.protocols")
        if "disabled_protocols" in value:
            parse_disabled_protocols(value["disabled_protocols"], f"{path}.disabled_protocols")
        if "selected_ciphers" not in value:
            if "disabled_ciphers" not in value:
                return cls.default()
            off = _suite_list(value["disabled_ciphers"], f"{path}.disabled_ciphers")
            default = [s.iana for s in cls.default().selected if s not in off]
            return cls.from_lists(default, value["disabled_ciphers"], path=path)
        return cls.from_lists(value["selected_ciphers"], value.get("disabled_ciphers"), path=path)

    @property
    def is_default(self) -> bool:
        return self == OutgoingTlsSettings.default()

    def openssl_ciphers(self) -> str:
        """The selected suites as an OpenSSL cipher string, in order."""
        return ":".join(s.openssl for s in self.selected)

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocols": list(PROTOCOLS),
            "disabled_protocols": [],
            "selected_ciphers": [s.iana for s in self.selected],
            "disabled_ciphers": [s.iana for s in self.disabled],
            "openssl_cipher_string": self.openssl_ciphers(),
            "is_default": self.is_default,
        }


#: ``source`` of ``GET /api/v1/outgoing-tls``: the config file's ``uem.outgoing_tls`` (or the
#: default when it has none).
SOURCE_CONFIG: Final = "config"
#: Applied or reset through the admin API and written to ``<state_dir>/uem.sqlite3``; also what
#: a start-up that found stored settings says.
SOURCE_STORED: Final = "admin API (stored)"
#: Applied through the admin API on a UEM without a state directory: lost on restart.
SOURCE_MEMORY: Final = "admin API (in memory: no state directory, lost on restart)"
#: Applied through the admin API, but writing them to the store failed.
SOURCE_UNSTORED: Final = "admin API (not stored: lost on restart)"


@attrs.frozen
class SettingsOrigin:
    """Where the settings in effect came from (one of the ``SOURCE_*`` texts), and what went
    wrong with the stored settings (start-up) or with storing them (apply), if anything."""

    source: str = SOURCE_CONFIG
    problem: str | None = None


def parse_disabled_protocols(value: object, path: str) -> tuple[str, ...]:
    """``disabled_protocols`` (API): may only be empty; TLS 1.2 cannot be disabled."""
    if not isinstance(value, list | tuple):
        raise OutgoingTlsError(path, f"expected a list, got {_show(value)}")
    for i, raw in enumerate(value[:_MAX_NAMES]):
        text = str(raw).strip().lower().replace(" ", "") if isinstance(raw, str | float) else ""
        name = _PROTOCOL_NAMES.get(text)
        if name == PROTOCOL:
            raise OutgoingTlsError(f"{path}[{i}]", disable_refusal())
        if name is None:
            raise OutgoingTlsError(f"{path}[{i}]", f"expected a protocol name, got {_show(raw)}")
        # 1.0, 1.1 and 1.3 are never enabled: listing them as disabled changes nothing.
    return ()


def catalogue() -> list[dict[str, Any]]:
    """Every known suite, default status included (for ``GET /api/v1/outgoing-tls``)."""
    default = OutgoingTlsSettings.default()
    return [
        {**s.to_dict(), "default": "selected" if s in default.selected else "disabled"}
        for s in SUITES
    ]


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def sni_name(host: str) -> str | None:
    """The SNI a call to ``host`` sends: the host name, or None for an IP literal (RFC 6066
    section 3 forbids IP addresses in SNI, and Python's ``ssl`` never sends one)."""
    return None if is_ip_literal(host) else host.rstrip(".").lower()


def outgoing_context(settings: OutgoingTlsSettings, trust_pem: bytes | None) -> ssl.SSLContext:
    """The client context of every outgoing call: TLS 1.2 only, the selected suites in order,
    host names checked, trusting ``trust_pem``'s roots (None: the system store).

    Raises ``OutgoingTlsError`` (path ``trust``) for roots OpenSSL refuses.
    """
    if trust_pem is not None:
        try:
            context = client_context(
                trust_pem,
                min_version=ssl.TLSVersion.TLSv1_2,
                max_version=ssl.TLSVersion.TLSv1_2,
            )
        except PkiError as exc:
            raise OutgoingTlsError("trust", str(exc)) from None
    else:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    # The TLS 1.2 suites only: TLS 1.3 is never negotiated (maximum_version).
    context.set_ciphers(settings.openssl_ciphers())
    return context


def probe_context(suites: Iterable[CipherSuite]) -> ssl.SSLContext:
    """DIAGNOSTIC ONLY: a TLS 1.2 client offering just ``suites``, certificate unchecked.

    Used after a failed handshake to learn which disabled suite the endpoint would have
    needed; the probe sends no application data and its connection is closed at once.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(":".join(s.openssl for s in suites))
    return context


def legacy_probe_context() -> ssl.SSLContext:
    """DIAGNOSTIC ONLY: a TLS 1.0/1.1 client (certificate unchecked) that tells whether a
    failing endpoint speaks only a retired protocol; never used for data."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        # The ssl module deprecates these versions; naming the old protocol is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    # OpenSSL 3 refuses TLS < 1.2 above security level 0.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context
