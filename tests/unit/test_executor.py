"""Block execution: isolation of failures, determinism, events."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.runtime import ChaincodeError, Context, Executor
from node.chain import propose_block
from storage.ledger import Ledger
from tests.helpers import Consortium


class Boom:
    name = "boom"

    def invoke(self, ctx: Context, method: str, args: Any) -> Any:
        ctx.put(b"written-before-failing", b"x")
        if method == "refuse":
            raise ChaincodeError("not allowed")
        if method == "crash":
            return 1 // 0
        if method == "float":
            return 0.5
        ctx.emit("ok", {"n": 1})
        return {"done": True}

    def query(self, ctx: Context, method: str, args: Any) -> Any:
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
    txs = []
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
