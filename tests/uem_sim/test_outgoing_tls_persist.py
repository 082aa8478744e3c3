"""Outgoing TLS settings applied through the admin API survive a restart (real loopback)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from scenarios.serving import start_site
from simclock import ManualClock
from uem_sim.app import make_app
from uem_sim.config import UemConfig
from uem_sim.handlers import UEM
from uem_sim.outgoing_tls import (
    SOURCE_CONFIG,
    SOURCE_MEMORY,
    SOURCE_STORED,
    SOURCE_UNSTORED,
    SUITES,
    OutgoingTlsError,
    OutgoingTlsSettings,
)
from uem_sim.store import (
    DB_NAME,
    StoredOutgoingTls,
    outgoing_tls_from_dict,
    outgoing_tls_to_dict,
)

TOKEN = "persist-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
PATH = "/api/v1/outgoing-tls"
#: What the config file asks for (not the default, so "config" and "stored" differ).
CONFIG_SELECTED = ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
LAB = {"uem": {"outgoing_tls": {"selected_ciphers": CONFIG_SELECTED}}}
APPLIED = [
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
]
DISABLED_FIRST = ["TLS_RSA_WITH_AES_256_CBC_SHA", "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"]


@attrs.define
class Running:
    app: web.Application
    url: str
    http: aiohttp.ClientSession

    async def call(self, method: str, path: str = PATH, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, json=body, headers=ADMIN) as answer:
            return answer.status, await answer.json()


@contextlib.asynccontextmanager
async def running_uem(state_dir: Path | None, lab: Any = None) -> AsyncIterator[Running]:
    config = UemConfig.from_mapping(LAB if lab is None else lab)
    if state_dir is not None:
        config = attrs.evolve(config, state_dir=str(state_dir))
    app = make_app(config, clock=ManualClock(1_000.0), admin_token=TOKEN, outgoing_restart_s=0.0)
    site = await start_site(app)
    try:
        async with aiohttp.ClientSession() as http:
            yield Running(app, site.url, http)
    finally:
        await site.stop()


def stored_row(state_dir: Path) -> dict[str, Any] | None:
    """The row as another process would read it (a separate connection)."""
    with contextlib.closing(sqlite3.connect(state_dir / DB_NAME)) as db:
        found = db.execute("SELECT data FROM admin_settings WHERE name = 'outgoing_tls'").fetchone()
    return None if found is None else dict(json.loads(found[0]))


def write_row(state_dir: Path, data: str) -> None:
    with contextlib.closing(sqlite3.connect(state_dir / DB_NAME)) as db, db:
        db.execute("UPDATE admin_settings SET data = ? WHERE name = 'outgoing_tls'", (data,))


async def apply_once(state_dir: Path) -> dict[str, Any]:
    async with running_uem(state_dir) as uem:
        status, view = await uem.call(
            "PUT", body={"selected_ciphers": APPLIED, "disabled_ciphers": DISABLED_FIRST}
        )
        assert status == 200, view
        return dict(view)


async def test_applied_settings_are_stored_before_the_answer_and_win_after_a_restart(
    tmp_path: Path,
) -> None:
    async with asyncio.timeout(10):
        async with running_uem(tmp_path) as uem:
            _, before = await uem.call("GET")
            assert (before["source"], before["source_problem"]) == (SOURCE_CONFIG, None)
            assert before["settings"]["selected_ciphers"] == CONFIG_SELECTED
            status, applied = await uem.call(
                "PUT", body={"selected_ciphers": APPLIED, "disabled_ciphers": DISABLED_FIRST}
            )
            assert status == 200, applied
            # Durable when the API answers: no waiting for the registry's batched flush.
            row = stored_row(tmp_path)
            assert row is not None
            assert row["selected_ciphers"] == APPLIED
            assert row["applied"] == 1
        async with running_uem(tmp_path) as uem:
            _, after = await uem.call("GET")
    assert after["source"] == SOURCE_STORED
    assert after["source_problem"] is None
    assert after["generation"] == 1
    assert after["settings"]["selected_ciphers"] == APPLIED
    assert after["settings"]["disabled_ciphers"][:2] == DISABLED_FIRST
    assert after["settings"] == applied["settings"]


async def test_reset_is_stored_and_the_default_wins_over_the_config_after_a_restart(
    tmp_path: Path,
) -> None:
    async with asyncio.timeout(10):
        await apply_once(tmp_path)
        async with running_uem(tmp_path) as uem:
            status, reset = await uem.call("POST", PATH + "/reset")
            assert status == 200, reset
            assert (reset["source"], reset["generation"]) == (SOURCE_STORED, 2)
        async with running_uem(tmp_path) as uem:
            _, after = await uem.call("GET")
    assert after["settings"] == OutgoingTlsSettings.default().to_dict()
    assert (after["source"], after["generation"]) == (SOURCE_STORED, 2)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (
            json.dumps(
                {
                    "selected_ciphers": ["TLS_FUTURE_SUITE_SHA512"],
                    "disabled_ciphers": [],
                    "applied": 3,
                    "at": 5.0,
                }
            ),
            "selected_ciphers[0]: unknown TLS 1.2 cipher suite 'TLS_FUTURE_SUITE_SHA512'",
        ),
        ("{not json", "not valid JSON"),
        (json.dumps({"selected_ciphers": APPLIED}), "missing 'disabled_ciphers'"),
        (
            json.dumps(
                {"selected_ciphers": APPLIED, "disabled_ciphers": [], "applied": -1, "at": 0}
            ),
            "outgoing_tls.applied: expected a count, got -1",
        ),
    ],
)
async def test_a_stored_row_that_no_longer_validates_warns_and_the_config_is_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, data: str, words: str
) -> None:
    async with asyncio.timeout(10):
        await apply_once(tmp_path)
        write_row(tmp_path, data)
        caplog.set_level(logging.WARNING, logger="uem_sim")
        async with running_uem(tmp_path) as uem:
            _, view = await uem.call("GET")
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1
            message = warnings[0].getMessage()
            assert message.startswith("stored outgoing TLS settings not used: ")
            assert words in message
            assert str(tmp_path / DB_NAME) in message
            assert view["source"] == SOURCE_CONFIG
            assert view["source_problem"] == message
            assert view["settings"]["selected_ciphers"] == CONFIG_SELECTED
            assert view["generation"] == 0
            # Applying again replaces the bad row and clears the problem.
            status, fixed = await uem.call("PUT", body={"selected_ciphers": APPLIED})
            assert status == 200, fixed
            assert (fixed["source"], fixed["source_problem"]) == (SOURCE_STORED, None)
        assert (stored_row(tmp_path) or {}).get("selected_ciphers") == APPLIED


async def test_without_a_state_dir_the_config_default_works_and_applies_are_not_kept() -> None:
    async with asyncio.timeout(10):
        async with running_uem(None, lab={}) as uem:
            _, first = await uem.call("GET")
            assert first["settings"] == OutgoingTlsSettings.default().to_dict()
            assert (first["source"], first["source_problem"], first["generation"]) == (
                SOURCE_CONFIG,
                None,
                0,
            )
            status, applied = await uem.call("PUT", body={"selected_ciphers": APPLIED})
            assert status == 200, applied
            assert applied["source"] == SOURCE_MEMORY
        async with running_uem(None, lab={}) as uem:
            _, again = await uem.call("GET")
    assert again["settings"] == OutgoingTlsSettings.default().to_dict()
    assert again["source"] == SOURCE_CONFIG


async def test_a_failed_store_write_answers_500_and_the_view_says_not_stored(
    tmp_path: Path,
) -> None:
    async with asyncio.timeout(10), running_uem(tmp_path) as uem:
        # A closed database stands in for a full or read-only disk.
        uem.app[UEM].store.close()
        status, answer = await uem.call("PUT", body={"selected_ciphers": APPLIED})
        assert status == 500
        assert answer["error"].startswith("outgoing TLS settings applied but not stored in ")
        _, view = await uem.call("GET")
        assert view["settings"]["selected_ciphers"] == APPLIED
        assert view["source"] == SOURCE_UNSTORED
        assert view["source_problem"] == answer["error"]
    assert stored_row(tmp_path) is None


@given(
    st.lists(st.sampled_from(SUITES), min_size=1, unique=True),
    st.integers(min_value=0, max_value=10**6),
    st.floats(min_value=0, max_value=1e10),
)
def test_the_stored_row_round_trips(selected: list[Any], applied: int, at: float) -> None:
    settings = OutgoingTlsSettings.from_lists([s.iana for s in selected])
    stored = StoredOutgoingTls(settings=settings, applied=applied, at=at)
    assert outgoing_tls_from_dict(outgoing_tls_to_dict(stored), "row") == stored


_KEYS = st.sampled_from(["selected_ciphers", "disabled_ciphers", "applied", "at", "extra"])
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.lists(st.one_of(st.text(max_size=40), st.sampled_from([s.iana for s in SUITES]))),
)


@given(st.one_of(st.dictionaries(_KEYS, _VALUES), _VALUES))
def test_mangled_rows_load_or_raise_only_the_outgoing_tls_error(data: Any) -> None:
    try:
        stored: StoredOutgoingTls | OutgoingTlsError = outgoing_tls_from_dict(data, "row")
    except OutgoingTlsError as exc:
        stored = exc
    if isinstance(stored, OutgoingTlsError):
        assert stored.path.startswith("row")
    else:
        assert set(stored.settings.selected) | set(stored.settings.disabled) == set(SUITES)
