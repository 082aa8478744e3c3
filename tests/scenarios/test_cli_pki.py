"""``sentry-sim pki init|p12|show`` through ``register`` on a fresh parser."""

from __future__ import annotations

import argparse
import json
import stat
from pathlib import Path

import pytest

from labpki import Hierarchy, ServerCredential, make_hierarchy
from scenarios import cli_pki


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sentry-sim")
    cli_pki.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_init_writes_hierarchy_and_server_credential(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "pki"
    assert run(["pki", "init", str(directory), "--name", "QA lab", "--host", "mail.qa.test"]) == 0
    out = capsys.readouterr().out
    assert "root.pem" in out
    assert "ONLY file a device needs to trust" in out
    hierarchy = Hierarchy.read(directory)
    assert hierarchy.root.certificate.subject.rfc4514_string() == "O=QA lab,CN=QA lab root CA"
    credential = ServerCredential.from_pkcs12((directory / "server.p12").read_bytes(), None)
    assert credential.summary()["dns_names"] == ["mail.qa.test"]
    assert credential.chain == (hierarchy.issuing.certificate, hierarchy.intermediate.certificate)
    assert (directory / "server.pem").read_bytes() == credential.chain_pem()
    for secret in ("root.key", "issuing.key", "server.key", "server.p12"):
        assert stat.S_IMODE((directory / secret).stat().st_mode) == 0o600, secret


def test_init_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["pki", "init", str(tmp_path)]) == 0
    first_root = (tmp_path / "root.pem").read_bytes()
    assert run(["pki", "init", str(tmp_path)]) == 2
    assert "already holds a hierarchy" in capsys.readouterr().err
    assert (tmp_path / "root.pem").read_bytes() == first_root
    assert run(["pki", "init", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "root.pem").read_bytes() != first_root


def test_init_protects_the_p12_with_the_password_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAB_P12_PASSWORD", "correct horse")
    assert run(["pki", "init", str(tmp_path), "--password-env", "LAB_P12_PASSWORD"]) == 0
    data = (tmp_path / "server.p12").read_bytes()
    assert ServerCredential.from_pkcs12(data, b"correct horse").summary()["subject"] == (
        "CN=localhost"
    )


def test_p12_bundles_pem_chain_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hierarchy = make_hierarchy("p12 lab")
    credential = hierarchy.server_credential(["gw.example.test"])
    chain, key, out = tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "up.p12"
    # The root at the end of the PEM is dropped: a server never sends it.
    chain.write_bytes(credential.chain_pem() + hierarchy.root_pem())
    key.write_bytes(credential.key_pem())
    monkeypatch.setenv("P12PW", "pw")
    argv = ["pki", "p12", "--cert-chain", str(chain), "--key", str(key), "--out", str(out)]
    assert run([*argv, "--password-env", "P12PW"]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert ServerCredential.from_pkcs12(out.read_bytes(), b"pw") == credential


def test_p12_with_mismatched_key_names_the_file_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hierarchy = make_hierarchy("p12 lab")
    chain, key = tmp_path / "chain.pem", tmp_path / "other.key"
    chain.write_bytes(hierarchy.server_credential().chain_pem())
    key.write_bytes(hierarchy.root.key_pem())
    argv = ["pki", "p12", "--cert-chain", str(chain), "--key", str(key), "--out", "x.p12"]
    assert run(argv) == 2
    err = capsys.readouterr().err
    # The key is what does not fit, so the message names the key file (ServerCredential key_source).
    assert err.startswith(f"sentry-sim pki p12: {key}: the private key does not belong")


def test_p12_with_missing_password_variable_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOT_SET_PW", raising=False)
    argv = ["pki", "p12", "--cert-chain", "a", "--key", "b", "--out", str(tmp_path / "x")]
    assert run([*argv, "--password-env", "NOT_SET_PW"]) == 2
    assert "NOT_SET_PW: the environment variable is not set" in capsys.readouterr().err


def test_show_p12_as_json_lists_leaf_then_chain_and_usability(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hierarchy = make_hierarchy("show lab")
    credential = hierarchy.server_credential()
    path = tmp_path / "server.p12"
    path.write_bytes(credential.to_pkcs12())
    assert run(["pki", "show", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["format"] == "PKCS#12"
    assert shown["usable_as_server_credential"] is True
    subjects = [c["subject"] for c in shown["certificates"]]
    assert subjects == [
        "CN=localhost",
        "O=show lab,CN=show lab issuing CA",
        "O=show lab,CN=show lab intermediate CA",
    ]
    assert shown["certificates"][0]["serial"] == format(credential.certificate.serial_number, "x")


def test_show_pem_as_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hierarchy = make_hierarchy("show lab")
    path = tmp_path / "root.pem"
    path.write_bytes(hierarchy.root_pem())
    assert run(["pki", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "certificate: O=show lab,CN=show lab root CA" in out
    assert "(self-signed root)" in out
    assert "valid now" in out


def test_show_garbage_names_the_file_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "junk.p12"
    path.write_bytes(b"\x30\x03junk")
    assert run(["pki", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"sentry-sim pki show: {path}: not a PKCS#12 file, or it needs a password\n"


def test_show_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["pki", "show", str(tmp_path / "absent.pem")]) == 2
    assert "absent.pem: cannot read" in capsys.readouterr().err


def test_pki_without_action_prints_usage_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["pki"]) == 2
    assert "init" in capsys.readouterr().err
