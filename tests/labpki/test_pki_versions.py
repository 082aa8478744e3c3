"""tls_version and ClientCertMode.parse: settings as written in lab.yaml."""

from __future__ import annotations

import ssl

import pytest

from labpki import ClientCertMode, PkiError, tls_version


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2", ssl.TLSVersion.TLSv1_2),
        ("TLSv1.2", ssl.TLSVersion.TLSv1_2),
        ("tls1.2", ssl.TLSVersion.TLSv1_2),
        ("TLSv1_3", ssl.TLSVersion.TLSv1_3),
        ("TLS 1.3", ssl.TLSVersion.TLSv1_3),
        (" 1.3 ", ssl.TLSVersion.TLSv1_3),
        (1.2, ssl.TLSVersion.TLSv1_2),
    ],
)
def test_modern_versions_parse(text: str | float, expected: ssl.TLSVersion) -> None:
    assert tls_version(text, source="lab.yaml", key="sentry.tls.min_version") is expected


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("1.0", "TLS 1.0"),
        ("TLSv1", "TLS 1.0"),
        ("1.1", "TLS 1.1"),
        ("TLSv1.1", "TLS 1.1"),
        ("SSLv3", "SSL 3.0"),
    ],
)
def test_legacy_versions_are_refused_naming_file_and_key(text: str, shown: str) -> None:
    with pytest.raises(PkiError) as caught:
        tls_version(text, source="lab.yaml", key="uem.tls.min_version")
    assert str(caught.value).startswith(f"lab.yaml: uem.tls.min_version: {shown} is not allowed")


@pytest.mark.parametrize("text", ["", "1.4", "banana", "TLSv2", "SSLv1.2"])
def test_unknown_versions_say_what_is_expected(text: str) -> None:
    with pytest.raises(PkiError, match=r"lab\.yaml: k: expected a TLS version 1\.2 or 1\.3"):
        tls_version(text, source="lab.yaml", key="k")


def test_client_cert_mode_parses_and_names_the_setting() -> None:
    assert ClientCertMode.parse("Required", source="lab.yaml", key="k") is ClientCertMode.REQUIRED
    with pytest.raises(PkiError, match=r"lab\.yaml: sentry\.tls\.client_cert: expected off"):
        ClientCertMode.parse("sometimes", source="lab.yaml", key="sentry.tls.client_cert")
