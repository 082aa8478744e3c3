"""What reading one answer concluded: the reaction, the events, the facts to remember.

Responsibility: the vocabulary shared by the response readers (``reading.py`` and the command
modules) and the facade (``device.py``) that carries their conclusions out. It must not hold
logic: readers choose these values, the facade applies them.

Theory of operation: a reader is a pure function from an answer (and read-only views of what
the phone holds) to a ``Verdict``. The facade applies a verdict in a fixed order: fire its
``events`` through the transition table, remember its ``facts`` (new keys, folders, items),
then carry out its ``reaction``: move on (``Advance``), end the step (``Fail``), replace the
exchange at the head of the queue (``Proceed``), or one of the protocol reactions (provision
again, resync, back off, halt as blocked or refused, fetch a wipe, acknowledge one).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from device_sim.client.exchanges import Op
from device_sim.client.memory import AppliedPolicy, Folder, Item
from device_sim.client.results import Block, Outcome
from device_sim.client.states import Event

# --- reactions ---------------------------------------------------------------------------------


@attrs.frozen
class Advance:
    """The head exchange did its job: go on with the next one, or finish the step."""

    code: int | None
    summary: str
    details: Mapping[str, object] = attrs.field(factory=dict)


@attrs.frozen
class Fail:
    """The exchange failed: the step ends without success."""

    code: int | None
    summary: str
    details: Mapping[str, object] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Proceed:
    """Replace the head exchange with ``ops`` (another phase, round or retry) and go on."""

    code: int | None
    outcome: Outcome
    summary: str
    ops: tuple[Op, ...]
    details: Mapping[str, object] = attrs.field(factory=dict)
    #: Appended to the summary when there is something left to send.
    sending_suffix: str = ""
    #: Whether this retry counts against the step's resync bound.
    counts_as_resync: bool = False


@attrs.frozen(kw_only=True)
class Resync:
    """Stale sync state: start a folder (or the hierarchy) again, then retry."""

    code: int
    why: str
    #: The folder to start again from SyncKey 0; None for the hierarchy.
    folder_id: str | None
    #: Fetch the hierarchy again (FolderSync) before retrying, keeping what the phone holds.
    refetch_hierarchy: bool = False


@attrs.frozen
class Reprovision:
    """The server wants (re-)provisioning before it serves the command."""

    code: int | None
    why: str


@attrs.frozen
class Refuse:
    """The server refused the device: it halts as BLOCKED."""

    code: int | None
    block: Block


@attrs.frozen
class AuthRefused:
    """The server refused the credentials (HTTP 401)."""


@attrs.frozen
class Busy:
    """The server is busy: back off, then resend."""

    why: str


@attrs.frozen
class WipeRequested:
    """Status 140: fetch the wipe directive with an empty Provision."""

    code: int


@attrs.frozen
class WipeDirective:
    """A Provision answer carried RemoteWipe: acknowledge it and wipe."""

    account_only: bool


Reaction = (
    Advance
    | Fail
    | Proceed
    | Resync
    | Reprovision
    | Refuse
    | AuthRefused
    | Busy
    | WipeRequested
    | WipeDirective
)

# --- facts to remember -----------------------------------------------------------------------


@attrs.frozen
class ServerOffer:
    """The versions and commands the server listed in its OPTIONS answer."""

    versions: tuple[str, ...]
    commands: tuple[str, ...]


@attrs.frozen
class PolicyApplied:
    """The phone applied the policy of a Provision answer."""

    policy: AppliedPolicy


@attrs.frozen
class PolicyKeyChanged:
    """The policy key the phone sends from now on."""

    key: int


@attrs.frozen
class HierarchyChanged:
    """A FolderSync answer: the folders now known, those deleted, the new hierarchy key."""

    sync_key: str
    folders: Mapping[str, Folder]
    #: ServerIds deleted by the server (their sync keys and items go too).
    deleted: tuple[str, ...]


@attrs.frozen(kw_only=True)
class FolderSynced:
    """A Sync round of one folder: its new key, the items now held, the rounds so far."""

    folder_id: str
    sync_key: str
    items: Mapping[str, Item]
    rounds: int


Fact = ServerOffer | PolicyApplied | PolicyKeyChanged | HierarchyChanged | FolderSynced


@attrs.frozen
class Verdict:
    """A reader's conclusion: fire ``events``, remember ``facts``, then do ``reaction``."""

    reaction: Reaction
    events: tuple[Event, ...] = ()
    facts: tuple[Fact, ...] = ()
