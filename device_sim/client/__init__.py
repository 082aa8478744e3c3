"""A simulated phone's EAS client as a pure state machine (sans-I/O, in the manner of h11).

Responsibility: everything a phone decides. It turns a step of a script (OPTIONS, Provision,
FolderSync, Sync, Ping, SendMail, Settings) into ``HttpRequest`` values and reads each
``HttpResponse`` into a ``StepResult`` that says what happened in plain words and what to do
next. It keeps what a phone keeps: its policy key, the policy it applied, the folder hierarchy
and its sync key, a sync key per folder and the items received. It must not touch sockets, the
event loop or the clock: the shell (``device_sim/shell.py``) sends, waits and sleeps; time
comes in as ``now``.

Theory of operation:
- ``begin(step)`` plans the step as a queue of exchanges (``exchanges.py``) and returns the
  first request. ``receive(response, now)`` reads the answer to the head of the queue and
  returns a ``StepResult`` whose ``action`` is ``Send(request)`` (the step continues: the next
  exchange, a retry, a provisioning round), ``Backoff(seconds, request)`` (wait, then send),
  ``Done(succeeded)`` (the step is over) or ``Halt(state)`` (the device cannot go on: blocked,
  wiped, refused credentials).
- Reading is pure: ``reading.py`` screens HTTP and global statuses, and one module per command
  reads its own answer into a ``Verdict`` (events to fire, facts to remember, a reaction). The
  facade, ``DeviceClient`` (``device.py``), holds the phone's state and applies verdicts.
- Reactions follow what real phones do (notes 2, 3.3, 5.2): HTTP 449 or body Status 141-144
  drop the policy key, provision again (two phases, applying the policy) and retry the command;
  129, 177 and HTTP 403 (and the other access refusals 126/130/131) halt the device as
  BLOCKED, keeping the code; Status 140 sends an empty Provision, a RemoteWipe directive in any
  Provision response is acknowledged (Status 1) and the device halts as WIPED; HTTP 503 (and
  Status 111) back off for Retry-After seconds (or exponentially); 401 halts with an auth error.
- Every loop is bounded per step (exchanges, re-provisions, back-offs, sync rounds), so a
  misbehaving server ends a step with a failure instead of spinning.
- ``DeviceState`` changes only through ``TRANSITIONS``; an event the table does not allow in
  the current state raises ``IllegalTransition`` naming both.

Modules, one responsibility each:
- ``states``: ``DeviceState``, ``Event``, ``TRANSITIONS``, ``next_state``.
- ``steps``: what a script asks for (``Options`` ... ``Settings``, ``Step``).
- ``results``: what the shell is told (``Send``, ``Backoff``, ``Done``, ``Halt``,
  ``Outcome``, ``Block``, ``StepResult``).
- ``memory``: what the phone keeps (``Folder``, ``Item``, ``AppliedPolicy``).
- ``exchanges``: the exchanges of a step, its plan and its bounds.
- ``verdicts``: what a reader concludes (reactions, facts).
- ``framing``: the request line, headers and policy key of a request.
- ``reading``: HTTP and global statuses, back-off.
- ``options``, ``provisioning``, ``hierarchy`` (FolderSync), ``sync``, ``ping``, ``mail``
  (SendMail), ``settings``: each command's requests and answer reader.
- ``routing``: which command module builds and reads each exchange.
- ``device``: ``DeviceClient``, the facade that keeps state and applies verdicts.
"""

from __future__ import annotations

from device_sim.client.device import DeviceClient, UsageError
from device_sim.client.exchanges import (
    MAX_BACKOFFS,
    MAX_EXCHANGES,
    MAX_REPROVISIONS,
    MAX_RESYNCS,
    MAX_SYNC_ROUNDS,
)
from device_sim.client.framing import WBXML
from device_sim.client.mail import RFC822
from device_sim.client.memory import AppliedPolicy, Folder, Item
from device_sim.client.reading import DEFAULT_BACKOFF, MAX_BACKOFF_SECONDS
from device_sim.client.results import (
    Action,
    Backoff,
    Block,
    BlockKind,
    Done,
    Halt,
    Outcome,
    Send,
    StepResult,
)
from device_sim.client.states import (
    TRANSITIONS,
    DeviceState,
    Event,
    IllegalTransition,
    next_state,
)
from device_sim.client.steps import (
    FolderSync,
    Options,
    Ping,
    Provision,
    SendMail,
    Settings,
    Step,
    Sync,
)
from device_sim.client.sync import WINDOW_SIZE

__all__ = [
    "DEFAULT_BACKOFF",
    "MAX_BACKOFFS",
    "MAX_BACKOFF_SECONDS",
    "MAX_EXCHANGES",
    "MAX_REPROVISIONS",
    "MAX_RESYNCS",
    "MAX_SYNC_ROUNDS",
    "RFC822",
    "TRANSITIONS",
    "WBXML",
    "WINDOW_SIZE",
    "Action",
    "AppliedPolicy",
    "Backoff",
    "Block",
    "BlockKind",
    "DeviceClient",
    "DeviceState",
    "Done",
    "Event",
    "Folder",
    "FolderSync",
    "Halt",
    "IllegalTransition",
    "Item",
    "Options",
    "Outcome",
    "Ping",
    "Provision",
    "Send",
    "SendMail",
    "Settings",
    "Step",
    "StepResult",
    "Sync",
    "UsageError",
    "next_state",
]
