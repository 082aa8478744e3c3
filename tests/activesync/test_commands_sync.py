"""Sync views, EmailItem and the AirSyncBase pieces: spec bodies, round trips, malformed input."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activesync.commands.airsyncbase import Body, BodyPreference, BodyType
from activesync.commands.email_item import EmailItem, eas_datetime
from activesync.commands.sync import (
    AddResponse,
    ChangeResponse,
    ClientAdd,
    DeleteResponse,
    FetchResponse,
    ItemChange,
    ItemDelete,
    ItemFetch,
    ItemSoftDelete,
    ServerAdd,
    SyncCollectionRequest,
    SyncCollectionResponse,
    SyncOptions,
    SyncRequest,
    SyncResponse,
    SyncStatus,
)
from activesync.errors import CommandError
from activesync.wbxml import decode, encode, from_xml
from activesync.wbxml.tree import E

A = "AirSync"
B = "AirSyncBase"
M = "Email"

text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FFF))
ids = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=64)
uint = st.integers(0, 0xFFFF_FFFF)
opt_bool = st.none() | st.booleans()

body_preferences = st.builds(
    BodyPreference,
    type=st.sampled_from(BodyType),
    truncation_size=st.none() | uint,
    all_or_none=opt_bool,
    preview=st.none() | st.integers(0, 255),
)
bodies = st.builds(
    Body,
    type=st.sampled_from(BodyType),
    estimated_data_size=st.none() | uint,
    truncated=opt_bool,
    data=st.none() | text,
    preview=st.none() | text.map(lambda s: s[:255]),
)
dates = st.datetimes(
    min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(9999, 1, 1), timezones=st.just(dt.UTC)
).map(eas_datetime)
email_items = st.builds(
    EmailItem,
    to=st.none() | text,
    cc=st.none() | text,
    from_=st.none() | text,
    subject=st.none() | text,
    date_received=st.none() | dates,
    display_to=st.none() | text,
    importance=st.none() | st.integers(0, 2),
    read=opt_bool,
    message_class=st.none() | text,
    body=st.none() | bodies,
    extra=st.just(()) | st.just((E(M, "ContentClass", text="urn:content-classes:message"),)),
)
app_data = st.none() | email_items.map(EmailItem.to_application_data)
options = st.builds(
    SyncOptions,
    class_=st.none() | st.sampled_from(["Email", "SMS"]),
    filter_type=st.none() | st.integers(0, 8),
    body_preferences=st.lists(body_preferences, max_size=2).map(tuple),
    conflict=st.none() | st.integers(0, 1),
    mime_support=st.none() | st.integers(0, 2),
    mime_truncation=st.none() | st.integers(0, 8),
    max_items=st.none() | uint,
)
client_commands = st.one_of(
    st.builds(ClientAdd, client_id=ids, application_data=app_data, class_=st.none() | ids),
    st.builds(ItemChange, server_id=ids, application_data=app_data, class_=st.none() | ids),
    st.builds(ItemDelete, server_id=ids, class_=st.none() | ids),
    st.builds(ItemFetch, ids),
)
server_commands = st.one_of(
    st.builds(ServerAdd, server_id=ids, application_data=app_data, class_=st.none() | ids),
    st.builds(ItemChange, server_id=ids, application_data=app_data),
    st.builds(ItemDelete, server_id=ids),
    st.builds(ItemSoftDelete, ids),
)
item_responses = st.one_of(
    st.builds(
        AddResponse,
        client_id=ids,
        status=st.integers(0, 999),
        server_id=st.none() | ids,
        class_=st.none() | ids,
    ),
    st.builds(ChangeResponse, server_id=ids, status=st.integers(0, 999)),
    st.builds(DeleteResponse, server_id=ids, status=st.integers(0, 999)),
    st.builds(
        FetchResponse,
        status=st.integers(0, 999),
        server_id=st.none() | ids,
        application_data=app_data,
    ),
)
collection_requests = st.builds(
    SyncCollectionRequest,
    sync_key=ids,
    collection_id=ids,
    deletes_as_moves=opt_bool,
    get_changes=opt_bool,
    window_size=st.none() | uint,
    conversation_mode=opt_bool,
    options=st.lists(options, max_size=2).map(tuple),
    commands=st.none() | st.lists(client_commands, max_size=4).map(tuple),
)
sync_requests = st.builds(
    SyncRequest,
    collections=st.none() | st.lists(collection_requests, max_size=3).map(tuple),
    wait=st.none() | uint,
    heartbeat_interval=st.none() | uint,
    window_size=st.none() | uint,
    partial=st.booleans(),
) | st.just(SyncRequest(empty_body=True))
collection_responses = st.builds(
    SyncCollectionResponse,
    sync_key=ids,
    collection_id=ids,
    status=st.integers(0, 999),
    class_=st.none() | ids,
    more_available=st.booleans(),
    commands=st.none() | st.lists(server_commands, max_size=4).map(tuple),
    responses=st.none() | st.lists(item_responses, max_size=4).map(tuple),
)
sync_responses = st.builds(
    SyncResponse,
    status=st.none() | st.integers(0, 999),
    collections=st.none() | st.lists(collection_responses, max_size=3).map(tuple),
) | st.builds(SyncResponse.error, st.integers(0, 999), limit=st.none() | uint)


def test_initial_sync_request_from_spec_example() -> None:
    # MS-ASCMD 4.10.4.1 / 4.10.1: a folder's first Sync asks with SyncKey 0.
    el = from_xml(
        """<Sync xmlns="AirSync:">
          <Collections>
            <Collection>
              <SyncKey>0</SyncKey>
              <CollectionId>5</CollectionId>
            </Collection>
          </Collections>
        </Sync>"""
    )
    request = SyncRequest.from_element(el)
    assert request == SyncRequest(
        collections=(SyncCollectionRequest(sync_key="0", collection_id="5"),)
    )
    assert request.to_element() == el


def test_spec_request_with_bare_flags_and_options() -> None:
    el = from_xml(
        """<Sync xmlns="AirSync:" xmlns:airsyncbase="AirSyncBase:">
          <Collections>
            <Collection>
              <SyncKey>1</SyncKey>
              <CollectionId>7</CollectionId>
              <DeletesAsMoves/>
              <GetChanges/>
              <WindowSize>25</WindowSize>
              <Options>
                <FilterType>3</FilterType>
                <airsyncbase:BodyPreference>
                  <airsyncbase:Type>2</airsyncbase:Type>
                  <airsyncbase:TruncationSize>5120</airsyncbase:TruncationSize>
                </airsyncbase:BodyPreference>
              </Options>
            </Collection>
          </Collections>
        </Sync>"""
    )
    collection = SyncRequest.from_element(el).collections[0]  # type: ignore[index]
    assert collection.deletes_as_moves is True
    assert collection.get_changes is True
    assert collection.window_size == 25
    assert collection.options == (
        SyncOptions(
            filter_type=3, body_preferences=(BodyPreference(BodyType.HTML, truncation_size=5120),)
        ),
    )
    assert SyncRequest.from_element(el).to_element() == el


def test_empty_body_is_representable_and_writes_no_body() -> None:
    request = SyncRequest.from_element(None)
    assert request == SyncRequest(empty_body=True)
    assert request.to_element() is None


def test_server_add_with_email_item_reads_back_the_message() -> None:
    item = EmailItem(
        to='"Jane" <jane@example.com>',
        from_="bob@example.com",
        subject="Lunch",
        date_received="2009-07-29T19:25:37.817Z",
        importance=1,
        read=False,
        message_class="IPM.Note",
        body=Body(type=BodyType.PLAIN, estimated_data_size=5, truncated=False, data="Hello"),
    )
    response = SyncResponse(
        collections=(
            SyncCollectionResponse(
                sync_key="2",
                collection_id="5",
                status=SyncStatus.SUCCESS,
                commands=(ServerAdd(server_id="5:1", application_data=item.to_application_data()),),
            ),
        )
    )
    wire = decode(encode(response.to_element()))
    parsed = SyncResponse.from_element(wire)
    add = parsed.collections[0].commands[0]  # type: ignore[index]
    assert isinstance(add, ServerAdd)
    assert add.application_data is not None
    assert EmailItem.from_application_data(add.application_data) == item


def test_client_change_of_read_flag_carries_only_read() -> None:
    change = ItemChange(
        server_id="5:1", application_data=EmailItem(read=True).to_application_data()
    )
    assert change.to_element() == E(
        A, "Change", E(A, "ServerId", text="5:1"), E(A, "ApplicationData", E(M, "Read", text=1))
    )


def test_top_level_error_form() -> None:
    assert SyncResponse.error(SyncStatus.INVALID_WAIT, limit=59).to_element() == E(
        A, "Sync", E(A, "Status", text=14), E(A, "Limit", text=59)
    )


def test_collection_response_writes_spec_child_order() -> None:
    el = SyncCollectionResponse(
        sync_key="3",
        collection_id="5",
        status=1,
        more_available=True,
        commands=(ItemSoftDelete("5:9"),),
        responses=(AddResponse(client_id="c1", server_id="5:10", status=1),),
    ).to_element()
    assert [c.tag for c in el.children] == [
        "SyncKey",
        "CollectionId",
        "Status",
        "MoreAvailable",
        "Commands",
        "Responses",
    ]


def test_eas_datetime_uses_milliseconds_and_z() -> None:
    moment = dt.datetime(2009, 7, 29, 19, 25, 37, 817000, tzinfo=dt.UTC)
    assert eas_datetime(moment) == "2009-07-29T19:25:37.817Z"


@given(sync_requests)
def test_request_round_trips_through_tree_and_bytes(request: SyncRequest) -> None:
    el = request.to_element()
    assert SyncRequest.from_element(el) == request
    if el is not None:
        assert SyncRequest.from_element(decode(encode(el))) == request


@given(sync_responses)
def test_response_round_trips_through_tree_and_bytes(response: SyncResponse) -> None:
    assert SyncResponse.from_element(response.to_element()) == response
    assert SyncResponse.from_element(decode(encode(response.to_element()))) == response


@given(email_items)
def test_email_item_round_trips_through_application_data_and_properties(item: EmailItem) -> None:
    assert EmailItem.from_application_data(item.to_application_data()) == item
    assert EmailItem.from_properties(item.to_properties()) == item
    assert EmailItem.from_application_data(decode(encode(item.to_application_data()))) == item


def test_collection_without_collection_id_names_its_path() -> None:
    el = E(A, "Sync", E(A, "Collections", E(A, "Collection", E(A, "SyncKey", text=0))))
    with pytest.raises(
        CommandError, match=r"Sync/Collections/Collection\[0\]: missing .*<AirSync:CollectionId>"
    ):
        SyncRequest.from_element(el)


def test_non_integer_window_size_is_refused() -> None:
    coll = E(
        A,
        "Collection",
        E(A, "SyncKey", text=0),
        E(A, "CollectionId", text=5),
        E(A, "WindowSize", text="lots"),
    )
    el = E(A, "Sync", E(A, "Collections", coll))
    with pytest.raises(CommandError, match=r"Collection\[0\]/WindowSize: expected an integer"):
        SyncRequest.from_element(el)


def test_wrong_root_is_refused() -> None:
    with pytest.raises(CommandError, match=r"expected root element <AirSync:Sync>"):
        SyncResponse.from_element(E("Ping", "Ping"))


def test_server_only_command_in_client_request_is_refused() -> None:
    coll = E(
        A,
        "Collection",
        E(A, "SyncKey", text=1),
        E(A, "CollectionId", text=5),
        E(A, "Commands", E(A, "SoftDelete", E(A, "ServerId", text="5:1"))),
    )
    with pytest.raises(CommandError, match=r"Commands: expected Add, Change, Delete or Fetch"):
        SyncRequest.from_element(E(A, "Sync", E(A, "Collections", coll)))


def test_client_add_without_client_id_is_refused() -> None:
    coll = E(
        A,
        "Collection",
        E(A, "SyncKey", text=1),
        E(A, "CollectionId", text=5),
        E(A, "Commands", E(A, "Add", E(A, "ApplicationData"))),
    )
    with pytest.raises(CommandError, match=r"Commands/Add\[0\]: missing .*<AirSync:ClientId>"):
        SyncRequest.from_element(E(A, "Sync", E(A, "Collections", coll)))


def test_bad_body_type_is_refused() -> None:
    el = E(B, "BodyPreference", E(B, "Type", text=9))
    with pytest.raises(CommandError, match=r"<AirSyncBase:Type>: expected a body type 1\.\.4"):
        BodyPreference.from_element(el)


def test_bad_date_received_is_refused() -> None:
    el = E(A, "ApplicationData", E(M, "DateReceived", text="yesterday"))
    with pytest.raises(CommandError, match=r"ApplicationData/DateReceived: expected a date"):
        EmailItem.from_application_data(el)


def test_limit_with_collections_is_refused() -> None:
    el = E(A, "Sync", E(A, "Status", text=14), E(A, "Limit", text=59), E(A, "Collections"))
    with pytest.raises(CommandError, match="Limit and Collections are mutually exclusive"):
        SyncResponse.from_element(el)
