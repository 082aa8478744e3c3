"""The virtual clock: timers fire in order, once per period, however far it is moved."""

from __future__ import annotations

import asyncio

import pytest

from simclock import ManualClock


async def test_a_periodic_loop_doing_real_io_fires_once_per_period() -> None:
    clock = ManualClock()
    runs: list[float] = []

    async def resync_loop() -> None:
        while True:
            await clock.sleep(300)
            # Real I/O between sleeps, like a resync calling the UEM over loopback.
            await asyncio.sleep(0.002)
            runs.append(clock.now())

    task = asyncio.create_task(resync_loop())
    await asyncio.sleep(0)
    start = clock.now()
    async with asyncio.timeout(30):
        await clock.advance(25 * 3600)
    task.cancel()
    assert len(runs) == 300
    assert runs == [start + 300 * (i + 1) for i in range(300)]


async def test_timers_fire_in_deadline_order_and_time_ends_at_the_target() -> None:
    clock = ManualClock()
    fired: list[str] = []

    async def after(seconds: float, name: str) -> None:
        await clock.sleep(seconds)
        fired.append(name)

    tasks = [asyncio.create_task(after(s, n)) for s, n in ((30, "c"), (10, "a"), (20, "b"))]
    await asyncio.sleep(0)
    assert clock.next_deadline() == clock.now() + 10
    start = clock.now()
    await clock.advance(25)
    assert fired == ["a", "b"]
    assert clock.now() == start + 25
    assert clock.pending_sleepers == 1
    await clock.advance(5)
    assert fired == ["a", "b", "c"]
    assert clock.next_deadline() is None
    await asyncio.gather(*tasks)


async def test_a_woken_task_blocked_elsewhere_does_not_stall_the_clock() -> None:
    clock = ManualClock(settle_s=0.05)
    never: asyncio.Event = asyncio.Event()

    async def stuck() -> None:
        await clock.sleep(1)
        await never.wait()  # e.g. an answer that never comes

    task = asyncio.create_task(stuck())
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await clock.advance(10)
    assert not task.done()
    task.cancel()


async def test_moving_backwards_is_refused() -> None:
    with pytest.raises(ValueError, match="backwards"):
        await ManualClock().advance(-1)
