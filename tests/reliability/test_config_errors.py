"""Malformed YAML for every loader: one error of the loader's own type that names the file,
never a traceback (issue 7, "bad input").

Covered: scenario files (``sentry-sim run``), lab files (``sentry-sim lab --config``), the
``sentry:``, ``uem:`` and ``users``/``exchange:`` sections read by ``sentry-sim sentry``,
``uem`` and ``exchange``, and load profiles (``sentry-sim load``). Hypothesis mutates a valid
file byte by byte (deletions, insertions of YAML punctuation, duplicated lines), which gives
both broken syntax and valid YAML of the wrong shape; each loader must answer with its own
error. The CLI tests check the exit code and that stderr is one error naming the file.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange_sim.config import ConfigError as ExchangeConfigError
from loadtest.profiles import ProfileError, load_profile
from scenarios import cli_exchange, cli_lab, cli_load, cli_run, cli_sentry, cli_uem
from scenarios.lab import LabConfig, LabConfigError
from scenarios.spec import load_scenario
from scenarios.spec_read import ScenarioError
from sentry_sim.config import ConfigError as SentryConfigError
from uem_sim.errors import ConfigError as UemConfigError

ROOT = Path(__file__).resolve().parents[2]
LAB = (ROOT / "scenarios" / "labs" / "default.yaml").read_text(encoding="utf-8")
SCENARIO = (
    (ROOT / "scenarios" / "library" / "exchange-down.yaml")
    .read_text(encoding="utf-8")
    .replace("../labs/default.yaml", str(ROOT / "scenarios" / "labs" / "default.yaml"))
)
PROFILE = (ROOT / "loadtest" / "profiles" / "hot_path.yaml").read_text(encoding="utf-8")

Loader = Callable[[Path], object]

LOADERS: dict[str, tuple[str, Loader, type[Exception]]] = {
    "scenario": (SCENARIO, load_scenario, ScenarioError),
    "lab": (LAB, LabConfig.load, LabConfigError),
    "sentry": (LAB, cli_sentry.load_config, SentryConfigError),  # type: ignore[dict-item]
    "uem": (LAB, lambda p: cli_uem.load_config(str(p), None), UemConfigError),
    "exchange": (LAB, cli_exchange.load_config, ExchangeConfigError),
    "profile": (PROFILE, load_profile, ProfileError),
}

PUNCTUATION = st.sampled_from(
    [":", "- ", "{", "}", "[", "]", "'", '"', "\t", "  ", "\n", "&a", "*a", "!!", "? ", "%"]
)


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["delete", "insert", "duplicate", "cut"]))
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        if op == "delete" and line:
            j = draw(st.integers(0, len(line) - 1))
            lines[i] = line[:j] + line[j + 1 :]
        elif op == "insert":
            j = draw(st.integers(0, len(line)))
            lines[i] = line[:j] + draw(PUNCTUATION) + line[j:]
        elif op == "duplicate":
            lines.insert(i, line)
        else:
            lines = lines[: i + 1]
    return "".join(lines)


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_mutated_file_gives_only_the_loaders_own_error_naming_the_file(
    kind: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    valid, load, error = LOADERS[kind]
    folder = tmp_path_factory.mktemp(kind)
    path = folder / f"{kind}-input.yaml"

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(mutated(valid))
    def check(text: str) -> None:
        path.write_text(text, encoding="utf-8")
        message = path.name  # a mutation may well leave the file valid
        try:
            load(path)
        except error as exc:
            message = str(exc)
        assert path.name in message

    check()


def test_yaml_syntax_error_in_a_scenario_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("steps:\n  - connect: {device: a\n  - expect: {}\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}: not valid YAML: ")
    assert info.value.line == 3
    assert "column" in info.value.problem


def test_yaml_syntax_error_in_a_lab_file_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("users:\n  - {name: alice, email: a@x, password: p\nuem: {}\n", "utf-8")
    with pytest.raises(LabConfigError) as info:
        LabConfig.load(path)
    assert str(info.value).startswith(f"{path}: line 3, column 4: not valid YAML")


def test_wrong_key_in_each_section_names_the_key_path(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(
        LAB + "sentry:\n  uem_unreachable: maybe\n", encoding="utf-8"
    )  # a second sentry: key: YAML keeps the last one
    with pytest.raises(LabConfigError, match=r"sentry\.uem_unreachable"):
        LabConfig.load(path)
    with pytest.raises(SentryConfigError, match=r"sentry\.uem_unreachable"):
        cli_sentry.load_config(str(path))
    uem = tmp_path / "uem.yaml"
    uem.write_text("uem:\n  max_devices_per_mailbox: -1\n", encoding="utf-8")
    with pytest.raises(UemConfigError, match=r"uem\.max_devices_per_mailbox"):
        cli_uem.load_config(str(uem), None)
    exchange = tmp_path / "exchange.yaml"
    exchange.write_text("users:\n  - {name: a, email: a@x, password: [1]}\n", "utf-8")
    with pytest.raises(ExchangeConfigError, match=r"users\[0\]\.password"):
        cli_exchange.load_config(exchange)


def run_cli(module: object, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="sentry-sim")
    module.register(parser.add_subparsers())  # type: ignore[attr-defined]
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        (cli_run, ["run"]),
        (cli_lab, ["lab", "--config"]),
        (
            cli_sentry,
            [
                "sentry",
                "--upstream",
                "http://127.0.0.1:9",
                "--uem",
                "http://127.0.0.1:9",
                "--config",
            ],
        ),
        (cli_uem, ["uem", "--config"]),
        (cli_exchange, ["exchange", "--config"]),
        (cli_load, ["load"]),
    ],
    ids=["run", "lab", "sentry", "uem", "exchange", "load"],
)
def test_cli_with_a_malformed_file_exits_2_with_an_error_naming_it_and_no_traceback(
    module: object, argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "malformed.yaml"
    path.write_text("users:\n  - {name: alice\nuem: [\n", encoding="utf-8")
    assert run_cli(module, *argv, str(path)) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert "malformed.yaml" in captured.err
    assert "line" in captured.err
