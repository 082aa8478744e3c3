"""Typed views of EAS command bodies: parse request trees, build response trees.

Every command module holds a ``<Command>Request`` and a ``<Command>Response`` (frozen attrs
values with ``from_element``/``to_element``) and its status enum; the names below are the views
other packages use. ``roots`` knows every command's name, code and root element; ``fields`` is
the vocabulary the views share and is not re-exported.
"""

from __future__ import annotations

from activesync.commands.airsyncbase import Body, BodyPreference, BodyType
from activesync.commands.email_item import EmailItem
from activesync.commands.folder_sync import (
    FolderChanges,
    FolderEntry,
    FolderSyncRequest,
    FolderSyncResponse,
    FolderSyncStatus,
)
from activesync.commands.folder_types import FolderType
from activesync.commands.get_item_estimate import (
    EstimateCollection,
    EstimateResponse,
    GetItemEstimateRequest,
    GetItemEstimateResponse,
    GetItemEstimateStatus,
)
from activesync.commands.item_operations import (
    FetchOptions,
    FetchRequest,
    FetchResult,
    ItemOperationsRequest,
    ItemOperationsResponse,
    ItemOperationsStatus,
)
from activesync.commands.ping import PingFolder, PingRequest, PingResponse, PingStatus
from activesync.commands.provision import (
    ProvisionDoc,
    ProvisionRequest,
    ProvisionResponse,
    RequestKind,
    precheck,
)
from activesync.commands.roots import (
    COMMANDS,
    CommandInfo,
    command_info,
    commands_header,
    root_for,
)
from activesync.commands.send_mail import (
    LegacySendMail,
    MimeSummary,
    SendMailRequest,
    SendMailResponse,
)
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
    ClientCommand,
    DeleteResponse,
    FetchResponse,
    FilterType,
    ItemChange,
    ItemDelete,
    ItemFetch,
    ItemResponse,
    ItemSoftDelete,
    ServerAdd,
    ServerCommand,
    SyncCollectionRequest,
    SyncCollectionResponse,
    SyncOptions,
    SyncRequest,
    SyncResponse,
    SyncStatus,
)

__all__ = [
    "COMMANDS",
    "AddResponse",
    "Body",
    "BodyPreference",
    "BodyType",
    "ChangeResponse",
    "ClientAdd",
    "ClientCommand",
    "CommandInfo",
    "DeleteResponse",
    "DeviceInformation",
    "EmailItem",
    "EstimateCollection",
    "EstimateResponse",
    "FetchOptions",
    "FetchRequest",
    "FetchResponse",
    "FetchResult",
    "FilterType",
    "FolderChanges",
    "FolderEntry",
    "FolderSyncRequest",
    "FolderSyncResponse",
    "FolderSyncStatus",
    "FolderType",
    "GetItemEstimateRequest",
    "GetItemEstimateResponse",
    "GetItemEstimateStatus",
    "ItemChange",
    "ItemDelete",
    "ItemFetch",
    "ItemOperationsRequest",
    "ItemOperationsResponse",
    "ItemOperationsStatus",
    "ItemResponse",
    "ItemSoftDelete",
    "LegacySendMail",
    "MimeSummary",
    "OofGet",
    "OofResult",
    "OofSet",
    "PingFolder",
    "PingRequest",
    "PingResponse",
    "PingStatus",
    "ProvisionDoc",
    "ProvisionRequest",
    "ProvisionResponse",
    "RequestKind",
    "SendMailRequest",
    "SendMailResponse",
    "ServerAdd",
    "ServerCommand",
    "SettingsRequest",
    "SettingsResponse",
    "SettingsStatus",
    "SyncCollectionRequest",
    "SyncCollectionResponse",
    "SyncOptions",
    "SyncRequest",
    "SyncResponse",
    "SyncStatus",
    "UserInformationResult",
    "command_info",
    "commands_header",
    "precheck",
    "root_for",
]
