"""The mock Exchange's command handlers: typed request in, typed response out, no I/O.

Responsibility: for each EAS command the mock serves, turn the parsed request (a view from
``activesync.commands``) and the mailbox into the response view, deciding statuses as the
spec says. It must not read clocks, sockets or HTTP headers: ``now`` and the device context are
passed in, and the aiohttp shell (``app.py``) does the encoding, the policy-key gate and the
waiting of held Pings.

Theory of operation: every handler is ``handle_x(mailbox, ctx, request, ...) -> XResponse``.
Mailbox results (``exchange_sim.mailbox``) are plain values; this module converts them to and
from the wire views (messages to ``EmailItem`` with the body form the client asked for, client
ApplicationData to ``Message`` or a read/flag change). Ping is split in two: ``plan_ping``
validates and either answers at once or returns a ``PingWatch`` for the shell to hold, and
``ping_changes`` is what the shell asks each time the mailbox moves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from email.utils import getaddresses
from typing import Final

import attrs

from activesync.commands.airsyncbase import Body, BodyPreference, BodyType
from activesync.commands.email_item import EmailItem, eas_datetime
from activesync.commands.folder_sync import (
    FolderChanges,
    FolderEntry,
    FolderSyncRequest,
    FolderSyncResponse,
)
from activesync.commands.get_item_estimate import (
    EstimateResponse,
    GetItemEstimateRequest,
    GetItemEstimateResponse,
)
from activesync.commands.item_operations import (
    FetchRequest,
    FetchResult,
    ItemOperationsRequest,
    ItemOperationsResponse,
    ItemOperationsStatus,
)
from activesync.commands.ping import PingRequest, PingResponse, PingStatus
from activesync.commands.settings import (
    DeviceInformation,
    OofGet,
    OofResult,
    OofSet,
    SettingsRequest,
    SettingsResponse,
    SettingsStatus,
    UserInformationResult,
)
from activesync.commands.sync import (
    AddResponse,
    ChangeResponse,
    ClientAdd,
    DeleteResponse,
    FetchResponse,
    ItemChange,
    ItemDelete,
    ItemFetch,
    ItemResponse,
    ServerAdd,
    ServerCommand,
    SyncCollectionRequest,
    SyncCollectionResponse,
    SyncOptions,
    SyncRequest,
    SyncResponse,
    SyncStatus,
)
from activesync.status import Status
from activesync.versions import ProtocolVersion
from activesync.wbxml.tree import E, Element
from exchange_sim import mailbox as mb
from exchange_sim.config import ExchangeConfig

#: Sync Status 15 above this many collections in one request (MS-ASCMD 2.2.3.177.17).
MAX_SYNC_COLLECTIONS: Final = 100


@attrs.frozen(kw_only=True)
class DeviceContext:
    """Who is asking: the authenticated user's mailbox login, the device and its version."""

    user: str
    device_id: str
    device_type: str
    version: ProtocolVersion


# --- items on the wire -------------------------------------------------------------------------


def _display_names(addresses: Sequence[str]) -> str:
    return ", ".join(name or addr for name, addr in getaddresses(list(addresses)))


def _body(message: mb.Message, preferences: Sequence[BodyPreference]) -> Body:
    """The body in the first form the client asked for that we can make (MS-ASAIRS 2.2.2.9)."""
    chosen: BodyPreference | None = None
    for preference in preferences:
        if preference.type in (BodyType.PLAIN, BodyType.HTML, BodyType.MIME):
            chosen = preference
            break
    kind = BodyType.PLAIN if chosen is None else chosen.type
    if kind is BodyType.MIME:
        data = message.mime().decode("utf-8", errors="replace")
    elif kind is BodyType.HTML:
        escaped = message.body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        data = f"<html><body><pre>{escaped}</pre></body></html>"
    else:
        data = message.body
    size = len(data.encode("utf-8"))
    limit = None if chosen is None else chosen.truncation_size
    truncated = limit is not None and size > limit
    if truncated and limit is not None:
        data = data.encode("utf-8")[:limit].decode("utf-8", errors="ignore")
        if chosen is not None and chosen.all_or_none:
            # MS-ASAIRS AllOrNone: send nothing rather than a truncated body.
            data = ""
    return Body(type=kind, estimated_data_size=size, truncated=truncated, data=data)


