"""The ``sentry_lab`` pytest fixture: a whole lab (Exchange, UEM, gatekeeper) per test.

Responsibility: let users of sentry-sim test their own policies and clients against a running
lab with one fixture. ``sentry_lab`` starts a ``scenarios.lab.Lab`` on loopback (port 0
everywhere), yields it, and stops it after the test. Options come from the
``@pytest.mark.sentry_lab(...)`` marker: ``config`` (a ``LabConfig``, a path to a lab YAML
file, or a lab mapping; default: the embedded default lab), ``manual_clock`` (``True`` for a
fresh ``ManualClock``, or a ``ManualClock`` of the test's own; default: the system clock),
``admin_token`` and ``journal`` (a path for a whatif journal). It must not hold any lab logic.

Registered through the ``pytest11`` entry point ``sentry_sim``, so installing sentry-sim makes
the fixture available; ``-p scenarios.pytest_plugin`` loads it explicitly. The fixture is
async (function-scoped) and needs pytest-asyncio. Documented in docs/pytest-plugin.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Final

import pytest
import pytest_asyncio

from scenarios.lab import Lab, LabConfig
from simclock import ManualClock

#: The marker that carries the fixture's options.
MARKER: Final = "sentry_lab"
#: The options the marker takes.
OPTIONS: Final = ("config", "manual_clock", "admin_token", "journal")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(config=None, manual_clock=False, admin_token=None, journal=None): options "
        "of the sentry_lab fixture (a lab config, path or mapping; a ManualClock or True; "
        "the admin token; a whatif journal path)",
    )


def lab_config(value: object) -> LabConfig:
    """The marker's ``config`` option as a ``LabConfig``."""
    if value is None:
        return LabConfig.default()
    if isinstance(value, LabConfig):
        return value
    if isinstance(value, str | Path):
        return LabConfig.load(value)
    if isinstance(value, Mapping):
        return LabConfig.from_mapping(value, "sentry_lab marker config")
    raise pytest.UsageError(
        f"@pytest.mark.{MARKER}(config=...): expected a LabConfig, a path to a lab YAML file "
        f"or a lab mapping, got {type(value).__name__}"
    )


def lab_options(marker: pytest.Mark | None) -> dict[str, Any]:
    """The keyword arguments of ``Lab`` for a test's marker (checked)."""
    given: Mapping[str, Any] = {} if marker is None else marker.kwargs
    if marker is not None and marker.args:
        raise pytest.UsageError(
            f"@pytest.mark.{MARKER} takes keyword options only: {', '.join(OPTIONS)}"
        )
    unknown = sorted(set(given) - set(OPTIONS))
    if unknown:
        raise pytest.UsageError(
            f"@pytest.mark.{MARKER}: unknown option(s) {', '.join(unknown)}; "
            f"expected {', '.join(OPTIONS)}"
        )
    options: dict[str, Any] = {"config": lab_config(given.get("config"))}
    clock = given.get("manual_clock", False)
    if isinstance(clock, ManualClock):
        options["clock"] = clock
    elif clock is True:
        options["clock"] = ManualClock()
    elif clock is not False:
        raise pytest.UsageError(
            f"@pytest.mark.{MARKER}(manual_clock=...): expected True, False or a ManualClock"
        )
    if given.get("admin_token") is not None:
        options["admin_token"] = str(given["admin_token"])
    if given.get("journal") is not None:
        options["journal"] = Path(given["journal"])
    return options


@pytest_asyncio.fixture
async def sentry_lab(request: pytest.FixtureRequest) -> AsyncIterator[Lab]:
    """A running lab (Exchange, UEM, gatekeeper on 127.0.0.1, free ports) for one test.

    Drive phones with ``sentry_lab.device(user, device_id)``, the UEM with
    ``sentry_lab.admin_action(...)`` / ``set_posture`` / ``uem(...)``, read the gatekeeper with
    ``sentry_record`` and ``sentry_events``; with ``manual_clock=True`` move time with
    ``await sentry_lab.clock.advance(seconds)``."""
    options = lab_options(request.node.get_closest_marker(MARKER))
    async with Lab(**options) as lab:
        yield lab
