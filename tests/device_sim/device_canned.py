"""Canned server answers for the device client tests, built with the activesync views.

Each function returns the ``HttpResponse`` a server would send; ``ready_client`` walks a fresh
client through Provision and FolderSync so a test can start from a provisioned phone.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from activesync.answers import EasAnswer
from activesync.commands.email_item import EmailItem
from activesync.commands.folder_sync import FolderChanges, FolderEntry, FolderSyncResponse
from activesync.commands.folder_types import FolderType
from activesync.commands.ping import PingResponse
from activesync.commands.provision import ProvisionDoc, ProvisionResponse
from activesync.commands.sync import ServerAdd, SyncCollectionResponse, SyncResponse
from activesync.query import EasRequest, parse_request
from activesync.versions import ProtocolVersion
from activesync.wbxml import decode, encode
from activesync.wbxml.tree import Element
from device_sim.client import DeviceClient, Done, FolderSync, Provision, Send, StepResult
from device_sim.wire import DeviceIdentity, HttpRequest, HttpResponse, QueryForm, Quirk

VERSIONS = ("12.1", "14.0", "14.1", "16.0", "16.1")
FORMS = (QueryForm.PLAIN, QueryForm.BASE64)
INBOX = "5"
TEMP_KEY = 1111
FINAL_KEY = 2222
POLICY = ProvisionDoc().replace(DevicePasswordEnabled=True, MinDevicePasswordLength=6)
NOW = 1_767_225_600.0


def identity(
    version: str = "16.1",
    form: QueryForm = QueryForm.PLAIN,
    quirks: frozenset[Quirk] = frozenset(),
) -> DeviceIdentity:
    return DeviceIdentity(
        user="alice",
        password="alice-pass",
        device_id="DEV0001",
        device_type="iPhone",
        version=version,
        query_form=form,
        quirks=quirks,
    )


def wbxml(root: Element, status: int = 200) -> HttpResponse:
    return HttpResponse(status, [("Content-Type", "application/vnd.ms-sync.wbxml")], encode(root))


def from_answer(answer: EasAnswer) -> HttpResponse:
    return HttpResponse(answer.http_status, answer.headers, answer.body)


def provision_initial(version: str, key: int = TEMP_KEY) -> HttpResponse:
    v = ProtocolVersion.from_text(version)
    return wbxml(
        ProvisionResponse.initial(
            version=v,
            policy_key=key,
            doc=POLICY,
            device_information_sent=v >= ProtocolVersion.V14_1,
        ).to_element()
    )


def provision_final(version: str, key: int = FINAL_KEY) -> HttpResponse:
    v = ProtocolVersion.from_text(version)
    return wbxml(ProvisionResponse.acknowledged(version=v, policy_key=key).to_element())


def wipe_directive(version: str) -> HttpResponse:
    v = ProtocolVersion.from_text(version)
    return wbxml(ProvisionResponse.wipe_directive(version=v).to_element())


def folder_list(sync_key: str = "1") -> HttpResponse:
    adds = (
        FolderEntry(INBOX, "0", "Inbox", FolderType.INBOX),
        FolderEntry("6", "0", "Sent Items", FolderType.SENT_ITEMS),
        FolderEntry("7", "0", "Calendar", FolderType.CALENDAR),
    )
    return wbxml(
        FolderSyncResponse(
            status=1, sync_key=sync_key, changes=FolderChanges.of(adds=adds)
        ).to_element()
    )


def mail(server_id: str, subject: str) -> ServerAdd:
    data = EmailItem(subject=subject, from_="carol@example.com").to_application_data()
    return ServerAdd(server_id=server_id, application_data=data)


def sync_answer(
    sync_key: str,
    adds: tuple[ServerAdd, ...] = (),
    *,
    status: int = 1,
    more: bool = False,
    folder: str = INBOX,
) -> HttpResponse:
    collection = SyncCollectionResponse(
        sync_key=sync_key,
        collection_id=folder,
        status=status,
        more_available=more,
        commands=adds or None,
    )
    return wbxml(SyncResponse(collections=(collection,)).to_element())


def ping_answer(status: int, folders: tuple[str, ...] | None = None, **extra: int) -> HttpResponse:
    return wbxml(PingResponse(status=status, folders=folders, **extra).to_element())


def parsed(request: HttpRequest) -> EasRequest:
    """The request line as a server reads it (``activesync.query.parse_request``)."""
    parts = urlsplit(request.path_and_query)
    return parse_request(request.method, parts.path, parts.query, dict(request.headers))


def body(request: HttpRequest) -> Element:
    return decode(request.body)


def expect_send(result: StepResult) -> HttpRequest:
    assert isinstance(result.action, Send), result
    return result.action.request


def ready_client(version: str, form: QueryForm = QueryForm.PLAIN) -> DeviceClient:
    """A client that has provisioned (final key FINAL_KEY) and synced the folder list."""
    client = DeviceClient(identity(version, form))
    client.begin(Provision())
    expect_send(client.receive(provision_initial(version), NOW))
    assert client.receive(provision_final(version), NOW).action == Done(True)
    client.begin(FolderSync())
    assert client.receive(folder_list(), NOW).action == Done(True)
    return client
