"""The whole flow over loopback: real Exchange, UEM and gatekeeper in a Lab, real devices.

Every case runs at every protocol version (12.1, 14.0, 14.1, 16.0, 16.1) and in both query
forms (plain and base64): a registered compliant device is allowed and syncs mail; a
compromised one is blocked (HTTP 403 below 14.0, Status 129 from 14.0); a third device over the
mailbox limit is blocked (HTTP 403 up to 14.0, Status 177 from 14.1); a device the UEM marks
compromised is blocked after the push; an admin wipe brings RemoteWipe; the UEM down at first
contact (allow mode and block mode) with the correction arriving when it is back; a restart of
the gatekeeper that reloads its persisted device list.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from activesync.versions import ProtocolVersion
from device_sim.client import (
    DeviceState,
    FolderSync,
    Options,
    Provision,
    StepResult,
    Sync,
)
from device_sim.shell import DeviceRunner, ScriptReport
from device_sim.wire import QueryForm
from scenarios.lab import Lab, LabConfig, default_lab_mapping
from sentry_sim.device_list import record_key

VERSIONS = ("12.1", "14.0", "14.1", "16.0", "16.1")
FORMS = (QueryForm.PLAIN, QueryForm.BASE64)
CASES = [pytest.param(v, f, id=f"{v}-{f.value}") for v in VERSIONS for f in FORMS]
FIRST_CONTACT = (Options(), Provision(), FolderSync(), Sync())
SEEDED = 5
TIMEOUT_S = 15


def config(**sentry: Any) -> LabConfig:
    """The default lab, with quick report retries so an outage test stays fast."""
    mapping = default_lab_mapping()
    mapping["sentry"].update(
        {
            "first_access_wait_s": 3,
            "report_retry_initial_s": 0.05,
            "report_retry_max_s": 0.2,
            "uem_timeout_s": 2,
            **sentry,
        }
    )
    return LabConfig.from_mapping(mapping, "test lab")


@asynccontextmanager
async def running(lab_config: LabConfig | None = None) -> AsyncIterator[Lab]:
    async with asyncio.timeout(TIMEOUT_S), Lab(lab_config or config()) as lab:
        yield lab


def blocked_code(version: str, *, mailbox_limit: bool = False) -> int:
    """What the device must be told (activesync-notes section 7)."""
    v = ProtocolVersion.from_text(version)
    if v < ProtocolVersion.V14_0:
        return 403
    if mailbox_limit:
        return 177 if v >= ProtocolVersion.V14_1 else 403
    return 129


def device(
    lab: Lab, user: str, device_id: str, version: str, form: QueryForm, log: list[StepResult]
) -> DeviceRunner:
    return lab.device(user, device_id, version=version, form=form, on_result=log.append)


def inbox_count(runner: DeviceRunner) -> int:
    inbox = runner.client.folder_named("Inbox")
    assert inbox is not None, "the device never learned its Inbox"
    return len(runner.client.items.get(inbox.server_id, {}))


def summaries(report: ScriptReport) -> list[str]:
    return [f"{r.label}: {r.summary}" for r in report.results]


def assert_blocked(report: ScriptReport, code: int) -> None:
    assert report.state is DeviceState.BLOCKED, summaries(report)
    assert report.block is not None
    assert report.block.code == code, summaries(report)
    assert report.block.http_status == (403 if code == 403 else 200)


def events_of(lab: Lab, key: str, kind: str) -> list[dict[str, Any]]:
    return [
        e.to_json()
        for e in lab.bus.recent(lab.bus.history_size)
        if e.kind == kind and e.record == key
    ]


@pytest.mark.parametrize(("version", "form"), CASES)
async def test_registered_compliant_device_is_allowed_and_syncs_mail(
    version: str, form: QueryForm
) -> None:
    async with running() as lab:
        log: list[StepResult] = []
        alice = device(lab, "alice", "ALICEIPHONE01", version, form, log)
        report = await alice.run_script(FIRST_CONTACT)
        assert report.succeeded, summaries(report)
        assert alice.client.policy is not None
        assert alice.client.policy.restrictions["MinDevicePasswordLength"] == 6  # the UEM's
        assert inbox_count(alice) == SEEDED
        assert lab.sentry_state("alice", "ALICEIPHONE01") == "allowed"
        view = await lab.uem_explain("alice", "ALICEIPHONE01")
        assert view["group"] == "registered_allowed"
        await lab.deliver_mail("alice@example.com", "Quarterly numbers")
        again = await alice.run_script((Sync(),))
        assert again.succeeded, summaries(again)
        assert inbox_count(alice) == SEEDED + 1
        key = record_key("alice", "ALICEIPHONE01")
        assert len(events_of(lab, key, "report_queued")) == 1
        # Exchange demands its own policy key: the gatekeeper provisioned with it for the device.
        assert any(e["ok"] for e in events_of(lab, key, "upstream_provisioned"))


@pytest.mark.parametrize(("version", "form"), CASES)
async def test_compromised_device_is_blocked_as_its_version_expects(
    version: str, form: QueryForm
) -> None:
    async with running() as lab:
        log: list[StepResult] = []
        bob = device(lab, "bob", "BOBPIXEL01", version, form, log)
        report = await bob.run_script(FIRST_CONTACT)
        assert_blocked(report, blocked_code(version))
        record = await lab.sentry_record("bob", "BOBPIXEL01")
        assert record is not None
        assert record["state"] == "blocked"
        assert record["reason_names"] == ["COMPROMISED"]
        assert not events_of(lab, record_key("bob", "BOBPIXEL01"), "request_forwarded")


@pytest.mark.parametrize(("version", "form"), CASES)
async def test_third_device_over_the_mailbox_limit_is_blocked(
    version: str, form: QueryForm
) -> None:
    async with running() as lab:
        log: list[StepResult] = []
        for device_id in ("DAVEIPHONE01", "DAVEIPAD01"):
            first = await device(lab, "dave", device_id, version, form, log).run_script(
                FIRST_CONTACT
            )
            assert first.succeeded, summaries(first)
        third = await device(lab, "dave", "DAVEPIXEL01", version, form, log).run_script(
            FIRST_CONTACT
        )
        assert_blocked(third, blocked_code(version, mailbox_limit=True))
        explain = await lab.uem_explain("dave", "DAVEPIXEL01")
        assert explain["reason_names"] == ["PER_MAILBOX_LIMIT"]
        view = await lab.eas_devices()
        assert view["counts"]["registered_allowed"] == 2


@pytest.mark.parametrize(("version", "form"), CASES)
async def test_device_marked_compromised_in_the_uem_is_blocked_after_the_push(
    version: str, form: QueryForm
) -> None:
    async with running() as lab:
        log: list[StepResult] = []
        alice = device(lab, "alice", "ALICEIPHONE01", version, form, log)
        assert (await alice.run_script(FIRST_CONTACT)).succeeded
        await lab.set_posture("alice", "ALICEIPHONE01", compromised=True)
        await lab.wait_for_sentry_state("alice", "ALICEIPHONE01", "blocked", within=2)
        key = record_key("alice", "ALICEIPHONE01")
        assert any(e["source"] == "push" for e in events_of(lab, key, "decision_applied"))
        report = await alice.run_script((Sync(),))
        assert_blocked(report, blocked_code(version))


@pytest.mark.parametrize(("version", "form"), CASES)
async def test_admin_wipe_is_answered_with_remote_wipe(version: str, form: QueryForm) -> None:
    async with running() as lab:
        log: list[StepResult] = []
        alice = device(lab, "alice", "ALICEIPHONE01", version, form, log)
        assert (await alice.run_script(FIRST_CONTACT)).succeeded
        await lab.admin_action("alice", "ALICEIPHONE01", "wipe", "lost in a taxi")
        await lab.wait_for_sentry_state("alice", "ALICEIPHONE01", "wiped", within=2)
        report = await alice.run_script((Sync(),))
        assert report.state is DeviceState.WIPED, summaries(report)
        assert alice.client.wiped_at is not None
        phases = [
            e["phase"]
            for e in events_of(lab, record_key("alice", "ALICEIPHONE01"), "provision_answered")
        ]
        assert phases[-2:] == ["wipe", "wipe_acknowledged"]
        view = await lab.eas_devices()
        assert [r["device_id"] for r in view["groups"]["wiped"]] == ["ALICEIPHONE01"]


@pytest.mark.parametrize(("version", "form"), CASES)
async def test_uem_down_in_allow_mode_admits_then_the_late_answer_blocks(
    version: str, form: QueryForm
) -> None:
    async with running(config(uem_unreachable="allow")) as lab:
        await lab.uem_offline()
        log: list[StepResult] = []
        bob = device(lab, "bob", "BOBPIXEL01", version, form, log)
        report = await bob.run_script(FIRST_CONTACT)
        # Allowed by the unreachable-UEM rule, with the temporary default policy.
        assert report.succeeded, summaries(report)
        assert bob.client.policy is not None
        assert bob.client.policy.restrictions["MinDevicePasswordLength"] == 4
        record = await lab.sentry_record("bob", "BOBPIXEL01")
        assert record is not None
        assert record["fallback"] is True
        assert record["state"] == "allowed"
        await lab.uem_online()
        # The retried report reaches the UEM, whose answer (compromised) replaces the fallback.
        await lab.wait_for_sentry_state("bob", "BOBPIXEL01", "blocked", within=5)
        again = await bob.run_script((Sync(),))
        assert_blocked(again, blocked_code(version))


@pytest.mark.parametrize(("version", "form"), CASES)
async def test_uem_down_in_block_mode_refuses_then_the_late_answer_allows(
    version: str, form: QueryForm
) -> None:
    async with running(config(uem_unreachable="block")) as lab:
        await lab.uem_offline()
        log: list[StepResult] = []
        alice = device(lab, "alice", "ALICEIPHONE01", version, form, log)
        report = await alice.run_script(FIRST_CONTACT)
        assert_blocked(report, blocked_code(version))
        record = await lab.sentry_record("alice", "ALICEIPHONE01")
        assert record is not None
        assert record["fallback"] is True
        await lab.uem_online()
        await lab.wait_for_sentry_state("alice", "ALICEIPHONE01", "allowed", within=5)
        again = await alice.run_script((Provision(), FolderSync(), Sync()))
        assert again.succeeded, summaries(again)
        assert inbox_count(alice) == SEEDED


@pytest.mark.parametrize(("version", "form"), CASES)
async def test_gatekeeper_restart_reloads_its_persisted_device_list(
    version: str, form: QueryForm, tmp_path: Path
) -> None:
    async with running(config(state_dir=str(tmp_path / "sentry"))) as lab:
        log: list[StepResult] = []
        alice = device(lab, "alice", "ALICEIPHONE01", version, form, log)
        assert (await alice.run_script(FIRST_CONTACT)).succeeded
        bob = device(lab, "bob", "BOBPIXEL01", version, form, log)
        assert_blocked(await bob.run_script(FIRST_CONTACT), blocked_code(version))
        # With the UEM gone, only the persisted list can know these devices after the restart.
        await lab.uem_offline()
        mark = lab.bus.emitted
        await lab.restart_sentry()
        loaded = [
            e for e in lab.bus.recent(lab.bus.emitted - mark) if e.kind == "device_list_loaded"
        ]
        assert loaded
        assert loaded[-1].to_json()["records"] == 2
        assert lab.sentry_state("alice", "ALICEIPHONE01") == "allowed"
        assert lab.sentry_state("bob", "BOBPIXEL01") == "blocked"
        log.clear()
        again = await alice.run_script((Sync(),))
        assert again.succeeded, summaries(again)
        # The policy key survived the restart: no re-provisioning.
        assert all(r.command != "Provision" for r in log), [r.label for r in log]
        assert_blocked(await bob.run_script((Sync(),)), blocked_code(version))
        since_restart = list(lab.bus.recent(lab.bus.emitted - mark))
        assert not [e for e in since_restart if e.kind == "report_queued"]
        await lab.uem_online()
