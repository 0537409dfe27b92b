"""The asyncio client, under pytest-asyncio, against a node running in a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from node.client import AsyncRpcClient, RpcError, TxBuilder
from tests.unit.test_rpc import start_node


@pytest.fixture
def node(tmp_path: Path) -> Iterator[dict[str, Any]]:
    ready, stop = threading.Event(), threading.Event()
    info: dict[str, Any] = {}

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            c, _d, path = await start_node(nursery, tmp_path)
            info.update(c=c, path=path)
            ready.set()
            while not stop.is_set():
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    t = threading.Thread(target=lambda: trio.run(serve), daemon=True)
    t.start()
    assert ready.wait(10)
    yield info
    stop.set()
    t.join(10)


@pytest.mark.asyncio
async def test_async_client_submit_subscribe_query(node: dict[str, Any]) -> None:
    c = node["c"]
    async with AsyncRpcClient(node["path"]) as cl:
        sub = await cl.call("events.subscribe", {"kinds": ["block"]})
        assert sub["subscription"]
        b = TxBuilder(c.admin_keys[0], c.chain_id)
        res = await cl.submit(b.build("kv", "put", {"key": "x", "value": "y"}), wait=True)
        assert res["status"] == "committed"
        note = await cl.notifications.get()
        assert note["event"]["kind"] == "block" and note["event"]["txs"] == 1
        assert await cl.call(
            "state.query", {"contract": "kv", "method": "get", "args": {"key": "x"}}
        ) == {"$bytes": b"y".hex()}
        with pytest.raises(RpcError):
            await cl.call("tx.get", {"tx_id": "nothex"})
