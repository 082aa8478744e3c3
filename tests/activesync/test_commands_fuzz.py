"""Arbitrary trees built from the commands' own vocabulary: every view either reads them or
raises CommandError (never another exception), and what it reads writes back to the same value."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from activesync.commands.airsyncbase import Body, BodyPreference, BodyType
from activesync.commands.email_item import EmailItem
from activesync.commands.folder_sync import (
    FolderChanges,
    FolderEntry,
    FolderSyncRequest,
    FolderSyncResponse,
)
from activesync.commands.folder_types import FolderType
from activesync.commands.get_item_estimate import (
    EstimateCollection,
    GetItemEstimateRequest,
    GetItemEstimateResponse,
)
from activesync.commands.item_operations import (
    FetchResult,
    ItemOperationsRequest,
    ItemOperationsResponse,
)
from activesync.commands.ping import PingFolder, PingRequest, PingResponse
from activesync.commands.send_mail import SendMailRequest, SendMailResponse
from activesync.commands.settings import DeviceInformation, SettingsRequest, SettingsResponse
from activesync.commands.sync import (
    AddResponse,
    ClientAdd,
    ServerAdd,
    SyncCollectionRequest,
    SyncCollectionResponse,
    SyncOptions,
    SyncRequest,
    SyncResponse,
)
from activesync.errors import CommandError
from activesync.wbxml.tree import E, Element

_VOCABULARY = {
    "FolderHierarchy": "FolderSync SyncKey Status Changes Count Add Update Delete ServerId "
    "ParentId DisplayName Type",
    "AirSync": "Sync Collections Collection SyncKey CollectionId GetChanges DeletesAsMoves "
    "WindowSize Options FilterType Commands Add Change Delete Fetch SoftDelete ClientId ServerId "
    "ApplicationData Status Responses MoreAvailable Wait HeartbeatInterval Partial Limit Class",
    "AirSyncBase": "BodyPreference Body Type TruncationSize Data EstimatedDataSize Truncated",
    "Email": "Subject From To Read Importance DateReceived",
    "Ping": "Ping HeartbeatInterval Folders Folder Id Class Status MaxFolders",
    "Settings": "Settings Status DeviceInformation Set Model OS UserInformation Get "
    "EmailAddresses SMTPAddress Accounts Account Oof BodyType EnableOutboundSMS",
    "ComposeMail": "SendMail ClientId SaveInSentItems Mime Status",
    "GetItemEstimate": "GetItemEstimate Collections Collection CollectionId Class Response "
    "Status Estimate",
    "ItemOperations": "ItemOperations Fetch Store Options Status Response Properties",
}
_NAMES = [(page, tag) for page, tags in _VOCABULARY.items() for tag in tags.split()]
_VALUES = st.sampled_from(
    ["0", "1", "2", "14", "-3", "x", "", "99999999999", "2009-07-29T19:25:37.817Z"]
)


def _tree(children: st.SearchStrategy[tuple[Element, ...]]) -> st.SearchStrategy[Element]:
    return st.builds(
        lambda name, kids: E(name[0], name[1], *kids), st.sampled_from(_NAMES), children
    )


_leaves = st.one_of(
    st.builds(lambda n, v: Element(n[0], n[1], text=v), st.sampled_from(_NAMES), _VALUES),
    st.builds(lambda n: Element(n[0], n[1]), st.sampled_from(_NAMES)),
    st.builds(lambda n: Element(n[0], n[1], opaque=b"\xff"), st.sampled_from(_NAMES)),
)
trees = st.recursive(
    _leaves, lambda kids: _tree(st.lists(kids, max_size=4).map(tuple)), max_leaves=25
)

#: Each view with the root element it reads.
_VIEWS: list[tuple[str, str, Callable[[Element], object]]] = [
    ("FolderHierarchy", "FolderSync", FolderSyncRequest.from_element),
    ("FolderHierarchy", "FolderSync", FolderSyncResponse.from_element),
    ("AirSync", "Sync", SyncRequest.from_element),
    ("AirSync", "Sync", SyncResponse.from_element),
    ("Ping", "Ping", PingRequest.from_element),
    ("Ping", "Ping", PingResponse.from_element),
    ("Settings", "Settings", SettingsRequest.from_element),
    ("Settings", "Settings", SettingsResponse.from_element),
    ("ComposeMail", "SendMail", SendMailRequest.from_element),
    ("ComposeMail", "SendMail", SendMailResponse.from_element),
    ("GetItemEstimate", "GetItemEstimate", GetItemEstimateRequest.from_element),
    ("GetItemEstimate", "GetItemEstimate", GetItemEstimateResponse.from_element),
    ("ItemOperations", "ItemOperations", ItemOperationsRequest.from_element),
    ("ItemOperations", "ItemOperations", ItemOperationsResponse.from_element),
]


def _check(view: Callable[[Element], object], tree: Element) -> None:
    refusal: CommandError | None = None
    try:
        value = view(tree)
    except CommandError as exc:
        refusal = exc
    if refusal is not None:
        assert refusal.eas_status == 103
        return
    rewritten = value.to_element()  # type: ignore[attr-defined]
    assert view(rewritten) == value


@given(st.sampled_from(_VIEWS), trees)
def test_arbitrary_trees_only_raise_command_error_and_rewrite_stably(
    view: tuple[str, str, Callable[[Element], object]], tree: Element
) -> None:
    _check(view[2], tree)


@given(st.sampled_from(_VIEWS), st.lists(trees, max_size=5))
def test_right_root_with_arbitrary_children_only_raises_command_error(
    view: tuple[str, str, Callable[[Element], object]], children: list[Element]
) -> None:
    # The root the view expects, so the fuzzing reaches the inner parsers.
    page, tag, read = view
    _check(read, E(page, tag, *children))


def _body(el: Element | None) -> Element:
    assert el is not None
    return el


def _valid_bodies() -> list[tuple[Callable[[Element], object], Element]]:
    item = EmailItem(subject="Hi", read=False, body=Body(type=BodyType.PLAIN, data="x"))
    collection = SyncCollectionRequest(
        sync_key="1",
        collection_id="5",
        get_changes=True,
        options=(SyncOptions(filter_type=3, body_preferences=(BodyPreference(BodyType.HTML),)),),
        commands=(ClientAdd(client_id="c1", application_data=item.to_application_data()),),
    )
    sync_response = SyncResponse(
        collections=(
            SyncCollectionResponse(
                sync_key="2",
                collection_id="5",
                status=1,
                commands=(ServerAdd(server_id="5:1", application_data=item.to_application_data()),),
                responses=(AddResponse(client_id="c1", server_id="5:2", status=1),),
            ),
        )
    )
    inbox = FolderEntry("2", "0", "Inbox", FolderType.INBOX)
    return [
        (
            FolderSyncResponse.from_element,
            FolderSyncResponse(
                status=1, sync_key="1", changes=FolderChanges.of(adds=(inbox,))
            ).to_element(),
        ),
        (
            SyncRequest.from_element,
            _body(SyncRequest(collections=(collection,), wait=5).to_element()),
        ),
        (SyncResponse.from_element, sync_response.to_element()),
        (
            PingRequest.from_element,
            _body(
                PingRequest(
                    heartbeat_interval=480, folders=(PingFolder("5", "Email"),)
                ).to_element()
            ),
        ),
        (
            SettingsRequest.from_element,
            SettingsRequest(
                device_information=DeviceInformation(model="x", enable_outbound_sms=True),
                user_information=True,
            ).to_element(),
        ),
        (
            GetItemEstimateRequest.from_element,
            GetItemEstimateRequest(
                (EstimateCollection(sync_key="1", collection_id="5", options=(SyncOptions(),)),)
            ).to_element(),
        ),
        (
            ItemOperationsResponse.from_element,
            ItemOperationsResponse(
                status=1,
                results=(FetchResult(status=1, server_id="5:1", properties=item.to_properties()),),
            ).to_element(),
        ),
    ]


def _paths(el: Element, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    out = [prefix]
    for i, c in enumerate(el.children):
        out.extend(_paths(c, (*prefix, i)))
    return out


def _replace(el: Element, path: tuple[int, ...], new: Element | None) -> Element:
    if not path:
        assert new is not None
        return new
    i, rest = path[0], path[1:]
    kids = list(el.children)
    replaced = _replace(kids[i], rest, new) if rest or new is not None else None
    if replaced is None:
        del kids[i]
    else:
        kids[i] = replaced
    return E(el.page, el.tag, *kids)


def _at(el: Element, path: tuple[int, ...]) -> Element:
    for i in path:
        el = el.children[i]
    return el


@given(st.sampled_from(_valid_bodies()), st.data())
def test_mutated_valid_bodies_only_raise_command_error(
    case: tuple[Callable[[Element], object], Element], data: st.DataObject
) -> None:
    read, tree = case
    path = data.draw(st.sampled_from(_paths(tree)[1:]))
    node = _at(tree, path)
    mutation = data.draw(st.sampled_from(["drop", "text", "rename", "empty", "duplicate"]))
    if mutation == "drop":
        mutated = _replace(tree, path, None)
    elif mutation == "text":
        mutated = _replace(tree, path, Element(node.page, node.tag, text=data.draw(_VALUES)))
    elif mutation == "rename":
        page, tag = data.draw(st.sampled_from(_NAMES))
        renamed = Element(page, tag, text=node.text, opaque=node.opaque)
        mutated = _replace(tree, path, E(page, tag, *node.children) if node.children else renamed)
    elif mutation == "empty":
        mutated = _replace(tree, path, Element(node.page, node.tag))
    else:
        parent = _at(tree, path[:-1])
        kids = (*parent.children, node)
        mutated = _replace(tree, path[:-1], E(parent.page, parent.tag, *kids))
    _check(read, mutated)
