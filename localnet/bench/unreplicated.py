"""The same pipeline without replication, as a baseline: one process that
verifies each transaction's signature, cuts blocks, executes them with the
real chaincode and commits each block to LevelDB in one synced write batch.

The replicated/unreplicated ratio says what consensus, networking and the
three extra copies of every check cost.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from medchain.contracts.bundle import make_executor
from medchain.localnet.bench.workload import Maker, setup
from medchain.localnet.processes import DEFAULT_ORGS
from medchain.node.consensus.chain import propose_block
from medchain.node.consortium import OrgSpec, init_consortium
from medchain.storage.block import make_certificate
from medchain.storage.genesis import Genesis
from medchain.storage.keyfile import load_key
from medchain.storage.ledger import Ledger
from medchain.storage.tx import Transaction, decode_verified


class LocalChain:
    """Quacks like RpcClient.submit(wait=True) for workload setup: one tx, one block."""

    def __init__(self, ledger: Ledger, genesis: Genesis, node_keys: list[Any]) -> None:
        self.ledger, self.genesis, self.node_keys = ledger, genesis, node_keys
        self.executor = make_executor(genesis)
        self.now = int(time.time() * 1000)

    def commit(self, raws: list[bytes]) -> list[Any]:
        self.now = max(self.now + 1, int(time.time() * 1000))
        block = propose_block(self.ledger, raws, self.now, self.node_keys[0].public_key)
        executed = self.executor.execute(self.ledger, block)
        q = self.genesis.validators.quorum
        cert = make_certificate(
            self.genesis.chain_id, 0, block.header, [(i, self.node_keys[i]) for i in range(q)]
        )
        self.ledger.commit_block(executed, cert)
        return list(executed.results)

    @classmethod
    def create(cls, root: Path, kind: str, generators: int) -> tuple[LocalChain, list[Maker]]:
        """A 4-member consortium under ``root``, its ledger on LevelDB, the workload
        ``kind`` set up on it, and one transaction maker per generator."""
        cdir = root / "c"
        g = init_consortium(cdir, [OrgSpec.parse(x) for x in DEFAULT_ORGS[:4]], ports=[1, 2, 3, 4])
        node_keys = [load_key(cdir / o.org_id / "node.key") for o in g.organizations]
        chain = cls(Ledger.open(root / "ledger", g), g, node_keys)
        clients: dict[str, Any] = {o.org_id: chain for o in g.organizations}
        descs = setup(kind, clients, cdir, generators, g.chain_id)
        return chain, [Maker(d) for d in descs]

    def submit(self, tx: Transaction, wait: bool = True, timeout_ms: int = 0) -> dict[str, Any]:
        r = self.commit([tx.encode()])[0]
        return {
            "status": "committed" if r.ok else "failed",
            "result": r.data,
            "reason": None if r.ok else r.data,
        }


def run_unreplicated(
    kind: str, txs: int, generators: int = 2, block_size: int = 500
) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="mc-unrep-"))
    try:
        chain, makers = LocalChain.create(root, kind, generators)
        ledger, g = chain.ledger, chain.genesis
        raws = [makers[i % generators].make(i // generators).encode() for i in range(txs)]
        t = time.perf_counter()
        for i in range(0, len(raws), block_size):
            chunk = raws[i : i + block_size]
            for raw in chunk:
                decode_verified(raw, g.chain_id)
            results = chain.commit(chunk)
            bad = [r.data for r in results if not r.ok]
            assert not bad, bad[:2]
        dt = time.perf_counter() - t
        ledger.close()
        return {"txs": txs, "seconds": dt, "tx_per_s": txs / dt}
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    import sys

    kind = sys.argv[1] if len(sys.argv) > 1 else "anchor"
    print(run_unreplicated(kind, 20_000))
