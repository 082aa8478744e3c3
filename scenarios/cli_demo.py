"""``sentry-sim demo``: the onboarding story end to end, narrated step by step, then exit.

Responsibility: start the embedded default lab (every port 0, so it never collides), run the
stories of ``scenarios.demo`` and render them for people (aligned, readable on a projector,
colour only on a terminal) or as JSON (``--json``); exit 0 only if every story turned out as
it says, else 1 with a line naming each story that did not. It must not hold story logic: the
stories and their checks are ``scenarios.demo``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TextIO

import attrs

from scenarios.demo import DemoReport, Story, run_demo
from scenarios.flow import STEP_TITLES
from scenarios.lab import Lab, LabConfig, LabConfigError, LabError
from scenarios.serving import run

#: Width of the narration (fits a projector at a readable size).
WIDTH: Final = 100
#: Column where the step text starts: "  N  <title padded>  ".
_TITLE_WIDTH: Final = max(len(t) for t in STEP_TITLES.values())
_INDENT: Final = 4 + 1 + 2 + _TITLE_WIDTH + 2

#: The UEM's ActiveSync devices view groups, in the order the portal shows them.
GROUP_TITLES: Final[Mapping[str, str]] = {
    "registered_allowed": "registered allowed",
    "registered_blocked": "registered blocked",
    "unregistered_allowed": "unregistered allowed",
    "unregistered_blocked": "unregistered blocked",
    "wiped": "wiped",
}


@attrs.frozen
class Style:
    """ANSI styling, or none at all."""

    color: bool
    unicode: bool = True

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def good(self, text: str) -> str:
        return self._wrap("1;32", text)

    def bad(self, text: str) -> str:
        return self._wrap("1;31", text)

    def accent(self, text: str) -> str:
        return self._wrap("36", text)

    @property
    def tick(self) -> str:
        return "✔" if self.unicode else "OK"

    @property
    def cross(self) -> str:
        return "✘" if self.unicode else "X"


def style_for(stream: TextIO, no_color: bool) -> Style:
    """Colour only on a terminal, never with ``--no-color`` or ``NO_COLOR`` set."""
    isatty = getattr(stream, "isatty", lambda: False)()
    color = isatty and not no_color and "NO_COLOR" not in os.environ
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
    return Style(color=color, unicode=encoding in ("utf8", "utf16", "utf32"))


def _wrap(text: str, indent: int) -> list[str]:
    lines = textwrap.wrap(text, width=max(40, WIDTH - indent), break_on_hyphens=False) or [""]
    return [lines[0], *(" " * indent + line for line in lines[1:])]


def render_story(story: Story, style: Style) -> list[str]:
    """One story as lines: title, who, scene-setting, the 8 steps, the verdict."""
    out = [
        "",
        style.bold(f"({story.letter}) {story.title}"),
        "    " + style.accent(story.device),
    ]
    for line in story.prelude:
        out.append("    " + style.dim("before: " + line))
    for step in story.steps:
        title = STEP_TITLES[step.number].ljust(_TITLE_WIDTH)
        head = f"    {step.number}  {title}  "
        body = _wrap(step.text if step.applies else f"- {step.text}", _INDENT)
        if step.applies:
            out.append(head + body[0])
            out.extend(body[1:])
        else:
            out.append(style.dim(head + body[0]))
            out.extend(style.dim(line) for line in body[1:])
    if story.passed:
        verdict = f"{style.good(style.tick)} {story.outcome}"
    else:
        verdict = (
            f"{style.bad(style.cross + ' NOT AS THE STORY SAYS')}: {story.problem} "
            f"(expected: {story.expected}; got: {story.outcome})"
        )
    out.extend("    " + line for line in _wrap(verdict, 6))
    return out


def render_devices_view(view: Mapping[str, Any], style: Style) -> list[str]:
    """The UEM's ActiveSync devices view as one table, a section per group."""
    header = ("GROUP", "USER", "DEVICE ID", "TYPE", "EAS", "STATE", "REASONS")
    rows: list[tuple[str, ...]] = []
    groups: Mapping[str, Sequence[Mapping[str, Any]]] = view.get("groups", {})
    for group, title in GROUP_TITLES.items():
        records = groups.get(group, [])
        label = f"{title} ({len(records)})"
        if not records:
            rows.append((label, "-", "", "", "", "", ""))
        for index, record in enumerate(records):
            rows.append(
                (
                    label if index == 0 else "",
                    str(record.get("user", "")),
                    str(record.get("device_id", "")),
                    str(record.get("device_type", "")),
                    str(record.get("protocol_version", "")),
                    str(record.get("state", "")),
                    ", ".join(record.get("reason_names", [])) or "-",
                )
            )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    version = view.get("version", "?")
    out = ["", style.bold(f"The UEM's ActiveSync devices view (change version {version})")]
    out.append(style.bold(line(header)))
    for row in rows:
        out.append(style.dim(line(row)) if row[1] == "-" else line(row))
    return out


