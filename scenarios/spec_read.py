"""Field readers for scenario files: every error names the file, the key path and the fix.

Responsibility: turn loosely typed YAML values into checked Python values, or raise one
``ScenarioError`` whose message names the file, the path of the field inside it
(``steps[4].expect.gatekeeper.state``), what was expected, what arrived and, for a misspelt
name, the closest valid one. Also: durations (``90s``, ``15m``, ``25h``, ``7d``), deep-freezing
of plain mappings for frozen specs, and the YAML line index used to point at the line of a field.
It must not read files (``scenarios.spec`` does) or know what the fields mean.

Theory of operation: ``Fields(source)`` is a small stateless reader; each method takes the value
and its path and either returns the typed value or raises ``Fields.fail(path, ...)``. Unknown
keys are errors everywhere: a typo would otherwise silently disable an expectation.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

import attrs
import yaml

#: Upper bounds on what a scenario may hold (the file is input like any other).
MAX_ITEMS: Final = 10_000
MAX_TEXT: Final = 4096
MAX_DEPTH: Final = 32
#: The longest duration a step may name: a year.
MAX_DURATION_S: Final = 366 * 86_400.0

_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS: Final[Mapping[str, float]] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


class ScenarioError(ValueError):
    """A scenario file that cannot be used. ``path`` is the field's path inside the file."""

    def __init__(
        self, source: str, path: str, problem: str, *, hint: str = "", line: int | None = None
    ) -> None:
        text = f"{source}: {path}: {problem}" if path else f"{source}: {problem}"
        if hint:
            text += f"; {hint}"
        if line is not None:
            text += f" (line {line})"
        super().__init__(text)
        self.source = source
        self.path = path
        self.problem = problem
        self.hint = hint
        self.line = line

    def at_line(self, line: int | None) -> ScenarioError:
        """The same error pointing at ``line`` of the file."""
        return ScenarioError(self.source, self.path, self.problem, hint=self.hint, line=line)


