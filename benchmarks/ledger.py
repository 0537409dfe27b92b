"""Ledger-layer micro benchmarks (single process, no network).

    python -m benchmarks.ledger [--runs 5] [--json FILE]

Measures, as medians over --runs runs:
  - encode+sign: building and signing ~300-byte transactions (tx/s)
  - decode+verify: decoding them and checking chain id and signature (tx/s)
  - block commit: executing and committing blocks of 500 such transactions to
    LevelDB, one synced write batch per block (tx/s and ms per block)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from medchain.storage.ledger import Ledger
from medchain.storage.tx import decode_verified
from tests.helpers import Consortium

BLOCK_TXS = 500


def _anchor_args(i: int) -> dict[str, str]:
    # ~300 bytes on the wire: a record-anchor sized payload
    return {"key": f"anchor/{i:012d}", "value": f"{i:064x}" + "f" * 80}


def bench_sign(c: Consortium, n: int) -> tuple[float, list[bytes]]:
    signer = c.admin_keys[0]
    t = time.perf_counter()
    out = [c.tx(signer, args=_anchor_args(i)).encode() for i in range(n)]
    return n / (time.perf_counter() - t), out


def bench_verify(c: Consortium, txs: list[bytes]) -> float:
    t = time.perf_counter()
    for raw in txs:
        decode_verified(raw, c.chain_id)
    return len(txs) / (time.perf_counter() - t)


def bench_commit(c: Consortium, txs: list[bytes], workdir: Path) -> tuple[float, float]:
    ledger = Ledger.open(workdir, c.genesis)
    blocks = [txs[i : i + BLOCK_TXS] for i in range(0, len(txs), BLOCK_TXS)]
    t = time.perf_counter()
    for b in blocks:
        c.commit(ledger, b)
    dt = time.perf_counter() - t
    ledger.close()
    return len(txs) / dt, dt / len(blocks) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--txs", type=int, default=10_000)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    sign, verify, commit, per_block = [], [], [], []
    size = 0
    for run in range(args.runs):
        c = Consortium.make(seed=run + 1)
        s, txs = bench_sign(c, args.txs)
        size = len(txs[0])
        sign.append(s)
        verify.append(bench_verify(c, txs))
        with tempfile.TemporaryDirectory() as d:
            tps, ms = bench_commit(c, txs, Path(d) / "db")
        commit.append(tps)
        per_block.append(ms)
        print(
            f"run {run + 1}: sign {s:,.0f} tx/s  verify {verify[-1]:,.0f} tx/s  commit {tps:,.0f} tx/s ({ms:.1f} ms/block)"
        )
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "runs": args.runs,
        "tx_bytes": size,
        "block_txs": BLOCK_TXS,
        "encode_sign_tx_per_s": statistics.median(sign),
        "decode_verify_tx_per_s": statistics.median(verify),
        "block_commit_tx_per_s": statistics.median(commit),
        "block_commit_ms_per_block": statistics.median(per_block),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
