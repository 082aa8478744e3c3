"""The pusher over real loopback HTTP: batching, version ranges and the ``skip`` argument."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from simclock import SystemClock
from tests.uem_sim.fakes import push_receiver
from uem_sim.contract import AccessState, ActiveSyncPolicy, DecisionMessage
from uem_sim.events import EventBus
from uem_sim.outgoing_client import OutgoingClient
from uem_sim.outgoing_tls import OutgoingTlsSettings
from uem_sim.push import Pusher

POLICY = ActiveSyncPolicy(1, {})


def decision(user: str, device_id: str, version: int, state: AccessState) -> DecisionMessage:
    return DecisionMessage(
        user=user,
        device_id=device_id,
        state=state,
        reasons=0,
        explanation="test",
        activesync_policy=POLICY,
        record_version=version,
        decided_at=1.0,
        registered=False,
    )


@contextlib.asynccontextmanager
async def pusher() -> AsyncIterator[tuple[Pusher, EventBus]]:
    clock = SystemClock()
    events = EventBus(strict=True)
    client = OutgoingClient(OutgoingTlsSettings.default(), clock=clock, events=events)
    push = Pusher(client, clock, events)
    try:
        yield push, events
    finally:
        await push.close()
        await client.close()


async def test_skip_leaves_the_record_out_for_that_gatekeeper_only() -> None:
    async with (
        asyncio.timeout(10),
        push_receiver() as (gk1, url1),
        push_receiver() as (gk2, url2),
        pusher() as (push, _),
    ):
        push.register("gk1", url1)
        push.register("gk2", url2)
        alice = decision("alice", "Phone1", 1, AccessState.ALLOW)
        push.publish(0, 1, [alice], skip=("gk1", alice.key))
        assert push.pending("gk1") == 0
        batch = await gk2.next_batch()
        assert [r.key for r in batch.records] == [("alice", "Phone1")]
        # gk1's next push carries the skipped change's version range: no gap, no resync.
        bob = decision("bob", "Phone2", 2, AccessState.BLOCK)
        push.publish(1, 2, [bob])
        batch = await gk1.next_batch()
        assert [r.key for r in batch.records] == [("bob", "Phone2")]
        assert (batch.since, batch.version) == (0, 2)
        assert [m.records[0].key for m in gk1.received] == [("bob", "Phone2")]


async def test_skip_keeps_the_other_records_of_the_batch() -> None:
    async with asyncio.timeout(10), push_receiver() as (gk1, url1), pusher() as (push, _):
        push.register("gk1", url1)
        records = [
            decision("alice", "Phone1", 1, AccessState.ALLOW),
            decision("bob", "Phone2", 2, AccessState.BLOCK),
        ]
        push.publish(0, 2, records, skip=("gk1", ("alice", "Phone1")))
        batch = await gk1.next_batch()
        assert [r.key for r in batch.records] == [("bob", "Phone2")]
        assert (batch.since, batch.version) == (0, 2)


async def test_skip_drops_an_older_pending_decision_for_the_same_record() -> None:
    # Both publishes land in the outbox before the worker runs: the older ALLOW must not reach
    # gk1 after gk1 got the newer BLOCK in the answer to its own report.
    async with asyncio.timeout(10), push_receiver() as (gk1, url1), pusher() as (push, _):
        push.register("gk1", url1)
        push.publish(0, 1, [decision("alice", "Phone1", 1, AccessState.ALLOW)])
        push.publish(
            1,
            2,
            [decision("alice", "Phone1", 2, AccessState.BLOCK)],
            skip=("gk1", ("alice", "Phone1")),
        )
        assert push.pending("gk1") == 0
        push.publish(2, 3, [decision("bob", "Phone2", 3, AccessState.ALLOW)])
        batch = await gk1.next_batch()
        assert [r.key for r in batch.records] == [("bob", "Phone2")]
        assert (batch.since, batch.version) == (0, 3)


async def test_skip_for_an_unknown_gatekeeper_changes_nothing() -> None:
    async with asyncio.timeout(10), push_receiver() as (gk1, url1), pusher() as (push, _):
        push.register("gk1", url1)
        alice = decision("alice", "Phone1", 1, AccessState.ALLOW)
        push.publish(0, 1, [alice], skip=("gk-other", alice.key))
        batch = await gk1.next_batch()
        assert [r.key for r in batch.records] == [alice.key]
