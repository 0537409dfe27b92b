"""The node's store of consensus Persist records: a prepared slot's second save
writes only its prepares, and loading joins them with the pre-prepare saved before."""

from __future__ import annotations

from medchain.consensus.messages import Checkpoint, Prepare, PrePrepare
from medchain.consensus.persist import SlotRecord, StableRecord, ViewRecord
from medchain.node.consensus.store import P_PREP, P_SLOT, ConsensusStore
from medchain.storage.kv import MemoryKV
from medchain.storage.ledger import be8


def pp(seq: int, view: int = 0, batch: bytes = b"x" * 10_000) -> PrePrepare:
    digest = bytes([seq % 256, view % 256]) * 16
    return PrePrepare(view, seq, 1_000 + seq, digest, batch, 0, b"s" * 64)


def prepares(p: PrePrepare, n: int = 3) -> tuple[Prepare, ...]:
    return tuple(Prepare(p.view, p.seq, p.digest, i, b"s" * 64) for i in range(1, n + 1))


def test_prepared_slot_writes_only_its_prepares_and_loads_whole() -> None:
    kv = MemoryKV()
    store = ConsensusStore(kv)
    a = pp(1)
    store.save(SlotRecord(1, a))
    slot_bytes = kv.get(P_SLOT + be8(1))
    assert slot_bytes is not None and len(slot_bytes) > 10_000
    store.save(SlotRecord(1, a, prepares(a)))
    assert kv.get(P_SLOT + be8(1)) == slot_bytes  # the batch is not written again
    prep = kv.get(P_PREP + be8(1))
    assert prep is not None and len(prep) < 1_000
    state = ConsensusStore(kv).load()  # a restart
    assert state.slots[1] == SlotRecord(1, a, prepares(a))


def test_a_new_pre_prepare_for_the_slot_drops_the_old_prepares() -> None:
    kv = MemoryKV()
    store = ConsensusStore(kv)
    a, b = pp(1, view=0), pp(1, view=1, batch=b"y" * 100)
    store.save(SlotRecord(1, a))
    store.save(SlotRecord(1, a, prepares(a)))
    store.save(ViewRecord(1, False))
    store.save(SlotRecord(1, b))  # re-proposed in view 1
    assert kv.get(P_PREP + be8(1)) is None
    state = ConsensusStore(kv).load()
    assert state.slots[1] == SlotRecord(1, b) and (state.view, state.normal) == (1, False)


def test_prepares_for_another_digest_are_not_joined() -> None:
    from medchain.storage.codec import pack

    kv = MemoryKV()
    store = ConsensusStore(kv)
    a = pp(1)
    store.save(SlotRecord(1, a))
    other = PrePrepare(0, 1, 5, b"\x09" * 32, b"z", 0, b"s" * 64)
    kv.write({P_PREP + be8(1): pack([p.encode() for p in prepares(other)])})
    assert ConsensusStore(kv).load().slots[1] == SlotRecord(1, a)


def test_after_a_restart_a_prepared_slot_is_written_whole_and_stable_drops_both() -> None:
    kv = MemoryKV()
    a, c = pp(1), pp(2)
    ConsensusStore(kv).save(SlotRecord(1, a))
    store = ConsensusStore(kv)  # restarted: does not know what the old process saved
    store.save(SlotRecord(1, a, prepares(a)))
    assert kv.get(P_PREP + be8(1)) is None  # written whole instead
    store.save(SlotRecord(2, c))
    store.save(SlotRecord(2, c, prepares(c)))
    assert kv.get(P_PREP + be8(2)) is not None
    root = b"r" * 32
    proof = tuple(Checkpoint(2, root, i, b"s" * 64) for i in range(3))
    store.save(StableRecord(2, root, proof))
    assert list(kv.scan(P_SLOT)) == [] and list(kv.scan(P_PREP)) == []
    state = ConsensusStore(kv).load()
    assert state.stable_seq == 2 and state.slots == {}


def test_prepares_of_another_view_with_the_same_digest_are_not_joined() -> None:
    from medchain.storage.codec import pack

    kv = MemoryKV()
    a1 = PrePrepare(1, 1, 5, b"\x07" * 32, b"batch", 0, b"s" * 64)  # view 1
    a0 = PrePrepare(0, 1, 5, b"\x07" * 32, b"batch", 0, b"s" * 64)  # same digest, view 0
    ConsensusStore(kv).save(SlotRecord(1, a1))
    kv.write({P_PREP + be8(1): pack([p.encode() for p in prepares(a0)])})
    assert ConsensusStore(kv).load().slots[1] == SlotRecord(1, a1)
