"""The curated public API: every exported name resolves, shared views are one class, and the
package imports cleanly from any entry module (the commands <-> query import order)."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import pytest

import activesync
import activesync.commands
from activesync import Element
from activesync.commands import provision, settings
from activesync.commands.sync import (
    ItemChange,
    ItemFetch,
    ItemSoftDelete,
    ServerAdd,
    SyncCollectionResponse,
)
from activesync.errors import CommandError
from activesync.wbxml.tree import E

#: What the lead asked the top-level package to export (beside the errors and the tree).
REQUIRED_TOP_LEVEL = (
    "ProtocolVersion",
    "ALL_VERSIONS",
    "EasRequest",
    "parse_request",
    "build_plain_query",
    "build_base64_query",
    "split_user",
    "parse_policy_key",
    "Status",
    "ProvisionStatus",
    "PolicyStatus",
    "status_in_body",
    "http_equivalent",
    "COMMANDS",
    "command_info",
    "root_for",
    "commands_header",
    "versions_header",
    "EasAnswer",
    "status_answer",
    "blocked_answer",
    "device_limit_answer",
    "provisioning_needed_answer",
    "remote_wipe_needed_answer",
    "WBXML_CONTENT_TYPE",
    "ProvisionDoc",
    "ProvisionRequest",
    "ProvisionResponse",
    "DeviceInformation",
    "PolicyKeyMachine",
    "PolicyState",
    "KeyCheck",
    "answer_provision",
    "encode",
    "decode",
    "to_xml",
    "from_xml",
    "ActiveSyncError",
    "CommandError",
    "E",
    "Element",
    "QueryError",
    "WbxmlError",
    "XmlFormError",
)


@pytest.mark.parametrize("package", [activesync, activesync.commands])
def test_every_name_in_all_resolves(package: ModuleType) -> None:
    names: list[str] = package.__all__
    missing = [n for n in names if not hasattr(package, n)]
    assert missing == []
    assert len(names) == len(set(names))


def test_top_level_exports_the_requested_names() -> None:
    assert sorted(set(REQUIRED_TOP_LEVEL) - set(activesync.__all__)) == []


def test_device_information_is_one_class_for_settings_and_provision() -> None:
    assert provision.DeviceInformation is settings.DeviceInformation
    assert activesync.DeviceInformation is settings.DeviceInformation


def test_device_information_error_names_its_parent_path() -> None:
    model = E("Settings", "Model", text="x" * 1025)
    bad = E("Settings", "DeviceInformation", E("Settings", "Set", model))
    with pytest.raises(
        CommandError,
        match=r"^Provision/DeviceInformation/Set/Model: expected at most 1024 characters, got 1025",
    ):
        provision.DeviceInformation.from_element(bad, where="Provision")


@pytest.mark.parametrize(
    "module", ["activesync.query", "activesync.commands.provision", "activesync.provisioning"]
)
def test_fresh_interpreter_imports_entry_module(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_server_add_and_change_share_shape_but_not_type() -> None:
    add, change = ServerAdd(server_id="1:1"), ItemChange(server_id="1:1")
    assert add != change
    assert (add.to_element().tag, change.to_element().tag) == ("Add", "Change")
    assert ItemSoftDelete("1:2") != ItemFetch("1:2")
    assert ItemFetch.from_element(ItemFetch("1:2").to_element(), "x") == ItemFetch("1:2")


def test_unknown_server_command_lists_the_allowed_tags() -> None:
    coll: Element = E(
        "AirSync",
        "Collection",
        E("AirSync", "SyncKey", text="1"),
        E("AirSync", "CollectionId", text="1"),
        E("AirSync", "Status", text="1"),
        E("AirSync", "Commands", E("AirSync", "Fetch", E("AirSync", "ServerId", text="1:1"))),
    )
    with pytest.raises(
        CommandError, match=r"expected Add, Change, Delete or SoftDelete, got <AirSync:Fetch>"
    ):
        SyncCollectionResponse.from_element(coll, "Sync/Collections/Collection[0]")
