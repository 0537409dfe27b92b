"""Joining ledger and executor: build a block at the tip, execute and commit
it, and re-execute a whole ledger to check its state roots."""

from __future__ import annotations

from collections.abc import Sequence

from medchain.contracts.app import Application
from medchain.storage.block import Block, BlockHeader, CommitCertificate, tx_root
from medchain.storage.executed import ExecutedBlock
from medchain.storage.ledger import Ledger, LedgerError


def propose_block(
    ledger: Ledger, txs: Sequence[bytes], timestamp_ms: int, proposer: bytes
) -> Block:
    """The next block on top of ``ledger``'s tip holding ``txs`` (in order)."""
    header = BlockHeader(
        chain_id=ledger.chain_id,
        height=ledger.height + 1,
        prev_hash=ledger.last_hash,
        timestamp_ms=timestamp_ms,
        tx_root=tx_root(txs),
        state_root=ledger.state_root,
        results_root=ledger.results_root,
        validator_set_hash=ledger.validators.hash(),
        proposer=proposer,
    )
    return Block.build(header, txs)


def apply_block(
    ledger: Ledger, executor: Application, block: Block, certificate: CommitCertificate
) -> ExecutedBlock:
    """Execute ``block`` on the committed state and commit it with its certificate."""
    ledger.check_next(block)
    executed = executor.execute(ledger, block)
    ledger.commit_block(executed, certificate)
    return executed


def replay_ledger(ledger: Ledger, executor: Application) -> list[str]:
    """Re-execute every block of ``ledger`` from genesis on a fresh in-memory
    ledger; report any height whose state root differs, and any state entry
    that differs at the end. Empty list: the stored state is exactly what the
    blocks produce."""
    fresh = Ledger.in_memory(ledger.genesis)
    problems: list[str] = []
    for h in range(1, ledger.height + 1):
        block = ledger.block(h)
        cert = ledger.certificate(h)
        if block is None or cert is None:
            return [f"block {h} missing"]
        try:
            apply_block(fresh, executor, block, cert)
        except Exception as exc:
            return [f"block {h} does not re-execute: {exc}"]
        if fresh.state_root != ledger.state_root_at(h):
            problems.append(f"state root after block {h} does not recompute")
    try:
        ours = dict(ledger.state_scan(b""))
    except LedgerError as exc:
        return [*problems, f"stored state unreadable: {exc}"]
    theirs = dict(fresh.state_scan(b""))
    if ours != theirs:
        diff = {k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)}
        problems.append(f"{len(diff)} state entries differ from re-execution")
    return problems
