"""Drivers of a test consortium's nodes; a one-node consortium's driver, with its
RPC server on a Unix socket: in the test's trio nursery, or in a thread of its
own for the synchronous and asyncio clients."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from medchain.node.consensus.driver import Driver, DriverConfig
from medchain.node.net.transport import MemoryHub, Transport
from medchain.node.rpc.chain_api import register
from medchain.node.rpc.server import RpcServer
from medchain.storage.ledger import Ledger
from tests.helpers import Consortium


def node_driver(
    c: Consortium, i: int, transport: Transport, ledger: Ledger | None = None, **config: Any
) -> Driver:
    """The driver of node i of c on ``transport``, over ``ledger`` (by default a new
    in-memory one), with DriverConfig(**config): by default it executes and commits
    on the event loop's thread (offload=False), not in worker threads."""
    return Driver(
        c.genesis,
        ledger if ledger is not None else Ledger.in_memory(c.genesis),
        c.executor(),
        c.node_keys[i],
        transport,
        DriverConfig(**{"offload": False, **config}),
    )


def one_node_driver(c: Consortium, ledger: Ledger | None = None) -> Driver:
    """The driver of node 0 of c, alone on its hub."""
    return node_driver(c, 0, MemoryHub().transport(0), ledger)


async def start_node(nursery: trio.Nursery, tmp: Path) -> tuple[Consortium, Driver, Path]:
    """A one-node driver and its RPC server at tmp/node.sock, running in nursery."""
    c = Consortium.make(n=1, batch_timeout_ms=2)
    d = one_node_driver(c)
    await nursery.start(d.run)
    path = tmp / "node.sock"
    server = RpcServer(path)
    register(server, d)
    await nursery.start(server.serve)
    return c, d, path


@dataclass
class ThreadedNode:
    c: Consortium
    path: Path


@contextlib.contextmanager
def node_in_thread(tmp: Path) -> Iterator[ThreadedNode]:
    """start_node in a trio loop on a daemon thread, until the block ends."""
    ready, stop = threading.Event(), threading.Event()
    started: list[ThreadedNode] = []

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            c, _d, path = await start_node(nursery, tmp)
            started.append(ThreadedNode(c, path))
            ready.set()
            while not stop.is_set():
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    t = threading.Thread(target=lambda: trio.run(serve), daemon=True)
    t.start()
    try:
        assert ready.wait(10), "the node did not start"
        yield started[0]
    finally:
        stop.set()
        t.join(10)
