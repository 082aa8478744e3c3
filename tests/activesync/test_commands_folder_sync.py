"""FolderSync views: spec-shaped bodies, round trips (tree and WBXML bytes), malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activesync.commands.folder_sync import (
    FolderChanges,
    FolderEntry,
    FolderSyncRequest,
    FolderSyncResponse,
    FolderSyncStatus,
)
from activesync.commands.folder_types import FolderType
from activesync.errors import CommandError
from activesync.wbxml import decode, encode, from_xml
from activesync.wbxml.tree import E

FH = "FolderHierarchy"

# Printable text without NUL/controls: what WBXML inline strings carry.
text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FFF))
ids = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=64)

entries = st.builds(
    FolderEntry,
    server_id=ids,
    parent_id=ids,
    display_name=text,
    type=st.sampled_from(FolderType),
)


@st.composite
def changes(draw: st.DrawFn) -> FolderChanges:
    adds = tuple(draw(st.lists(entries, max_size=4)))
    updates = tuple(draw(st.lists(entries, max_size=3)))
    deletes = tuple(draw(st.lists(ids, max_size=3)))
    with_count = draw(st.booleans())
    if with_count:
        return FolderChanges.of(adds=adds, updates=updates, deletes=deletes)
    return FolderChanges(adds=adds, updates=updates, deletes=deletes)


responses = st.builds(
    FolderSyncResponse,
    status=st.integers(0, 999),
    sync_key=st.none() | ids,
    changes=st.none() | changes(),
)


def test_initial_request_from_spec_example_reads_sync_key_zero() -> None:
    # MS-ASCMD 4.5.1: the first FolderSync of a device.
    el = from_xml('<FolderSync xmlns="FolderHierarchy:"><SyncKey>0</SyncKey></FolderSync>')
    assert FolderSyncRequest.from_element(el) == FolderSyncRequest("0")
    assert FolderSyncRequest("0").to_element() == el


def test_initial_response_from_spec_shaped_body_reads_every_folder() -> None:
    el = from_xml(
        """<FolderSync xmlns="FolderHierarchy:">
          <Status>1</Status>
          <SyncKey>1</SyncKey>
          <Changes>
            <Count>3</Count>
            <Add><ServerId>1</ServerId><ParentId>0</ParentId>
                 <DisplayName>Calendar</DisplayName><Type>8</Type></Add>
            <Add><ServerId>2</ServerId><ParentId>0</ParentId>
                 <DisplayName>Inbox</DisplayName><Type>2</Type></Add>
            <Add><ServerId>3</ServerId><ParentId>2</ParentId>
                 <DisplayName>Projects</DisplayName><Type>12</Type></Add>
          </Changes>
        </FolderSync>"""
    )
    response = FolderSyncResponse.from_element(el)
    assert response.status == FolderSyncStatus.SUCCESS
    assert response.sync_key == "1"
    assert response.changes is not None
    assert response.changes.count == 3
    assert [(a.server_id, a.display_name, a.type) for a in response.changes.adds] == [
        ("1", "Calendar", FolderType.CALENDAR),
        ("2", "Inbox", FolderType.INBOX),
        ("3", "Projects", FolderType.USER_MAIL),
    ]
    assert response.to_element() == el


def test_changes_of_writes_count_then_update_delete_add() -> None:
    inbox = FolderEntry("2", "0", "Inbox", FolderType.INBOX)
    built = FolderChanges.of(adds=(inbox,), deletes=("9",), updates=(inbox,)).to_element()
    assert [c.tag for c in built.children] == ["Count", "Update", "Delete", "Add"]
    assert built.child_text("Count") == "3"


def test_error_form_is_status_only() -> None:
    el = FolderSyncResponse(status=FolderSyncStatus.INVALID_SYNC_KEY).to_element()
    assert el == E(FH, "FolderSync", E(FH, "Status", text=9))


@given(st.builds(FolderSyncRequest, ids))
def test_request_round_trips_through_tree_and_bytes(request: FolderSyncRequest) -> None:
    assert FolderSyncRequest.from_element(request.to_element()) == request
    assert FolderSyncRequest.from_element(decode(encode(request.to_element()))) == request


@given(responses)
def test_response_round_trips_through_tree_and_bytes(response: FolderSyncResponse) -> None:
    assert FolderSyncResponse.from_element(response.to_element()) == response
    assert FolderSyncResponse.from_element(decode(encode(response.to_element()))) == response


def test_wrong_root_is_refused_naming_both_elements() -> None:
    with pytest.raises(CommandError, match=r"expected root element <FolderHierarchy:FolderSync>"):
        FolderSyncRequest.from_element(E("AirSync", "Sync"))


def test_request_without_sync_key_names_the_missing_element() -> None:
    with pytest.raises(CommandError, match=r"FolderSync: missing required element .*SyncKey"):
        FolderSyncRequest.from_element(E(FH, "FolderSync"))


def test_non_integer_status_names_the_element_and_value() -> None:
    el = E(FH, "FolderSync", E(FH, "Status", text="one"))
    with pytest.raises(CommandError, match=r"FolderSync/Status: expected an integer, got 'one'"):
        FolderSyncResponse.from_element(el)


def test_unknown_folder_type_is_refused() -> None:
    add = E(
        FH,
        "Add",
        E(FH, "ServerId", text="1"),
        E(FH, "ParentId", text="0"),
        E(FH, "DisplayName", text="x"),
        E(FH, "Type", text=77),
    )
    el = E(FH, "FolderSync", E(FH, "Status", text=1), E(FH, "Changes", add))
    with pytest.raises(CommandError, match=r"Type.*1\.\.19, got 77"):
        FolderSyncResponse.from_element(el)


def test_count_that_disagrees_with_entries_is_refused() -> None:
    el = E(FH, "FolderSync", E(FH, "Status", text=1), E(FH, "Changes", E(FH, "Count", text=2)))
    with pytest.raises(CommandError, match=r"Count.*says 2 changes but Changes holds 0"):
        FolderSyncResponse.from_element(el)


def test_overlong_sync_key_is_refused() -> None:
    with pytest.raises(CommandError, match=r"SyncKey.*at most 64 characters, got 65"):
        FolderSyncRequest("k" * 65)


def test_add_missing_display_name_names_its_path() -> None:
    add = E(
        FH, "Add", E(FH, "ServerId", text="1"), E(FH, "ParentId", text="0"), E(FH, "Type", text=2)
    )
    el = E(FH, "FolderSync", E(FH, "Status", text=1), E(FH, "Changes", add))
    with pytest.raises(CommandError, match=r"FolderSync/Changes/Add\[0\]: missing .*DisplayName"):
        FolderSyncResponse.from_element(el)


def test_mail_folder_types_are_marked() -> None:
    assert FolderType.INBOX.is_mail
    assert FolderType.USER_MAIL.is_mail
    assert not FolderType.CALENDAR.is_mail