def email_item(message: mb.Message, preferences: Sequence[BodyPreference]) -> EmailItem:
    """A stored message as the Email-page properties a client receives."""
    # MS-ASEMAIL Flag: Status 2 is "flagged"; an empty Flag means "not flagged".
    flag = (
        E(
            "Email",
            "Flag",
            E("Email", "Status", text=2),
            E("Email", "FlagType", text="Flag for follow up"),
        )
        if message.flagged
        else E("Email", "Flag")
    )
    return EmailItem(
        to=", ".join(message.to),
        cc=", ".join(message.cc) or None,
        from_=message.sender,
        subject=message.subject,
        date_received=eas_datetime(dt.datetime.fromtimestamp(message.received, dt.UTC)),
        display_to=_display_names(message.to),
        importance=message.importance,
        read=message.read,
        message_class=message.message_class,
        body=_body(message, preferences),
        extra=(flag,),
    )


def _flag_of(item: EmailItem) -> bool | None:
    for el in item.extra:
        if (el.page, el.tag) == ("Email", "Flag"):
            # MS-ASEMAIL Flag: Status 2 = flagged, 1 = complete, an empty Flag = cleared.
            return el.child_text("Status") == "2"
    return None


def _message_from_item(item: EmailItem, *, sender: str, now: float) -> mb.Message:
    return mb.Message(
        subject=item.subject or "",
        sender=item.from_ or sender,
        to=tuple(a.strip() for a in (item.to or "").split(",") if a.strip()),
        cc=tuple(a.strip() for a in (item.cc or "").split(",") if a.strip()),
        body="" if item.body is None or item.body.data is None else item.body.data,
        received=now,
        read=bool(item.read),
        importance=1 if item.importance is None else item.importance,
    )


# --- FolderSync --------------------------------------------------------------------------------


def handle_folder_sync(
    mailbox: mb.Mailbox, ctx: DeviceContext, request: FolderSyncRequest
) -> FolderSyncResponse:
    """MS-ASCMD 2.2.1.5."""
    result = mailbox.folder_sync(ctx.device_id, request.sync_key)
    if result.status != mb.FolderSyncStatus.SUCCESS:
        return FolderSyncResponse(status=result.status)

    def entry(spec: mb.FolderSpec) -> FolderEntry:
        return FolderEntry(spec.server_id, spec.parent_id, spec.name, spec.type)

    return FolderSyncResponse(
        status=result.status,
        sync_key=result.sync_key,
        changes=FolderChanges.of(
            adds=tuple(entry(s) for s in result.adds),
            updates=tuple(entry(s) for s in result.updates),
            deletes=result.deletes,
        ),
    )


# --- Sync --------------------------------------------------------------------------------------


def _preferences(options: Sequence[SyncOptions]) -> tuple[BodyPreference, ...]:
    for option in options:
        if option.class_ in (None, "Email") and option.body_preferences:
            return option.body_preferences
    return ()


def _client_command(
    command: ClientAdd | ItemChange | ItemDelete | ItemFetch,
    *,
    sender: str,
    now: float,
    where: str,
) -> mb.ClientCommand:
    if isinstance(command, ClientAdd):
        item = (
            EmailItem()
            if command.application_data is None
            else EmailItem.from_application_data(command.application_data, where)
        )
        return mb.ClientAdd(command.client_id, _message_from_item(item, sender=sender, now=now))
    if isinstance(command, ItemChange):
        item = (
            EmailItem()
            if command.application_data is None
            else EmailItem.from_application_data(command.application_data, where)
        )
        return mb.ClientChange(command.server_id, read=item.read, flagged=_flag_of(item))
    if isinstance(command, ItemDelete):
        return mb.ClientDelete(command.server_id)
    return mb.ClientFetch(command.server_id)


def _server_command(
    command: mb.ServerCommand, preferences: Sequence[BodyPreference]
) -> ServerCommand:
    if isinstance(command, mb.ServerDelete):
        return ItemDelete(server_id=command.server_id)
    data = email_item(command.item.message, preferences).to_application_data()
    if isinstance(command, mb.ServerAdd):
        return ServerAdd(server_id=command.item.server_id, application_data=data)
    return ItemChange(server_id=command.item.server_id, application_data=data)


def _item_response(
    response: mb.ClientResponse, preferences: Sequence[BodyPreference]
) -> ItemResponse:
    if isinstance(response, mb.AddResponse):
        return AddResponse(
            client_id=response.client_id, status=response.status, server_id=response.server_id
        )
    if isinstance(response, mb.ChangeResponse):
        return ChangeResponse(server_id=response.server_id, status=response.status)
    if isinstance(response, mb.DeleteResponse):
        return DeleteResponse(server_id=response.server_id, status=response.status)
    data = (
        None
        if response.item is None
        else email_item(response.item.message, preferences).to_application_data()
    )
    return FetchResponse(
        status=response.status, server_id=response.server_id, application_data=data
    )


