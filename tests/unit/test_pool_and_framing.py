"""Transaction pool limits and reasons; length-prefixed framing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medchain.node.mempool.pool import PoolReject, TxPool, check_tx
from medchain.node.net.framing import FrameReader, FrameTooLarge, encode_frame, encode_frames
from tests.helpers import Consortium


def test_pool_checks_and_bounds(consortium: Consortium) -> None:
    c = consortium
    committed = {(c.admin_keys[3].public_key, 77)}
    pool = TxPool(max_count=3, max_bytes=10_000, nonce_used=lambda s, n: (s, n) in committed)
    txs = [c.tx(c.admin_keys[0]) for _ in range(4)]
    ids = [pool.admit(t, t.encode(), 0) for t in txs[:3]]
    assert len(pool) == 3 and pool.bytes == sum(len(t.encode()) for t in txs[:3])
    with pytest.raises(PoolReject) as e:
        pool.admit(txs[3], txs[3].encode(), 0)
    assert e.value.code == "busy"
    with pytest.raises(PoolReject) as e:
        pool.admit(txs[0], txs[0].encode(), 0)
    assert e.value.code == "duplicate"
    pool.remove(ids[:1])
    same_nonce = c.tx(c.admin_keys[0], nonce=txs[1].nonce, args={"key": "other", "value": "x"})
    with pytest.raises(PoolReject) as e:
        pool.admit(same_nonce, same_nonce.encode(), 0)
    assert e.value.code == "replayed"
    replay = c.tx(c.admin_keys[3], nonce=77)
    with pytest.raises(PoolReject) as e:
        pool.admit(replay, replay.encode(), 0)
    assert e.value.code == "replayed"
    taken = pool.take(10, 10_000, skip={ids[1]})
    assert [p.tx_id for p in taken] == [ids[2]]
    pool.remove_committed_nonces([(txs[2].sender, txs[2].nonce)])
    assert len(pool) == 1
    small = TxPool(100, max_bytes=len(txs[3].encode()) - 1, nonce_used=lambda s, n: False)
    with pytest.raises(PoolReject, match="full"):
        small.admit(txs[3], txs[3].encode(), 0)


def test_check_tx_reasons(consortium: Consortium) -> None:
    c = consortium
    tx = c.tx(c.admin_keys[0])
    assert check_tx(tx.encode(), c.chain_id, 65536) == tx
    for raw, chain, limit, code in [
        (b"junk", c.chain_id, 65536, "malformed"),
        (tx.encode(), "other", 65536, "wrong-chain"),
        (tx.encode(), c.chain_id, 10, "too-large"),
    ]:
        with pytest.raises(PoolReject) as e:
            check_tx(raw, chain, limit)
        assert e.value.code == code


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20), st.data())
def test_frames_survive_any_chunking(payloads: list[bytes], data: st.DataObject) -> None:
    stream = encode_frames(payloads)
    reader = FrameReader(1000)
    out: list[bytes] = []
    pos = 0
    while pos < len(stream):
        n = data.draw(st.integers(1, 64))
        out += reader.feed(stream[pos : pos + n])
        pos += n
    assert out == payloads and reader.buffered == 0


def test_oversized_frame_refused_from_its_header() -> None:
    reader = FrameReader(100)
    assert reader.feed(encode_frame(b"x" * 100)) == [b"x" * 100]
    with pytest.raises(FrameTooLarge, match="exceeds the limit of 100"):
        reader.feed(b"\x00\x00\x00\x65")  # 101 announced: refused before any payload arrives


def test_token_bucket_limits_rate() -> None:
    from medchain.node.net.p2p_state import TokenBucket

    now = [1000.0]  # an injected clock; steps of 1/16 s and 1/32 s are exact in binary
    b = TokenBucket(rate=80, burst=10, clock=lambda: now[0])
    assert sum(b.take(1) for _ in range(50)) == 10  # the burst, then refused
    now[0] += 0.0625
    assert sum(b.take(1) for _ in range(50)) == 5  # 5 refilled in 1/16 s
    now[0] += 10.0
    assert sum(b.take(1) for _ in range(50)) == 10  # a long pause refills only the burst
    now[0] += 0.03125  # 2.5 tokens
    assert not b.take(3)  # a larger frame is refused and costs nothing
    assert b.take(2)
    assert not b.take(1)
