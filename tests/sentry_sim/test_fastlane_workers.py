"""``sentry-sim sentry --workers 2``: two gatekeeper processes on one port, each its own cache."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from sentry_sim.config import ConfigError, SentryConfig
from sentry_sim.lane.workers import plan
from tests.sentry_sim.fakes import FakeUem, FakeUpstream, headers, query

ROOT = Path(__file__).resolve().parents[2]
CODE = (
    "import argparse, sys; from scenarios import cli_sentry; p = argparse.ArgumentParser(); "
    "cli_sentry.register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); "
    "sys.exit(a.func(a))"
)


def test_workers_setting_is_validated() -> None:
    assert SentryConfig.from_mapping({"workers": 4}).workers == 4
    with pytest.raises(ConfigError, match=r"sentry.workers: expected an integer 1..64, got 0"):
        SentryConfig.from_mapping({"workers": 0}, "lab.yaml")
    with pytest.raises(ConfigError, match=r"sentry.fast_lane: expected true or false"):
        SentryConfig.from_mapping({"fast_lane": "yes"}, "lab.yaml")


def test_workers_get_their_own_id_admin_port_and_state_but_one_secret() -> None:
    specs = plan(
        3,
        host="127.0.0.1",
        port=4443,
        admin_port=8443,
        base_id="sentry-a",
        state_dir="/var/lib/sentry",
        policy_key_secret="ab" * 32,
    )
    assert [s.gatekeeper_id for s in specs] == ["sentry-a-w0", "sentry-a-w1", "sentry-a-w2"]
    assert [s.admin_port for s in specs] == [8443, 8444, 8445]
    assert [s.state_dir for s in specs] == [f"/var/lib/sentry/worker-{i}" for i in range(3)]
    assert {s.port for s in specs} == {4443}
    assert {s.policy_key_secret for s in specs} == {"ab" * 32}


async def test_two_workers_share_the_device_port_and_each_reports_on_its_own(
    tmp_path: Path, fake_uem: FakeUem, fake_upstream: FakeUpstream
) -> None:
    ready = tmp_path / "ready.json"
    lab = tmp_path / "lab.yaml"
    lab.write_text("sentry:\n  activesync_policy_mode: pass_through\n", encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CODE,
        "sentry",
        "--upstream",
        fake_upstream.url,
        "--uem",
        fake_uem.url,
        "--config",
        str(lab),
        "--workers",
        "2",
        "--ready-file",
        str(ready),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            while not ready.exists():
                assert proc.returncode is None, "sentry-sim sentry exited before it was ready"
                await asyncio.sleep(0.05)
            payload = json.loads(ready.read_text(encoding="utf-8"))
            workers = payload["workers"]
            assert len(workers) == 2
            assert len({w["pid"] for w in workers}) == 2
            assert len({w["admin_url"] for w in workers}) == 2
            assert {w["sentry_url"] for w in workers} == {payload["sentry_url"]}
            # Fresh connections spread over both workers; every request is answered.
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector) as session:
                for i in range(40):
                    url = payload["sentry_url"] + query(device=f"DEV{i}")
                    async with session.post(url, headers=headers()) as r:
                        assert r.status == 200
                auth = {"Authorization": f"Bearer {payload['admin_token']}"}
                records = []
                for worker in workers:
                    async with session.get(worker["admin_url"] + "/api/stats", headers=auth) as r:
                        records.append((await r.json())["records"])
            assert sum(records) == 40
            assert all(n > 0 for n in records), f"one worker took every connection: {records}"
            assert len(fake_uem.reports) == 40
            gatekeepers = {r.gatekeeper_id for r in fake_uem.reports}
            assert len(gatekeepers) == 2
            assert {g.gatekeeper_id for g in fake_uem.registrations} == gatekeepers
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