@attrs.frozen
class SyncOutcome:
    """A Sync response, and the request to remember for a later empty or Partial Sync."""

    response: SyncResponse
    remembered: tuple[SyncCollectionRequest, ...] | None


def handle_sync(
    mailbox: mb.Mailbox,
    ctx: DeviceContext,
    request: SyncRequest,
    *,
    remembered: tuple[SyncCollectionRequest, ...] | None,
    config: ExchangeConfig,
    now: float,
) -> SyncOutcome:
    """MS-ASCMD 2.2.1.21: every collection of the request, in order."""
    if request.empty_body or (request.partial and not request.collections):
        # MS-ASCMD 2.2.3.177.17 Status 13: an empty/Partial request needs a cached one.
        if remembered is None:
            return SyncOutcome(SyncResponse.error(SyncStatus.INCOMPLETE_REQUEST), None)
        collections = _with_current_keys(mailbox, ctx, remembered)
    elif request.collections is None:
        return SyncOutcome(SyncResponse.error(SyncStatus.PROTOCOL_ERROR), remembered)
    else:
        collections = request.collections
    if request.wait is not None and request.heartbeat_interval is not None:
        # MS-ASCMD Sync: Wait and HeartbeatInterval are mutually exclusive (Status 4).
        return SyncOutcome(SyncResponse.error(SyncStatus.PROTOCOL_ERROR), remembered)
    limit = _wait_limit(request, config)
    if limit is not None:
        # MS-ASCMD 2.2.3.177.17 Status 14: Wait/HeartbeatInterval out of range, Limit = bound.
        return SyncOutcome(SyncResponse.error(SyncStatus.INVALID_WAIT, limit=limit), remembered)
    if len(collections) > MAX_SYNC_COLLECTIONS:
        return SyncOutcome(SyncResponse.error(SyncStatus.TOO_MANY_COLLECTIONS), remembered)
    sender = mailbox.address
    results = []
    for index, collection in enumerate(collections):
        where = f"Sync/Collections/Collection[{index}]"
        preferences = _preferences(collection.options)
        commands = tuple(
            _client_command(c, sender=sender, now=now, where=f"{where}/Commands[{i}]")
            for i, c in enumerate(collection.commands or ())
        )
        get_changes = (
            collection.sync_key != "0" if collection.get_changes is None else collection.get_changes
        )
        window = collection.window_size or request.window_size or mb.DEFAULT_WINDOW_SIZE
        result = mailbox.sync(
            ctx.device_id,
            collection.collection_id,
            collection.sync_key,
            commands=commands,
            get_changes=get_changes and collection.sync_key != "0",
            window_size=window,
            deletes_as_moves=collection.deletes_as_moves is not False,
        )
        key = "0" if result.status == mb.SyncStatus.INVALID_SYNC_KEY else result.sync_key
        results.append(
            SyncCollectionResponse(
                sync_key=key,
                collection_id=collection.collection_id,
                status=result.status,
                more_available=result.more_available,
                commands=tuple(_server_command(c, preferences) for c in result.commands) or None,
                responses=tuple(_item_response(r, preferences) for r in result.responses) or None,
            )
        )
    keep = tuple(attrs.evolve(c, commands=None) for c in collections)
    return SyncOutcome(SyncResponse(collections=tuple(results)), keep)


def _wait_limit(request: SyncRequest, config: ExchangeConfig) -> int | None:
    """The bound a held-Sync interval breaks, or None when it is in range (or absent).

    Wait is in minutes (1..59, MS-ASCMD Wait); HeartbeatInterval in seconds, with the
    server's Ping bounds. This mock answers at once rather than holding the Sync.
    """
    if request.wait is not None and not 1 <= request.wait <= 59:
        return 1 if request.wait < 1 else 59
    beat = request.heartbeat_interval
    if beat is not None and not config.heartbeat_min_s <= beat <= config.heartbeat_max_s:
        return config.heartbeat_min_s if beat < config.heartbeat_min_s else config.heartbeat_max_s
    return None


def _with_current_keys(
    mailbox: mb.Mailbox, ctx: DeviceContext, remembered: tuple[SyncCollectionRequest, ...]
) -> tuple[SyncCollectionRequest, ...]:
    """The remembered collections with each folder's latest key (the empty-Sync rule)."""
    device = mailbox.device(ctx.device_id)
    out = []
    for collection in remembered:
        state = device.collections.get(collection.collection_id)
        key = (
            collection.sync_key
            if state is None or state.current_key is None
            else (state.current_key)
        )
        out.append(attrs.evolve(collection, sync_key=key))
    return tuple(out)


# --- Ping --------------------------------------------------------------------------------------


