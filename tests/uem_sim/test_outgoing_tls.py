"""The outgoing TLS policy (pure): defaults, validation, protocols, contexts, config errors."""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uem_sim.config import UemConfig
from uem_sim.errors import ConfigError
from uem_sim.outgoing_tls import (
    SUITES,
    OutgoingTlsError,
    OutgoingTlsSettings,
    find_suite,
    outgoing_context,
    parse_disabled_protocols,
    parse_protocols,
    sni_name,
)


def test_default_selects_only_forward_secret_aead_suites_and_disables_the_rest() -> None:
    default = OutgoingTlsSettings.default()
    assert [s.iana for s in default.selected] == [
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ]
    assert all(s.kx == "ECDHE" and s.aead for s in default.selected)
    assert all(not (s.kx == "ECDHE" and s.aead) for s in default.disabled)
    assert set(default.selected) | set(default.disabled) == set(SUITES)
    assert default.is_default


def test_both_spellings_are_accepted_and_the_order_is_kept() -> None:
    settings = OutgoingTlsSettings.from_lists(
        ["ecdhe-rsa-aes256-gcm-sha384", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]
    )
    assert settings.openssl_ciphers() == "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256"
    # Everything not selected is disabled.
    assert len(settings.disabled) == len(SUITES) - 2
    assert not settings.is_default


@pytest.mark.parametrize(
    ("selected", "disabled", "path", "words"),
    [
        (["TLS_FOO"], None, "x.selected_ciphers[0]", "unknown TLS 1.2 cipher suite 'TLS_FOO'"),
        ([], None, "x.selected_ciphers", "no cipher suite selected"),
        (
            ["AES128-SHA", "TLS_RSA_WITH_AES_128_CBC_SHA"],
            None,
            "x.selected_ciphers[1]",
            "listed twice",
        ),
        (
            ["ECDHE-ECDSA-AES128-GCM-SHA256"],
            ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"],
            "x.disabled_ciphers[0]",
            "both selected and disabled",
        ),
        ("ECDHE-ECDSA-AES128-GCM-SHA256", None, "x.selected_ciphers", "expected a list"),
    ],
)
def test_bad_cipher_lists_are_refused_naming_the_entry(
    selected: Any, disabled: Any, path: str, words: str
) -> None:
    with pytest.raises(OutgoingTlsError) as caught:
        OutgoingTlsSettings.from_lists(selected, disabled, path="x")
    assert caught.value.path == path
    assert words in caught.value.problem


def test_protocols_must_be_exactly_tls_1_2() -> None:
    assert parse_protocols(["TLSv1.2"], "p") == ("TLSv1.2",)
    assert parse_protocols(["1.2"], "p") == ("TLSv1.2",)


@pytest.mark.parametrize(
    ("value", "path", "words"),
    [
        (["TLSv1.1", "TLSv1.2"], "p[0]", "TLSv1.1 cannot be enabled"),
        (["TLSv1.2", "TLSv1"], "p[1]", "TLSv1.0 cannot be enabled"),
        (["TLSv1.2", "TLSv1.3"], "p[1]", "TLSv1.3 cannot be enabled"),
        ([], "p", "TLSv1.2 cannot be disabled"),
        (["SSLv9"], "p[0]", 'expected "TLSv1.2"'),
    ],
)
def test_other_protocols_are_refused_saying_why(value: Any, path: str, words: str) -> None:
    with pytest.raises(OutgoingTlsError) as caught:
        parse_protocols(value, "p")
    assert caught.value.path == path
    assert words in caught.value.problem


def test_disabling_tls_1_2_is_a_clear_error() -> None:
    with pytest.raises(OutgoingTlsError, match=r"TLSv1\.2 cannot be disabled"):
        parse_disabled_protocols(["TLSv1.2"], "d")
    assert parse_disabled_protocols(["TLSv1.1"], "d") == ()


def test_outgoing_context_speaks_tls_1_2_only_with_the_selected_suites_in_order() -> None:
    settings = OutgoingTlsSettings.from_lists(
        ["ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES128-GCM-SHA256"]
    )
    context = outgoing_context(settings, None)
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.maximum_version is ssl.TLSVersion.TLSv1_2
    assert context.check_hostname
    assert context.verify_mode is ssl.CERT_REQUIRED
    tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 == ["ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES128-GCM-SHA256"]


def test_sni_is_the_host_name_and_none_for_ip_literals() -> None:
    assert sni_name("Gatekeeper.Example.") == "gatekeeper.example"
    assert sni_name("localhost") == "localhost"
    assert sni_name("127.0.0.1") is None
    assert sni_name("::1") is None


def test_every_catalogue_suite_is_known_to_this_openssl() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for suite in SUITES:
        context.set_ciphers(suite.openssl)  # raises ssl.SSLError for an unknown suite
        assert find_suite(suite.iana) is find_suite(suite.openssl.lower()) is suite


