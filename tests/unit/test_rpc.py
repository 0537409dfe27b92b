"""RPC server on a real Unix socket in front of a one-node driver."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.rpcnode import node_in_thread, start_node


class LineClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def call(self, obj: Any) -> Any:
        await self.send_raw(json.dumps(obj).encode() + b"\n")
        return await self.read()

    async def read(self) -> Any:
        with trio.fail_after(10):
            while b"\n" not in self.buf:
                data = await self.stream.receive_some(1 << 20)
                if not data:
                    return None
                self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


async def connect(path: Path) -> LineClient:
    return LineClient(await trio.open_unix_socket(str(path)))


@pytest.mark.trio
async def test_rpc_methods_and_socket_mode(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        c, _d, path = await start_node(nursery, tmp_path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        cl = await connect(path)
        st = (await cl.call({"jsonrpc": "2.0", "id": 1, "method": "node.status"}))["result"]
        assert st["chain_id"] == c.chain_id and st["height"] == 0 and st["org"] == "org-0"
        sub = await cl.call(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "events.subscribe",
                "params": {"kinds": ["event"], "contract": "kv"},
            }
        )
        assert sub["result"]["subscription"]
        tx = c.tx(c.admin_keys[0], args={"key": "a", "value": "1"})
        res = await cl.call(
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tx.submit",
                "params": {"tx": base64.b64encode(tx.encode()).decode(), "wait": True},
            }
        )
        got = [res]
        # the notification may arrive before or after the response
        while not any("result" in x and x.get("id") == 3 for x in got):
            got.append(await cl.read())
        resp = next(x for x in got if x.get("id") == 3)["result"]
        assert (
            resp["status"] == "committed"
            and resp["height"] == 1
            and resp["tx_id"] == tx.tx_id.hex()
        )
        while not any(x.get("method") == "events.notify" for x in got):
            got.append(await cl.read())
        note = next(x for x in got if x.get("method") == "events.notify")["params"]["event"]
        assert note["contract"] == "kv" and note["attrs"] == {"key": "a"}
        r = await cl.call(
            {"jsonrpc": "2.0", "id": 4, "method": "tx.get", "params": {"tx_id": tx.tx_id.hex()}}
        )
        assert r["result"]["status"] == "committed"
        r = await cl.call(
            {"jsonrpc": "2.0", "id": 5, "method": "block.get", "params": {"height": 1}}
        )
        assert (
            r["result"]["tx_ids"] == [tx.tx_id.hex()]
            and len(r["result"]["certificate"]["votes"]) == 1
        )
        r = await cl.call(
            {
                "jsonrpc": "2.0",
                "id": 6,
                "method": "state.query",
                "params": {"contract": "kv", "method": "get", "args": {"key": "a"}},
            }
        )
        assert r["result"] == {"$bytes": b"1".hex()}
        # replay: rejected with a reason, and tx.get remembers why
        r = await cl.call(
            {
                "jsonrpc": "2.0",
                "id": 7,
                "method": "tx.submit",
                "params": {"tx": base64.b64encode(tx.encode()).decode()},
            }
        )
        assert r["error"]["code"] == -32002 and r["error"]["data"]["reason"] in {
            "replayed",
            "duplicate",
        }
        r = await cl.call(
            {"jsonrpc": "2.0", "id": 8, "method": "tx.get", "params": {"tx_id": "00" * 32}}
        )
        assert r["result"]["status"] == "unknown"
        batch = await cl.call(
            [
                {"jsonrpc": "2.0", "id": 9, "method": "node.ping"},
                {"jsonrpc": "2.0", "method": "node.ping"},
                {"jsonrpc": "2.0", "id": 10, "method": "nope"},
            ]
        )
        assert (
            [x["id"] for x in batch] == [9, 10]
            and batch[0]["result"] == "pong"
            and batch[1]["error"]["code"] == -32601
        )
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_rpc_bad_input_never_disturbs_the_node(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        c, _d, path = await start_node(nursery, tmp_path)
        cl = await connect(path)
        assert (await cl.call("not an object"))["error"]["code"] == -32600
        await cl.send_raw(b"{not json\n")
        assert (await cl.read())["error"]["code"] == -32700
        await cl.send_raw(b"\xff\xfe\x00garbage\n")
        assert (await cl.read())["error"]["code"] == -32700
        assert (await cl.call({"jsonrpc": "2.0", "id": 1, "method": "no.such"}))["error"][
            "code"
        ] == -32601
        for params in [{"tx": 5}, {"tx": "!!!"}, {}]:
            assert (
                await cl.call({"jsonrpc": "2.0", "id": 2, "method": "tx.submit", "params": params})
            )["error"]["code"] == -32602
        assert (
            await cl.call(
                {"jsonrpc": "2.0", "id": 3, "method": "tx.get", "params": {"tx_id": "zz"}}
            )
        )["error"]["code"] == -32602
        assert (
            await cl.call(
                {"jsonrpc": "2.0", "id": 4, "method": "block.get", "params": {"height": "x"}}
            )
        )["error"]["code"] == -32602
        assert (
            await cl.call(
                {"jsonrpc": "2.0", "id": 5, "method": "block.get", "params": {"height": 99}}
            )
        )["error"]["code"] == -32003
        assert (
            await cl.call(
                {
                    "jsonrpc": "2.0",
                    "id": 6,
                    "method": "state.query",
                    "params": {"contract": "kv", "method": "get", "args": {"key": 1.5}},
                }
            )
        )["error"]["code"] == -32602
        assert (await cl.call({"jsonrpc": "2.0", "id": 7, "method": "node.status", "params": 3}))[
            "error"
        ]["code"] == -32602
        garbage_tx = base64.b64encode(b"\x93\x01\x02").decode()
        r = await cl.call(
            {"jsonrpc": "2.0", "id": 8, "method": "tx.submit", "params": {"tx": garbage_tx}}
        )
        assert r["error"]["code"] == -32002 and r["error"]["data"]["reason"] == "malformed"
        assert (await cl.call([]))["error"]["code"] == -32600
        # an oversized line: error, connection closed, node fine
        big = await connect(path)
        await big.send_raw(
            b'{"jsonrpc":"2.0","id":1,"method":"node.status","params":{"x":"'
            + b"a" * (1024 * 1024 + 10)
        )
        r = await big.read()
        assert r is not None and r["error"]["code"] == -32600
        # half a line, then hang up
        half = await connect(path)
        await half.send_raw(b'{"jsonrpc":"2.0","id":1,"meth')
        await half.stream.aclose()
        # the node still serves everyone
        cl2 = await connect(path)
        st = await cl2.call({"jsonrpc": "2.0", "id": 1, "method": "node.status"})
        assert st["result"]["chain_id"] == c.chain_id
        assert (await cl.call({"jsonrpc": "2.0", "id": 9, "method": "node.ping"}))[
            "result"
        ] == "pong"
        nursery.cancel_scope.cancel()


def test_sync_and_async_clients(tmp_path: Path) -> None:
    """The sync client (threads) against a node in a trio thread; the asyncio one is tested in test_aioclient."""
    from medchain.client.rpc import RpcClient, RpcError
    from medchain.client.signing import TxBuilder

    with node_in_thread(tmp_path) as node:
        c = node.c
        with RpcClient(node.path) as cl:
            b = TxBuilder(c.admin_keys[0], c.chain_id)
            res = cl.submit(b.build("kv", "put", {"key": "k", "value": "v"}), wait=True)
            assert res["status"] == "committed"
            assert cl.query("kv", "get", {"key": "k"}) == {"$bytes": b"v".hex()}
            with pytest.raises(RpcError) as info_err:
                cl.call("nope")
            assert info_err.value.code == -32601
            out = cl.batch([("node.ping", {}), ("nope", {})])
            assert out[0] == "pong" and isinstance(out[1], RpcError)


@pytest.mark.trio
async def test_an_idle_primary_seals_the_last_outcomes_with_one_empty_block(
    tmp_path: Path,
) -> None:
    async with trio.open_nursery() as nursery:
        c, d, _ = await start_node(nursery, tmp_path)
        await d.submit(c.tx(c.admin_keys[0], args={"key": "a", "value": "1"}).encode())
        with trio.fail_after(10):
            while d.ledger.height < 2:
                await trio.sleep(0.01)
        sealing = d.ledger.block(2)
        assert sealing is not None and sealing.txs == ()
        assert sealing.header.results_root == d.ledger.results_root_at(1)
        await trio.sleep(d.cfg.seal_delay_ms / 1000 * 3)
        assert d.ledger.height == 2  # an empty block needs no seal of its own
        nursery.cancel_scope.cancel()
