"""``sentry-sim load``/``soak`` quiet the actors' logs only while a run lasts."""

from __future__ import annotations

import logging

import pytest

from scenarios.cli_load import quiet_actor_logs


def test_root_level_is_error_during_the_run_and_restored_after() -> None:
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.INFO)
    try:
        with quiet_actor_logs():
            assert root.level == logging.ERROR
        assert root.level == logging.INFO
    finally:
        root.setLevel(before)


def test_root_level_is_restored_when_the_run_fails() -> None:
    root = logging.getLogger()
    before = root.level
    with pytest.raises(RuntimeError, match="run failed"), quiet_actor_logs():
        raise RuntimeError("run failed")
    assert root.level == before
