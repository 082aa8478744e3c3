"""The UEM store's batched writes: staged deltas merge, one flush writes them, a clean stop
loses nothing, and the shell flushes on a timer (or at once without a running loop)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from simclock import ManualClock
from uem_sim.config import UemConfig
from uem_sim.contract import ReportRequest
from uem_sim.events import EventBus
from uem_sim.model import AdminAction
from uem_sim.registry import Registry
from uem_sim.service import FLUSH_INTERVAL_S, Uem
from uem_sim.store import SqliteStore

NOW = 1_767_225_600.0
LAB = {"users": [{"name": "alice"}, {"name": "bob"}], "uem": {"max_devices_per_mailbox": 1}}


def registry() -> Registry:
    return Registry.from_config(UemConfig.from_mapping(LAB), NOW)


def report(reg: Registry, user: str, device_id: str) -> None:
    reg.report(ReportRequest(gatekeeper_id="gk", user=user, device_id=device_id, seen_at=NOW), NOW)


def stored(path: Path) -> Registry:
    store = SqliteStore(path)
    try:
        snapshot = store.load()
    finally:
        store.close()
    assert snapshot is not None
    return Registry.from_snapshot(snapshot)


def test_staged_deltas_are_written_by_one_flush_with_the_latest_value_of_each_record(
    tmp_path: Path,
) -> None:
    reg = registry()
    store = SqliteStore(tmp_path)
    store.stage(reg.take_delta())
    report(reg, "bob", "D1")
    store.stage(reg.take_delta())
    report(reg, "bob", "D2")
    store.stage(reg.take_delta())
    assert store.staged
    assert SqliteStore(tmp_path).load() is None  # nothing written before the flush
    store.flush()
    assert not store.staged
    again = stored(tmp_path)
    assert again.records == reg.records
    assert again.version == reg.version
    assert again.seq == reg.seq
    store.close()


def test_closing_the_store_writes_what_is_staged(tmp_path: Path) -> None:
    reg = registry()
    store = SqliteStore(tmp_path)
    report(reg, "alice", "P1")
    store.stage(reg.take_delta())
    store.close()
    assert stored(tmp_path).records == reg.records


def test_a_removed_record_staged_after_its_creation_is_written_as_a_tombstone(
    tmp_path: Path,
) -> None:
    reg = registry()
    store = SqliteStore(tmp_path)
    report(reg, "bob", "D1")
    store.stage(reg.take_delta())
    reg.admin_action("bob", "D1", AdminAction.REMOVE, "gone", NOW)
    store.stage(reg.take_delta())
    store.close()
    again = stored(tmp_path)
    assert again.records == {}
    assert again.tombstones == reg.tombstones


def test_staging_into_a_closed_store_is_an_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    store.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        store.stage(registry().take_delta())


def test_commit_without_a_running_loop_writes_at_once(tmp_path: Path) -> None:
    reg = registry()
    store = SqliteStore(tmp_path)
    uem = Uem(registry=reg, store=store, events=EventBus(), clock=ManualClock(NOW))
    report(reg, "alice", "P1")
    uem.commit()
    assert not store.staged
    assert stored(tmp_path).records == reg.records
    store.close()


async def test_commits_within_the_flush_interval_are_written_together_by_the_timer(
    tmp_path: Path,
) -> None:
    async with asyncio.timeout(5):
        reg = registry()
        store = SqliteStore(tmp_path)
        uem = Uem(registry=reg, store=store, events=EventBus(), clock=ManualClock(NOW))
        outcomes = []
        for device in ("D1", "D2", "D3"):
            outcome = reg.report(
                ReportRequest(gatekeeper_id="gk", user="bob", device_id=device, seen_at=NOW), NOW
            )
            uem.commit(outcome.changes)
            outcomes.append(outcome)
        assert store.staged
        await asyncio.sleep(FLUSH_INTERVAL_S * 3)
        assert not store.staged
        assert stored(tmp_path).records == reg.records
        store.close()
        uem.flush()  # a timer firing after the stop is harmless


def test_a_report_names_its_gatekeeper_and_record_for_the_push() -> None:
    reg = registry()
    outcome = reg.report(
        ReportRequest(gatekeeper_id="gk7", user="BOB", device_id="D1", seen_at=NOW), NOW
    )
    assert outcome.changes.reported == ("gk7", ("bob", "D1"))
    assert reg.message(outcome.record).key == ("bob", "D1")
