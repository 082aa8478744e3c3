"""The phone's standing with the server: states, the events that move them, the table.

Responsibility: say which ``DeviceState`` follows a (state, event) pair, and refuse every pair
the table does not list. It must not know about requests, responses or anything the phone
remembers: the facade (``device.py``) decides which event happened and fires it here.

Theory of operation: ``TRANSITIONS`` is built once from a few groups of states (idle,
provisioning, alive) so the rules read as sentences ("any idle state may start a provision").
``next_state`` is the only way to move: a pair missing from the table raises
``IllegalTransition`` naming both, in the manner of h11's ``_state.py``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final


class DeviceState(enum.Enum):
    """Where the phone stands with the server."""

    #: No policy key: never provisioned, or the key was dropped on a re-provision request.
    NEW = "new"
    #: The initial Provision request is out; waiting for the policy and a temporary key.
    PROVISIONING = "provisioning"
    #: The acknowledgement of the temporary key is out; waiting for the final key.
    ACKNOWLEDGING = "acknowledging"
    #: The server accepts this phone's commands (final key held, or no policy demanded).
    READY = "ready"
    #: The server asked for a wipe (Status 140); the empty Provision that fetches it is out.
    WIPE_PENDING = "wipe-pending"
    #: A RemoteWipe directive arrived; the wipe acknowledgement is out.
    WIPING = "wiping"
    #: The server refused this phone (129, 177, 403...); ``DeviceClient.block`` has the code.
    BLOCKED = "blocked"
    #: The phone acknowledged a remote wipe and erased its account data. Final.
    WIPED = "wiped"
    #: The server refused the credentials (HTTP 401).
    AUTH_FAILED = "auth-failed"


class Event(enum.Enum):
    """What moves a ``DeviceState``."""

    #: An initial Provision request was sent.
    PROVISION_STARTED = "provision-started"
    #: Phase 1 answered with a policy and a temporary key.
    TEMPORARY_KEY_RECEIVED = "temporary-key-received"
    #: Phase 1 answered "no policy for this client" (Policy Status 2).
    NO_POLICY_REQUIRED = "no-policy-required"
    #: Phase 2 answered with the final key.
    FINAL_KEY_RECEIVED = "final-key-received"
    #: A Provision exchange failed (bad status, wrong key...).
    PROVISION_FAILED = "provision-failed"
    #: The server served a command normally.
    COMMAND_ACCEPTED = "command-accepted"
    #: The server asked for (re-)provisioning (449, 141-144).
    PROVISION_REQUIRED = "provision-required"
    #: The server refused the device (129, 177, 403, ...).
    ACCESS_REFUSED = "access-refused"
    #: The server refused the credentials (401).
    AUTH_REFUSED = "auth-refused"
    #: The server asked for a wipe (Status 140).
    WIPE_REQUESTED = "wipe-requested"
    #: A Provision response carried RemoteWipe / AccountOnlyRemoteWipe.
    WIPE_DIRECTIVE_RECEIVED = "wipe-directive-received"
    #: The wipe acknowledgement went out and the data is gone.
    WIPE_ACKNOWLEDGED = "wipe-acknowledged"


class IllegalTransition(RuntimeError):
    """An event that the current state does not allow (a bug in the caller or the core)."""

    def __init__(self, state: DeviceState, event: Event) -> None:
        super().__init__(f"event {event.name} is not allowed in state {state.name}")
        self.state = state
        self.event = event


def _transitions() -> dict[tuple[DeviceState, Event], DeviceState]:
    s, e = DeviceState, Event
    idle = (s.NEW, s.READY, s.BLOCKED, s.AUTH_FAILED)
    provisioning = (s.PROVISIONING, s.ACKNOWLEDGING)
    alive = (*idle, *provisioning, s.WIPE_PENDING)
    table: dict[tuple[DeviceState, Event], DeviceState] = {}
    for state in idle:
        table[(state, e.PROVISION_STARTED)] = s.PROVISIONING
        table[(state, e.COMMAND_ACCEPTED)] = s.READY
    for state in (*idle, *provisioning):
        table[(state, e.PROVISION_REQUIRED)] = s.NEW
    for state in alive:
        table[(state, e.ACCESS_REFUSED)] = s.BLOCKED
        table[(state, e.AUTH_REFUSED)] = s.AUTH_FAILED
        table[(state, e.WIPE_REQUESTED)] = s.WIPE_PENDING
    for state in (*provisioning, s.WIPE_PENDING):
        table[(state, e.WIPE_DIRECTIVE_RECEIVED)] = s.WIPING
        table[(state, e.PROVISION_FAILED)] = s.NEW
    table[(s.PROVISIONING, e.TEMPORARY_KEY_RECEIVED)] = s.ACKNOWLEDGING
    table[(s.WIPE_PENDING, e.TEMPORARY_KEY_RECEIVED)] = s.ACKNOWLEDGING
    table[(s.PROVISIONING, e.NO_POLICY_REQUIRED)] = s.READY
    table[(s.WIPE_PENDING, e.NO_POLICY_REQUIRED)] = s.READY
    table[(s.ACKNOWLEDGING, e.FINAL_KEY_RECEIVED)] = s.READY
    table[(s.WIPING, e.WIPE_ACKNOWLEDGED)] = s.WIPED
    return table


#: (state, event) -> next state. Anything missing is an ``IllegalTransition``.
TRANSITIONS: Final[Mapping[tuple[DeviceState, Event], DeviceState]] = _transitions()

#: States in which a provisioning exchange is out (a failure there drops back to NEW).
PROVISIONING_STATES: Final = frozenset(
    {DeviceState.PROVISIONING, DeviceState.ACKNOWLEDGING, DeviceState.WIPE_PENDING}
)


def next_state(state: DeviceState, event: Event) -> DeviceState:
    """The state ``event`` leads to from ``state``; ``IllegalTransition`` if it may not happen."""
    after = TRANSITIONS.get((state, event))
    if after is None:
        raise IllegalTransition(state, event)
    return after
