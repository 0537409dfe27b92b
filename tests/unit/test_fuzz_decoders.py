"""Hypothesis fuzz: every decoder raises DecodeError and nothing else.

Three kinds of input: random bytes, random msgpack values of every type
(floats, ext, maps, nesting), and valid encodings with bytes flipped,
inserted, deleted or cut. Whatever decodes must re-encode to the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.block import Block, BlockHeader, CommitCertificate
from storage.codec import DecodeError
from storage.genesis import Genesis
from storage.state import TxResult
from storage.tx import Transaction
from tests.helpers import Consortium

EXAMPLES = int(os.environ.get("MEDCHAIN_FUZZ_EXAMPLES", "400"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DECODERS: dict[str, Callable[[bytes], Any]] = {
    "transaction": Transaction.decode,
    "header": BlockHeader.decode,
    "block": Block.decode,
    "certificate": CommitCertificate.decode,
    "result": TxResult.decode,
    "genesis": Genesis.decode,
}

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=40)
    | st.binary(max_size=80)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
    lambda children: (
        st.lists(children, max_size=9) | st.dictionaries(st.text(max_size=5), children, max_size=5)
    ),
    max_leaves=40,
)


def _valid_samples() -> list[bytes]:
    c = Consortium.make()
    from node.chain import propose_block
    from storage.ledger import Ledger

    ledger = Ledger.in_memory(c.genesis)
    txs = [
        c.tx(c.admin_keys[i % 4], args={"key": "k", "value": "v" * i}).encode() for i in range(3)
    ]
    block = propose_block(ledger, txs, 10, c.node_keys[0].public_key)
    cert = c.certify(block)
    return [
        txs[0],
        block.header_bytes,
        block.encode(),
        cert.encode(),
        TxResult(0, {"a": [1, b"x"]}).encode(),
    ]


VALID = _valid_samples()


def _check_all(data: bytes) -> None:
    for name, decode in DECODERS.items():
        try:
            obj = decode(data)
        except DecodeError:
            continue
        except Exception as exc:  # the property under test
            raise AssertionError(
                f"{name} decoder raised {type(exc).__name__}: {exc!r} on {data!r}"
            ) from exc
        assert obj.encode() == data, f"{name} accepted a non-canonical encoding"


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    _check_all(data)


@FUZZ
@given(msgpack_values)
def test_random_msgpack_values(value: Any) -> None:
    _check_all(msgpack.packb(value, use_bin_type=True))


@FUZZ
@given(
    st.sampled_from(VALID),
    st.lists(
        st.tuples(
            st.sampled_from(["flip", "insert", "delete", "cut"]),
            st.integers(0, 10**6),
            st.integers(0, 255),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_valid_encodings(sample: bytes, edits: list[tuple[str, int, int]]) -> None:
    data = bytearray(sample)
    for op, pos, byte in edits:
        if not data:
            break
        i = pos % len(data)
        if op == "flip":
            data[i] ^= byte or 1
        elif op == "insert":
            data.insert(i, byte)
        elif op == "delete":
            del data[i]
        else:
            del data[i:]
    _check_all(bytes(data))


@FUZZ
@given(st.sampled_from(VALID), st.lists(msgpack_values, max_size=3), st.integers(0, 8))
def test_wrongly_typed_fields(sample: bytes, extra: list[Any], index: int) -> None:
    """Valid arrays with one field replaced or extra fields appended."""
    fields = msgpack.unpackb(sample, raw=False)
    if extra:
        fields[index % len(fields)] = extra[0]
    fields.extend(extra[1:])
    _check_all(msgpack.packb(fields, use_bin_type=True))
