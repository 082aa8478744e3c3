"""The mock Exchange's mailboxes and every device's view of them: pure state, no I/O.

Responsibility: users' mailboxes (a fixed folder hierarchy holding email items), delivery of
new mail, and the per-device synchronization state that the FolderSync, Sync, GetItemEstimate
and Ping commands read and advance. It must not parse or build WBXML, read a clock or await
anything: callers pass ``now`` and get plain attrs values back (the command layer turns them
into elements, the aiohttp shell wakes held Pings).

Theory of operation. A mailbox is the truth; a device holds, per folder, a *view*: the
server ids it has been sent and the version of each. A sync key names one such view. A Sync
with the current key computes the difference between the folder and the view (adds, changes,
deletes), sends at most WindowSize of them (MoreAvailable when some remain), records the view
the client will have after applying them under a new key, and keeps the view of the key just
used as well, so a client that lost a response can resend its previous key and get the same
changes again (the retry tolerance real servers have; a key older than that is stale). Sync key
0 starts a fresh, empty view (MS-ASCMD 2.2.3.181.4) and returns no items; any other key is
stale (Sync Status 3, FolderSync Status 9, GetItemEstimate Status 4).

Changes from any source (delivery, the admin API, another device's Sync) bump the folder's
``seq`` and the mailbox's ``change_seq``; Ping asks ``changed_folders`` which watched folders
differ from what the device has synced, and the shell waits for ``change_seq`` to move.
"""

from __future__ import annotations

import email.policy
import enum
import random
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses, parseaddr

import attrs

from activesync.commands.folder_types import FolderType


@attrs.frozen
class FolderSpec:
    """One folder of the fixed hierarchy every mailbox gets."""

    server_id: str
    name: str
    type: FolderType
    parent_id: str = "0"  # MS-ASCMD ParentId: "0" is the root of the hierarchy

    @property
    def is_mail(self) -> bool:
        return self.type.is_mail


INBOX_ID = "5"
DRAFTS_ID = "6"
DELETED_ITEMS_ID = "7"
SENT_ITEMS_ID = "8"
OUTBOX_ID = "9"

#: The hierarchy of every mailbox. Item server ids are "<folder id>:<number>", e.g. "5:12".
DEFAULT_FOLDERS: tuple[FolderSpec, ...] = (
    FolderSpec(INBOX_ID, "Inbox", FolderType.INBOX),
    FolderSpec(DRAFTS_ID, "Drafts", FolderType.DRAFTS),
    FolderSpec(DELETED_ITEMS_ID, "Deleted Items", FolderType.DELETED_ITEMS),
    FolderSpec(SENT_ITEMS_ID, "Sent Items", FolderType.SENT_ITEMS),
    FolderSpec(OUTBOX_ID, "Outbox", FolderType.OUTBOX),
    FolderSpec("10", "Calendar", FolderType.CALENDAR),
    FolderSpec("11", "Contacts", FolderType.CONTACTS),
)

#: MS-ASCMD WindowSize (Sync): at most 512 changes per collection per response.
MAX_WINDOW_SIZE = 512
#: The window when the client names none (MS-ASCMD WindowSize: the default is 100).
DEFAULT_WINDOW_SIZE = 100


class SyncStatus(enum.IntEnum):
    """Sync collection statuses this mock returns (MS-ASCMD 2.2.3.177.17)."""

    SUCCESS = 1  #: the collection was synchronized
    INVALID_SYNC_KEY = 3  #: the key is neither the current nor the previous one; restart at 0
    PROTOCOL_ERROR = 4  #: the request breaks the protocol (e.g. commands with key 0)
    OBJECT_NOT_FOUND = 8  #: a Change/Delete/Fetch names an item the folder does not hold
    HIERARCHY_CHANGED = 12  #: the CollectionId is not a folder of this mailbox; FolderSync again


class FolderSyncStatus(enum.IntEnum):
    """FolderSync statuses (MS-ASCMD 2.2.3.177.5)."""

    SUCCESS = 1  #: the hierarchy changes were returned
    INVALID_SYNC_KEY = 9  #: unknown or stale key; restart at 0