@attrs.frozen
class PingWatch:
    """A valid Ping with nothing to report yet: hold it for ``heartbeat`` seconds."""

    heartbeat: int
    folder_ids: tuple[str, ...]
    baseline: dict[str, int] = attrs.field(eq=False)


def plan_ping(
    mailbox: mb.Mailbox, ctx: DeviceContext, request: PingRequest, config: ExchangeConfig
) -> PingResponse | PingWatch:
    """MS-ASCMD 2.2.1.13: validate, remember the parameters, answer now or say what to watch."""
    device = mailbox.device(ctx.device_id)
    cached = device.ping
    heartbeat = request.heartbeat_interval
    folder_ids = None if request.folders is None else tuple(f.id for f in request.folders)
    # MS-ASCMD 2.2.3.88.1: the server caches the interval and folders; omitted ones are reused.
    if heartbeat is None and cached is not None:
        heartbeat = cached.heartbeat
    if folder_ids is None and cached is not None:
        folder_ids = cached.folder_ids
    if heartbeat is None or not folder_ids:
        return PingResponse(status=PingStatus.MISSING_PARAMETERS)
    if heartbeat < config.heartbeat_min_s:
        return PingResponse.heartbeat_out_of_range(config.heartbeat_min_s)
    if heartbeat > config.heartbeat_max_s:
        return PingResponse.heartbeat_out_of_range(config.heartbeat_max_s)
    folder_ids = tuple(dict.fromkeys(folder_ids))
    if len(folder_ids) > config.ping_max_folders:
        return PingResponse.too_many_folders(config.ping_max_folders)
    if any(mailbox.folder(fid) is None for fid in folder_ids):
        # MS-ASCMD 2.2.3.177.11 Status 7: the folder hierarchy is out of date.
        return PingResponse(status=PingStatus.FOLDER_SYNC_REQUIRED)
    device.ping = mb.PingParameters(heartbeat, folder_ids)
    baseline = mailbox.folder_seqs(folder_ids)
    changed = mailbox.changed_folders(ctx.device_id, folder_ids, baseline)
    if changed:
        return PingResponse.changes(changed)
    return PingWatch(heartbeat, folder_ids, baseline)


def ping_changes(mailbox: mb.Mailbox, ctx: DeviceContext, watch: PingWatch) -> PingResponse | None:
    """Status 2 with the changed folders, or None while nothing changed."""
    changed = mailbox.changed_folders(ctx.device_id, watch.folder_ids, watch.baseline)
    return PingResponse.changes(changed) if changed else None


# --- Settings ----------------------------------------------------------------------------------


def handle_settings(
    mailbox: mb.Mailbox, ctx: DeviceContext, request: SettingsRequest
) -> SettingsResponse:
    """MS-ASCMD 2.2.1.18: store DeviceInformation, answer UserInformation, accept the rest."""
    device = mailbox.device(ctx.device_id)
    info_status: int | None = None
    if request.device_information is not None:
        info = request.device_information
        device.device_information.update(_device_information_fields(info))
        info_status = SettingsStatus.SUCCESS
    user_information = None
    if request.user_information:
        user_information = UserInformationResult.for_version(
            ctx.version,
            smtp_addresses=(mailbox.address,),
            primary_smtp_address=mailbox.address,
            display_name=mailbox.user,
        )
    oof = None
    if isinstance(request.oof, OofGet):
        # No out-of-office configured: OofState 0 (disabled), MS-ASCMD OofState.
        oof = OofResult(
            status=SettingsStatus.SUCCESS, get=(Element("Settings", "OofState", text="0"),)
        )
    elif isinstance(request.oof, OofSet):
        oof = OofResult(status=SettingsStatus.SUCCESS)
    return SettingsResponse(
        status=SettingsStatus.SUCCESS,
        oof=oof,
        device_password_status=None if request.device_password is None else SettingsStatus.SUCCESS,
        device_information_status=info_status,
        user_information=user_information,
        rights_management_information=(Element("Settings", "Status", text="1"),)
        if request.rights_management_information
        else None,
    )


def _device_information_fields(
    info: DeviceInformation,
) -> dict[str, str]:
    fields = {
        "Model": info.model,
        "IMEI": info.imei,
        "FriendlyName": info.friendly_name,
        "OS": info.os,
        "OSLanguage": info.os_language,
        "PhoneNumber": info.phone_number,
        "UserAgent": info.user_agent,
        "MobileOperator": info.mobile_operator,
    }
    return {k: v for k, v in fields.items() if v is not None}


