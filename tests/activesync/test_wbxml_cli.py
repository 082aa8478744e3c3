"""``sentry-sim wbxml decode|encode`` through a parser built with ``register``."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import pytest

from activesync.wbxml import E, encode, to_xml
from scenarios.cli_wbxml import register

TREE = E(
    "FolderHierarchy",
    "FolderSync",
    E("FolderHierarchy", "Status", text=142),
)
BODY = bytes.fromhex("03 01 6A 00 00 07 56 4C 03 31 34 32 00 01 01")


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sentry-sim")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def feed_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_decode_file_prints_xml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "body.wbxml"
    source.write_bytes(BODY)
    assert run(["wbxml", "decode", str(source)]) == 0
    assert capsys.readouterr().out == to_xml(TREE)


def test_encode_file_writes_the_spec_bytes(tmp_path: Path) -> None:
    source = tmp_path / "body.xml"
    source.write_text(to_xml(TREE), encoding="utf-8")
    target = tmp_path / "body.wbxml"
    assert run(["wbxml", "encode", str(source), "-o", str(target)]) == 0
    assert target.read_bytes() == BODY


def test_files_round_trip_xml_to_wbxml_to_xml(tmp_path: Path) -> None:
    xml = to_xml(E("AirSync", "Sync", E("AirSync", "Collections", E("AirSync", "Collection"))))
    (tmp_path / "a.xml").write_text(xml, encoding="utf-8")
    assert run(["wbxml", "encode", str(tmp_path / "a.xml"), "-o", str(tmp_path / "a.wbxml")]) == 0
    assert run(["wbxml", "decode", str(tmp_path / "a.wbxml"), "-o", str(tmp_path / "b.xml")]) == 0
    assert (tmp_path / "b.xml").read_text(encoding="utf-8") == xml


def test_decode_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    feed_stdin(monkeypatch, BODY)
    assert run(["wbxml", "decode"]) == 0
    assert capsys.readouterr().out == to_xml(TREE)


def test_encode_reads_stdin_and_writes_raw_bytes(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    feed_stdin(monkeypatch, to_xml(TREE).encode())
    assert run(["wbxml", "encode", "-"]) == 0
    assert capsysbinary.readouterr().out == BODY


def test_hex_in_and_out(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    feed_stdin(monkeypatch, to_xml(TREE).encode())
    assert run(["wbxml", "encode", "--hex"]) == 0
    hex_text = capsysbinary.readouterr().out
    assert hex_text == b"03 01 6a 00 00 07 56 4c 03 31 34 32 00 01 01\n"
    feed_stdin(monkeypatch, hex_text.upper())
    assert run(["wbxml", "decode", "--hex"]) == 0
    assert capsysbinary.readouterr().out == to_xml(TREE).encode()


def test_bad_wbxml_file_exits_1_with_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "bad.wbxml"
    source.write_bytes(b"\x02\x01\x6a\x00\x45\x01")
    assert run(["wbxml", "decode", str(source)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert str(source) in lines[0]
    assert "unsupported WBXML version 0x02 at byte 0" in lines[0]


def test_bad_xml_exits_1_naming_stdin_and_the_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    feed_stdin(monkeypatch, b'<Sync xmlns="AirSync:">\n<Nope/></Sync>')
    assert run(["wbxml", "encode"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sentry-sim wbxml encode: <stdin>: line 2: unknown tag <Nope>")


def test_missing_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.wbxml"
    assert run(["wbxml", "decode", str(missing)]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err
    assert "cannot read" in err


def test_bad_hex_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    feed_stdin(monkeypatch, b"03 01 zz")
    assert run(["wbxml", "decode", "--hex"]) == 1
    assert "not hexadecimal" in capsys.readouterr().err


def test_non_utf8_xml_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    feed_stdin(monkeypatch, b"<Sync \xff/>")
    assert run(["wbxml", "encode"]) == 1
    assert "not UTF-8" in capsys.readouterr().err


def test_wbxml_without_action_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["wbxml"]) == 2
    assert "decode" in capsys.readouterr().err


def test_encoded_output_matches_the_library(tmp_path: Path) -> None:
    tree = E("Provision", "Provision", E("Provision", "Policies", E("Provision", "Policy")))
    (tmp_path / "p.xml").write_text(to_xml(tree), encoding="utf-8")
    assert run(["wbxml", "encode", str(tmp_path / "p.xml"), "-o", str(tmp_path / "p.bin")]) == 0
    assert (tmp_path / "p.bin").read_bytes() == encode(tree)