class EstimateStatus(enum.IntEnum):
    """GetItemEstimate statuses (MS-ASCMD 2.2.3.177.7)."""

    SUCCESS = 1  #: the estimate is in the response
    INVALID_COLLECTION = 2  #: the CollectionId is not a folder of this mailbox
    NOT_PRIMED = 3  #: the device has not synced this folder yet (or sent key 0)
    INVALID_SYNC_KEY = 4  #: the key is not one the server issued for this folder


# --- items -------------------------------------------------------------------------------------


def _str_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@attrs.frozen(kw_only=True)
class Message:
    """An email as the mock stores it. Addresses are RFC 5322 strings ("Ann <ann@x.org>")."""

    subject: str
    sender: str
    to: tuple[str, ...] = attrs.field(converter=_str_tuple)
    cc: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    body: str = ""
    received: float
    read: bool = False
    flagged: bool = False
    #: MS-ASEMAIL Importance: 0 low, 1 normal, 2 high.
    importance: int = 1
    message_class: str = "IPM.Note"
    #: The submitted MIME when the message came from SendMail; rendered on demand otherwise.
    raw_mime: bytes | None = None

    def mime(self) -> bytes:
        """The message as RFC 5322 bytes (the submitted bytes when there are some)."""
        if self.raw_mime is not None:
            return self.raw_mime
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["From"] = self.sender
        if self.to:
            msg["To"] = ", ".join(self.to)
        if self.cc:
            msg["Cc"] = ", ".join(self.cc)
        msg["Subject"] = self.subject
        msg["Date"] = format_datetime(datetime.fromtimestamp(self.received, UTC))
        msg.set_content(self.body)
        return msg.as_bytes()

    @classmethod
    def from_mime(cls, raw: bytes, *, now: float, default_sender: str) -> Message:
        """Read a submitted RFC 5322 message (SendMail). Raises ``MimeError`` when unusable."""
        if not raw.strip():
            raise MimeError("the MIME message is empty")
        try:
            parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
            to = _addresses(parsed.get_all("To", []))
            cc = _addresses(parsed.get_all("Cc", []))
            bcc = _addresses(parsed.get_all("Bcc", []))
            subject = str(parsed.get("Subject", ""))
            sender = str(parsed.get("From", "")) or default_sender
            body_part = parsed.get_body(preferencelist=("plain", "html"))
            body = body_part.get_content() if isinstance(body_part, EmailMessage) else ""
        except (ValueError, LookupError, TypeError) as exc:
            raise MimeError(f"the MIME message cannot be parsed: {exc}") from exc
        if parsed.defects and not (to or cc or bcc):
            raise MimeError(f"the MIME message is malformed: {parsed.defects[0]}")
        return cls(
            subject=subject,
            sender=sender,
            to=to + bcc,
            cc=cc,
            body=body if isinstance(body, str) else "",
            received=now,
            read=False,
            raw_mime=raw,
        )

    @property
    def recipients(self) -> tuple[str, ...]:
        """Every bare recipient address (To, then Cc), lowercased."""
        found = []
        for value in (*self.to, *self.cc):
            address = parseaddr(value)[1].lower()
            if address:
                found.append(address)
        return tuple(dict.fromkeys(found))


def _addresses(headers: Sequence[object]) -> tuple[str, ...]:
    pairs = getaddresses([str(h) for h in headers])
    return tuple(
        str(Address(display_name=name, addr_spec=addr)) if name else addr
        for name, addr in pairs
        if addr
    )


class MimeError(ValueError):
    """A submitted message that cannot be read (SendMail: MS-ASCMD status 107 InvalidMIME)."""


@attrs.frozen
class StoredItem:
    """A message in a folder: its server id and a version that every change bumps."""

    server_id: str
    message: Message
    version: int = 1


# --- sync inputs and outputs -------------------------------------------------------------------


@attrs.frozen
class ClientAdd:
    """Sync Commands/Add from the client: a new item it created (MS-ASCMD 2.2.3.7.2)."""

    client_id: str
    message: Message


