"""Block execution: isolation of failures, determinism, events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from medchain.contracts.kv import KVChaincode
from medchain.contracts.runtime import LIFECYCLE, ChaincodeError, Context, Executor, Overlay
from medchain.node.consensus.chain import propose_block
from medchain.storage.ledger import Ledger
from tests.helpers import Consortium


class Boom:
    name = "boom"

    def invoke(self, ctx: Context, method: str, args: Any) -> Any:
        ctx.put(b"written-before-failing", b"x")
        ctx.index_put(b"attempted/" + method.encode())
        if method == "refuse":
            raise ChaincodeError("not allowed")
        if method == "crash":
            return 1 // 0
        if method == "float":
            return 0.5
        ctx.index_put(b"by-method/" + method.encode())
        ctx.emit("ok", {"n": 1})
        return {"done": True}

    def query(self, ctx: Context, method: str, args: Any) -> Any:
        if method == "index":
            return [k.decode() for k, _ in ctx.index_scan(b"")]
        if method == "write":
            ctx.put(b"k", b"v")
        return ctx.get(b"written-before-failing")


def test_failing_tx_rolls_back_alone(consortium: Consortium) -> None:
    c = consortium
    ex = Executor(c.genesis, {"boom": Boom()})
    ledger = Ledger.in_memory(c.genesis)
    txs = [
        c.tx(c.admin_keys[0], "boom", m, None).encode()
        for m in ["refuse", "crash", "float", "ok", "nope"]
    ]
    txs.append(c.tx(c.admin_keys[0], "missing", "x", None).encode())
    block = propose_block(ledger, txs, 1, c.node_keys[0].public_key)
    out = ex.execute(ledger, block)
    codes = [(r.code, r.data) for r in out.results]
    assert codes[0] == (1, "not allowed")
    assert codes[1][0] == 1 and "ZeroDivisionError" in codes[1][1]
    assert codes[2][0] == 1 and "no floats" in codes[2][1]
    assert codes[3] == (0, {"done": True}) and out.results[3].events[0].name == "ok"
    assert codes[5] == (1, "unknown contract 'missing'")
    state_keys = [k for k in out.writes if not k.startswith(b"_nonce")]
    assert state_keys == [b"boom\x00written-before-failing"]  # only the successful tx's write
    assert sorted(out.index_writes) == [
        b"boom\x00attempted/nope",
        b"boom\x00attempted/ok",
        b"boom\x00by-method/nope",
        b"boom\x00by-method/ok",
    ]


def test_indexes_committed_outside_state_and_read_by_queries(consortium: Consortium) -> None:
    import pytest

    c = consortium
    ex = Executor(c.genesis, {"boom": Boom()})
    ledger = Ledger.in_memory(c.genesis)
    block = propose_block(
        ledger, [c.tx(c.admin_keys[0], "boom", "ok", None).encode()], 1, c.node_keys[0].public_key
    )
    ledger.commit_block(ex.execute(ledger, block), c.certify(block))
    assert ex.query(ledger, "boom", "index", None, 1, 0) == ["attempted/ok", "by-method/ok"]
    assert not any(k.startswith(b"boom\x00attempted") for k, _ in ledger.state_scan(b""))

    # execution must not depend on indexes: reading one in a transaction fails it
    class Peek(Boom):
        def invoke(self, ctx: Context, method: str, args: Any) -> Any:
            return list(ctx.index_scan(b""))

    ex2 = Executor(c.genesis, {"boom": Peek()})
    block = propose_block(
        ledger, [c.tx(c.admin_keys[0], "boom", "x", None).encode()], 2, c.node_keys[0].public_key
    )
    res = ex2.execute(ledger, block).results[0]
    assert not res.ok and "only be read by queries" in res.data
    with pytest.raises(Exception, match="cannot write"):
        ex2.query(ledger, "boom", "write", None, 1, 0)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3), st.sampled_from(["put", "delete"]), st.integers(0, 5), st.booleans()
        ),
        max_size=25,
    ),
    st.integers(1, 4),
)
def test_two_executors_reach_same_root(ops: list[tuple[int, str, int, bool]], nblocks: int) -> None:
    c = Consortium.make()
    txs: list[bytes] = []
    for who, method, key, replay in ops:
        if replay and txs:
            txs.append(txs[-1])
            continue
        args = {"key": f"k{key}", "value": f"v{who}"} if method == "put" else {"key": f"k{key}"}
        txs.append(c.tx(c.admin_keys[who], method=method, args=args).encode())
    a, b = Ledger.in_memory(c.genesis), Ledger.in_memory(c.genesis)
    step = max(1, len(txs) // nblocks)
    for i in range(0, max(1, len(txs)), step):
        chunk = txs[i : i + step]
        for led in (a, b):
            c.commit(led, chunk)
    assert a.state_root == b.state_root and a.last_hash == b.last_hash
    assert dict(a.state_scan(b"")) == dict(b.state_scan(b""))


def test_query_is_read_only(consortium: Consortium) -> None:
    c = consortium
    ledger = Ledger.in_memory(c.genesis)
    c.commit(ledger, [c.tx(c.admin_keys[0], args={"key": "a", "value": "1"}).encode()])
    assert c.executor().query(ledger, "kv", "get", {"key": "a"}, 1, 0) == b"1"


class CountingReader:
    """Committed state that records every read."""

    def __init__(self, data: dict[bytes, bytes]) -> None:
        self.data = data
        self.reads: list[bytes] = []

    def state_get(self, key: bytes) -> bytes | None:
        self.reads.append(key)
        return self.data.get(key)

    def state_scan(
        self, prefix: bytes, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted((k, v) for k, v in self.data.items() if k.startswith(prefix)))


def test_block_overlay_reads_committed_state_once_per_key() -> None:
    base = CountingReader({b"a": b"1"})
    block = Overlay(base, memo=True)
    assert block.get(b"a") == b"1" and block.get(b"a") == b"1"
    assert block.get(b"gone") is None and block.get(b"gone") is None  # absent: remembered too
    assert base.reads == [b"a", b"gone"]
    tx = Overlay(block)  # a transaction's writes, kept: later reads see them, not the memo
    tx.writes[b"gone"] = b"2"
    block.writes.update(tx.writes)
    assert tx.get(b"gone") == b"2" and block.get(b"gone") == b"2"
    block.writes[b"a"] = None  # deleted in this block
    assert block.get(b"a") is None
    plain = Overlay(base)  # without memo (transactions, queries): every read goes through
    plain.get(b"a")
    plain.get(b"a")
    assert base.reads == [b"a", b"gone", b"a", b"a"]


def test_contract_lookup_is_read_once_per_block(consortium: Consortium) -> None:
    c = consortium
    ex = Executor(c.genesis, {"kv": KVChaincode()})
    ledger = Ledger.in_memory(c.genesis)
    txs = [c.tx(c.admin_keys[0], "not-installed", "x", None).encode() for _ in range(5)]
    block = propose_block(ledger, txs, 1, c.node_keys[0].public_key)
    base = CountingReader({})
    out = ex.execute(base, block)
    assert [r.data for r in out.results] == ["unknown contract 'not-installed'"] * 5
    lookups = [k for k in base.reads if k.startswith(LIFECYCLE.encode())]
    assert lookups == [LIFECYCLE.encode() + b"\x00active/not-installed"]


def test_checked_transactions_execute_exactly_as_unchecked_ones(consortium: Consortium) -> None:
    c = consortium
    ledger = Ledger.in_memory(c.genesis)
    txs = [
        c.tx(c.admin_keys[k % 4], args={"key": f"k{k % 3}", "value": f"v{k}"}).encode()
        for k in range(12)
    ]
    txs.append(txs[3])  # a replay fails the same way either way
    block = propose_block(ledger, txs, 1, c.node_keys[0].public_key)
    plain = c.executor().execute(ledger, block)
    fast = c.executor().execute(ledger, block, checked=set(block.tx_ids()))
    assert fast.results == plain.results and fast.writes == plain.writes
    assert [r.code for r in plain.results].count(0) == 12


def test_the_application_tells_the_node_which_nonces_are_spent(consortium: Consortium) -> None:
    """The node asks the executor (contracts.app.Application), not the state layout:
    a committed transaction's (sender, nonce) is used, and a block's write set names
    the pairs it spends — the failed transaction's too, as a replay of it fails."""
    from medchain.contracts.app import Application

    c = consortium
    ex: Application = Executor(c.genesis, {"boom": Boom()})
    ledger = Ledger.in_memory(c.genesis)
    sender = c.admin_keys[1].public_key
    txs = [
        c.tx(c.admin_keys[1], "boom", "ok", None, nonce=7).encode(),
        c.tx(c.admin_keys[1], "boom", "refuse", None, nonce=9).encode(),
    ]
    block = propose_block(ledger, txs, 1, c.node_keys[0].public_key)
    out = ex.execute(ledger, block)
    assert sorted(ex.committed_nonces(out.writes)) == [(sender, 7), (sender, 9)]
    assert list(ex.committed_nonces([b"boom\x00" + bytes(40)])) == []
    assert not ex.nonce_used(ledger.state_get_uncached, sender, 7)
    ledger.commit_block(out, c.certify(block))
    assert ex.nonce_used(ledger.state_get_uncached, sender, 7)
    assert ex.nonce_used(ledger.state_get, sender, 9)
    assert not ex.nonce_used(ledger.state_get_uncached, sender, 8)
