"""Fault injection for the lab's mock servers: plans, per-request decisions, the aiohttp shell.

A neutral package like ``simclock``: it imports no other project package, so both the mock UEM
and the mock Exchange (which may not import each other) build on it. ``plan`` and ``state`` are
pure; ``control`` holds a server's active plan; ``middleware`` and ``listener`` are the aiohttp
shell. The mapping format and the admin APIs are described in docs/faults.md.
"""

from __future__ import annotations

from labfaults.control import FaultControl, FaultSwitch, Subscriber
from labfaults.listener import ListenerSwitch, TcpListener
from labfaults.middleware import FAULT_HEADER, drop_connection, fault_middleware
from labfaults.plan import (
    MAX_FAULT_S,
    Down,
    ErrorRate,
    FailAfter,
    FaultError,
    FaultPlan,
    FaultRule,
    Hang,
    Latency,
    Scope,
)
from labfaults.state import FaultAction, FaultState, Outcome, RequestFacts

__all__ = [
    "FAULT_HEADER",
    "MAX_FAULT_S",
    "Down",
    "ErrorRate",
    "FailAfter",
    "FaultAction",
    "FaultControl",
    "FaultError",
    "FaultPlan",
    "FaultRule",
    "FaultState",
    "FaultSwitch",
    "Hang",
    "Latency",
    "ListenerSwitch",
    "Outcome",
    "RequestFacts",
    "Scope",
    "Subscriber",
    "TcpListener",
    "drop_connection",
    "fault_middleware",
]