@attrs.frozen
class ClientChange:
    """Sync Commands/Change from the client; None leaves a property as it is."""

    server_id: str
    read: bool | None = None
    flagged: bool | None = None


@attrs.frozen
class ClientDelete:
    """Sync Commands/Delete from the client."""

    server_id: str


@attrs.frozen
class ClientFetch:
    """Sync Commands/Fetch from the client: send this item in full."""

    server_id: str


ClientCommand = ClientAdd | ClientChange | ClientDelete | ClientFetch


@attrs.frozen
class AddResponse:
    """Responses/Add: the server id given to the client's new item."""

    client_id: str
    server_id: str
    status: int


@attrs.frozen
class ChangeResponse:
    """Responses/Change: sent only when the change failed (MS-ASCMD 2.2.3.154)."""

    server_id: str
    status: int


@attrs.frozen
class DeleteResponse:
    """Responses/Delete: sent only when the delete failed (MS-ASCMD 2.2.3.154)."""

    server_id: str
    status: int


@attrs.frozen
class FetchResponse:
    """Responses/Fetch: the item, or a status saying why not."""

    server_id: str
    status: int
    item: StoredItem | None = None


ClientResponse = AddResponse | ChangeResponse | DeleteResponse | FetchResponse


@attrs.frozen
class ServerAdd:
    """Commands/Add to the client."""

    item: StoredItem


@attrs.frozen
class ServerChange:
    """Commands/Change to the client."""

    item: StoredItem


@attrs.frozen
class ServerDelete:
    """Commands/Delete to the client."""

    server_id: str


ServerCommand = ServerAdd | ServerChange | ServerDelete


@attrs.frozen(kw_only=True)
class CollectionSyncResult:
    """What one collection of a Sync response carries."""

    collection_id: str
    status: int
    sync_key: str
    responses: tuple[ClientResponse, ...] = ()
    commands: tuple[ServerCommand, ...] = ()
    more_available: bool = False


@attrs.frozen(kw_only=True)
class FolderSyncResult:
    """What a FolderSync response carries."""

    status: int
    sync_key: str
    adds: tuple[FolderSpec, ...] = ()
    updates: tuple[FolderSpec, ...] = ()
    deletes: tuple[str, ...] = ()


@attrs.frozen
class EstimateResult:
    """One collection of a GetItemEstimate response."""

    collection_id: str
    status: int
    estimate: int | None = None


@attrs.frozen
class Delivery:
    """Where a message went: the users whose Inbox got it, and addresses no user has."""

    delivered_to: tuple[str, ...]
    unknown: tuple[str, ...]


# --- per-device state --------------------------------------------------------------------------

View = Mapping[str, int]  # server id -> version the device holds


@attrs.define(eq=False)
class CollectionState:
    """One device's sync state for one folder: the views named by its two live keys."""

    counter: int = 0
    current_key: str | None = None
    previous_key: str | None = None
    views: dict[str, dict[str, int]] = attrs.Factory(dict)
    #: ClientId -> ServerId of client Adds, so a resent Add is not stored twice.
    client_ids: dict[str, str] = attrs.Factory(dict)

    def view_for(self, key: str) -> dict[str, int] | None:
        if key in (self.current_key, self.previous_key):
            return self.views.get(key)
        return None

    def issue(self, used_key: str | None, new_view: dict[str, int]) -> str:
        """Name ``new_view`` with a fresh key; keep the view of the key just used."""
        self.counter += 1
        new_key = str(self.counter)
        kept = {new_key: new_view}
        if used_key is not None and used_key in self.views:
            kept[used_key] = self.views[used_key]
        self.views = kept
        self.previous_key = used_key
        self.current_key = new_key
        return new_key

    def restart(self) -> None:
        """Sync key 0: forget every view (the counter keeps going so old keys stay stale)."""
        self.views = {}
        self.current_key = None
        self.previous_key = None
        self.client_ids = {}