def show(value: object) -> str:
    """A value as the user wrote it: ``17``, ``"abc"``, ``true``, ``null``."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def suggest(got: object, choices: Iterable[str]) -> str:
    """``did you mean "ALLOWED"?`` for a close match, else ``""``."""
    if not isinstance(got, str):
        return ""
    options = list(choices)
    lowered = {c.lower(): c for c in options}
    close = difflib.get_close_matches(got.lower(), list(lowered), n=1, cutoff=0.6)
    return f"did you mean {json.dumps(lowered[close[0]])}?" if close else ""


def join_path(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def parse_duration_text(text: str) -> float | None:
    """Seconds in ``90s``, ``15m``, ``25h``, ``7d``, ``1h30m``, ``250ms``; None if malformed."""
    compact = text.strip().replace(" ", "")
    if not compact:
        return None
    total = 0.0
    pos = 0
    for match in _DURATION_PART.finditer(compact):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(compact) else None


@attrs.frozen
class Fields:
    """Readers that report errors against ``source`` and a key path."""

    source: str

    def fail(self, path: str, problem: str, hint: str = "") -> ScenarioError:
        return ScenarioError(self.source, path, problem, hint=hint)

    def mapping(
        self,
        value: object,
        path: str,
        allowed: Sequence[str] | None = None,
        required: Sequence[str] = (),
    ) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping, got {show(value)}")
        if len(value) > MAX_ITEMS:
            raise self.fail(path, f"expected at most {MAX_ITEMS} keys, got {len(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(join_path(path, key), f"expected a text key, got {show(key)}")
            if allowed is not None and key not in allowed:
                hint = suggest(key, allowed)
                known = f"expected one of: {', '.join(allowed)}"
                raise self.fail(
                    join_path(path, key), "unknown key", f"{hint} {known}" if hint else known
                )
        for key in required:
            if key not in value:
                raise self.fail(join_path(path, key), "missing (required)")
        return value

    def sequence(self, value: object, path: str) -> Sequence[Any]:
        if not isinstance(value, list | tuple):
            raise self.fail(path, f"expected a list, got {show(value)}")
        if len(value) > MAX_ITEMS:
            raise self.fail(path, f"expected at most {MAX_ITEMS} items, got {len(value)}")
        return value

    def one_or_many(self, value: object, path: str) -> list[tuple[str, Any]]:
        """A mapping or a list of them, with each one's path."""
        if isinstance(value, list | tuple):
            return [(f"{path}[{i}]", v) for i, v in enumerate(self.sequence(value, path))]
        return [(path, value)]

    def string(
        self,
        value: object,
        path: str,
        *,
        pattern: re.Pattern[str] | None = None,
        what: str = "",
        empty: bool = False,
        max_len: int = MAX_TEXT,
    ) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected {what or 'a string'}, got {show(value)}")
        if not empty and not value.strip():
            raise self.fail(path, f"expected {what or 'a non-empty string'}, got {show(value)}")
        if len(value) > max_len:
            raise self.fail(path, f"expected at most {max_len} characters, got {len(value)}")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(path, f"expected {what or 'a valid value'}, got {show(value)}")
        return value

    def boolean(self, value: object, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {show(value)}")
        return value

    def integer(self, value: object, path: str, minimum: int, maximum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer {minimum}..{maximum}, got {show(value)}")
        if not minimum <= value <= maximum:
            raise self.fail(path, f"expected an integer {minimum}..{maximum}, got {value}")
        return value

    def number(self, value: object, path: str, minimum: float, maximum: float) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not minimum <= value <= maximum
        ):
            raise self.fail(path, f"expected a number {minimum:g}..{maximum:g}, got {show(value)}")
        return float(value)

    def choice(
        self, value: object, path: str, choices: Sequence[str], *, fold_case: bool = False
    ) -> str:
        """One of ``choices`` (compared case-insensitively with ``fold_case``)."""
        if isinstance(value, str):
            for option in choices:
                if value == option or (fold_case and value.lower() == option.lower()):
                    return option
        listed = ", ".join(choices)
        hint = suggest(value, choices)
        raise self.fail(path, f"expected one of {listed}, got {show(value)}", hint)

    def duration(self, value: object, path: str) -> float:
        """A positive duration with a unit: ``90s``, ``15m``, ``25h``, ``7d``, ``1h30m``."""
        example = "a duration like 90s, 15m, 25h or 7d"
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise self.fail(
                path, f"expected {example}, got {show(value)}", f"add a unit, e.g. {value}s"
            )
        if not isinstance(value, str):
            raise self.fail(path, f"expected {example}, got {show(value)}")
        seconds = parse_duration_text(value)
        if seconds is None:
            raise self.fail(
                path, f"expected {example}, got {show(value)}", "units are ms, s, m, h, d"
            )
        if not 0 < seconds <= MAX_DURATION_S:
            raise self.fail(
                path, f"expected a duration above 0 and at most 366d, got {show(value)}"
            )
        return seconds

    def strings(self, value: object, path: str) -> tuple[str, ...]:
        return tuple(
            self.string(v, f"{path}[{i}]") for i, v in enumerate(self.sequence(value, path))
        )


def freeze(value: object, depth: int = 0) -> Any:
    """A deep-frozen copy of plain YAML data: mappings become read-only, lists tuples."""
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v, depth + 1) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v, depth + 1) for v in value)
    return value


def thaw(value: object) -> Any:
    """Plain ``dict``/``list`` data again (for JSON bodies and config loaders)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    return value


def line_index(text: str) -> dict[str, int]:
    """Field path -> 1-based line of the field in the YAML text (best effort, for messages)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, path: str, depth: int) -> None:
        if depth > MAX_DEPTH or len(lines) > MAX_ITEMS * 4:
            return
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    child = join_path(path, key_node.value)
                    lines.setdefault(child, key_node.start_mark.line + 1)
                    walk(value_node, child, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                child = f"{path}[{i}]"
                lines.setdefault(child, item.start_mark.line + 1)
                walk(item, child, depth + 1)

    if root is not None:
        walk(root, "", 0)
    return lines


def line_of(lines: Mapping[str, int], path: str) -> int | None:
    """The line of ``path`` or of its nearest ancestor that has one."""
    probe = path
    while probe:
        if probe in lines:
            return lines[probe]
        cut = max(probe.rfind("."), probe.rfind("["))
        if cut <= 0:
            break
        probe = probe[:cut]
    return lines.get(probe)
