"""The Locust file imports without Locust, and its synchronous device driver works on a fake."""

from __future__ import annotations

import sys

import pytest

from activesync.wbxml import encode
from activesync.wbxml.tree import E
from device_sim import DeviceClient, FolderSync, HttpRequest, HttpResponse
from loadtest import locustfile
from loadtest.locustfile import LocustDevice, Settings
from loadtest.results import Outcome


def folder_sync_answer(status: int) -> HttpResponse:
    body = encode(
        E(
            "FolderHierarchy",
            "FolderSync",
            E("FolderHierarchy", "Status", text=str(status)),
            E("FolderHierarchy", "SyncKey", text="1"),
            E("FolderHierarchy", "Changes", E("FolderHierarchy", "Count", text="0")),
        )
    )
    return HttpResponse(200, [("Content-Type", "application/vnd.ms-sync.wbxml")], body)


def test_the_module_imports_without_locust_and_makes_no_user_class() -> None:
    # Imported by anything but Locust, the file must not import locust (gevent patching).
    assert "locust" not in sys.modules
    assert not hasattr(locustfile, "EasDeviceUser")


def test_settings_give_each_user_its_own_registered_device() -> None:
    settings = Settings.from_environ({"SENTRY_SIM_DEVICES": "3", "SENTRY_SIM_DEVICE_OFFSET": "1"})
    ids = [settings.identity(k).device_id for k in range(4)]
    assert ids == ["LTREG000002", "LTREG000003", "LTREG000001", "LTREG000002"]
    assert settings.identity(0).user == "ltreg000002"


def test_bad_settings_name_the_variable() -> None:
    with pytest.raises(ValueError, match="SENTRY_SIM_DEVICES: expected a number"):
        Settings.from_environ({"SENTRY_SIM_DEVICES": "many"})


def test_driver_runs_a_step_through_the_send_function() -> None:
    sent: list[tuple[HttpRequest, str]] = []

    def send(request: HttpRequest, label: str) -> HttpResponse:
        sent.append((request, label))
        return folder_sync_answer(1)

    device = LocustDevice(DeviceClient(Settings().identity(0)), send)
    assert device.run_step(FolderSync()) == (Outcome.OK, None)
    assert [label for _, label in sent] == ["FolderSync"]
    assert "Cmd=FolderSync" in sent[0][0].path_and_query


def test_driver_reports_blocked_devices_and_connection_failures() -> None:
    blocked = LocustDevice(
        DeviceClient(Settings().identity(0)), lambda request, label: folder_sync_answer(129)
    )
    assert blocked.run_step(FolderSync()) == (Outcome.BLOCKED, 129)

    def refuse(request: HttpRequest, label: str) -> HttpResponse:
        raise ConnectionError("connection refused")

    gone = LocustDevice(DeviceClient(Settings().identity(1)), refuse)
    assert gone.run_step(FolderSync()) == (Outcome.CONNECTION_ERROR, None)
    assert not gone.client.busy
