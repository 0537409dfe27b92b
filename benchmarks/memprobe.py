"""Watch the process heap while the unreplicated pipeline runs at a fixed rate.

The node's RSS creeps under steady load (BENCHMARKS.md, memory). This probe runs
only decode+verify, execute and commit (no networking, consensus or RPC) and
prints the allocator's (glibc's, or jemalloc's under LD_PRELOAD) and LevelDB's
view of memory every ``--every`` seconds, so a creep can be pinned to that path — and, with ``--no-execute`` (decode and
verify only) or ``--no-commit`` (execute each block against the same state,
never write it), to one part of it::

    python -m benchmarks.memprobe --seconds 300 --rate 1000 --block 100
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from medchain.localnet.bench.unreplicated import LocalChain
from medchain.node.consensus.chain import propose_block
from medchain.node.ops import memory
from medchain.storage.tx import decode_verified


def _status_mib(field: str) -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) // 1024
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--block", type=int, default=100, help="transactions per block")
    ap.add_argument("--every", type=float, default=20, help="seconds between samples")
    ap.add_argument("--no-execute", action="store_true", help="decode and verify only")
    ap.add_argument("--no-commit", action="store_true", help="execute, never commit")
    args = ap.parse_args()
    memory.limit_arenas()
    n = int(args.seconds * args.rate) + args.block
    root = Path(tempfile.mkdtemp(prefix="mc-memprobe-"))
    try:
        chain, makers = LocalChain.create(root, "anchor", 2)
        ledger, g = chain.ledger, chain.genesis
        raws: list[bytes | None] = [makers[i % 2].make(i // 2).encode() for i in range(n)]
        print(f"signed {n} anchors; sampling every {args.every:.0f}s", flush=True)
        t0 = time.time()
        due, last_trim, next_sample = t0, t0, t0
        i = 0
        while i + args.block <= n and time.time() - t0 < args.seconds:
            chunk = [r for r in raws[i : i + args.block] if r is not None]
            raws[i : i + args.block] = [None] * args.block
            i += args.block
            for raw in chunk:
                decode_verified(raw, g.chain_id)
            if not args.no_execute:
                if args.no_commit:
                    chain.now += 1
                    block = propose_block(ledger, chunk, chain.now, chain.node_keys[0].public_key)
                    chain.executor.execute(ledger, block)
                else:
                    chain.commit(chunk)
            now = time.time()
            if now - last_trim >= 10:
                memory.trim()
                last_trim = now
            if now >= next_sample:
                next_sample += args.every
                m = memory.malloc_info()
                lv = ledger.store.memory_kb() + ledger.blocks.memory_kb()  # type: ignore[attr-defined]
                disk = sum(f.stat().st_size for f in (root / "ledger").rglob("*") if f.is_file())
                print(
                    f"{now - t0:5.0f}s height {ledger.height} RssAnon {_status_mib('RssAnon')} "
                    f"RssFile {_status_mib('RssFile')} MiB; "
                    + " ".join(f"{k.removesuffix('_kb')} {v >> 10}" for k, v in m.items())
                    + f" MiB; leveldb {lv >> 10} MiB; python blocks {sys.getallocatedblocks()}; "
                    f"disk {disk >> 20} MiB ({disk // max(1, i)} B/tx)",
                    flush=True,
                )
            due += args.block / args.rate
            if due > now:
                time.sleep(due - now)
        ledger.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
