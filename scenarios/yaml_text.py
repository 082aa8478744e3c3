"""YAML text to plain data, with a syntax error that names the file, line and column.

Responsibility: the one place every config loader (lab files, ``sentry-sim sentry``/``uem``/
``exchange`` configs, load profiles) turns YAML text into plain data. It must not read files,
validate shapes or know any loader's error type: each loader catches ``YamlSyntaxError`` and
re-raises it as its own error.

Theory of operation: PyYAML's own message is several lines long and its first line number is
where the surrounding block started, not where the parser gave up. ``problem_mark`` is the
place of the problem itself, so the error carries that line and column (1-based) and the
one-line ``problem``; ``str()`` reads ``FILE: line L, column C: not valid YAML: PROBLEM``.
"""

from __future__ import annotations

import yaml


class YamlSyntaxError(ValueError):
    """Text that is not valid YAML; ``line``/``column`` are 1-based, None when PyYAML gives
    no position."""

    def __init__(self, source: str, problem: str, line: int | None, column: int | None) -> None:
        self.source = source
        self.problem = problem
        self.line = line
        self.column = column
        super().__init__(
            f"{source}: {self.where}: not valid YAML: {problem}"
            if self.where
            else f"{source}: not valid YAML: {problem}"
        )

    @property
    def where(self) -> str:
        """``line L, column C``, or ``""`` without a position."""
        if self.line is None or self.column is None:
            return ""
        return f"line {self.line}, column {self.column}"


def parse_yaml(text: str, source: str) -> object:
    """YAML text to plain data (``yaml.safe_load``); ``YamlSyntaxError`` names ``source``, the
    line and the column of a syntax error."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or next(iter(str(exc).splitlines()), "bad syntax")
        if mark is None:
            raise YamlSyntaxError(source, problem, None, None) from None
        raise YamlSyntaxError(source, problem, mark.line + 1, mark.column + 1) from None
    except RecursionError:
        # PyYAML's composer recurses once per nesting level: "[[[[...]]]]" exhausts the stack.
        raise YamlSyntaxError(source, "nested too deeply", None, None) from None
