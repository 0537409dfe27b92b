"""A block with everything executing it produced: what the executor hands the
ledger to commit. Plain data, so chaincode's executor needs no store to make one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from medchain.storage.block import Block
from medchain.storage.receipts import block_receipts
from medchain.storage.state import TxResult


@dataclass
class ExecutedBlock:
    """A block with everything executing it produced, ready to commit."""

    block: Block
    results: Sequence[TxResult]
    writes: Mapping[bytes, bytes | None]  # state key -> value (None deletes)
    index_writes: Mapping[bytes, bytes | None] = field(default_factory=dict)
    receipts: Sequence[bytes] = ()  # encoded receipts; computed from the block if empty

    def receipt_list(self) -> Sequence[bytes]:
        if len(self.receipts) == len(self.results):
            return self.receipts
        b = self.block
        return block_receipts(b.tx_ids(), b.txs, self.results)
