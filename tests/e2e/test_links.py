"""Links that heal, against a real consortium (node processes, py-libp2p, Noise):

- hundreds of inbound connections over a node's life (py-libp2p 0.8.1 kept a slot
  for each one and refused all inbound connections after 250; node.net.p2p_compat
  gives the slot back), then a paused node whose links must come back;
- a node stopped, wiped and started again in an idle consortium catches up
  without any new transaction (node.consensus.catchup).
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from typing import Any

import multiaddr
import pytest
import trio

from medchain.node.net.p2p import Libp2pTransport
from medchain.node.net.p2p_state import P2PConfig
from medchain.storage.keyfile import load_key
from tests.e2e.harness import TEST_PARAMS, E2ECluster, cluster

pytestmark = pytest.mark.e2e

CYCLES = 300  # inbound connections to each of nodes 0..2, past libp2p's 250 slots


def _events(c: E2ECluster, i: int, event: str) -> list[dict[str, Any]]:
    out = []
    for line in c.log_text(i).splitlines():
        with_event = f'"event":"{event}"'
        if with_event in line:
            out.append(json.loads(line))
    return out


def _wait_peers(c: E2ECluster, nodes: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        peers = {i: c.status(i)["peers"] for i in nodes}
        if all(len(p) == c.n - 1 for p in peers.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"links did not come back within {timeout} s: {peers}")
        time.sleep(0.2)


async def _churn(c: E2ECluster, as_node: int, targets: list[int]) -> list[int]:
    """Connect to each target as ``as_node`` (its key: a member), open a stream, drop
    the connection; CYCLES times per target, all targets at once. Returns the
    connections made to each target."""
    from libp2p.custom_types import TProtocol
    from libp2p.peer.peerinfo import PeerInfo

    sync = TProtocol("/medchain/sync/1")

    key = load_key(c.dir / c.genesis.organizations[as_node].org_id / "node.key")
    members = list(c.genesis.validators.keys)
    # Not listening at all (the nodes' dials to its address fail): every connection
    # is one this side dials, an inbound one on the node.
    t = Libp2pTransport(
        key,
        as_node,
        c.nodes[as_node].config.listen,
        c.peer_addresses(as_node),
        members,
        P2PConfig(),
    )
    host = t._make_host()
    made = dict.fromkeys(targets, 0)

    async def hammer(target: int) -> None:
        pid = t.peer_ids[target]
        info = PeerInfo(pid, [multiaddr.Multiaddr(c.nodes[target].config.listen)])
        net = host.get_network()
        for k in range(CYCLES):
            try:
                with trio.fail_after(10):
                    net.unblock_peer(pid)
                    await host.connect(info)
                    # The node's swarm took the connection and serves our protocols.
                    stream = await host.new_stream(pid, [sync])
                    await stream.close()
            except BaseException as exc:
                raise AssertionError(
                    f"connection {k + 1} to {c.nodes[target].org_id} failed: {exc!r}"
                ) from exc
            made[target] += 1
            for conn in net.get_connections(pid):  # the way a killed peer goes
                await conn.muxed_conn.secured_conn.close()
            # Gone on this side before the next dial (else connect() reuses it; the
            # node may still hold it for a moment, which it allows).
            with trio.fail_after(10):
                while net.get_connections(pid):
                    await trio.sleep(0.005)

    async with host.run(listen_addrs=[]), trio.open_nursery() as nursery:
        for target in targets:
            nursery.start_soon(hammer, target)
    return [made[x] for x in targets]


def test_links_come_back_after_hundreds_of_inbound_connections() -> None:
    with cluster(4) as c:
        t0 = time.monotonic()
        c.signal(3, signal.SIGKILL)
        made = trio.run(_churn, c, 3, [0, 1, 2])
        assert made == [CYCLES] * 3
        churn_s = time.monotonic() - t0
        # Each node gave back the slot of each of those connections: whenever the
        # regulator's link went down (logged when no other connection to it was
        # left), only the links then open held one.
        for i in range(3):
            downs = [e for e in _events(c, i, "peer-down") if e["peer"] == "regulator"]
            assert len(downs) >= CYCLES / 3, (i, len(downs))
            assert max(e["inbound_slots"] for e in downs) <= 6, (i, downs[-5:])
            # Meanwhile its dials to the regulator's address failed, the link flapping
            # with each inbound connection: warned about at most once a minute.
            failing = [e for e in _events(c, i, "dial-failing") if e["peer"] == "regulator"]
            assert len(failing) <= 1 + churn_s / 60, failing

        print(f"{CYCLES} inbound connections to each of 3 nodes in {churn_s:.1f} s")
        c.start(3)  # the real regulator: one more inbound connection to each node
        _wait_peers(c, [0, 1, 2, 3], 20)
        # Every node is now past 250 inbound connections: pause one for 12 s while the
        # others commit (their writes to it time out and they drop the links), then the
        # links between old ends must heal.
        downs_before = len(_events(c, 1, "peer-down"))
        c.signal(0, signal.SIGSTOP)
        paused = time.monotonic()
        ids = [c.submit(1 + k % 3, k % 4, f"during-pause-{k}") for k in range(6)]
        c.wait_committed(ids, [1, 2, 3], timeout=30)
        time.sleep(max(0.0, 12 - (time.monotonic() - paused)))
        c.signal(0, signal.SIGCONT)
        assert any(e["peer"] == "hospital-a" for e in _events(c, 1, "peer-down")[downs_before:])
        t1 = time.monotonic()
        _wait_peers(c, [0, 1, 2, 3], 30)
        print(f"links back {time.monotonic() - t1:.1f} s after the pause")
        ids = [c.submit(k, k, f"after-churn-{k}") for k in range(4)]
        c.wait_committed(ids, [0, 1, 2, 3], timeout=30)
        for i in range(3):
            assert not _events(c, i, "inbound-slots")  # never near the cap


def test_dials_that_keep_failing_are_warned_about_not_per_dial() -> None:
    with cluster(4) as c:
        c.signal(3, signal.SIGKILL)
        down = time.monotonic()
        deadline = down + 25
        while not all(_events(c, i, "dial-failing") for i in range(3)):
            assert time.monotonic() < deadline, [c.logs(i, 5) for i in range(3)]
            time.sleep(0.5)
        waited = time.monotonic() - down
        c.start(3)
        _wait_peers(c, [0, 1, 2, 3], 20)
        deadline = time.monotonic() + 10  # each reconnect loop notices within its backoff
        while not all(_events(c, i, "dial-recovered") for i in range(3)):
            assert time.monotonic() < deadline, [c.logs(i, 5) for i in range(3)]
            time.sleep(0.2)
        for i in range(3):
            failing = _events(c, i, "dial-failing")
            assert len(failing) == 1, failing  # dozens of dials, one warning
            assert failing[0]["level"] == "warning" and failing[0]["peer"] == "regulator"
            assert "regulator" in failing[0]["msg"] and "still retrying" in failing[0]["msg"]
            back = _events(c, i, "dial-recovered")
            assert [e["peer"] for e in back] == ["regulator"], back
        print(f"dial failures warned about {waited:.1f} s after the peer went down")


def test_wiped_node_catches_up_in_an_idle_consortium() -> None:
    with cluster(4) as c:
        for k in range(24):  # one block each: more than the wiped node's log window
            c.wait_committed([c.submit(k % 4, k % 4, f"before-wipe-{k}")], [k % 4])
        c.sync()
        time.sleep(1)  # the primary's sealing block after the last transaction
        top = max(c.heights())
        assert top > TEST_PARAMS.log_window
        c.signal(3, signal.SIGTERM)
        shutil.rmtree(c.nodes[3].config.data_dir)
        t0 = time.monotonic()
        c.start(3)
        # No transaction from here on: the wiped node must learn the height by itself.
        c.wait_height(top, [3], timeout=15)
        caught_up_s = time.monotonic() - t0
        assert c.heights([0, 1, 2]) == [top] * 3  # it was idle all along
        assert c.assert_consistent() == top
        # And it takes part again.
        tx_id = c.submit(3, 3, "after-wipe")
        c.wait_committed([tx_id], [0, 1, 2, 3], timeout=30)
        print(f"wiped node caught up {top} blocks in {caught_up_s:.1f} s")
