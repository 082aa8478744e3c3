"""Clocks shared by every actor of the lab.

Every core takes ``now: float`` and every shell reads the clock it was handed, so one
``ManualClock`` can drive the UEM, the gatekeeper and the mocks together: advancing it
fires their timers (resync, compliance checks, out-of-contact) at once and in order.

This package is neutral ground: it imports no project package, and every actor may use it.
"""

from __future__ import annotations

from simclock.clock import Clock, ManualClock, SystemClock

__all__ = ["Clock", "ManualClock", "SystemClock"]
