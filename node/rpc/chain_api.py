"""The node's RPC methods (node.*, tx.*, block.*, state.*, events.*)."""

from __future__ import annotations

from typing import Any

import trio

from medchain.contracts.app import ChaincodeError
from medchain.node.consensus.driver import Driver
from medchain.node.mempool.pool import PoolReject
from medchain.node.rpc.connection import Connection
from medchain.node.rpc.errors import INVALID_PARAMS, NOT_FOUND, RpcError, pool_error, query_error
from medchain.node.rpc.jsonval import from_json, to_json
from medchain.node.rpc.params import event_filter, param_b64, param_hex, param_int, param_str
from medchain.node.rpc.server import RpcServer
from medchain.storage.block import Block
from medchain.storage.crypto import sha256
from medchain.storage.signed_query import verify_query
from medchain.storage.state import OK


def register(server: RpcServer, driver: Driver) -> None:
    d = driver
    orgs = d.genesis.organizations

    @server.method("node.status")
    async def status(conn: Connection, params: dict[str, Any]) -> Any:
        return d.status()

    @server.method("node.metrics")
    async def metrics(conn: Connection, params: dict[str, Any]) -> Any:
        t = d.transport.stats
        out = d.metrics.to_json()
        out.update(
            height=d.ledger.height,
            view=d.replica.view,
            pool_txs=len(d.pool),
            pool_bytes=d.pool.bytes,
            peers=len(d.transport.connected()),
            bytes_in=t.bytes_in,
            bytes_out=t.bytes_out,
            frames_in=t.frames_in,
            frames_out=t.frames_out,
            frames_dropped_out=t.dropped_out,
            frames_rejected_in=t.rejected_in,
            rpc_connections=server.connections,
            offenses={orgs[i].org_id: n for i, n in d.metrics.offenses.items()},
            memory=d.memory(),
            batch_cap=d.batch_cap(),
        )
        slots = getattr(d.transport, "inbound_slots", None)
        if callable(slots):  # the libp2p transport: inbound connection slots in use, and cap
            used, total = slots()
            out.update(inbound_slots=used, inbound_slots_total=total)
        return out

    @server.method("tx.submit")
    async def tx_submit(conn: Connection, params: dict[str, Any]) -> Any:
        raw = param_b64(params, "tx")
        try:
            tx_id = await d.submit(raw)
        except PoolReject as exc:
            raise pool_error(exc) from None
        result: dict[str, Any] = {"tx_id": tx_id.hex()}
        if params.get("wait"):
            timeout = min(param_int(params, "timeout_ms", 10_000), 120_000) / 1000
            if await d.wait_committed(tx_id, timeout):
                result.update(tx_status(d, tx_id))
            else:
                result["status"] = "pending"
        return result

    @server.method("tx.get")
    async def tx_get(conn: Connection, params: dict[str, Any]) -> Any:
        return tx_status(d, param_hex(params, "tx_id", 32))

    @server.method("tx.wait")
    async def tx_wait(conn: Connection, params: dict[str, Any]) -> Any:
        tx_id = param_hex(params, "tx_id", 32)
        await d.wait_committed(tx_id, min(param_int(params, "timeout_ms", 10_000), 120_000) / 1000)
        return tx_status(d, tx_id)

    @server.method("block.get")
    async def block_get(conn: Connection, params: dict[str, Any]) -> Any:
        height = (
            param_int(params, "height", d.ledger.height, lo=1)
            if "height" in params
            else d.ledger.height
        )
        block = d.ledger.block(height) if height >= 1 else None
        if block is None:
            raise RpcError(NOT_FOUND, f"no block at height {height} (height is {d.ledger.height})")
        return block_json(d, block)

    @server.method("state.query")
    async def state_query(conn: Connection, params: dict[str, Any]) -> Any:
        contract, method = param_str(params, "contract"), param_str(params, "method")
        args = from_json(params.get("args"))
        caller = b""
        if params.get("auth") is not None:
            try:
                caller = verify_query(
                    params["auth"], d.genesis.chain_id, contract, method, args, d.clock()
                )
            except ValueError as exc:
                raise RpcError(INVALID_PARAMS, f"signed query refused: {exc}") from None
        try:
            result = d.query(contract, method, args, caller)
        except ChaincodeError as exc:
            raise query_error(exc) from None
        return to_json(result)

    @server.method("events.subscribe")
    async def subscribe(conn: Connection, params: dict[str, Any]) -> Any:
        sub = d.events.subscribe(event_filter(params))
        return {"subscription": conn.add_subscription(sub)}

    @server.method("events.unsubscribe")
    async def unsubscribe(conn: Connection, params: dict[str, Any]) -> Any:
        return {"removed": conn.remove_subscription(param_str(params, "subscription"))}

    @server.method("node.ping")
    async def ping(conn: Connection, params: dict[str, Any]) -> Any:
        await trio.lowlevel.checkpoint()
        return "pong"

    del (
        status,
        metrics,
        tx_submit,
        tx_get,
        tx_wait,
        block_get,
        state_query,
        subscribe,
        unsubscribe,
        ping,
    )


def tx_status(d: Driver, tx_id: bytes) -> dict[str, Any]:
    loc = d.ledger.tx(tx_id)
    if loc is not None:
        res = loc.result
        out: dict[str, Any] = {
            "tx_id": tx_id.hex(),
            "status": "committed" if res.code == OK else "failed",
            "height": loc.height,
            "index": loc.index,
            "events": [
                {"contract": e.contract, "name": e.name, "attrs": to_json(e.attrs)}
                for e in res.events
            ],
        }
        if res.code == OK:
            out["result"] = to_json(res.data)
        else:
            out["reason"] = res.data
        return out
    if tx_id in d.pool:
        return {"tx_id": tx_id.hex(), "status": "pending"}
    why = d.rejection(tx_id)
    if why is not None:
        return {"tx_id": tx_id.hex(), "status": "rejected", "reason": why}
    return {"tx_id": tx_id.hex(), "status": "unknown"}


def block_json(d: Driver, block: Block) -> dict[str, Any]:
    h = block.header
    cert = d.ledger.certificate(h.height)
    orgs = d.genesis.organizations
    proposer = d.genesis.org_by_node_key(h.proposer)
    return {
        "height": h.height,
        "hash": block.hash.hex(),
        "header": {
            "chain_id": h.chain_id,
            "height": h.height,
            "prev_hash": h.prev_hash.hex(),
            "timestamp_ms": h.timestamp_ms,
            "tx_root": h.tx_root.hex(),
            "state_root": h.state_root.hex(),
            "validator_set_hash": h.validator_set_hash.hex(),
            "proposer": h.proposer.hex(),
            "proposer_org": proposer.org_id if proposer else None,
        },
        "tx_ids": [sha256(t).hex() for t in block.txs],
        "state_root_after": (d.ledger.state_root_at(h.height) or b"").hex(),
        "certificate": None
        if cert is None
        else {
            "seq": cert.seq,
            "view": cert.view,
            "block_hash": cert.block_hash.hex(),
            "votes": [
                {"validator": i, "org": orgs[i].org_id, "signature": sig.hex()}
                for i, sig in cert.votes
            ],
        },
    }
