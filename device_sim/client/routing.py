"""Which command module builds, and which reads, each exchange of a step.

Responsibility: route an exchange to its command module: ``request_for`` builds its request
from what the phone holds, ``read_answer`` reads its answer into a ``Verdict``. It must not
change the phone or the step: it sees them through read-only views.

Theory of operation: the command modules are pure functions that take exactly the values they
need (a sync key, the folders, the Policy/Status to acknowledge with); this module picks them
out of the phone (``Phone``, a read-only protocol ``DeviceClient`` satisfies) and the step's
counters, so the facade deals in exchanges and verdicts only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from activesync.wbxml.tree import Element
from device_sim.client.exchanges import (
    AckOp,
    FolderSyncOp,
    Op,
    OptionsOp,
    PingOp,
    ProvisionOp,
    Run,
    SendMailOp,
    SettingsOp,
    SyncOp,
    WipeAckOp,
)
from device_sim.client.hierarchy import folder_sync_request, read_folder_sync
from device_sim.client.mail import read_send_mail, send_mail_request
from device_sim.client.memory import Folder, Item
from device_sim.client.options import options_request
from device_sim.client.ping import ping_request, read_ping
from device_sim.client.provisioning import (
    ack_request,
    provision_request,
    read_provision,
    wipe_ack_request,
)
from device_sim.client.settings import read_settings, settings_request
from device_sim.client.sync import read_sync, sync_request
from device_sim.client.verdicts import Verdict
from device_sim.wire import DeviceIdentity, HttpRequest


class Phone(Protocol):
    """What the command modules may read of a phone."""

    @property
    def identity(self) -> DeviceIdentity: ...

    @property
    def policy_key(self) -> int: ...

    @property
    def folder_sync_key(self) -> str: ...

    @property
    def folders(self) -> Mapping[str, Folder]: ...

    @property
    def sync_keys(self) -> Mapping[str, str]: ...

    @property
    def items(self) -> Mapping[str, Mapping[str, Item]]: ...


def request_for(op: Op, phone: Phone) -> HttpRequest:
    """The request of exchange ``op`` (never a placeholder: ``expand`` replaced those)."""
    ident, key = phone.identity, phone.policy_key
    if isinstance(op, OptionsOp):
        return options_request(ident)
    if isinstance(op, ProvisionOp):
        return provision_request(ident, op)
    if isinstance(op, AckOp):
        return ack_request(ident, op)
    if isinstance(op, WipeAckOp):
        return wipe_ack_request(ident, op)
    if isinstance(op, FolderSyncOp):
        return folder_sync_request(ident, key, phone.folder_sync_key)
    if isinstance(op, SyncOp):
        return sync_request(ident, key, op.folder_id, phone.sync_keys.get(op.folder_id, "0"))
    if isinstance(op, PingOp):
        return ping_request(ident, op, phone.folders)
    if isinstance(op, SendMailOp):
        return send_mail_request(ident, key, op)
    if isinstance(op, SettingsOp):
        return settings_request(ident, key)
    raise AssertionError(f"no request for placeholder {op!r}")  # pragma: no cover


def read_answer(op: Op, root: Element | None, phone: Phone, run: Run, now: float) -> Verdict:
    """Read the WBXML answer (``root``, None when empty) to ``op``, the head of ``run``.

    Raises ``ActiveSyncError`` when the answer is malformed. OPTIONS and the wipe
    acknowledgement are not read here: the facade reads their HTTP answer itself.
    """
    if isinstance(op, ProvisionOp | AckOp):
        ack_status = phone.identity.policy_ack_status
        return read_provision(op, root, ack_status=ack_status, now=now)
    if isinstance(op, FolderSyncOp):
        return read_folder_sync(root, phone.folders)
    if isinstance(op, SyncOp):
        return read_sync(
            op,
            root,
            folders=phone.folders,
            sync_key=phone.sync_keys.get(op.folder_id, "0"),
            held=phone.items.get(op.folder_id, {}),
            rounds=run.sync_rounds.get(op.folder_id, 0),
        )
    if isinstance(op, PingOp):
        return read_ping(op, root, folders=phone.folders, resyncs=run.resyncs)
    if isinstance(op, SendMailOp):
        return read_send_mail(op, root, phone.identity.version)
    if isinstance(op, SettingsOp):
        return read_settings(root)
    raise AssertionError(f"no reader for {op!r}")  # pragma: no cover
