"""make_hierarchy and what it issues: CA constraints, key identifiers, names, files."""

from __future__ import annotations

import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from labpki import DEVICE_URN_PREFIX, Hierarchy, PkiError, ServerCredential, make_hierarchy

E = TypeVar("E", bound=x509.ExtensionType)


def _ext(cert: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(kind)


@pytest.mark.parametrize(
    ("level", "path_length"), [("root", 2), ("intermediate", 1), ("issuing", 0)]
)
def test_each_ca_has_its_path_length_and_ca_key_usage(
    hierarchy: Hierarchy, level: str, path_length: int
) -> None:
    cert = getattr(hierarchy, level).certificate
    basic = _ext(cert, x509.BasicConstraints)
    assert basic.critical
    assert basic.value == x509.BasicConstraints(ca=True, path_length=path_length)
    usage = _ext(cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature


def test_each_certificate_is_signed_by_the_one_above_and_key_ids_link(
    hierarchy: Hierarchy,
) -> None:
    pairs = [
        (hierarchy.root, hierarchy.root),
        (hierarchy.intermediate, hierarchy.root),
        (hierarchy.issuing, hierarchy.intermediate),
    ]
    for child, parent in pairs:
        child.certificate.verify_directly_issued_by(parent.certificate)
        aki = _ext(child.certificate, x509.AuthorityKeyIdentifier).value
        ski = _ext(parent.certificate, x509.SubjectKeyIdentifier).value
        assert isinstance(aki, x509.AuthorityKeyIdentifier)
        assert isinstance(ski, x509.SubjectKeyIdentifier)
        assert aki.key_identifier == ski.digest


def test_root_outlives_the_cas_below_it(hierarchy: Hierarchy) -> None:
    root = hierarchy.root.certificate
    lifetime = root.not_valid_after_utc - root.not_valid_before_utc
    assert lifetime >= timedelta(days=3650)
    assert hierarchy.intermediate.certificate.not_valid_after_utc < root.not_valid_after_utc
    issuing_end = hierarchy.issuing.certificate.not_valid_after_utc
    assert issuing_end < hierarchy.intermediate.certificate.not_valid_after_utc


def test_chains_never_contain_the_root(hierarchy: Hierarchy) -> None:
    assert hierarchy.root.chain == ()
    assert hierarchy.intermediate.chain == ()
    assert hierarchy.issuing.chain == (hierarchy.intermediate.certificate,)
    credential = hierarchy.server_credential()
    assert credential.chain == (hierarchy.issuing.certificate, hierarchy.intermediate.certificate)


def test_server_credential_names_dns_and_ip_with_server_auth(hierarchy: Hierarchy) -> None:
    credential = hierarchy.server_credential(["Mail.Example.test", "10.0.0.7", "::1", "*.lab.test"])
    cert = credential.certificate
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.DNSName) == ["mail.example.test", "*.lab.test"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7", "::1"]
    eku = _ext(cert, x509.ExtendedKeyUsage).value
    assert isinstance(eku, x509.ExtendedKeyUsage)
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert _ext(cert, x509.BasicConstraints).value == x509.BasicConstraints(
        ca=False, path_length=None
    )
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == "Mail.Example.test"


def test_server_credential_common_name_and_lifetime(hierarchy: Hierarchy) -> None:
    credential = hierarchy.server_credential(["a.test"], common_name="Lab gatekeeper", days=7)
    cert = credential.certificate
    assert cert.subject.rfc4514_string() == "CN=Lab gatekeeper"
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=7, minutes=5)


def test_leaf_never_outlives_the_issuing_ca() -> None:
    past = datetime.now(UTC) - timedelta(days=1090)  # issuing CA has about 6 days left
    hierarchy = make_hierarchy("ageing lab", now=past)
    credential = hierarchy.server_credential(days=365)
    issuing_end = hierarchy.issuing.certificate.not_valid_after_utc
    assert credential.certificate.not_valid_after_utc == issuing_end


@pytest.mark.parametrize("bad", ["", "under_score.test", "-lead.test", "a..b", "*", "é.test"])
def test_bad_host_names_are_refused_with_the_name(hierarchy: Hierarchy, bad: str) -> None:
    with pytest.raises(PkiError, match="is neither an IP address nor a DNS name"):
        hierarchy.server_credential([bad])


def test_names_must_be_a_list_not_a_string(hierarchy: Hierarchy) -> None:
    with pytest.raises(PkiError, match="expected a list of host names"):
        hierarchy.server_credential("localhost")


def test_device_identity_has_client_auth_cn_and_device_urn(hierarchy: Hierarchy) -> None:
    issued = hierarchy.device_identity("alice@corp.example", "Appl F17/X")
    cert = issued.certificate
    assert cert.subject.rfc4514_string() == "CN=alice@corp.example"
    eku = _ext(cert, x509.ExtendedKeyUsage).value
    assert isinstance(eku, x509.ExtendedKeyUsage)
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    # Characters outside a URN's safe set are percent-encoded.
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"{DEVICE_URN_PREFIX}Appl%20F17%2FX"
    ]
    cert.verify_directly_issued_by(hierarchy.issuing.certificate)
    assert issued.chain == (hierarchy.issuing.certificate, hierarchy.intermediate.certificate)


