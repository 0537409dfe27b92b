"""Saving the replica's Persist records in the node's LevelDB.

Keys live under the prefix ``P`` beside the ledger's. Records are written
without fsync: a write() that returned survives a SIGKILL of the process
(the data is in the kernel), which is the crash model here; the ledger's own
block commits are synced.

A slot is saved twice: when its pre-prepare is accepted, and again once it has
prepared, with the prepares. The pre-prepare carries the whole batch, so the
second save writes only the prepares (``Pprep``) when this process saved that
very pre-prepare (``Pslot``) before; loading joins them again, and only
prepares for that pre-prepare's view and digest are taken. Writing a slot's
pre-prepare anew (another view) drops its old prepares in the same batch.
"""

from __future__ import annotations

from medchain.consensus.messages import Prepare, decode_message
from medchain.consensus.persist import (
    PersistedState,
    Record,
    SlotRecord,
    StableRecord,
    ViewRecord,
    decode_record,
    encode_record,
)
from medchain.storage.codec import DecodeError, as_bytes, as_list, pack, unpack
from medchain.storage.kv import KVStore
from medchain.storage.ledger import be8

K_VIEW = b"Pview"
K_STABLE = b"Pstable"
P_SLOT = b"Pslot"
P_PREP = b"Pprep"


class ConsensusStore:
    def __init__(self, store: KVStore) -> None:
        self.store = store
        self._saved: dict[int, tuple[int, bytes]] = {}  # seq -> (view, digest) in Pslot

    def save(self, record: Record) -> None:
        if isinstance(record, ViewRecord):
            self.store.write({K_VIEW: encode_record(record)}, sync=False)
        elif isinstance(record, SlotRecord):
            pp = record.preprepare
            key = be8(record.seq)
            if record.prepares and self._saved.get(record.seq) == (pp.view, pp.digest):
                prepares = pack([p.encode() for p in record.prepares])
                self.store.write({P_PREP + key: prepares}, sync=False)
            else:
                batch: dict[bytes, bytes | None] = {
                    P_SLOT + key: encode_record(record),
                    P_PREP + key: None,
                }
                self.store.write(batch, sync=False)
                self._saved[record.seq] = (pp.view, pp.digest)
        elif isinstance(record, StableRecord):
            stable: dict[bytes, bytes | None] = {K_STABLE: encode_record(record)}
            for prefix in (P_SLOT, P_PREP):
                for k, _ in self.store.scan(prefix):
                    if int.from_bytes(k[len(prefix) :], "big") <= record.seq:
                        stable[k] = None
            self.store.write(stable, sync=False)
            for seq in [s for s in self._saved if s <= record.seq]:
                del self._saved[seq]

    def load(self) -> PersistedState:
        state = PersistedState()
        for key in (K_STABLE, K_VIEW):
            raw = self.store.get(key)
            if raw is not None:
                state.apply(decode_record(raw))
        for _, raw in self.store.scan(P_SLOT):
            state.apply(decode_record(raw))
        for k, raw in self.store.scan(P_PREP):
            slot = state.slots.get(int.from_bytes(k[len(P_PREP) :], "big"))
            if slot is None:
                continue  # below the stable checkpoint
            pp = slot.preprepare
            prepares = _decode_prepares(raw)
            if all(p.view == pp.view and p.digest == pp.digest for p in prepares):
                state.apply(SlotRecord(slot.seq, pp, prepares))
        return state


def _decode_prepares(raw: bytes) -> tuple[Prepare, ...]:
    items = as_list(unpack(raw, 1024 * 1024, "prepares"), "prepares", 1024)
    out = tuple(decode_message(as_bytes(p, "prepare")) for p in items)
    if not all(isinstance(p, Prepare) for p in out):
        raise DecodeError("prepares record: wrong message types")
    return out  # type: ignore[return-value]
