"""The ``Clock`` seam and its two implementations.

``SystemClock`` reads wall time and sleeps on the event loop. ``ManualClock`` only moves when
told to; ``sleep()`` on it parks the caller until ``advance()`` carries the clock past the wake-up
time, so timers fire deterministically and instantly (the idea of trio's MockClock).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
import weakref
from typing import Any, Protocol


class Clock(Protocol):
    """What every actor needs of time: a reading and a way to wait."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """Wall-clock time; sleeping yields to the running event loop."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that moves only when advanced.

    Sleepers are kept in a heap ordered by wake-up time; ``advance()`` wakes them in that
    order and, after each wake-up, waits until the woken task has either finished or gone back
    to sleep on this clock before it fires the next timer. A periodic loop that does real I/O
    between its sleeps (a resync calling the UEM over loopback) therefore runs exactly once per
    period however far the clock is moved: ``advance(25 * 3600)`` fires a 300 s resync 300
    times. A woken task that waits on something else instead (a network answer that does not
    come) is given ``settle_s`` of real time, then the clock moves on without it.
    """

    def __init__(
        self, start: float = 1_767_225_600.0, *, settle_s: float = 2.0
    ) -> None:  # start: 2026-01-01T00:00:00Z
        self._now = start
        self._settle_s = settle_s
        self._sleepers: list[tuple[float, int, asyncio.Future[None], asyncio.Task[Any] | None]] = []
        self._order = itertools.count()
        # Incremented by every sleep() call of a task, so advance() can tell it slept again.
        self._naps: weakref.WeakKeyDictionary[asyncio.Task[Any], int] = weakref.WeakKeyDictionary()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.current_task()
        if task is not None:
            self._naps[task] = self._naps.get(task, 0) + 1
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future, task))
        await future

    def next_deadline(self) -> float | None:
        """When the earliest pending sleeper wakes, or None when nobody sleeps on this clock."""
        for wake_at, _, future, _ in sorted(self._sleepers):
            if not future.done():
                return wake_at
        return None

    @property
    def pending_sleepers(self) -> int:
        """How many tasks are parked on this clock (cancelled ones not counted)."""
        return sum(1 for _, _, f, _ in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking every sleeper that falls due, in order."""
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards (advance by {seconds})")
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            wake_at, _, future, task = heapq.heappop(self._sleepers)
            self._now = max(self._now, wake_at)
            if future.done():
                continue
            naps = self._naps.get(task, 0) if task is not None else 0
            future.set_result(None)
            await self._settle(task, naps)
        self._now = target
        await asyncio.sleep(0)

    async def _settle(self, task: asyncio.Task[Any] | None, naps: int) -> None:
        """Let the woken ``task`` run until it finishes or sleeps on this clock again."""
        for _ in range(5):
            await asyncio.sleep(0)
        if task is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settle_s
        while not task.done() and self._naps.get(task, 0) == naps:
            if loop.time() >= deadline:
                return
            # Real time passes here: the task may be waiting for a loopback answer.
            await asyncio.sleep(0.0005)
