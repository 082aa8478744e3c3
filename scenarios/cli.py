"""The ``sentry-sim`` console command.

Each subcommand lives in its own ``scenarios/cli_*.py`` module with a ``register(subparsers)``
function that adds its parser and sets ``func`` (args -> exit code). This module only collects
them, so adding a command touches one new file and one line here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Modules that contribute subcommands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "scenarios.cli_demo",
    "scenarios.cli_lab",
    "scenarios.cli_run",
    "scenarios.cli_sentry",
    "scenarios.cli_uem",
    "scenarios.cli_exchange",
    "scenarios.cli_device",
    "scenarios.cli_decide",
    "scenarios.cli_explain",
    "scenarios.cli_whatif",
    "scenarios.cli_load",
    "scenarios.cli_bench",
    "scenarios.cli_soak",
    "scenarios.cli_wbxml",
    "scenarios.cli_eas_query",
    "scenarios.cli_pki",
    "scenarios.cli_tlscheck",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sentry-sim",
        description="A simulator of an ActiveSync gatekeeper, its UEM and Exchange.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        code = func(args)
    except KeyboardInterrupt:
        return 130
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
