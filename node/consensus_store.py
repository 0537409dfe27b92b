"""Saving the replica's Persist records in the node's LevelDB.

Keys live under the prefix ``P`` beside the ledger's. Records are written
without fsync: a write() that returned survives a SIGKILL of the process
(the data is in the kernel), which is the crash model here; the ledger's own
block commits are synced.
"""

from __future__ import annotations

from consensus.persist import (
    PersistedState,
    Record,
    SlotRecord,
    StableRecord,
    ViewRecord,
    decode_record,
    encode_record,
)
from storage.kv import KVStore
from storage.ledger import be8

K_VIEW = b"Pview"
K_STABLE = b"Pstable"
P_SLOT = b"Pslot"


class ConsensusStore:
    def __init__(self, store: KVStore) -> None:
        self.store = store

    def save(self, record: Record) -> None:
        if isinstance(record, ViewRecord):
            self.store.write({K_VIEW: encode_record(record)}, sync=False)
        elif isinstance(record, SlotRecord):
            self.store.write({P_SLOT + be8(record.seq): encode_record(record)}, sync=False)
        elif isinstance(record, StableRecord):
            batch: dict[bytes, bytes | None] = {K_STABLE: encode_record(record)}
            for k, _ in self.store.scan(P_SLOT):
                if int.from_bytes(k[len(P_SLOT) :], "big") <= record.seq:
                    batch[k] = None
            self.store.write(batch, sync=False)

    def load(self) -> PersistedState:
        state = PersistedState()
        for key in (K_STABLE, K_VIEW):
            raw = self.store.get(key)
            if raw is not None:
                state.apply(decode_record(raw))
        for _, raw in self.store.scan(P_SLOT):
            state.apply(decode_record(raw))
        return state
