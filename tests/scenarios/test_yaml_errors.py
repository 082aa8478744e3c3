"""YAML syntax errors in every config loader name the file as given, the line and the column
of the problem (``scenarios.yaml_text``), and the CLIs exit 2 with one line, no traceback."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange_sim.config import ConfigError as ExchangeConfigError
from loadtest.profiles import ProfileError, load_profile
from scenarios import cli_exchange, cli_lab, cli_load, cli_sentry, cli_uem
from scenarios.lab import LabConfig, LabConfigError
from scenarios.yaml_text import YamlSyntaxError, parse_yaml
from sentry_sim.config import ConfigError as SentryConfigError
from uem_sim.errors import ConfigError as UemConfigError

#: An unclosed flow mapping: PyYAML notices on line 3, column 4 (its multi-line dump used to
#: point at line 2, where the mapping started).
UNCLOSED = "users:\n  - {name: alice, email: a@x, password: p\nuem: {}\n"


def bad_after(lines: int) -> tuple[str, int, int]:
    """``lines`` valid lines, then ``bad: x: y`` (a second ``:`` at column 7 of the next line)."""
    text = "".join(f"key{i}: {i}\n" for i in range(lines)) + "bad: x: y\n"
    return text, lines + 1, 7


@given(st.integers(0, 40))
def test_parse_yaml_names_the_line_and_column_of_the_problem(lines: int) -> None:
    text, line, column = bad_after(lines)
    with pytest.raises(YamlSyntaxError) as info:
        parse_yaml(text, "some/file.yaml")
    assert (info.value.line, info.value.column) == (line, column)
    assert str(info.value) == (
        f"some/file.yaml: line {line}, column {column}: not valid YAML: "
        "mapping values are not allowed here"
    )


@given(st.text(max_size=60))
def test_parse_yaml_raises_only_its_own_error(text: str) -> None:
    error: YamlSyntaxError | None = None
    try:
        parse_yaml(text, "x.yaml")
    except YamlSyntaxError as exc:
        error = exc
    if error is not None:
        assert str(error).startswith("x.yaml: ")
        assert "\n" not in str(error).removesuffix(error.problem)


LOADERS: dict[str, tuple[Callable[[Path], object], type[Exception]]] = {
    "lab": (LabConfig.load, LabConfigError),
    "sentry": (lambda p: cli_sentry.load_config(str(p)), SentryConfigError),
    "uem": (lambda p: cli_uem.load_config(str(p), None), UemConfigError),
    "exchange": (cli_exchange.load_config, ExchangeConfigError),
    "profile": (load_profile, ProfileError),
}


@pytest.mark.parametrize("kind", sorted(LOADERS))
@pytest.mark.parametrize("lines", [0, 4, 17])
def test_each_loader_names_path_line_and_column_of_a_syntax_error(
    kind: str, lines: int, tmp_path: Path
) -> None:
    load, error = LOADERS[kind]
    path = tmp_path / "configs" / f"{kind}.yaml"
    path.parent.mkdir()
    text, line, column = bad_after(lines)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(error) as info:
        load(path)
    message = str(info.value)
    # The path as given (not only its last part), then where, then the one-line problem.
    assert message == (
        f"{path}: line {line}, column {column}: not valid YAML: mapping values are not allowed here"
    )


def run_cli(module: object, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="sentry-sim")
    module.register(parser.add_subparsers())  # type: ignore[attr-defined]
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


CLIS = {
    "lab": (cli_lab, ["lab", "--config"]),
    "sentry": (
        cli_sentry,
        ["sentry", "--upstream", "http://127.0.0.1:9", "--uem", "http://127.0.0.1:9", "--config"],
    ),
    "uem": (cli_uem, ["uem", "--config"]),
    "exchange": (cli_exchange, ["exchange", "--config"]),
    "load": (cli_load, ["load"]),
}


@pytest.mark.parametrize("name", sorted(CLIS))
def test_cli_with_a_syntax_error_exits_2_naming_path_line_and_column(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module, argv = CLIS[name]
    path = tmp_path / "unclosed.yaml"
    path.write_text(UNCLOSED, encoding="utf-8")
    assert run_cli(module, *argv, str(path)) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert f"{path}: line 3, column 4: not valid YAML: expected ',' or '}}', but got ':'" in (
        captured.err
    )
    assert len(captured.err.strip().splitlines()) == 1


def test_uem_cli_with_a_top_level_list_says_so_without_an_empty_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- alice\n- bob\n", encoding="utf-8")
    assert run_cli(cli_uem, "uem", "--config", str(path)) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {path}: expected a mapping at the top level, got a list"


def test_uem_loader_refuses_a_top_level_string_with_its_own_error(tmp_path: Path) -> None:
    path = tmp_path / "word.yaml"
    path.write_text("just words\n", encoding="utf-8")
    with pytest.raises(UemConfigError) as info:
        cli_uem.load_config(str(path), None)
    assert info.value.problem == "expected a mapping at the top level, got a string"
    assert cli_uem.describe(info.value) == f"{path}: {info.value.problem}"


def test_sentry_loader_names_the_path_as_given_for_a_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("sentry:\n  uem_unreachable: maybe\n", encoding="utf-8")
    with pytest.raises(SentryConfigError) as info:
        cli_sentry.load_config(str(path))
    assert info.value.source == str(path)
    assert str(info.value).startswith(f"{path}: sentry.uem_unreachable: ")


def test_profile_loader_names_the_path_as_given_for_a_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text("name: p\nmodel: sideways\n", encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert info.value.source == str(path)


def test_deeply_nested_yaml_is_a_syntax_error_not_a_recursion_crash() -> None:
    with pytest.raises(YamlSyntaxError, match=r"deep\.yaml: not valid YAML: nested too deeply"):
        parse_yaml("[" * 100_000 + "]" * 100_000, "deep.yaml")
