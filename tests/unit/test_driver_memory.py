"""The driver with four nodes over the in-memory transport (no sockets)."""

from __future__ import annotations

import pytest
import trio

from medchain.node.consensus.driver import Driver
from medchain.node.consensus.validation import encode_tx_batch
from medchain.node.mempool.ingress import REBROADCAST_MAX
from medchain.node.mempool.pool import PoolReject
from medchain.node.net.transport import CHANNEL_TXS, MemoryHub
from medchain.storage.ledger import Ledger
from medchain.storage.tx import Transaction
from tests.helpers import Consortium
from tests.rpcnode import node_driver


async def start_cluster(nursery: trio.Nursery, c: Consortium, hub: MemoryHub) -> list[Driver]:
    drivers = []
    for i in range(c.genesis.validators.n):
        d = node_driver(c, i, hub.transport(i))
        await nursery.start(d.run)
        drivers.append(d)
    return drivers


async def wait_height(drivers: list[Driver], height: int, timeout: float = 10) -> None:
    with trio.fail_after(timeout):
        while min(d.ledger.height for d in drivers) < height:
            await trio.sleep(0.01)


@pytest.mark.trio
async def test_four_drivers_commit_the_same_blocks() -> None:
    c = Consortium.make(batch_timeout_ms=5)
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        drivers = await start_cluster(nursery, c, hub)
        ids = []
        for k in range(40):
            tx = c.tx(c.admin_keys[k % 4])
            ids.append(await drivers[k % 4].submit(tx.encode()))
        for d in drivers:
            for tx_id in ids:
                assert await d.wait_committed(tx_id, 10)
        heights = {d.ledger.height for d in drivers}
        h = min(heights)
        await wait_height(drivers, h)
        for height in range(1, h + 1):
            assert len({d.ledger.block(height).hash for d in drivers}) == 1  # type: ignore[union-attr]
            assert len({d.ledger.state_root_at(height) for d in drivers}) == 1
        # replays and duplicates are refused at the door
        with pytest.raises(PoolReject) as info:  # the same bytes again
            await drivers[1].submit(c.tx(c.admin_keys[0], nonce=1).encode())
        assert info.value.code == "duplicate"
        with pytest.raises(PoolReject) as info:  # another transaction, a used nonce
            await drivers[1].submit(c.tx(c.admin_keys[0], args={"k": "v"}, nonce=1).encode())
        assert info.value.code == "replayed"
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_primary_down_view_change_and_catch_up() -> None:
    c = Consortium.make(
        batch_timeout_ms=5, view_change_timeout_ms=300, checkpoint_interval=5, log_window=10
    )
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        drivers = await start_cluster(nursery, c, hub)
        first = c.tx(c.admin_keys[1])
        tid = await drivers[1].submit(first.encode())
        assert await drivers[2].wait_committed(tid, 10)
        hub.nodes[0].down = True  # the primary of view 0 disappears
        ids = [
            await drivers[1 + k % 3].submit(c.tx(c.admin_keys[k % 4]).encode()) for k in range(30)
        ]
        for tx_id in ids:
            assert await drivers[2].wait_committed(tx_id, 20)
        assert drivers[2].replica.view >= 1
        hub.nodes[0].down = False  # it comes back and catches up by state transfer
        more = [await drivers[1].submit(c.tx(c.admin_keys[2]).encode()) for _ in range(20)]
        for tx_id in more:
            assert await drivers[0].wait_committed(tx_id, 30)
        await wait_height(drivers, drivers[1].ledger.height)
        assert (
            len(
                {
                    d.ledger.state_root
                    for d in drivers
                    if d.ledger.height == drivers[1].ledger.height
                }
            )
            == 1
        )
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_acknowledged_transactions_survive_a_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The pool's write-ahead log: a node that acknowledged a transaction and then
    died before it committed offers it again after the restart; once committed
    the entry is gone, and a restarted node does not re-admit committed ones."""
    c = Consortium.make(batch_timeout_ms=5)
    hub = MemoryHub()
    for i in (1, 2, 3):
        hub.transport(i)
        hub.nodes[i].down = True  # no quorum: nothing can commit
    ledger = Ledger.open(tmp_path / "n0", c.genesis)
    async with trio.open_nursery() as nursery:
        d = node_driver(c, 0, hub.transport(0), ledger, offload=True)
        await nursery.start(d.run)
        ids = [await d.submit(c.tx(c.admin_keys[k]).encode()) for k in range(3)]
        nursery.cancel_scope.cancel()
    ledger.close()  # the process is gone; the pool went with it

    hub = MemoryHub()
    ledger = Ledger.open(tmp_path / "n0", c.genesis)
    async with trio.open_nursery() as nursery:
        d = node_driver(c, 0, hub.transport(0), ledger, offload=True)
        await nursery.start(d.run)
        assert all(d.pool.get(t) is not None for t in ids)  # re-admitted from the log
        others = []
        for i in (1, 2, 3):
            o = node_driver(c, i, hub.transport(i))
            await nursery.start(o.run)
            others.append(o)
        for t in ids:
            assert await others[0].wait_committed(t, 10)
            assert await d.wait_committed(t, 10)
        await trio.sleep(0.05)
        assert list(ledger.store.scan(b"W")) == []  # committed: the log entries are gone
        nursery.cancel_scope.cancel()
    ledger.close()


@pytest.mark.trio
async def test_byzantine_primary_is_survived_and_named() -> None:
    """Node 0 (primary of view 0) equivocates, forges and floods; the others
    change view, stay identical and commit everything, and blame node 0 only."""
    from medchain.testing.byzantine import ByzantineTransport

    c = Consortium.make(batch_timeout_ms=5, view_change_timeout_ms=400)
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        drivers = []
        for i in range(4):
            t = hub.transport(i)
            if i == 0:
                t = ByzantineTransport(  # type: ignore[assignment]
                    t,
                    frozenset({"equivocate", "forge", "flood"}),
                    c.node_keys[0],
                    c.chain_id,
                    0,
                    4,
                    flood_frames_per_s=300,
                    seed=1,
                )
            d = node_driver(c, i, t)
            await nursery.start(d.run)
            drivers.append(d)
        honest = drivers[1:]
        ids = [
            await honest[k % 3].submit(c.tx(c.admin_keys[1 + k % 3]).encode()) for k in range(30)
        ]
        for d in honest:
            for tx_id in ids:
                assert await d.wait_committed(tx_id, 20)
        await wait_height(honest, max(d.ledger.height for d in honest))
        for h in range(1, min(d.ledger.height for d in honest) + 1):
            assert len({d.ledger.block(h).hash for d in honest}) == 1  # type: ignore[union-attr]
        for d in honest:
            assert d.replica.view >= 1
            assert set(d.metrics.offenses) == {0}
        assert drivers[0].transport.sent["equivocations"] >= 1  # type: ignore[attr-defined]
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_stale_transactions_are_rebroadcast_a_few_at_a_time() -> None:
    """A node whose transactions do not reach the primary sends the oldest of them to
    every replica — REBROADCAST_MAX per check, not its whole backlog (which every
    replica would verify again) — and all of them are committed (the replicas that
    got them rebroadcast them in turn, or the view changes)."""
    c = Consortium.make(batch_timeout_ms=5, view_change_timeout_ms=2000)
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        drivers = await start_cluster(nursery, c, hub)
        hub.cut.add((1, 0))  # node 1 cannot reach the primary of view 0
        ids = [await drivers[1].submit(c.tx(c.admin_keys[1]).encode()) for _ in range(200)]
        with trio.fail_after(10):
            while not drivers[1]._broadcasted:
                await trio.sleep(0.005)
        assert len(drivers[1]._broadcasted) == REBROADCAST_MAX  # the first check: the oldest
        assert drivers[1]._broadcasted == set(ids[:REBROADCAST_MAX])
        for tx_id in ids:
            assert await drivers[2].wait_committed(tx_id, 30)
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_forwarded_transaction_already_committed_is_not_verified_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = Consortium.make(batch_timeout_ms=5)
    hub = MemoryHub()
    async with trio.open_nursery() as nursery:
        drivers = await start_cluster(nursery, c, hub)
        raw = c.tx(c.admin_keys[0]).encode()
        tx_id = await drivers[0].submit(raw)
        for d in drivers:
            assert await d.wait_committed(tx_id, 10)
        checks = []
        real = Transaction.verify_signature

        def counting(self: Transaction) -> bool:
            checks.append(self.nonce)
            return real(self)

        monkeypatch.setattr(Transaction, "verify_signature", counting)
        fresh = c.tx(c.admin_keys[0]).encode()
        drivers[2].transport.send(1, CHANNEL_TXS, encode_tx_batch([raw, fresh]))
        with trio.fail_after(10):
            while len(drivers[1].pool) == 0:
                await trio.sleep(0.005)
        assert checks == [2]  # the committed one (nonce 1) was skipped before its check
        assert drivers[1].metrics.offenses == {}
        nursery.cancel_scope.cancel()


def test_a_full_inbox_drops_an_input_and_names_its_kind(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from medchain.consensus.events import TimerFired
    from medchain.node.consensus.inbox import POKE, ReplicaInput

    c = Consortium.make()
    d = node_driver(c, 0, MemoryHub().transport(0))
    for _ in range(d._inbox_send.statistics().max_buffer_size):
        d.post(POKE)
    with caplog.at_level(logging.WARNING, "medchain.driver"):
        d.post(ReplicaInput(TimerFired("view")))
    assert "driver inbox full; dropping event" in caplog.text
    assert d._inbox.receive_nowait() is POKE