@given(st.permutations(SUITES).flatmap(lambda p: st.integers(1, len(p)).map(lambda n: p[:n])))
def test_settings_round_trip_through_their_json(selected: list[Any]) -> None:
    settings = OutgoingTlsSettings.from_lists([s.openssl for s in selected])
    shown = settings.to_dict()
    again = OutgoingTlsSettings.from_lists(shown["selected_ciphers"], shown["disabled_ciphers"])
    assert again == settings


@given(st.lists(st.one_of(st.text(max_size=40), st.integers(), st.none()), max_size=5))
def test_any_input_only_raises_the_policy_error(selected: list[Any]) -> None:
    with contextlib.suppress(OutgoingTlsError):
        OutgoingTlsSettings.from_lists(selected)


# --- the config file ---


def config(uem: dict[str, Any]) -> UemConfig:
    return UemConfig.from_mapping({"uem": uem}, source="lab.yaml")


def test_config_reads_outgoing_tls_and_port_tls() -> None:
    parsed = config(
        {
            "outgoing_tls": {
                "selected_ciphers": ["ECDHE-ECDSA-AES128-GCM-SHA256"],
                "disabled_ciphers": ["AES128-SHA"],
                "protocols": ["TLSv1.2"],
                "trust": "roots.pem",
            },
            "tls": {
                "api": {"enabled": True, "min_version": 1.2, "certificate": {"pkcs12": "u.p12"}},
                "admin": {"enabled": False},
            },
        }
    )
    assert parsed.outgoing_tls.openssl_ciphers() == "ECDHE-ECDSA-AES128-GCM-SHA256"
    assert parsed.outgoing_tls.disabled[0].openssl == "AES128-SHA"
    assert parsed.outgoing_trust == "roots.pem"
    assert parsed.tls.api.enabled
    assert parsed.tls.api.min_version is ssl.TLSVersion.TLSv1_2
    assert not parsed.tls.admin.enabled


def test_config_without_tls_sections_uses_the_defaults() -> None:
    parsed = config({})
    assert parsed.outgoing_tls.is_default
    assert not parsed.tls.api.enabled
    assert not parsed.tls.admin.enabled
    assert parsed.outgoing_trust is None


@pytest.mark.parametrize(
    ("uem", "message"),
    [
        (
            {"outgoing_tls": {"protocols": ["TLSv1.1", "TLSv1.2"]}},
            "lab.yaml: uem.outgoing_tls.protocols[0]: TLSv1.1 cannot be enabled",
        ),
        (
            {"outgoing_tls": {"protocols": []}},
            "lab.yaml: uem.outgoing_tls.protocols: TLSv1.2 cannot be disabled",
        ),
        (
            {"outgoing_tls": {"selected_ciphers": ["RC4-MD5"]}},
            "lab.yaml: uem.outgoing_tls.selected_ciphers[0]: unknown TLS 1.2 cipher suite",
        ),
        ({"outgoing_tls": {"ciphers": []}}, "lab.yaml: uem.outgoing_tls.ciphers: unknown key"),
        (
            {"tls": {"api": {"enabled": True, "min_version": "1.1"}}},
            "lab.yaml: uem.tls.api.min_version: TLS 1.1 is not allowed",
        ),
        (
            {"tls": {"admin": {"max_version": "1.2", "min_version": "1.3"}}},
            "lab.yaml: uem.tls.admin.max_version: expected a version >= min_version (1.3)",
        ),
        ({"tls": {"device": {}}}, "lab.yaml: uem.tls.device: unknown key"),
        (
            {"tls": {"api": {"certificate": {"pkcs12": "a.p12", "key": "k"}}}},
            "lab.yaml: uem.tls.api.certificate.key: unknown key",
        ),
        (
            {"tls": {"api": {"certificate": {"cert_chain": "c.pem"}}}},
            "lab.yaml: uem.tls.api.certificate.key: missing",
        ),
        (
            {"tls": {"api": {"ciphers": "NOT-A-CIPHER"}}},
            "lab.yaml: uem.tls.api.ciphers: no cipher matches",
        ),
    ],
)
def test_config_errors_name_file_key_and_reason(uem: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(uem)
    assert caught.value.message.startswith(message), caught.value.message


def test_relative_certificate_paths_start_at_base_dir() -> None:
    parsed = UemConfig.from_mapping(
        {"uem": {"tls": {"api": {"certificate": {"cert_chain": "c.pem", "key": "/k.pem"}}}}},
        base_dir="/etc/lab",
    )
    assert parsed.tls.api.certificate is not None
    assert parsed.tls.api.certificate == type(parsed.tls.api.certificate)(
        "/etc/lab/c.pem", "/k.pem"
    )
