"""ServerCredential: PKCS#12 and PEM codecs and the checks an uploaded credential must pass."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labpki import Hierarchy, PkiError, ServerCredential, fingerprint, make_hierarchy

SOURCE = "upload.p12"


@pytest.fixture(scope="module")
def credential(hierarchy: Hierarchy) -> ServerCredential:
    return hierarchy.server_credential(["mail.example.test", "127.0.0.1", "::1"])


@pytest.mark.parametrize("password", [None, b"s3cret"], ids=["no password", "password"])
def test_pkcs12_round_trip_keeps_leaf_key_and_chain(
    credential: ServerCredential, password: bytes | None
) -> None:
    data = credential.to_pkcs12(password)
    back = ServerCredential.from_pkcs12(data, password, source=SOURCE)
    assert back == credential
    assert back.key_pem() == credential.key_pem()
    assert back.chain_pem() == credential.chain_pem()


def test_pkcs12_with_wrong_password_names_the_source(credential: ServerCredential) -> None:
    data = credential.to_pkcs12(b"right")
    with pytest.raises(PkiError, match=r"^upload\.p12: wrong password or not a PKCS#12 file$"):
        ServerCredential.from_pkcs12(data, b"wrong", source=SOURCE)


def test_encrypted_pkcs12_without_password_asks_for_one(credential: ServerCredential) -> None:
    data = credential.to_pkcs12(b"right")
    with pytest.raises(PkiError, match="needs a password"):
        ServerCredential.from_pkcs12(data, None, source=SOURCE)


def test_pkcs12_without_key_is_refused(credential: ServerCredential) -> None:
    data = pkcs12.serialize_key_and_certificates(
        None, None, None, [credential.certificate], serialization.NoEncryption()
    )
    with pytest.raises(PkiError, match=r"upload\.p12: the PKCS#12 file has no private key"):
        ServerCredential.from_pkcs12(data, None, source=SOURCE)


def test_pkcs12_without_certificate_is_refused(credential: ServerCredential) -> None:
    data = pkcs12.serialize_key_and_certificates(
        None, credential.key, None, list(credential.chain), serialization.NoEncryption()
    )
    with pytest.raises(PkiError, match="has no certificate for its private key"):
        ServerCredential.from_pkcs12(data, None, source=SOURCE)


def test_pkcs12_with_leaf_not_tied_to_the_key_finds_it_among_the_others(
    credential: ServerCredential,
) -> None:
    loose = [*credential.chain, credential.certificate]
    data = pkcs12.serialize_key_and_certificates(
        None, credential.key, None, loose, serialization.NoEncryption()
    )
    assert ServerCredential.from_pkcs12(data, None, source=SOURCE) == credential


def test_key_not_matching_the_certificate_is_refused(
    credential: ServerCredential, hierarchy: Hierarchy
) -> None:
    # cryptography will not even write such a PKCS#12 file; a PEM pair can still be wrong.
    with pytest.raises(PkiError, match="private key does not belong to certificate CN="):
        ServerCredential.from_pem(credential.chain_pem(), hierarchy.root.key_pem())


def test_expired_certificate_is_refused_with_its_date() -> None:
    past = datetime(2024, 1, 1, tzinfo=UTC)
    old = make_hierarchy("old lab", now=past).server_credential(days=30, now=past)
    with pytest.raises(PkiError, match=r"upload\.p12: certificate CN=localhost expired 2024-01-31"):
        ServerCredential.from_pkcs12(old.to_pkcs12(), None, source=SOURCE)


def test_not_yet_valid_certificate_is_refused(credential: ServerCredential) -> None:
    before = credential.certificate.not_valid_before_utc - timedelta(days=1)
    with pytest.raises(PkiError, match="is not valid before"):
        ServerCredential.from_pkcs12(credential.to_pkcs12(), None, source=SOURCE, now=before)


def test_expired_intermediate_is_refused(hierarchy: Hierarchy) -> None:
    credential = hierarchy.server_credential(days=30)
    after_issuing = hierarchy.issuing.certificate.not_valid_after_utc + timedelta(days=1)
    with pytest.raises(PkiError, match="expired"):
        ServerCredential.from_pem(credential.chain_pem(), credential.key_pem(), now=after_issuing)


def test_root_inside_the_bundle_is_dropped_and_chain_ordered(
    credential: ServerCredential, hierarchy: Hierarchy
) -> None:
    shuffled = [hierarchy.root.certificate, *reversed(credential.chain)]
    data = pkcs12.serialize_key_and_certificates(
        b"srv", credential.key, credential.certificate, shuffled, serialization.NoEncryption()
    )
    back = ServerCredential.from_pkcs12(data, None, source=SOURCE)
    assert back.chain == (hierarchy.issuing.certificate, hierarchy.intermediate.certificate)


def test_certificate_off_the_chain_is_refused(
    credential: ServerCredential, other_hierarchy: Hierarchy
) -> None:
    stray = other_hierarchy.intermediate.certificate
    pem = credential.chain_pem() + stray.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(PkiError, match="other lab intermediate CA is not in the chain"):
        ServerCredential.from_pem(pem, credential.key_pem(), source="server.pem")


def test_client_certificate_is_refused_as_a_server_certificate(hierarchy: Hierarchy) -> None:
    device = hierarchy.device_identity("alice", "A1")
    with pytest.raises(PkiError, match=r"not for TLS servers .* lacks serverAuth"):
        ServerCredential.from_pem(device.chain_pem(), device.key_pem(), source="device.pem")


def test_small_rsa_key_is_refused() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "weak")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(PkiError, match="RSA key of 1024 bits"):
        ServerCredential.from_pem(pem, key_pem)


def test_pem_round_trip_and_encrypted_key(credential: ServerCredential) -> None:
    assert ServerCredential.from_pem(credential.chain_pem(), credential.key_pem()) == credential
    encrypted = credential.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(PkiError, match=r"server\.key: the private key is encrypted"):
        ServerCredential.from_pem(credential.chain_pem(), encrypted, source="server.key")
    opened = ServerCredential.from_pem(credential.chain_pem(), encrypted, password=b"pw")
    assert opened == credential


def test_pem_without_certificate_names_the_source(credential: ServerCredential) -> None:
    with pytest.raises(PkiError, match=r"^server\.pem: no PEM certificate"):
        ServerCredential.from_pem(b"hello", credential.key_pem(), source="server.pem")


def test_oversized_input_is_refused_before_parsing() -> None:
    with pytest.raises(PkiError, match="more than the 1048576 accepted"):
        ServerCredential.from_pkcs12(b"\0" * (1 << 20 | 1), None, source=SOURCE)


def test_summary_is_json_ready_and_describes_the_certificate(
    credential: ServerCredential,
) -> None:
    summary = credential.summary()
    assert json.loads(json.dumps(summary)) == summary
    cert = credential.certificate
    assert summary["subject"] == "CN=mail.example.test"
    assert summary["serial"] == format(cert.serial_number, "x")
    assert summary["dns_names"] == ["mail.example.test"]
    assert summary["ip_addresses"] == ["127.0.0.1", "::1"]
    assert summary["sha256"] == fingerprint(cert)
    assert summary["not_after"] == cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert summary["chain"] == [c.subject.rfc4514_string() for c in credential.chain]
    assert summary["key"] == "EC secp256r1"


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000), password=st.one_of(st.none(), st.binary(max_size=8)))
def test_garbage_pkcs12_only_raises_pki_error(data: bytes, password: bytes | None) -> None:
    with pytest.raises(PkiError):
        ServerCredential.from_pkcs12(data, password, source=SOURCE)


_UNPROTECTED = make_hierarchy("fuzz lab").server_credential().to_pkcs12()


@settings(max_examples=150)
@given(st.lists(st.tuples(st.integers(0, len(_UNPROTECTED) - 1), st.integers(0, 255)), max_size=4))
def test_mutated_pkcs12_only_raises_pki_error(flips: list[tuple[int, int]]) -> None:
    data = bytearray(_UNPROTECTED)
    for position, value in flips:
        data[position] = value
    message: str | None = None
    try:
        loaded = ServerCredential.from_pkcs12(bytes(data), None, source=SOURCE)
    except PkiError as exc:
        message = str(exc)
    else:
        # A flip in a padding or name byte may leave a usable credential: it must be whole.
        loaded.summary()
        loaded.to_pkcs12()
    assert message is None or message.startswith("upload.p12: ")


def test_ec_key_of_other_curve_still_loads(hierarchy: Hierarchy) -> None:
    # Not every upload is P-256: a P-384 leaf signed by the lab's issuing CA loads too.
    key = ec.generate_private_key(ec.SECP384R1())
    base = hierarchy.server_credential()
    cert = (
        x509.CertificateBuilder()
        .subject_name(base.certificate.subject)
        .issuer_name(base.certificate.issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(base.certificate.not_valid_before_utc)
        .not_valid_after(base.certificate.not_valid_after_utc)
        .sign(hierarchy.issuing.key, hashes.SHA256())
    )
    loaded = ServerCredential.from_pem(
        cert.public_bytes(serialization.Encoding.PEM)
        + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in base.chain),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    assert loaded.summary()["key"] == "EC secp384r1"
