"""The command table: codes, roots, OPTIONS order and version ranges."""

from __future__ import annotations

import pytest

from activesync.commands.roots import (
    COMMAND_NAMES,
    command_by_code,
    command_info,
    commands_header,
    require_supported,
    root_for,
)
from activesync.errors import QueryError
from activesync.versions import ProtocolVersion

V = ProtocolVersion

SPEC_OPTIONS_14_0 = (
    "Sync,SendMail,SmartForward,SmartReply,GetAttachment,GetHierarchy,CreateCollection,"
    "DeleteCollection,MoveCollection,FolderSync,FolderCreate,FolderDelete,FolderUpdate,MoveItems,"
    "GetItemEstimate,MeetingResponse,Search,Settings,Ping,ItemOperations,Provision,"
    "ResolveRecipients,ValidateCert"
)


def test_options_commands_header_matches_the_spec_example_and_adds_find_for_16_1() -> None:
    assert commands_header(V.V14_0) == SPEC_OPTIONS_14_0
    assert commands_header(V.V16_1) == SPEC_OPTIONS_14_0 + ",Find"


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (0, "Sync"),
        (1, "SendMail"),
        (2, "SmartForward"),
        (3, "SmartReply"),
        (4, "GetAttachment"),
        (9, "FolderSync"),
        (10, "FolderCreate"),
        (11, "FolderDelete"),
        (12, "FolderUpdate"),
        (13, "MoveItems"),
        (14, "GetItemEstimate"),
        (15, "MeetingResponse"),
        (16, "Search"),
        (17, "Settings"),
        (18, "Ping"),
        (19, "ItemOperations"),
        (20, "Provision"),
        (21, "ResolveRecipients"),
        (22, "ValidateCert"),
        (23, "Find"),
    ],
)
def test_base64_command_codes(code: int, name: str) -> None:
    assert command_by_code(code).name == name
    assert command_info(name).code == code


@pytest.mark.parametrize("code", [5, 6, 7, 8, 24, 255])
def test_unassigned_codes_are_501_137(code: int) -> None:
    with pytest.raises(QueryError) as info:
        command_by_code(code)
    assert (info.value.http_status, info.value.eas_status) == (501, 137)


def test_get_attachment_and_legacy_commands_have_no_root() -> None:
    for name in ("GetAttachment", "GetHierarchy", "CreateCollection"):
        assert root_for(name, V.V12_1) is None


def test_compose_mail_roots_apply_from_14_0() -> None:
    assert root_for("SendMail", V.V12_1) is None
    assert root_for("SendMail", V.V14_0) == ("ComposeMail", "SendMail")


def test_version_ranges() -> None:
    require_supported("Settings", V.V12_0)
    require_supported("Find", V.V16_1)
    for name, version in (
        ("Settings", V.V2_5),
        ("Find", V.V16_0),
        ("GetAttachment", V.V14_0),
        ("ItemOperations", V.V2_5),
    ):
        with pytest.raises(QueryError) as info:
            require_supported(name, version)
        assert info.value.eas_status == 138


def test_command_names_are_unique() -> None:
    assert len(set(COMMAND_NAMES)) == len(COMMAND_NAMES) == 24