def test_device_identity_without_device_has_no_san(hierarchy: Hierarchy) -> None:
    cert = hierarchy.device_identity("bob").certificate
    with pytest.raises(x509.ExtensionNotFound):
        _ext(cert, x509.SubjectAlternativeName)


@pytest.mark.parametrize("days", [0, -1, 3651])
def test_lifetime_out_of_range_is_refused(hierarchy: Hierarchy, days: int) -> None:
    with pytest.raises(PkiError, match="expected 1 to 3650 days"):
        hierarchy.server_credential(days=days)


def test_hierarchy_name_is_bounded() -> None:
    with pytest.raises(PkiError, match="hierarchy name: expected 1 to 40 characters"):
        make_hierarchy("x" * 41)


def test_write_then_read_gives_the_same_hierarchy_with_private_keys(
    hierarchy: Hierarchy, tmp_path: Path
) -> None:
    written = hierarchy.write(tmp_path / "pki")
    assert sorted(written) == sorted(
        f"{stem}.{ext}" for stem in ("root", "intermediate", "issuing") for ext in ("pem", "key")
    )
    for name, path in written.items():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o600 if name.endswith(".key") else 0o644), name
    assert stat.S_IMODE((tmp_path / "pki").stat().st_mode) == 0o700
    assert written["root.pem"].read_bytes() == hierarchy.root_pem()
    back = Hierarchy.read(tmp_path / "pki")
    assert back == hierarchy
    assert back.issuing.key_pem() == hierarchy.issuing.key_pem()


def test_rewriting_tightens_a_loose_key_file(hierarchy: Hierarchy, tmp_path: Path) -> None:
    loose = tmp_path / "root.key"
    loose.write_bytes(b"old")
    loose.chmod(0o644)
    hierarchy.write(tmp_path)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600


def test_read_of_mixed_hierarchies_names_the_file(
    hierarchy: Hierarchy, other_hierarchy: Hierarchy, tmp_path: Path
) -> None:
    hierarchy.write(tmp_path)
    other_hierarchy.write(tmp_path / "other")
    for name in ("issuing.pem", "issuing.key"):
        (tmp_path / name).write_bytes((tmp_path / "other" / name).read_bytes())
    with pytest.raises(PkiError, match=r"issuing\.pem: not signed by"):
        Hierarchy.read(tmp_path)


def test_read_of_missing_directory_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(PkiError, match=r"root\.pem: cannot read"):
        Hierarchy.read(tmp_path / "nothing")


def test_hierarchy_and_server_credential_take_milliseconds() -> None:
    started = time.perf_counter()
    make_hierarchy().server_credential()
    # EC P-256: about 10 ms here; RSA-2048 keys would take hundreds. A generous bound.
    assert time.perf_counter() - started < 1.0


def test_naive_now_means_utc() -> None:
    naive = datetime(2030, 6, 1, 12, 0)
    hierarchy = make_hierarchy("naive lab", now=naive)
    start = hierarchy.root.certificate.not_valid_before_utc
    assert start == datetime(2030, 6, 1, 11, 55, tzinfo=UTC)
    credential = hierarchy.server_credential(now=naive)
    assert (
        ServerCredential.from_pem(credential.chain_pem(), credential.key_pem(), now=naive)
        == credential
    )
