"""JUnit XML for scenario runs, so CI systems show each scenario as a test case.

Responsibility: turn ``ScenarioResult`` values into the de-facto JUnit XML format (one
``<testsuite>`` per scenario file, one ``<testcase>`` per scenario, a ``<failure>`` holding
every failed expectation's diff, an ``<error>`` when a step could not run, the narration in
``<system-out>``). Pure: no I/O.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from scenarios.runner import ScenarioResult, render_failures


def _case(result: ScenarioResult) -> ET.Element:
    case = ET.Element(
        "testcase",
        {
            "classname": "sentry-sim.scenarios",
            "name": result.name,
            "file": result.source,
            "time": f"{result.duration_s:.3f}",
        },
    )
    failures = result.failures
    if failures:
        first_step, first, _ = failures[0]
        message = (
            f"{len(failures)} expectation(s) failed; first: {first_step.where} {first.path}: "
            f"expected {first.expected}, got {first.actual}"
        )
        failure = ET.SubElement(case, "failure", {"message": message, "type": "ExpectationFailed"})
        failure.text = "\n".join(render_failures(result))
    if result.error is not None:
        error = ET.SubElement(case, "error", {"message": result.error, "type": "StepError"})
        error.text = result.error
    out = ET.SubElement(case, "system-out")
    lines: list[str] = []
    for step in result.steps:
        lines.append(f"[{step.index}] {step.title}")
        lines += [f"    {text}" for text in step.lines]
    out.text = "\n".join(lines)
    return case


def junit_xml(results: Sequence[ScenarioResult]) -> str:
    """The JUnit XML document for ``results`` (a ``<testsuites>`` root)."""
    root = ET.Element(
        "testsuites",
        {
            "name": "sentry-sim run",
            "tests": str(len(results)),
            "failures": str(sum(1 for r in results if r.failures)),
            "errors": str(sum(1 for r in results if r.error is not None)),
            "time": f"{sum(r.duration_s for r in results):.3f}",
        },
    )
    by_file: dict[str, list[ScenarioResult]] = {}
    for result in results:
        by_file.setdefault(result.source, []).append(result)
    for source, group in by_file.items():
        suite = ET.SubElement(
            root,
            "testsuite",
            {
                "name": source,
                "tests": str(len(group)),
                "failures": str(sum(1 for r in group if r.failures)),
                "errors": str(sum(1 for r in group if r.error is not None)),
                "skipped": "0",
                "time": f"{sum(r.duration_s for r in group):.3f}",
            },
        )
        for result in group:
            suite.append(_case(result))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