@attrs.frozen
class PingParameters:
    """The last Ping's interval and folders, reused by an empty Ping (MS-ASCMD 2.2.3.88.1)."""

    heartbeat: int
    folder_ids: tuple[str, ...]


@attrs.define(eq=False)
class DeviceState:
    """What the server remembers of one device of one user."""

    device_id: str
    folder_counter: int = 0
    folder_key: str | None = None
    folder_previous_key: str | None = None
    folder_views: dict[str, frozenset[FolderSpec]] = attrs.Factory(dict)
    collections: dict[str, CollectionState] = attrs.Factory(dict)
    #: Settings DeviceInformation/Set and Provision DeviceInformation, as sent.
    device_information: dict[str, str] = attrs.Factory(dict)
    ping: PingParameters | None = None
    last_seen: float | None = None
    #: SendMail ClientIds already sent, to refuse a duplicate (MS-ASCMD 2.2.2 status 118).
    sent_client_ids: set[str] = attrs.Factory(set)


# --- mailboxes ---------------------------------------------------------------------------------


@attrs.define(eq=False)
class Folder:
    """A folder and the items it holds."""

    spec: FolderSpec
    items: dict[str, StoredItem] = attrs.Factory(dict)
    next_number: int = 1
    #: Bumped by every change to this folder's items.
    seq: int = 0

    def new_server_id(self) -> str:
        server_id = f"{self.spec.server_id}:{self.next_number}"
        self.next_number += 1
        return server_id


def _item_order(server_id: str) -> tuple[int, str]:
    number = server_id.rpartition(":")[2]
    return (int(number) if number.isdigit() else 0, server_id)


