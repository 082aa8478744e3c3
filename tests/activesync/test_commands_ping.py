"""Ping views: the spec request, the empty body, the status-specific responses, malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activesync.commands.ping import PingFolder, PingRequest, PingResponse, PingStatus
from activesync.errors import CommandError
from activesync.wbxml import decode, encode, from_xml
from activesync.wbxml.tree import E

P = "Ping"
ids = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=64)
uint = st.integers(0, 0xFFFF_FFFF)

folders = st.builds(
    PingFolder, ids, st.sampled_from(["Email", "Calendar", "Contacts", "Tasks", "Notes"])
)
requests = st.builds(
    PingRequest,
    heartbeat_interval=st.none() | uint,
    folders=st.none() | st.lists(folders, max_size=5).map(tuple),
) | st.just(PingRequest(empty_body=True))
responses = st.builds(
    PingResponse,
    status=st.integers(0, 999),
    folders=st.none() | st.lists(ids, max_size=5).map(tuple),
    max_folders=st.none() | uint,
    heartbeat_interval=st.none() | uint,
)


def test_spec_request_reads_interval_and_folders() -> None:
    # MS-ASCMD 4.10.1-shaped request.
    el = from_xml(
        """<Ping xmlns="Ping:">
          <HeartbeatInterval>80</HeartbeatInterval>
          <Folders>
            <Folder><Id>5</Id><Class>Email</Class></Folder>
            <Folder><Id>8</Id><Class>Calendar</Class></Folder>
          </Folders>
        </Ping>"""
    )
    request = PingRequest.from_element(el)
    assert request == PingRequest(
        heartbeat_interval=80,
        folders=(PingFolder("5", "Email"), PingFolder("8", "Calendar")),
    )
    assert request.to_element() == el


def test_empty_body_means_reuse_last_parameters() -> None:
    request = PingRequest.from_element(None)
    assert request.empty_body
    assert request.to_element() is None


def test_empty_body_with_fields_is_refused() -> None:
    with pytest.raises(CommandError, match="empty Ping body"):
        PingRequest(empty_body=True, heartbeat_interval=60)


def test_changes_response_lists_folder_ids() -> None:
    el = PingResponse.changes(("5", "8")).to_element()
    assert el == E(
        P,
        "Ping",
        E(P, "Status", text=2),
        E(P, "Folders", E(P, "Folder", text="5"), E(P, "Folder", text="8")),
    )


def test_heartbeat_out_of_range_carries_the_bound() -> None:
    el = PingResponse.heartbeat_out_of_range(480).to_element()
    assert el.child_text("Status") == "5"
    assert el.child_text("HeartbeatInterval") == "480"


def test_too_many_folders_carries_max_folders() -> None:
    parsed = PingResponse.from_element(PingResponse.too_many_folders(200).to_element())
    assert parsed.status == PingStatus.TOO_MANY_FOLDERS
    assert parsed.max_folders == 200


def test_expired_is_status_one_only() -> None:
    assert PingResponse.expired().to_element() == E(P, "Ping", E(P, "Status", text=1))


@given(requests)
def test_request_round_trips_through_tree_and_bytes(request: PingRequest) -> None:
    el = request.to_element()
    assert PingRequest.from_element(el) == request
    if el is not None:
        assert PingRequest.from_element(decode(encode(el))) == request


@given(responses)
def test_response_round_trips_through_tree_and_bytes(response: PingResponse) -> None:
    assert PingResponse.from_element(response.to_element()) == response
    assert PingResponse.from_element(decode(encode(response.to_element()))) == response


def test_folder_without_class_names_its_path() -> None:
    el = E(P, "Ping", E(P, "Folders", E(P, "Folder", E(P, "Id", text="5"))))
    with pytest.raises(CommandError, match=r"Ping/Folders/Folder\[0\]: missing .*<Ping:Class>"):
        PingRequest.from_element(el)


def test_non_integer_heartbeat_is_refused() -> None:
    el = E(P, "Ping", E(P, "HeartbeatInterval", text="soon"))
    with pytest.raises(CommandError, match=r"Ping/HeartbeatInterval: expected an integer"):
        PingRequest.from_element(el)


def test_wrong_root_is_refused() -> None:
    with pytest.raises(
        CommandError, match=r"expected root element <Ping:Ping>, got <AirSync:Ping>"
    ):
        PingRequest.from_element(E("AirSync", "Ping"))


def test_response_without_status_is_refused() -> None:
    with pytest.raises(CommandError, match=r"Ping: missing required element <Ping:Status>"):
        PingResponse.from_element(E(P, "Ping"))


def test_unexpected_child_is_named() -> None:
    with pytest.raises(CommandError, match=r"Ping: unexpected element <Ping:MaxFolders>"):
        PingRequest.from_element(E(P, "Ping", E(P, "MaxFolders", text=3)))
