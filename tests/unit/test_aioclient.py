"""The asyncio client, under pytest-asyncio, against a node running in a thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from medchain.client.rpc import AsyncRpcClient, RpcError
from medchain.client.signing import TxBuilder
from tests.rpcnode import ThreadedNode, node_in_thread


@pytest.fixture
def node(tmp_path: Path) -> Iterator[ThreadedNode]:
    with node_in_thread(tmp_path) as n:
        yield n


@pytest.mark.asyncio
async def test_async_client_submit_subscribe_query(node: ThreadedNode) -> None:
    c = node.c
    async with AsyncRpcClient(node.path) as cl:
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
