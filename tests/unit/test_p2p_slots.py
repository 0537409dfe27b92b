"""libp2p's inbound connection slots: two real hosts in one process (loopback TCP,
Noise, Yamux), one dialling the other again and again.

py-libp2p 0.8.1 keeps the slot of every inbound connection for the life of the
swarm; node.net.p2p_compat gives it back when the connection closes."""

from __future__ import annotations

from typing import Any

import multiaddr
import trio

from medchain.node.net.p2p import Libp2pTransport
from medchain.node.net.p2p_compat import inbound_slots
from medchain.storage.crypto import Signer

CYCLES = 25


def _host(signer: Signer, members: list[bytes]) -> Any:
    t = Libp2pTransport(
        signer, members.index(signer.public_key), "/ip4/127.0.0.1/tcp/0", [], members
    )
    return t._make_host()


def _tasks() -> int:
    def walk(task: Any) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    return walk(trio.lowlevel.current_root_task())


async def _wait(cond: Any, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not cond():
            await trio.sleep(0.01)


async def _cycles(recycle: bool) -> tuple[list[int], int, int]:
    """Dial, check the link, hang up, CYCLES times: slots in use after each hang-up,
    and the process's task count before and after."""
    signers = [Signer.generate(), Signer.generate()]
    members = [s.public_key for s in signers]
    server, client = _host(signers[0], members), _host(signers[1], members)
    if not recycle:
        del server.get_network().upgrade_inbound_raw_conn  # the library's own method
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    from libp2p.peer.peerinfo import PeerInfo

    used: list[int] = []
    async with server.run(listen_addrs=listen), client.run(listen_addrs=listen):
        swarm = server.get_network()
        target = PeerInfo(server.get_id(), server.get_addrs())
        baseline_tasks = _tasks()
        for _ in range(CYCLES):
            with trio.fail_after(5):
                await client.connect(target)
            await _wait(lambda: swarm.get_connections(client.get_id()))
            await client.disconnect(server.get_id())
            await _wait(lambda: not swarm.get_connections(client.get_id()))
            if recycle:
                await _wait(lambda: inbound_slots(swarm)[0] == 0)
            else:
                await trio.sleep(0.05)
            used.append(inbound_slots(swarm)[0])
        await trio.sleep(0.2)
        tasks = _tasks()
    return used, baseline_tasks, tasks


def test_inbound_slots_return_to_baseline_after_every_connection() -> None:
    used, tasks_before, tasks_after = trio.run(_cycles, True)
    assert used == [0] * CYCLES
    # The handler task of each closed connection ends too (a few tasks of slack for
    # libp2p's own periodic work).
    assert tasks_after <= tasks_before + 5, (tasks_before, tasks_after)


def test_libp2p_without_the_adapter_still_keeps_every_slot() -> None:
    """The defect the adapter works around. If this fails, the installed libp2p gives
    slots back itself and node/net/p2p_compat.py can go."""
    used, _, _ = trio.run(_cycles, False)
    assert used == list(range(1, CYCLES + 1))