@attrs.define(eq=False)
class Mailbox:
    """One user's mailbox, with the state of every device that syncs it."""

    user: str
    address: str
    folders: dict[str, Folder]
    devices: dict[str, DeviceState] = attrs.Factory(dict)
    #: Bumped by every change anywhere in the mailbox; held Pings wait for it to move.
    change_seq: int = 0

    @classmethod
    def create(cls, user: str, address: str) -> Mailbox:
        return cls(
            user, address.lower(), {spec.server_id: Folder(spec) for spec in DEFAULT_FOLDERS}
        )

    # - items

    def folder(self, folder_id: str) -> Folder | None:
        return self.folders.get(folder_id)

    def add_item(self, folder_id: str, message: Message) -> StoredItem:
        folder = self.folders[folder_id]
        item = StoredItem(folder.new_server_id(), message)
        folder.items[item.server_id] = item
        self._touch(folder)
        return item

    def find_item(self, server_id: str) -> StoredItem | None:
        folder = self.folders.get(server_id.partition(":")[0])
        return None if folder is None else folder.items.get(server_id)

    def _touch(self, folder: Folder) -> None:
        folder.seq += 1
        self.change_seq += 1

    def device(self, device_id: str) -> DeviceState:
        state = self.devices.get(device_id)
        if state is None:
            state = self.devices[device_id] = DeviceState(device_id)
        return state

    # - FolderSync

    def folder_sync(self, device_id: str, sync_key: str) -> FolderSyncResult:
        """MS-ASCMD 2.2.1.5: the hierarchy changes since the view named by ``sync_key``."""
        device = self.device(device_id)
        current = frozenset(f.spec for f in self.folders.values())
        if sync_key == "0":
            known: frozenset[FolderSpec] = frozenset()
        elif sync_key in (device.folder_key, device.folder_previous_key) and (
            sync_key in device.folder_views
        ):
            known = device.folder_views[sync_key]
        else:
            return FolderSyncResult(status=FolderSyncStatus.INVALID_SYNC_KEY, sync_key=sync_key)
        known_by_id = {f.server_id: f for f in known}
        current_by_id = {f.server_id: f for f in current}
        adds = tuple(f for f in _folder_order(current) if f.server_id not in known_by_id)
        updates = tuple(
            f
            for f in _folder_order(current)
            if f.server_id in known_by_id and known_by_id[f.server_id] != f
        )
        deletes = tuple(sorted(fid for fid in known_by_id if fid not in current_by_id))
        if sync_key != "0" and not (adds or updates or deletes):
            # Nothing changed: the key stays, so both live keys stay valid.
            return FolderSyncResult(status=FolderSyncStatus.SUCCESS, sync_key=sync_key)
        device.folder_counter += 1
        new_key = str(device.folder_counter)
        views = {new_key: current}
        if sync_key != "0" and sync_key in device.folder_views:
            views[sync_key] = device.folder_views[sync_key]
        device.folder_views = views
        device.folder_previous_key = sync_key if sync_key != "0" else None
        device.folder_key = new_key
        if sync_key == "0":
            # MS-ASCMD 2.2.1.5: key 0 rebuilds the hierarchy, so folder Sync states start over too.
            device.collections.clear()
        return FolderSyncResult(
            status=FolderSyncStatus.SUCCESS,
            sync_key=new_key,
            adds=adds,
            updates=updates,
            deletes=deletes,
        )

    # - Sync

    def sync(
        self,
        device_id: str,
        collection_id: str,
        sync_key: str,
        *,
        commands: Sequence[ClientCommand] = (),
        get_changes: bool = True,
        window_size: int = DEFAULT_WINDOW_SIZE,
        deletes_as_moves: bool = True,
    ) -> CollectionSyncResult:
        """MS-ASCMD 2.2.1.21 for one collection: apply the client's commands, send changes."""
        folder = self.folders.get(collection_id)
        if folder is None or not folder.spec.is_mail:
            return CollectionSyncResult(
                collection_id=collection_id,
                status=SyncStatus.HIERARCHY_CHANGED,
                sync_key=sync_key,
            )
        state = self.device(device_id).collections.setdefault(collection_id, CollectionState())
        if sync_key == "0":
            if commands:
                return CollectionSyncResult(
                    collection_id=collection_id,
                    status=SyncStatus.PROTOCOL_ERROR,
                    sync_key="0",
                )
            # MS-ASCMD 2.2.3.181.4: key 0 primes the state; the items come on the next Sync.
            state.restart()
            new_key = state.issue(None, {})
            return CollectionSyncResult(
                collection_id=collection_id, status=SyncStatus.SUCCESS, sync_key=new_key
            )
        base = state.view_for(sync_key)
        if base is None:
            return CollectionSyncResult(
                collection_id=collection_id,
                status=SyncStatus.INVALID_SYNC_KEY,
                sync_key=sync_key,
            )
        view = dict(base)
        responses = [
            r
            for r in (
                self._apply(folder, state, view, command, deletes_as_moves) for command in commands
            )
            if r is not None
        ]
        server_commands: list[ServerCommand] = []
        more = False
        if get_changes:
            pending = _pending(folder, view)
            window = max(1, min(window_size, MAX_WINDOW_SIZE))
            more = len(pending) > window
            server_commands = pending[:window]
            for command in server_commands:
                if isinstance(command, ServerDelete):
                    view.pop(command.server_id, None)
                else:
                    view[command.item.server_id] = command.item.version
        new_key = state.issue(sync_key, view)
        return CollectionSyncResult(
            collection_id=collection_id,
            status=SyncStatus.SUCCESS,
            sync_key=new_key,
            responses=tuple(responses),
            commands=tuple(server_commands),
            more_available=more,
        )

    def _apply(
        self,
        folder: Folder,
        state: CollectionState,
        view: dict[str, int],
        command: ClientCommand,
        deletes_as_moves: bool,
    ) -> ClientResponse | None:
        if isinstance(command, ClientAdd):
            known = state.client_ids.get(command.client_id)
            if known is not None and known in folder.items:
                # A resent Add (the client lost our response): same ServerId, nothing stored.
                view[known] = folder.items[known].version
                return AddResponse(command.client_id, known, SyncStatus.SUCCESS)
            item = self.add_item(folder.spec.server_id, command.message)
            state.client_ids[command.client_id] = item.server_id
            view[item.server_id] = item.version
            return AddResponse(command.client_id, item.server_id, SyncStatus.SUCCESS)
        item_or_none = folder.items.get(command.server_id)
        if item_or_none is None:
            if isinstance(command, ClientChange):
                return ChangeResponse(command.server_id, SyncStatus.OBJECT_NOT_FOUND)
            if isinstance(command, ClientDelete):
                return DeleteResponse(command.server_id, SyncStatus.OBJECT_NOT_FOUND)
            return FetchResponse(command.server_id, SyncStatus.OBJECT_NOT_FOUND)
        item = item_or_none
        if isinstance(command, ClientFetch):
            return FetchResponse(command.server_id, SyncStatus.SUCCESS, item)
        if isinstance(command, ClientChange):
            changed = attrs.evolve(
                item.message,
                read=item.message.read if command.read is None else command.read,
                flagged=item.message.flagged if command.flagged is None else command.flagged,
            )
            updated = StoredItem(item.server_id, changed, item.version + 1)
            folder.items[item.server_id] = updated
            view[item.server_id] = updated.version
            self._touch(folder)
            return None
        del folder.items[item.server_id]
        view.pop(item.server_id, None)
        self._touch(folder)
        # MS-ASCMD DeletesAsMoves (Sync): absent or 1 moves the item to Deleted Items.
        if deletes_as_moves and folder.spec.type is not FolderType.DELETED_ITEMS:
            self.add_item(DELETED_ITEMS_ID, item.message)
        return None

    def estimate(self, device_id: str, collection_id: str, sync_key: str) -> EstimateResult:
        """MS-ASCMD 2.2.1.9: how many changes the next Sync with ``sync_key`` would carry."""
        folder = self.folders.get(collection_id)
        if folder is None or not folder.spec.is_mail:
            return EstimateResult(collection_id, EstimateStatus.INVALID_COLLECTION)
        device = self.devices.get(device_id)
        state = None if device is None else device.collections.get(collection_id)
        if sync_key == "0" or state is None or state.current_key is None:
            return EstimateResult(collection_id, EstimateStatus.NOT_PRIMED)
        view = state.view_for(sync_key)
        if view is None:
            return EstimateResult(collection_id, EstimateStatus.INVALID_SYNC_KEY)
        return EstimateResult(collection_id, EstimateStatus.SUCCESS, len(_pending(folder, view)))

    # - Ping

    def changed_folders(
        self, device_id: str, folder_ids: Iterable[str], baseline: Mapping[str, int]
    ) -> tuple[str, ...]:
        """Watched folders with changes the device has not synced.

        A folder the device has synced is compared with its current view (so a change that
        arrived before the Ping started is reported at once); a folder it never synced is
        compared with ``baseline``, the folder seqs read when the Ping started.
        """
        device = self.devices.get(device_id)
        changed = []
        for folder_id in folder_ids:
            folder = self.folders.get(folder_id)
            if folder is None:
                continue
            state = None if device is None else device.collections.get(folder_id)
            view = (
                None
                if state is None or state.current_key is None
                else (state.views.get(state.current_key))
            )
            if view is not None:
                if _pending(folder, view):
                    changed.append(folder_id)
            elif folder.seq > baseline.get(folder_id, folder.seq):
                changed.append(folder_id)
        return tuple(changed)

    def folder_seqs(self, folder_ids: Iterable[str]) -> dict[str, int]:
        return {fid: self.folders[fid].seq for fid in folder_ids if fid in self.folders}

    def summary(self) -> dict[str, object]:
        """A JSON-able picture of the mailbox for the admin API."""
        return {
            "user": self.user,
            "email": self.address,
            "change_seq": self.change_seq,
            "folders": [
                {
                    "id": f.spec.server_id,
                    "name": f.spec.name,
                    "type": int(f.spec.type),
                    "items": len(f.items),
                    "unread": sum(1 for i in f.items.values() if not i.message.read),
                }
                for f in self.folders.values()
            ],
            "devices": [
                {
                    "device_id": d.device_id,
                    "folder_sync_key": d.folder_key,
                    "sync_keys": {cid: c.current_key for cid, c in sorted(d.collections.items())},
                    "device_information": dict(d.device_information),
                    "last_seen": d.last_seen,
                }
                for d in self.devices.values()
            ],
        }


