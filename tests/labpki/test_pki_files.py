"""labpki.files: root PEM files and server credential files named in a configuration."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from labpki import (
    CredentialFileError,
    Hierarchy,
    PkiError,
    ServerCredential,
    client_context,
    load_configured_credential,
    load_credential_files,
    make_hierarchy,
    parse_roots,
    password_from_env,
    read_file,
    read_roots,
)
from labpki.credential import MAX_INPUT_BYTES


@pytest.fixture(scope="module")
def server(hierarchy: Hierarchy) -> ServerCredential:
    return hierarchy.server_credential()


def write(directory: Path, name: str, data: bytes) -> str:
    path = directory / name
    path.write_bytes(data)
    return str(path)


def test_root_file_is_returned_unchanged(tmp_path: Path, hierarchy: Hierarchy) -> None:
    bundle = hierarchy.root_pem() + hierarchy.issuing.cert_pem()
    assert read_roots(write(tmp_path, "roots.pem", bundle)) == bundle
    assert read_roots(bundle, source="lab.yaml: trust") == bundle


def test_missing_root_file_names_the_file_in_both_messages(tmp_path: Path) -> None:
    missing = tmp_path / "nothere.pem"
    with pytest.raises(CredentialFileError) as caught:
        read_roots(missing)
    assert str(caught.value).startswith(f"{missing}: cannot read: ")
    assert caught.value.problem.startswith(f"cannot read {missing}: ")
    assert caught.value.key("sentry.tls.trust") == "sentry.tls.trust"


def test_root_file_without_pem_certificate_names_the_file(tmp_path: Path) -> None:
    junk = write(tmp_path, "junk.pem", b"hello, not a certificate")
    with pytest.raises(PkiError, match=rf"^{junk}: no PEM certificate \(expected -----BEGIN"):
        read_roots(junk)
    with pytest.raises(PkiError, match=r"^given roots: no PEM certificate"):
        read_roots(b"junk", source="given roots")


def test_server_certificate_alone_is_not_a_root(tmp_path: Path, server: ServerCredential) -> None:
    leaf_pem = server.certificate.public_bytes(serialization.Encoding.PEM)
    leaf = write(tmp_path, "server.pem", leaf_pem)
    with pytest.raises(PkiError, match=rf"^{leaf}: none of the 1 certificates is a CA"):
        read_roots(leaf)
    with pytest.raises(PkiError, match=r"^trusted root: none of the 1 certificates is a CA"):
        client_context(leaf_pem)


def test_roots_with_one_ca_among_others_are_accepted(
    hierarchy: Hierarchy, server: ServerCredential
) -> None:
    bundle = server.certificate.public_bytes(serialization.Encoding.PEM) + hierarchy.root_pem()
    assert [cert.subject for cert in parse_roots(bundle, source="bundle")] == [
        server.certificate.subject,
        hierarchy.root.certificate.subject,
    ]


def test_empty_and_oversized_files_are_refused_by_name(tmp_path: Path) -> None:
    empty = write(tmp_path, "empty.pem", b"")
    with pytest.raises(PkiError, match=rf"^{empty}: empty input"):
        read_roots(empty)
    big = write(tmp_path, "big.pem", b"A" * (MAX_INPUT_BYTES + 1))
    with pytest.raises(CredentialFileError, match=rf"^{big}: larger than {MAX_INPUT_BYTES} bytes"):
        read_file(big, setting="pkcs12")


def test_pkcs12_file_with_password_gives_the_credential(
    tmp_path: Path, server: ServerCredential
) -> None:
    path = write(tmp_path, "server.p12", server.to_pkcs12(b"s3cret"))
    loaded = load_credential_files(pkcs12=path, password=b"s3cret")
    assert loaded.certificate == server.certificate
    assert loaded.chain == server.chain


def test_bad_pkcs12_files_blame_the_pkcs12_setting(
    tmp_path: Path, server: ServerCredential
) -> None:
    path = write(tmp_path, "server.p12", server.to_pkcs12(b"right"))
    with pytest.raises(CredentialFileError, match=rf"^{path}: wrong password") as caught:
        load_credential_files(pkcs12=path, password=b"wrong")
    assert caught.value.key("uem.tls.api.certificate") == "uem.tls.api.certificate.pkcs12"
    assert "right" not in str(caught.value)
    missing = str(tmp_path / "missing.p12")
    with pytest.raises(CredentialFileError) as caught:
        load_credential_files(pkcs12=missing)
    assert caught.value.setting == "pkcs12"
    assert caught.value.problem.startswith(f"cannot read {missing}: ")


def test_pem_chain_and_key_files_give_the_credential(
    tmp_path: Path, server: ServerCredential
) -> None:
    chain = write(tmp_path, "chain.pem", server.chain_pem())
    key = write(tmp_path, "server.key", server.key_pem())
    loaded = load_credential_files(cert_chain=chain, key=key)
    assert loaded.certificate == server.certificate


def test_key_problems_name_the_key_file(
    tmp_path: Path, hierarchy: Hierarchy, server: ServerCredential
) -> None:
    chain = write(tmp_path, "chain.pem", server.chain_pem())
    other = write(tmp_path, "other.key", hierarchy.server_credential().key_pem())
    with pytest.raises(CredentialFileError, match=rf"^{other}: ") as caught:
        load_credential_files(cert_chain=chain, key=other)
    assert caught.value.key("sentry.tls.device.certificate") == "sentry.tls.device.certificate"
    junk = write(tmp_path, "junk.key", b"not a key")
    with pytest.raises(CredentialFileError, match=rf"^{junk}: no readable PEM private key"):
        load_credential_files(cert_chain=chain, key=junk)
    with pytest.raises(CredentialFileError) as caught:
        load_credential_files(cert_chain=chain, key=str(tmp_path / "gone.key"))
    assert caught.value.setting == "key"
    with pytest.raises(CredentialFileError) as caught:
        load_credential_files(cert_chain=str(tmp_path / "gone.pem"), key=other)
    assert caught.value.setting == "cert_chain"


def test_files_that_fit_neither_form_name_the_source(tmp_path: Path) -> None:
    source = "lab.yaml: x.certificate"
    with pytest.raises(CredentialFileError, match=r"^lab\.yaml: x\.certificate: expected"):
        load_credential_files(source=source)
    with pytest.raises(CredentialFileError, match=r"^lab\.yaml: x\.certificate: expected"):
        load_credential_files(cert_chain=str(tmp_path / "c.pem"), source=source)
    with pytest.raises(CredentialFileError, match=r"^lab\.yaml: x\.certificate: expected"):
        load_credential_files(pkcs12="a.p12", key="k.pem", source=source)


def test_null_certificate_setting_serves_the_lab_credential_or_says_what_to_give(
    server: ServerCredential,
) -> None:
    assert load_configured_credential(None, lab_credential=server) is server
    with pytest.raises(CredentialFileError) as caught:
        load_configured_credential(None)
    assert caught.value.key("uem.tls.api.certificate") == "uem.tls.api.certificate"
    assert caught.value.problem.startswith("expected {pkcs12: path, password_env: VARIABLE}")


def test_password_comes_from_the_environment_and_is_never_shown() -> None:
    assert password_from_env(None, of="a.p12", environ={}) is None
    assert password_from_env("P12_PW", of="a.p12", environ={"P12_PW": "pässword"}) == (
        "pässword".encode()
    )
    with pytest.raises(CredentialFileError) as caught:
        password_from_env("P12_PW", of="a.p12", environ={"OTHER": "pässword"})
    assert caught.value.key("uem.tls.api.certificate") == "uem.tls.api.certificate.password_env"
    assert caught.value.problem == (
        "environment variable P12_PW is not set (it should hold the password of a.p12)"
    )
    assert "pässword" not in str(caught.value)


@settings(max_examples=80)
@given(data=st.binary(max_size=2000))
def test_garbage_roots_only_raise_pki_error(data: bytes) -> None:
    with pytest.raises(PkiError, match=r"^fuzz roots: "):
        read_roots(data, source="fuzz roots")


_FUZZ = make_hierarchy("fuzz files lab")
_ROOT_DER = _FUZZ.root.certificate.public_bytes(serialization.Encoding.DER)


def _pem_block(der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE-----\n"


@settings(max_examples=150)
@given(flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4))
def test_mutated_root_is_accepted_or_refused_with_pki_error(flips: list[tuple[int, int]]) -> None:
    der = bytearray(_ROOT_DER)
    for position, value in flips:
        der[position % len(der)] = value
    message: str | None = None
    try:
        roots = parse_roots(_pem_block(bytes(der)), source="fuzz.pem")
    except PkiError as exc:
        message = str(exc)
    if message is None:
        assert len(roots) == 1
    else:
        assert message.startswith("fuzz.pem: ")


@settings(max_examples=40)
@given(
    chain=st.binary(max_size=1500),
    key=st.binary(max_size=1500),
    p12=st.binary(max_size=1500),
)
def test_garbage_credential_files_only_raise_pki_error_naming_a_file(
    tmp_path_factory: pytest.TempPathFactory, chain: bytes, key: bytes, p12: bytes
) -> None:
    directory = tmp_path_factory.mktemp("garbage")
    names = {
        "cert_chain": write(directory, "chain.pem", chain),
        "key": write(directory, "server.key", key),
        "pkcs12": write(directory, "server.p12", p12),
    }
    with pytest.raises(CredentialFileError) as caught:
        load_credential_files(cert_chain=names["cert_chain"], key=names["key"])
    assert str(caught.value).startswith((names["cert_chain"], names["key"]))
    with pytest.raises(CredentialFileError) as caught:
        load_credential_files(pkcs12=names["pkcs12"], password=b"pw")
    assert str(caught.value).startswith(names["pkcs12"])
    assert caught.value.setting == "pkcs12"