def render_summary(report: DemoReport, style: Style) -> list[str]:
    total = len(report.stories)
    if report.passed:
        return ["", style.good(f"{style.tick} all {total} stories turned out as they say")]
    lines = [""]
    for story in report.failures:
        lines.append(
            style.bad(f"{style.cross} story ({story.letter}) {story.title}: ") + story.problem
        )
    lines.append(
        style.bad(f"{len(report.failures)} of {total} stories did not turn out as they say")
    )
    return lines


def render_header(lab: Lab, style: Style) -> list[str]:
    urls = lab.ready_payload()
    return [
        style.bold("sentry-sim demo: a device's first access to ActiveSync, in 8 steps"),
        style.dim(f"  lab: {lab.config.source}"),
        style.dim(
            f"  gatekeeper {urls['sentry_url']}   UEM {urls['uem_url']}   "
            f"Exchange {urls['exchange_url']}"
        ),
        style.dim(
            "  steps: 1 request, 2 device list, 3 report, 4 UEM view, 5 decision, 6 cache, "
            "7 forward, 8 deny"
        ),
    ]


async def demo(
    *,
    as_json: bool,
    style: Style,
    write: Callable[[str], None],
    config: LabConfig | None = None,
) -> int:
    """Start the lab, tell the stories as they happen, print the view; the exit code."""
    async with Lab(config or LabConfig.default(), dashboard=False) as lab:
        if not as_json:
            for line in render_header(lab, style):
                write(line)

        def on_story(story: Story) -> None:
            if not as_json:
                for line in render_story(story, style):
                    write(line)

        report = await run_demo(lab, on_story)
        if as_json:
            urls = {k: v for k, v in lab.ready_payload().items() if k != "admin_token"}
            write(json.dumps({"lab": urls, **report.to_json()}, indent=2))
        else:
            for line in (*render_devices_view(report.devices_view, style),):
                write(line)
            for line in render_summary(report, style):
                write(line)
    return 0 if report.passed else 1


def main(args: argparse.Namespace) -> int:
    style = style_for(sys.stdout, args.no_color)

    def write(line: str) -> None:
        print(line, flush=True)

    async def go() -> int:
        return await demo(as_json=args.json, style=style, write=write)

    try:
        return run(go, use_uvloop=not args.no_uvloop)
    except (LabConfigError, LabError) as exc:
        print(f"sentry-sim demo: {exc}", file=sys.stderr)
        return 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "demo",
        help="the onboarding story end to end, narrated step by step",
        description=(
            "Start the embedded default lab (Exchange, the UEM and the gatekeeper on free "
            "loopback ports) and drive simulated phones through six stories: a compliant "
            "device allowed, a compromised one blocked, an unregistered one auto-blocked, a "
            "third device over the mailbox limit, a device the UEM marks compromised later, "
            "and an administrator's wipe. Each is told as the 8 steps of the first-access flow "
            "from the gatekeeper's events and the UEM's explanations, then the UEM's "
            "ActiveSync devices view is shown. Exits 0 only if every story turned out as it "
            "says."
        ),
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of the narration"
    )
    parser.add_argument(
        "--no-color",
        action="store_true",
        help="no ANSI colours (they are used only on a terminal anyway; NO_COLOR works too)",
    )
    parser.add_argument(
        "--no-uvloop", action="store_true", help="use asyncio's own event loop instead of uvloop"
    )
    parser.set_defaults(func=main)
