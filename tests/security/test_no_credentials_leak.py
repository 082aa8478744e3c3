"""No credential ever appears in logs, events, reports or printed output (issue 7, item 4).

A lab-like flow runs with logging captured at DEBUG and both event buses subscribed: phones
authenticate with Basic auth through the gatekeeper (a right and a wrong password), the admin
APIs are called with the right token and with wrong ones, the UEM blocks and allows. Then every
place a credential could leak is searched for the passwords, the Authorization header values
(and their base64 payloads) and the admin token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from device_sim.client import FolderSync, Provision, Sync
from scenarios.cli_lab import describe
from scenarios.lab import Lab, LabConfig
from scenarios.serving import write_ready_file

ADMIN_TOKEN = "AdminTok-7f3c9a1e5b2d4c6e8a0b"
WRONG_TOKEN = "WrongTok-0d1e2f3a4b5c6d7e8f90"
WRONG_PASSWORD = "Wr0ng-Passw0rd-Guess"


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _secrets(lab: Lab) -> list[str]:
    found = [ADMIN_TOKEN, WRONG_TOKEN, WRONG_PASSWORD]
    for user in lab.config.users:
        found.append(user.password)
        found.append(_basic(user.name, user.password))
    found.append(_basic("alice", WRONG_PASSWORD))
    return found


def _leaks(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s and s in text]


async def test_a_lab_flow_leaks_no_credential_anywhere(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    seen_events: list[str] = []
    async with asyncio.timeout(30), Lab(LabConfig.default(), admin_token=ADMIN_TOKEN) as lab:
        lab.bus.subscribe(lambda e: seen_events.append(json.dumps(e.to_json(), default=str)))
        lab.uem_events.subscribe(lambda e: seen_events.append(repr(e)))
        # A registered phone through the gatekeeper (Basic auth on every request).
        phone = lab.device("alice", "ALICEIPHONE01")
        assert (await phone.run_script([Provision(), FolderSync(), Sync()])).succeeded
        # A wrong password: Exchange refuses it behind the gatekeeper.
        wrong = lab.device("alice", "ALICEIPHONE01", password=WRONG_PASSWORD)
        await wrong.run_script([FolderSync()])
        # Admin calls: right token, then wrong tokens on every admin API.
        await lab.admin_action("alice", "ALICEIPHONE01", "block", note="leak test")
        await lab.admin_action("alice", "ALICEIPHONE01", "allow")
        await lab.eas_devices()
        await lab.deliver_mail("alice", "hello")
        bad = {"Authorization": f"Bearer {WRONG_TOKEN}"}
        answers: list[str] = []
        async with aiohttp.ClientSession() as session:
            for url in (
                lab.sentry_admin_url + "/api/stats",
                lab.uem_admin_url + "/api/v1/eas/devices",
                lab.exchange_url + "/admin/mailboxes",
            ):
                async with session.get(url, headers=bad) as r:
                    assert r.status == 401
                    answers.append(await r.text())
                    answers.extend(r.headers.values())
        gatekeeper_events = await lab.sentry_events()
        uem_view = await lab.eas_devices()
        record = await lab.sentry_record("alice", "ALICEIPHONE01")
        ready = tmp_path / "ready.json"
        write_ready_file(ready, lab.ready_payload())
        secrets = _secrets(lab)

    assert seen_events, "the buses emitted nothing: the flow did not run"
    assert gatekeeper_events, "the gatekeeper's /api/events is empty: the flow did not run"
    places: dict[str, Any] = {
        "logs": caplog.text,
        "gatekeeper bus": "\n".join(seen_events),
        "gatekeeper /api/events": json.dumps(gatekeeper_events),
        "UEM ActiveSync view": json.dumps(uem_view),
        "gatekeeper explain": json.dumps(record),
        "refusals": "\n".join(answers),
    }
    leaked = {where: _leaks(text, secrets) for where, text in places.items()}
    assert {w: s for w, s in leaked.items() if s} == {}
    # The one place the token belongs: the ready file, readable by its owner only.
    assert json.loads(ready.read_text())["admin_token"] == ADMIN_TOKEN
    assert stat.S_IMODE(os.stat(ready).st_mode) == 0o600


async def test_lab_start_up_lines_print_no_password_and_no_token(tmp_path: Path) -> None:
    """What ``sentry-sim lab`` prints once it is up (``scenarios.cli_lab.describe``)."""
    async with asyncio.timeout(30), Lab(LabConfig.default(), admin_token=ADMIN_TOKEN) as lab:
        printed = "\n".join(describe(lab, tmp_path / "ready.json", token_given=True))
        secrets = _secrets(lab)
    assert "ready.json" in printed
    assert _leaks(printed, secrets) == []