def _folder_order(specs: Iterable[FolderSpec]) -> list[FolderSpec]:
    return sorted(specs, key=lambda f: _item_order(f.server_id))


def _pending(folder: Folder, view: View) -> list[ServerCommand]:
    """The folder's difference from a view: adds (oldest first), changes, then deletes."""
    commands: list[ServerCommand] = []
    for server_id in sorted(folder.items, key=_item_order):
        item = folder.items[server_id]
        known = view.get(server_id)
        if known is None:
            commands.append(ServerAdd(item))
        elif known != item.version:
            commands.append(ServerChange(item))
    commands.extend(
        ServerDelete(sid) for sid in sorted(view, key=_item_order) if sid not in folder.items
    )
    return commands


# --- the store of all mailboxes ----------------------------------------------------------------


@attrs.define(eq=False)
class MailStore:
    """Every user's mailbox, found by login name or SMTP address (case-insensitive)."""

    mailboxes: dict[str, Mailbox] = attrs.Factory(dict)
    by_address: dict[str, str] = attrs.Factory(dict)

    @classmethod
    def for_users(cls, users: Iterable[tuple[str, str]]) -> MailStore:
        """A store with one empty mailbox per ``(login, address)``."""
        store = cls()
        for login, address in users:
            mailbox = Mailbox.create(login, address)
            store.mailboxes[login.lower()] = mailbox
            store.by_address[address.lower()] = login.lower()
        return store

    def mailbox(self, user: str) -> Mailbox | None:
        """The mailbox of a login name or an SMTP address."""
        key = user.lower()
        login = self.by_address.get(key, key)
        return self.mailboxes.get(login)

    def deliver(self, message: Message, *, now: float) -> Delivery:
        """Put ``message`` in the Inbox of every recipient who has a mailbox here.

        Recipients with no mailbox are reported back (a real server would relay them).
        """
        delivered: list[str] = []
        unknown: list[str] = []
        for address in message.recipients:
            # Recipients are SMTP addresses; a bare login name is not an address.
            login = self.by_address.get(address)
            mailbox = None if login is None else self.mailboxes.get(login)
            if mailbox is None:
                unknown.append(address)
                continue
            if mailbox.user in delivered:
                continue
            mailbox.add_item(INBOX_ID, attrs.evolve(message, received=now, read=False))
            delivered.append(mailbox.user)
        return Delivery(tuple(delivered), tuple(unknown))

    def seed(self, count: int, *, seed: int, now: float) -> None:
        """Put ``count`` deterministic messages in every Inbox (same seed, same mail)."""
        for mailbox in self.mailboxes.values():
            rng = random.Random(f"{seed}:{mailbox.user}")
            for n in range(count):
                name, sender = rng.choice(_SEED_SENDERS)
                topic = rng.choice(_SEED_TOPICS)
                mailbox.add_item(
                    INBOX_ID,
                    Message(
                        subject=f"{topic} #{n + 1}",
                        sender=f"{name} <{sender}>",
                        to=(mailbox.address,),
                        body=(
                            f"Hello {mailbox.user},\n\nThis is seeded message {n + 1} about "
                            f"{topic.lower()}.\n\n{name}\n"
                        ),
                        # Older messages first, one hour apart, all before ``now``.
                        received=now - 3600.0 * (count - n),
                        read=rng.random() < 0.3,
                        importance=rng.choice((1, 1, 1, 2, 0)),
                    ),
                )


_SEED_SENDERS = (
    ("Helpdesk", "helpdesk@example.com"),
    ("Payroll", "payroll@example.com"),
    ("Facilities", "facilities@example.com"),
    ("Security Team", "security@example.com"),
    ("Travel Desk", "travel@example.com"),
)
_SEED_TOPICS = (
    "Quarterly review",
    "Badge renewal",
    "Expense report",
    "Team lunch",
    "Password policy",
    "Office move",
    "Holiday schedule",
)
