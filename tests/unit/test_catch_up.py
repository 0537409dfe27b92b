"""Catch-up without traffic: whom a node probes (node.consensus.catchup), and a node that joins
an idle consortium with an empty ledger reaching the others' height on its own."""

from __future__ import annotations

import pytest
import trio

from medchain.node.consensus.catchup import CatchUp, CatchUpConfig
from medchain.node.consensus.driver import Driver
from medchain.node.net.transport import MemoryHub
from tests.helpers import Consortium
from tests.rpcnode import node_driver

CFG = CatchUpConfig(poll_ms=500, idle_probe_ms=10_000)


def test_every_newly_connected_peer_is_probed_once() -> None:
    c = CatchUp(CFG)
    assert c.tick(0, {1, 2}, 0) == [1, 2]
    assert c.tick(500, {1, 2}, 0) == []
    assert c.tick(1000, {1, 2, 3}, 0) == [3]
    assert c.tick(1500, {1, 3}, 0) == []  # 2 went away
    assert c.tick(2000, {1, 2, 3}, 0) == [2]  # and came back


def test_idle_node_probes_one_peer_per_period_and_a_busy_one_none() -> None:
    c = CatchUp(CFG)
    c.tick(0, {1, 2, 3}, 5)
    probes = [p for t in range(500, 60_001, 500) for p in c.tick(t, {1, 2, 3}, 5)]
    assert len(probes) == 6 and set(probes) == {1, 2, 3}  # round robin, every 10 s
    busy = [p for t in range(60_500, 120_001, 500) for p in c.tick(t, {1, 2, 3}, t)]
    assert busy == []  # committing: consensus messages say where the others are
    assert c.tick(120_500, set(), 5) == []  # nobody to ask


async def _driver(c: Consortium, hub: MemoryHub, i: int, nursery: trio.Nursery) -> Driver:
    d = node_driver(c, i, hub.transport(i), catch_up=CatchUpConfig(poll_ms=50, idle_probe_ms=1000))
    await nursery.start(d.run)
    return d


async def _idle(drivers: list[Driver]) -> int:
    """Wait until the drivers agree on a height that holds for a second (the primary's
    sealing block after the last transaction included): their common height."""
    with trio.fail_after(20):
        while True:
            heights = {d.ledger.height for d in drivers}
            await trio.sleep(1.0)
            if len(heights) == 1 and {d.ledger.height for d in drivers} == heights:
                return heights.pop()


@pytest.mark.trio
async def test_empty_node_catches_up_in_an_idle_consortium() -> None:
    c = Consortium.make(batch_timeout_ms=5, checkpoint_interval=5, log_window=10)
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        live = [await _driver(c, hub, i, nursery) for i in range(3)]
        for k in range(12):  # one block each
            tx_id = await live[k % 3].submit(c.tx(c.admin_keys[k % 4]).encode())
            assert await live[0].wait_committed(tx_id, 20)
        top = await _idle(live)
        assert top > 2 * 5  # beyond the joiner's log window: only state transfer brings it
        joiner = await _driver(c, hub, 3, nursery)  # no new transactions from here on
        with trio.fail_after(10):
            while joiner.ledger.height < top:
                await trio.sleep(0.02)
        assert joiner.ledger.state_root == live[0].ledger.state_root
        assert joiner.metrics.state_transfer_batches > 0
        nursery.cancel_scope.cancel()