def remember_device_information(
    mailbox: mb.Mailbox, ctx: DeviceContext, info: DeviceInformation
) -> None:
    """Keep what a Provision request said about the device (MS-ASPROV 2.2.2.53)."""
    mailbox.device(ctx.device_id).device_information.update(_device_information_fields(info))


# --- SendMail ----------------------------------------------------------------------------------


@attrs.frozen
class SendOutcome:
    """A SendMail result: ``status`` None on success, else the global status to answer."""

    status: int | None
    delivery: mb.Delivery | None = None


def handle_send_mail(
    store: mb.MailStore,
    mailbox: mb.Mailbox,
    ctx: DeviceContext,
    *,
    mime: bytes,
    save_in_sent: bool,
    client_id: str | None,
    now: float,
) -> SendOutcome:
    """MS-ASCMD 2.2.1.17: deliver to recipients with a mailbox here, copy to Sent Items."""
    device = mailbox.device(ctx.device_id)
    if client_id is not None and client_id in device.sent_client_ids:
        return SendOutcome(Status.MessagePreviouslySent)
    try:
        message = mb.Message.from_mime(mime, now=now, default_sender=mailbox.address)
    except mb.MimeError:
        return SendOutcome(Status.InvalidMIME)
    if not message.recipients:
        return SendOutcome(Status.MessageHasNoRecipient)
    delivery = store.deliver(message, now=now)
    if save_in_sent:
        mailbox.add_item(mb.SENT_ITEMS_ID, attrs.evolve(message, read=True, received=now))
    if client_id is not None:
        device.sent_client_ids.add(client_id)
    return SendOutcome(None, delivery)


# --- GetItemEstimate ---------------------------------------------------------------------------


def handle_get_item_estimate(
    mailbox: mb.Mailbox, ctx: DeviceContext, request: GetItemEstimateRequest
) -> GetItemEstimateResponse:
    """MS-ASCMD 2.2.1.9: per collection, how many changes the next Sync would bring."""
    responses = []
    for collection in request.collections:
        result = mailbox.estimate(ctx.device_id, collection.collection_id, collection.sync_key)
        if result.status == mb.EstimateStatus.SUCCESS:
            responses.append(
                EstimateResponse(
                    status=result.status,
                    collection_id=collection.collection_id,
                    estimate=result.estimate,
                )
            )
        else:
            responses.append(
                EstimateResponse(status=result.status, collection_id=collection.collection_id)
            )
    return GetItemEstimateResponse(responses=tuple(responses))


# --- ItemOperations ----------------------------------------------------------------------------


def handle_item_operations(
    mailbox: mb.Mailbox, ctx: DeviceContext, request: ItemOperationsRequest
) -> ItemOperationsResponse:
    """MS-ASCMD 2.2.1.10: Fetch of mailbox items by CollectionId + ServerId, in order."""
    results: list[FetchResult | Element] = []
    for operation in request.operations:
        if isinstance(operation, FetchRequest):
            results.append(_fetch(mailbox, operation))
        else:
            # EmptyFolderContents and Move are not modelled by this mock: each gets its own
            # failure result (Status 2) so the client can tell which operation did not run.
            results.append(
                E(
                    "ItemOperations",
                    operation.tag,
                    E("ItemOperations", "Status", text=int(_NOT_RUN)),
                )
            )
    return ItemOperationsResponse(status=ItemOperationsStatus.SUCCESS, results=tuple(results))


_NOT_RUN: Final = ItemOperationsStatus.PROTOCOL_ERROR


def _fetch(mailbox: mb.Mailbox, fetch: FetchRequest) -> FetchResult:
    if fetch.store.lower() != "mailbox":
        # MS-ASCMD 2.2.3.177.8 Status 9: only the mailbox store is served here.
        return FetchResult(status=ItemOperationsStatus.UNKNOWN_STORE)
    if fetch.collection_id is None or fetch.server_id is None:
        # LongId (Search results) and FileReference (attachments) name nothing in this mock.
        return FetchResult(
            status=ItemOperationsStatus.OBJECT_NOT_FOUND,
            long_id=fetch.long_id,
            file_reference=fetch.file_reference,
        )
    folder = mailbox.folder(fetch.collection_id)
    item = None if folder is None else folder.items.get(fetch.server_id)
    if item is None:
        return FetchResult(
            status=ItemOperationsStatus.OBJECT_NOT_FOUND,
            collection_id=fetch.collection_id,
            server_id=fetch.server_id,
        )
    preferences = () if fetch.options is None else fetch.options.body_preferences
    return FetchResult(
        status=ItemOperationsStatus.SUCCESS,
        collection_id=fetch.collection_id,
        server_id=fetch.server_id,
        class_="Email",
        properties=email_item(item.message, preferences).to_properties(),
    )
