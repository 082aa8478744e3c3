"""GetItemEstimate views: both request shapes, responses, round trips, malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activesync.commands.get_item_estimate import (
    EstimateCollection,
    EstimateResponse,
    GetItemEstimateRequest,
    GetItemEstimateResponse,
    GetItemEstimateStatus,
)
from activesync.commands.sync import SyncOptions
from activesync.errors import CommandError
from activesync.wbxml import decode, encode, from_xml
from activesync.wbxml.tree import E

G = "GetItemEstimate"
A = "AirSync"
ids = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=64)
estimate_options = st.builds(
    SyncOptions,
    class_=st.none() | st.sampled_from(["Email", "SMS"]),
    filter_type=st.none() | st.integers(0, 8),
    max_items=st.none() | st.integers(0, 1000),
)
modern = st.builds(
    EstimateCollection,
    sync_key=ids,
    collection_id=ids,
    conversation_mode=st.none() | st.booleans(),
    options=st.lists(estimate_options, max_size=2).map(tuple),
)
legacy = st.builds(
    EstimateCollection,
    sync_key=ids,
    collection_id=ids,
    legacy_class=st.sampled_from(["Email", "Calendar"]),
    legacy_filter_type=st.none() | st.integers(0, 8),
)
requests = st.builds(
    GetItemEstimateRequest, st.lists(modern | legacy, min_size=1, max_size=4).map(tuple)
)
responses = st.builds(
    GetItemEstimateResponse,
    status=st.none() | st.integers(0, 999),
    responses=st.lists(
        st.builds(EstimateResponse, status=st.integers(0, 999))
        | st.builds(
            EstimateResponse,
            status=st.integers(0, 999),
            collection_id=ids,
            estimate=st.none() | st.integers(0, 10_000),
            class_=st.none() | st.just("Email"),
        ),
        max_size=3,
    ).map(tuple),
)


def test_spec_request_reads_sync_key_collection_and_options() -> None:
    # MS-ASCMD 4.9.1.
    el = from_xml(
        """<GetItemEstimate xmlns="GetItemEstimate:" xmlns:airsync="AirSync:">
          <Collections>
            <Collection>
              <airsync:SyncKey>785971245</airsync:SyncKey>
              <CollectionId>5</CollectionId>
              <airsync:Options>
                <airsync:FilterType>0</airsync:FilterType>
                <airsync:Class>Email</airsync:Class>
              </airsync:Options>
            </Collection>
          </Collections>
        </GetItemEstimate>"""
    )
    request = GetItemEstimateRequest.from_element(el)
    assert request == GetItemEstimateRequest(
        (
            EstimateCollection(
                sync_key="785971245",
                collection_id="5",
                options=(SyncOptions(class_="Email", filter_type=0),),
            ),
        )
    )


def test_legacy_collection_writes_class_id_filter_then_sync_key() -> None:
    el = EstimateCollection(
        sync_key="1", collection_id="5", legacy_class="Email", legacy_filter_type=0
    ).to_element()
    assert [(c.page, c.tag) for c in el.children] == [
        (G, "Class"),
        (G, "CollectionId"),
        (A, "FilterType"),
        (A, "SyncKey"),
    ]


def test_response_reads_estimate() -> None:
    el = E(
        G,
        "GetItemEstimate",
        E(
            G,
            "Response",
            E(G, "Status", text=1),
            E(G, "Collection", E(G, "CollectionId", text="5"), E(G, "Estimate", text=12)),
        ),
    )
    response = GetItemEstimateResponse.from_element(el)
    assert response.responses == (
        EstimateResponse(status=GetItemEstimateStatus.SUCCESS, collection_id="5", estimate=12),
    )
    assert response.to_element() == el


@given(requests)
def test_request_round_trips_through_tree_and_bytes(request: GetItemEstimateRequest) -> None:
    assert GetItemEstimateRequest.from_element(request.to_element()) == request
    assert GetItemEstimateRequest.from_element(decode(encode(request.to_element()))) == request


@given(responses)
def test_response_round_trips_through_tree_and_bytes(response: GetItemEstimateResponse) -> None:
    assert GetItemEstimateResponse.from_element(response.to_element()) == response
    assert GetItemEstimateResponse.from_element(decode(encode(response.to_element()))) == response


def test_missing_sync_key_names_the_airsync_element() -> None:
    el = E(
        G, "GetItemEstimate", E(G, "Collections", E(G, "Collection", E(G, "CollectionId", text=5)))
    )
    with pytest.raises(
        CommandError, match=r"Collection\[0\]: missing required element <AirSync:SyncKey>"
    ):
        GetItemEstimateRequest.from_element(el)


def test_empty_collections_is_refused() -> None:
    with pytest.raises(CommandError, match=r"expected 1\.\.300 .*Collection.* got 0"):
        GetItemEstimateRequest.from_element(E(G, "GetItemEstimate", E(G, "Collections")))


def test_non_integer_estimate_is_refused() -> None:
    el = E(
        G,
        "GetItemEstimate",
        E(
            G,
            "Response",
            E(G, "Status", text=1),
            E(G, "Collection", E(G, "CollectionId", text="5"), E(G, "Estimate", text="many")),
        ),
    )
    with pytest.raises(
        CommandError, match=r"Response\[0\]/Collection/Estimate: expected an integer"
    ):
        GetItemEstimateResponse.from_element(el)


def test_mixed_legacy_and_modern_shapes_are_refused() -> None:
    with pytest.raises(CommandError, match="cannot be mixed"):
        EstimateCollection(
            sync_key="1", collection_id="5", legacy_class="Email", options=(SyncOptions(),)
        )


def test_wrong_root_is_refused() -> None:
    with pytest.raises(CommandError, match=r"<GetItemEstimate:GetItemEstimate>"):
        GetItemEstimateRequest.from_element(E(A, "Sync"))
