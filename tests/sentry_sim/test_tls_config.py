"""``sentry.tls``: the settings' shape (config.py) and the files they name (tls.py), with
errors that name the config file and the key."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

from labpki import ClientCertMode, Hierarchy, PemFiles, Pkcs12File, make_hierarchy
from sentry_sim.config import ConfigError, SentryConfig
from sentry_sim.tls import SentryTls


@pytest.fixture(scope="module")
def pki() -> Hierarchy:
    return make_hierarchy("config test")


def tls(section: dict[str, Any], base_dir: str | None = None) -> SentryConfig:
    return SentryConfig.from_mapping({"tls": section}, "lab.yaml", base_dir=base_dir)


def test_tls_is_off_by_default_with_tls_1_2_minimum() -> None:
    config = SentryConfig.from_mapping({}, "lab.yaml")
    assert not config.tls.enabled
    assert config.tls.device.min_version is ssl.TLSVersion.TLSv1_2
    assert config.tls.device.client_certificates is ClientCertMode.OFF
    assert SentryTls.from_config(config).device is None


def test_full_tls_section_is_read_with_paths_relative_to_the_config_folder() -> None:
    config = tls(
        {
            "device": {
                "enabled": True,
                "min_version": 1.3,  # unquoted in YAML: a float
                "certificate": {"pkcs12": "certs/device.p12", "password_env": "DEVICE_P12_PW"},
                "client_certificates": "required",
                "client_ca": "/etc/lab/root.pem",
            },
            "admin": {
                "enabled": True,
                "max_version": "1.2",
                "ciphers": "ECDHE+AESGCM",
                "certificate": {"cert_chain": "admin.pem", "key": "admin.key"},
            },
            "trust": "roots.pem",
        },
        base_dir="/srv/lab",
    )
    device, admin = config.tls.device, config.tls.admin
    assert device.min_version is ssl.TLSVersion.TLSv1_3
    assert device.certificate == Pkcs12File("/srv/lab/certs/device.p12", "DEVICE_P12_PW")
    assert device.client_certificates is ClientCertMode.REQUIRED
    assert device.client_ca == "/etc/lab/root.pem"
    assert admin.max_version is ssl.TLSVersion.TLSv1_2
    assert admin.certificate == PemFiles("/srv/lab/admin.pem", "/srv/lab/admin.key")
    assert config.tls.trust == "/srv/lab/roots.pem"
    assert config.tls.source == "lab.yaml"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"device": {"min_version": "1.1"}}, "sentry.tls.device.min_version: TLS 1.1 is refused"),
        ({"admin": {"min_version": 1.0}}, "sentry.tls.admin.min_version: TLS 1.0 is refused"),
        ({"device": {"max_version": "TLSv1.1"}}, "sentry.tls.device.max_version: TLS 1.1 is"),
        ({"device": {"min_version": "2.0"}}, 'min_version: expected "1.2" or "1.3", got "2.0"'),
        (
            {"device": {"min_version": "1.3", "max_version": "1.2"}},
            "sentry.tls.device.max_version: expected a version >= min_version (1.3), got 1.2",
        ),
        ({"device": {"port": 443}}, "sentry.tls.device.port: unknown setting"),
        ({"devices": {}}, "sentry.tls.devices: unknown setting; expected one of admin, device"),
        (
            {"admin": {"client_certificates": "required"}},
            "sentry.tls.admin.client_certificates: only the device port asks",
        ),
        (
            {"device": {"client_certificates": "maybe"}},
            "client_certificates: expected off, optional or required",
        ),
        ({"device": {"enabled": "yes"}}, "sentry.tls.device.enabled: expected true or false"),
        ({"device": {"ciphers": "NO-SUCH-CIPHER"}}, "sentry.tls.device.ciphers: no cipher"),
        (
            {"device": {"certificate": {"pem": "x"}}},
            "sentry.tls.device.certificate: expected {pkcs12: path",
        ),
        (
            {"device": {"certificate": {"cert_chain": "a.pem"}}},
            "sentry.tls.device.certificate.key: expected a file path, got nothing",
        ),
        (
            {"device": {"certificate": {"pkcs12": "a.p12", "key": "a.key"}}},
            "sentry.tls.device.certificate.key: unknown setting",
        ),
        (
            {"device": {"certificate": {"pkcs12": "a.p12", "password_env": "1 bad"}}},
            "certificate.password_env: expected the name of an environment variable",
        ),
        ({"trust": 5}, "sentry.tls.trust: expected a file path, got 5"),
    ],
)
def test_bad_tls_settings_name_the_file_and_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        tls(section)
    assert str(caught.value).startswith("lab.yaml: sentry.tls")
    assert message in str(caught.value)


def test_yaml_off_read_as_false_means_off() -> None:
    config = tls({"device": {"client_certificates": False}})
    assert config.tls.device.client_certificates is ClientCertMode.OFF


def write_p12(tmp_path: Path, pki: Hierarchy, password: bytes | None) -> Path:
    path = tmp_path / "device.p12"
    path.write_bytes(pki.server_credential().to_pkcs12(password))
    return path


def device_with(certificate: dict[str, Any], **extra: Any) -> SentryConfig:
    return tls({"device": {"enabled": True, "certificate": certificate, **extra}})


def test_pkcs12_file_with_password_from_the_environment_is_served(
    tmp_path: Path, pki: Hierarchy, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_p12(tmp_path, pki, b"from-env")
    monkeypatch.setenv("LAB_P12_PASSWORD", "from-env")
    built = SentryTls.from_config(
        device_with({"pkcs12": str(path), "password_env": "LAB_P12_PASSWORD"})
    )
    assert built.device is not None
    assert built.admin is None
    assert built.device.context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert built.trust_pem is None


def test_pem_chain_and_key_files_are_served(tmp_path: Path, pki: Hierarchy) -> None:
    credential = pki.server_credential()
    (tmp_path / "chain.pem").write_bytes(credential.chain_pem())
    (tmp_path / "key.pem").write_bytes(credential.key_pem())
    built = SentryTls.from_config(
        device_with({"cert_chain": str(tmp_path / "chain.pem"), "key": str(tmp_path / "key.pem")})
    )
    assert built.device is not None
    assert built.device.credential.certificate == credential.certificate


def test_bad_certificate_files_name_the_config_key_and_the_file(
    tmp_path: Path, pki: Hierarchy, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_p12(tmp_path, pki, b"right")
    missing = tmp_path / "missing.p12"
    monkeypatch.setenv("WRONG_PW", "wrong")
    monkeypatch.delenv("UNSET_PW", raising=False)
    junk = tmp_path / "junk.p12"
    junk.write_bytes(b"not a pkcs12 file at all")
    other_key = tmp_path / "other.key"
    other_key.write_bytes(pki.server_credential().key_pem())
    chain = tmp_path / "chain.pem"
    chain.write_bytes(pki.server_credential().chain_pem())
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"pkcs12": str(missing)},
            f"lab.yaml: sentry.tls.device.certificate.pkcs12: cannot read {missing}",
        ),
        (
            {"pkcs12": str(path), "password_env": "WRONG_PW"},
            f"sentry.tls.device.certificate.pkcs12: {path}: wrong password",
        ),
        (
            {"pkcs12": str(path), "password_env": "UNSET_PW"},
            "sentry.tls.device.certificate.password_env: environment variable UNSET_PW is not",
        ),
        ({"pkcs12": str(junk)}, f"sentry.tls.device.certificate.pkcs12: {junk}: not a PKCS#12"),
        (
            {"cert_chain": str(chain), "key": str(other_key)},
            "sentry.tls.device.certificate: ",
        ),
    ]
    for certificate, message in cases:
        with pytest.raises(ConfigError) as caught:
            SentryTls.from_config(device_with(certificate))
        assert message in str(caught.value), (certificate, str(caught.value))
    assert "right" not in str(caught.value)


def test_lab_credential_and_root_stand_in_for_missing_files(pki: Hierarchy) -> None:
    config = tls({"device": {"enabled": True, "client_certificates": "optional"}})
    with pytest.raises(ConfigError, match=r"sentry.tls.device.certificate: expected \{pkcs12"):
        SentryTls.from_config(config)
    with pytest.raises(ConfigError, match=r"sentry.tls.device.client_ca: client_certificates"):
        SentryTls.from_config(config, lab_credential=pki.server_credential())
    built = SentryTls.from_config(
        config, lab_credential=pki.server_credential(), lab_root_pem=pki.root_pem()
    )
    assert built.client_cert is ClientCertMode.OPTIONAL
    assert built.device is not None
    assert built.device.context.verify_mode is ssl.CERT_OPTIONAL
    assert built.trust_pem == pki.root_pem()
    assert built.outgoing_context() is not None


def test_trust_file_must_hold_pem_certificates(tmp_path: Path, pki: Hierarchy) -> None:
    bad = tmp_path / "roots.pem"
    bad.write_text("hello", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"lab.yaml: sentry.tls.trust: .*no PEM certificate"):
        SentryTls.from_config(tls({"trust": str(bad)}))
    good = tmp_path / "good.pem"
    good.write_bytes(pki.root_pem())
    assert SentryTls.from_config(tls({"trust": str(good)})).trust_pem == pki.root_pem()
