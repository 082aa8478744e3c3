"""``sentry-sim soak --first-access-share X``: parsed, checked (0 <= X < 1) and passed through
to ``loadtest.soak.steady_profile``."""

from __future__ import annotations

import argparse

import pytest

from loadtest.profiles import Op
from loadtest.soak import FIRST_ACCESS_SHARE
from scenarios import cli_soak


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sentry-sim")
    cli_soak.register(parser.add_subparsers())
    return parser.parse_args(["soak", "--minutes", "1", *argv])


def test_share_defaults_to_the_documented_trickle() -> None:
    args = parse()
    assert args.first_access_share == FIRST_ACCESS_SHARE
    ops = dict(cli_soak.soak_profile(args).workload)
    assert ops[Op.FIRST_ACCESS] / sum(ops.values()) == pytest.approx(FIRST_ACCESS_SHARE)


@pytest.mark.parametrize("text", ["0.1", "0.25", "0.5"])
def test_share_given_reaches_the_steady_profile(text: str) -> None:
    args = parse("--first-access-share", text)
    ops = dict(cli_soak.soak_profile(args).workload)
    assert ops[Op.FIRST_ACCESS] / sum(ops.values()) == pytest.approx(float(text))


def test_share_zero_leaves_first_accesses_out_of_the_mix() -> None:
    args = parse("--first-access-share", "0")
    assert Op.FIRST_ACCESS not in dict(cli_soak.soak_profile(args).workload)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("1", "expected 0 <= share < 1"),
        ("1.5", "expected 0 <= share < 1"),
        ("-0.1", "expected 0 <= share < 1"),
        ("nan", "expected 0 <= share < 1"),
        ("lots", "expected a fraction like 0.02"),
    ],
)
def test_share_out_of_range_or_not_a_number_exits_2_naming_the_option(
    text: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse("--first-access-share", text)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--first-access-share" in err
    assert says in err
    assert repr(text) in err
