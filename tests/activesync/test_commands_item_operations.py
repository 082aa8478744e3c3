"""ItemOperations views: the spec Fetch request, Fetch results with email properties, errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activesync.commands.airsyncbase import Body, BodyPreference, BodyType
from activesync.commands.email_item import EmailItem
from activesync.commands.item_operations import (
    FetchOptions,
    FetchRequest,
    FetchResult,
    ItemOperationsRequest,
    ItemOperationsResponse,
    ItemOperationsStatus,
)
from activesync.errors import CommandError
from activesync.wbxml import decode, encode, from_xml
from activesync.wbxml.tree import E

IO = "ItemOperations"
A = "AirSync"
ids = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=64)
text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FFF))

fetch_options = st.builds(
    FetchOptions,
    body_preferences=st.lists(
        st.builds(
            BodyPreference,
            st.sampled_from(BodyType),
            truncation_size=st.none() | st.integers(0, 10**6),
        ),
        max_size=2,
    ).map(tuple),
    mime_support=st.none() | st.integers(0, 2),
    extra=st.just(()) | st.just((E(IO, "Range", text="0-99"),)),
)
fetches = st.builds(
    FetchRequest,
    store=st.just("Mailbox"),
    collection_id=st.none() | ids,
    server_id=st.none() | ids,
    long_id=st.none() | ids,
    file_reference=st.none() | ids,
    options=st.none() | fetch_options,
)
requests = st.builds(
    ItemOperationsRequest,
    st.lists(
        fetches | st.just(E(IO, "EmptyFolderContents", E(A, "CollectionId", text="4"))),
        min_size=1,
        max_size=3,
    ).map(tuple),
)
properties = st.none() | st.builds(
    EmailItem, subject=st.none() | text, read=st.none() | st.booleans()
).map(EmailItem.to_properties)
results = st.builds(
    FetchResult,
    status=st.integers(0, 999),
    collection_id=st.none() | ids,
    server_id=st.none() | ids,
    class_=st.none() | st.just("Email"),
    properties=properties,
)
responses = st.builds(
    ItemOperationsResponse,
    status=st.integers(0, 999),
    results=st.none() | st.lists(results, max_size=3).map(tuple),
)


def test_spec_fetch_request_reads_store_ids_and_body_preference() -> None:
    # MS-ASCMD / MS-ASTASK 4.3-shaped request.
    el = from_xml(
        """<ItemOperations xmlns="ItemOperations:" xmlns:airsync="AirSync:"
                          xmlns:airsyncbase="AirSyncBase:">
          <Fetch>
            <Store>Mailbox</Store>
            <airsync:CollectionId>11</airsync:CollectionId>
            <airsync:ServerId>11:1</airsync:ServerId>
            <Options>
              <airsyncbase:BodyPreference>
                <airsyncbase:Type>1</airsyncbase:Type>
                <airsyncbase:TruncationSize>256</airsyncbase:TruncationSize>
                <airsyncbase:AllOrNone>0</airsyncbase:AllOrNone>
              </airsyncbase:BodyPreference>
            </Options>
          </Fetch>
        </ItemOperations>"""
    )
    request = ItemOperationsRequest.from_element(el)
    assert request.fetches == (
        FetchRequest(
            collection_id="11",
            server_id="11:1",
            options=FetchOptions(
                body_preferences=(BodyPreference(BodyType.PLAIN, 256, all_or_none=False),)
            ),
        ),
    )
    assert request.to_element() == el


def test_fetch_response_carries_email_properties() -> None:
    item = EmailItem(subject="Lunch", body=Body(type=BodyType.PLAIN, data="See you"))
    response = ItemOperationsResponse(
        status=ItemOperationsStatus.SUCCESS,
        results=(
            FetchResult(
                status=1,
                collection_id="5",
                server_id="5:1",
                class_="Email",
                properties=item.to_properties(),
            ),
        ),
    )
    el = response.to_element()
    fetch = el.find("Response/Fetch")
    assert fetch is not None
    assert [c.tag for c in fetch.children] == [
        "Status",
        "CollectionId",
        "ServerId",
        "Class",
        "Properties",
    ]
    parsed = ItemOperationsResponse.from_element(decode(encode(el)))
    result = parsed.results[0]  # type: ignore[index]
    assert isinstance(result, FetchResult)
    assert result.properties is not None
    assert EmailItem.from_properties(result.properties) == item


@given(requests)
def test_request_round_trips_through_tree_and_bytes(request: ItemOperationsRequest) -> None:
    assert ItemOperationsRequest.from_element(request.to_element()) == request
    assert ItemOperationsRequest.from_element(decode(encode(request.to_element()))) == request


@given(responses)
def test_response_round_trips_through_tree_and_bytes(response: ItemOperationsResponse) -> None:
    assert ItemOperationsResponse.from_element(response.to_element()) == response
    assert ItemOperationsResponse.from_element(decode(encode(response.to_element()))) == response


def test_fetch_without_store_names_its_path() -> None:
    el = E(IO, "ItemOperations", E(IO, "Fetch", E(A, "ServerId", text="5:1")))
    with pytest.raises(
        CommandError, match=r"ItemOperations/Fetch\[0\]: missing .*<ItemOperations:Store>"
    ):
        ItemOperationsRequest.from_element(el)


def test_empty_request_is_refused() -> None:
    with pytest.raises(CommandError, match="at least one Fetch"):
        ItemOperationsRequest.from_element(E(IO, "ItemOperations"))


def test_response_without_status_is_refused() -> None:
    with pytest.raises(CommandError, match=r"missing required element <ItemOperations:Status>"):
        ItemOperationsResponse.from_element(E(IO, "ItemOperations"))


def test_non_integer_fetch_status_is_refused() -> None:
    el = E(
        IO,
        "ItemOperations",
        E(IO, "Status", text=1),
        E(IO, "Response", E(IO, "Fetch", E(IO, "Status", text="ok"))),
    )
    with pytest.raises(CommandError, match=r"Response/Fetch\[0\]/Status: expected an integer"):
        ItemOperationsResponse.from_element(el)


def test_wrong_root_is_refused() -> None:
    with pytest.raises(CommandError, match=r"<ItemOperations:ItemOperations>, got <AirSync:Sync>"):
        ItemOperationsRequest.from_element(E(A, "Sync"))
