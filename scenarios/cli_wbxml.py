"""``sentry-sim wbxml``: turn EAS WBXML bodies into readable XML and back.

Responsibility: the command-line shell around ``activesync.wbxml``: read a file or stdin, call
``decode``/``to_xml`` or ``from_xml``/``encode``, write stdout or ``--output``. It decides
nothing itself; every error becomes one line on stderr naming the input and the problem, and
exit status 1.

    sentry-sim wbxml decode body.wbxml            # WBXML bytes -> XML on stdout
    sentry-sim wbxml decode --hex -  <<< "03 01 6a 00 00 07 56 4c 03 31 34 32 00 01 01"
    sentry-sim wbxml encode request.xml -o request.wbxml
    sentry-sim wbxml encode --hex request.xml     # hex text instead of raw bytes
"""

from __future__ import annotations

import argparse
import binascii
import sys
from typing import BinaryIO, Final

from activesync.errors import ActiveSyncError
from activesync.wbxml import decode, encode, from_xml, to_xml
from activesync.wbxml.xmlform import DEFAULT_MAX_CHARS

#: Largest input file read, in bytes: XML can be base64 (4/3) plus indentation.
_MAX_INPUT: Final = DEFAULT_MAX_CHARS * 2
_STDIN: Final = "-"


class _InputError(Exception):
    """The input could not be read or is not in the expected form."""


def _read_input(path: str) -> bytes:
    try:
        if path == _STDIN:
            data = sys.stdin.buffer.read(_MAX_INPUT + 1)
        else:
            with open(path, "rb") as handle:
                data = handle.read(_MAX_INPUT + 1)
    except OSError as exc:
        raise _InputError(f"cannot read: {exc.strerror or exc}") from None
    if len(data) > _MAX_INPUT:
        raise _InputError(f"input is larger than {_MAX_INPUT} bytes")
    return data


def _from_hex(data: bytes) -> bytes:
    # Accept "03 01 6a 00", "03016A00", one byte per line, or "03:01:6a:00".
    compact = bytes(b for b in data if b not in b" \t\r\n:")
    try:
        return binascii.unhexlify(compact)
    except (binascii.Error, ValueError):
        raise _InputError("--hex input is not hexadecimal text (pairs of 0-9, a-f)") from None


def _to_hex(data: bytes) -> bytes:
    # 16 bytes per line, like a hex dump without offsets.
    lines = [data[i : i + 16].hex(" ") for i in range(0, len(data), 16)]
    return ("\n".join(lines) + "\n").encode("ascii")


def _write_output(path: str | None, data: bytes) -> None:
    if path is None or path == _STDIN:
        out: BinaryIO = sys.stdout.buffer
        out.write(data)
        out.flush()
        return
    try:
        with open(path, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise _InputError(f"cannot write {path}: {exc.strerror or exc}") from None


def _label(path: str) -> str:
    return "<stdin>" if path == _STDIN else path


def _fail(args: argparse.Namespace, message: str) -> int:
    print(f"sentry-sim wbxml {args.action}: {_label(args.file)}: {message}", file=sys.stderr)
    return 1


def _decode_command(args: argparse.Namespace) -> int:
    try:
        data = _read_input(args.file)
        if args.hex:
            data = _from_hex(data)
        xml = to_xml(decode(data))
        _write_output(args.output, xml.encode("utf-8"))
    except (_InputError, ActiveSyncError) as exc:
        return _fail(args, str(exc))
    return 0


def _encode_command(args: argparse.Namespace) -> int:
    try:
        raw = _read_input(args.file)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _InputError(f"XML input is not UTF-8 (byte {exc.start})") from None
        body = encode(from_xml(text))
        _write_output(args.output, _to_hex(body) if args.hex else body)
    except (_InputError, ActiveSyncError) as exc:
        return _fail(args, str(exc))
    return 0


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sentry-sim wbxml decode|encode`` to the ``sentry-sim`` command."""
    parser = sub.add_parser(
        "wbxml",
        help="convert EAS WBXML bodies to readable XML and back",
        description=(
            "Convert Exchange ActiveSync WBXML bodies (MS-ASWBXML, all 26 code pages) to the "
            "XML text form and back. Errors name the byte or line at fault."
        ),
    )
    parser.set_defaults(func=lambda _args: _usage(parser))
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    dec = actions.add_parser(
        "decode",
        help="WBXML bytes -> XML",
        description="Decode a WBXML body and print it as indented XML.",
    )
    dec.add_argument("file", nargs="?", default=_STDIN, help="WBXML file, or - for stdin")
    dec.add_argument(
        "--hex", action="store_true", help="the input is hex text (e.g. 03 01 6a 00 ...)"
    )
    dec.add_argument("-o", "--output", help="write the XML here instead of stdout")
    dec.set_defaults(func=_decode_command)

    enc = actions.add_parser(
        "encode",
        help="XML -> WBXML bytes",
        description=(
            'Encode the XML text form (namespaces such as xmlns="AirSync:") as a WBXML body.'
        ),
    )
    enc.add_argument("file", nargs="?", default=_STDIN, help="XML file, or - for stdin")
    enc.add_argument("--hex", action="store_true", help="write hex text instead of raw bytes")
    enc.add_argument("-o", "--output", help="write the bytes here instead of stdout")
    enc.set_defaults(func=_encode_command)
