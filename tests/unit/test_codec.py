"""Canonical encoding: round trips, one encoding per value, one error type."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medchain.storage.block import Block, BlockHeader, CommitCertificate
from medchain.storage.codec import DecodeError, as_value, canonical, pack, unpack
from medchain.storage.genesis import Genesis
from medchain.storage.state import Event, TxResult
from medchain.storage.tx import MAX_TX_BYTES, Transaction
from tests.helpers import Consortium


def sample_header() -> BlockHeader:
    return BlockHeader(
        "c",
        7,
        b"\x01" * 32,
        123456,
        b"\x02" * 32,
        b"\x03" * 32,
        b"\x06" * 32,
        b"\x04" * 32,
        b"\x05" * 32,
    )


def test_transaction_round_trip(consortium: Consortium) -> None:
    tx = consortium.tx(consortium.admin_keys[0], args={"b": [1, -2, b"x", None, True], "a": "é"})
    data = tx.encode()
    again = Transaction.decode(data)
    assert again == tx
    assert again.encode() == data
    assert again.verify_signature()
    assert list(again.args) == ["a", "b"]  # maps are canonicalised (sorted) before signing


def _shape(v: object) -> object:
    """A value with its exact types spelled out (True and 1 compare equal in Python)."""
    if isinstance(v, list):
        return ["list", [_shape(x) for x in v]]
    if isinstance(v, dict):
        return ["dict", [(k, _shape(x)) for k, x in v.items()]]
    return [type(v).__name__, v]


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(args=_values, nonce=st.integers(1, 2**64 - 1))
def test_decode_checked_builds_what_decode_builds(args: object, nonce: int) -> None:
    """Execution re-decodes pooled transactions with decode_checked (no checks): for any
    bytes decode() accepted, it must build exactly the same transaction."""
    c = Consortium.make()
    data = c.tx(c.admin_keys[0], args=args, nonce=nonce).encode()
    checked, fast = Transaction.decode(data), Transaction.decode_checked(data)
    assert fast == checked and fast.encode() == data and fast.tx_id == checked.tx_id
    assert _shape(fast.args) == _shape(checked.args)
    assert fast.verify_signature()


def test_header_certificate_result_round_trip(consortium: Consortium) -> None:
    h = sample_header()
    assert BlockHeader.decode(h.encode()) == h
    cert = CommitCertificate(7, 2, b"\x09" * 32, ((0, b"\x01" * 64), (2, b"\x02" * 64)))
    assert CommitCertificate.decode(cert.encode()) == cert
    r = TxResult(1, "denied", (Event("consent", "checked", {"ok": False}),))
    assert TxResult.decode(r.encode()) == r
    g = consortium.genesis
    assert Genesis.decode(g.encode()) == g and Genesis.decode(g.encode()).hash() == g.hash()


def test_block_round_trip(consortium: Consortium) -> None:
    from medchain.node.consensus.chain import propose_block
    from medchain.storage.ledger import Ledger

    ledger = Ledger.in_memory(consortium.genesis)
    txs = [consortium.tx(consortium.admin_keys[i % 4]).encode() for i in range(5)]
    block = propose_block(ledger, txs, 5, consortium.node_keys[0].public_key)
    data = block.encode()
    again = Block.decode(data)
    assert again == block and again.encode() == data and again.hash == block.hash


@pytest.mark.parametrize(
    "bad, why",
    [
        (b"", "empty"),
        (b"\xc1", "malformed"),  # never-used msgpack byte
        (pack(["c", b"k" * 32, 1]), "fields"),  # wrong arity
        (b"\x97" + b"\xa1c", "malformed"),  # truncated
        (
            pack(["c", b"k" * 32, 1, "kv", "put", None, b"s" * 64]) + b"\x00",
            "malformed",
        ),  # trailing data
        (pack(["c", b"k" * 32, 1.5, "kv", "put", None, b"s" * 64]), "integer"),  # float
        (
            pack(["c", b"k" * 32, True, "kv", "put", None, b"s" * 64]),
            "integer",
        ),  # bool is not an int
        (pack(["c", "k" * 32, 1, "kv", "put", None, b"s" * 64]), "bytes"),  # str where bytes
        (pack(["c", b"k" * 31, 1, "kv", "put", None, b"s" * 64]), "32 bytes"),
        (pack(["c", b"k" * 32, -1, "kv", "put", None, b"s" * 64]), "range"),
        (pack(["c", b"k" * 32, 1, "kv", "put", {"b": 1, "a": 2}, b"s" * 64]), "sorted"),
        (pack(["c", b"k" * 32, 1, "kv", "put", [0.5], b"s" * 64]), "float"),
        (pack(["c", b"k" * 32, 1, "kv", "put", msgpack.ExtType(1, b"x"), b"s" * 64]), "malformed"),
        # 1 encoded as uint16 instead of fixint: same value, non-canonical bytes
        (
            b"\x97\xa1c\xc4\x20" + b"k" * 32 + b"\xcd\x00\x01\xa2kv\xa3put\xc0\xc4\x40" + b"s" * 64,
            "canonical",
        ),
    ],
)
def test_transaction_rejects(bad: bytes, why: str) -> None:
    with pytest.raises(DecodeError) as info:
        Transaction.decode(bad)
    assert why in str(info.value)


def test_size_limit_enforced_at_decode(consortium: Consortium) -> None:
    tx = consortium.tx(consortium.admin_keys[0], args={"key": "k", "value": "x" * MAX_TX_BYTES})
    with pytest.raises(DecodeError, match="exceeds the limit"):
        Transaction.decode(tx.encode())
    small = consortium.tx(consortium.admin_keys[0])
    with pytest.raises(DecodeError, match="exceeds the limit"):
        Transaction.decode(small.encode(), max_size=50)


def test_canonical_rejects_unencodable() -> None:
    with pytest.raises(TypeError):
        canonical({"a": 1.0})
    with pytest.raises(TypeError):
        canonical({1: "x"})
    assert canonical({"b": (1, 2), "a": {"d": 1, "c": 2}}) == {"a": {"c": 2, "d": 1}, "b": [1, 2]}
    assert list(canonical({"b": 1, "a": 2})) == ["a", "b"]


def test_as_value_depth_limit() -> None:
    v: object = 1
    for _ in range(40):
        v = [v]
    with pytest.raises(DecodeError, match="deeply"):
        as_value(v, "x")


def test_unpack_rejects_non_bytes() -> None:
    with pytest.raises(DecodeError):
        unpack("text", 10)  # type: ignore[arg-type]
