"""The ``sentry_lab`` fixture, run as a user runs it: a test file of their own, via pytester."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
import pytest

from device_sim.client import FolderSync, Provision, Sync
from scenarios.lab import LabConfig, default_lab_mapping
from simclock import ManualClock


async def test_compliant_phone_is_allowed(sentry_lab):
    phone = sentry_lab.device("alice", "ALICEIPHONE01")
    report = await phone.run_script([Provision(), FolderSync(), Sync()])
    assert report.succeeded
    record = await sentry_lab.sentry_record("alice", "ALICEIPHONE01")
    assert record["state"] == "allowed"


def _one_device_lab():
    lab = default_lab_mapping()
    lab["uem"]["max_devices_per_mailbox"] = 1
    return lab


@pytest.mark.sentry_lab(config=_one_device_lab(), manual_clock=True, admin_token="t0ken")
async def test_marker_options_reach_the_lab(sentry_lab):
    assert isinstance(sentry_lab.clock, ManualClock)
    assert sentry_lab.admin_token == "t0ken"
    assert sentry_lab.config.uem.policy.max_devices_per_mailbox == 1
    before = sentry_lab.clock.now()
    await sentry_lab.clock.advance(3600)
    assert sentry_lab.clock.now() == before + 3600


@pytest.mark.sentry_lab(colour="blue")
async def test_unknown_option_is_refused(sentry_lab):
    pass
"""


def _plugin_args(request: pytest.FixtureRequest) -> list[str]:
    # Installed with its pytest11 entry point the plugin loads itself; a source checkout whose
    # entry points were not reinstalled loads it explicitly.
    if request.config.pluginmanager.has_plugin("sentry_sim"):
        return []
    return ["-p", "scenarios.pytest_plugin"]


INI = (
    "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    "filterwarnings = error\n"
)


def test_sentry_lab_fixture_runs_a_users_tests(
    pytester: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest(*_plugin_args(request), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*unknown option(s) colour; expected config, manual_clock*"])


def test_marker_is_documented_in_markers_list(
    pytester: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    pytester.makeini(INI)
    result = pytester.runpytest(*_plugin_args(request), "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.sentry_lab(config=None, manual_clock=False*"])
