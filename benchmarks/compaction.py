"""What LevelDB's compactions cost per transaction, offline.

At 1,000 tx/s a node's LevelDB background thread (compactions of the main store)
uses about as much CPU as the node's Python thread (benchmarks/HISTORY.md,
2026-11-30). This runs record anchors through the unreplicated pipeline
(``LocalChain``: execute and commit blocks to a real LevelDB ledger, plus the nonce
read a node does at admission) and reports the background threads' CPU (process
CPU minus this thread's) and LevelDB's own compaction table for the main store, so
a change to keys or store options can be judged in a minute instead of a soak::

    python -m benchmarks.compaction --txs 300000

``--logs DIR`` instead sums up what LevelDB wrote in its ``LOG`` files under DIR
(for instance a soak's consortium directory, ``/tmp/mc-suite-*/c``): per store,
bytes flushed from memtables, bytes written by compactions, how many
compactions moved a table down a level without rewriting it, and how many writes
waited for a full memtable (LevelDB flushes all of a process's stores on one
background thread)::

    python -m benchmarks.compaction --logs /tmp/mc-suite-xxxx/c
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import tempfile
import time
from pathlib import Path

from medchain.contracts.runtime import nonce_key
from medchain.localnet.bench.unreplicated import LocalChain
from medchain.storage.tx import Transaction


def _process_cpu_s() -> float:
    total = 0
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime, clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def _thread_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_THREAD)
    return r.ru_utime + r.ru_stime


def log_summary(log: str) -> dict[str, int]:
    """Totals of one LevelDB ``LOG`` file (one process's run of that store)."""
    return {
        "flushed": sum(int(x) for x in re.findall(r"Level-0 table #\d+: (\d+) bytes OK", log)),
        "compacted": sum(int(x) for x in re.findall(r"Compacted .*? => (\d+) bytes", log)),
        "compactions": len(re.findall(r"Compacted ", log)),
        "moves": len(re.findall(r"Moved #", log)),
        # A writer found the memtable full while the (shared) background thread was busy.
        "waits": log.count("Current memtable full; waiting"),
    }


def summarize_logs(root: Path) -> None:
    for log in sorted(root.rglob("LOG")):
        s = log_summary(log.read_text(errors="replace"))
        if not s["flushed"] and not s["compactions"]:
            continue
        amp = s["compacted"] / s["flushed"] if s["flushed"] else 0.0
        print(
            f"{log.parent.relative_to(root)}: flushed {s['flushed'] / 1e6:,.1f} MB, "
            f"compactions wrote {s['compacted'] / 1e6:,.1f} MB ({amp:.1f}x) in "
            f"{s['compactions']} compactions, {s['moves']} tables moved without rewriting, "
            f"{s['waits']} writes waited for a full memtable"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--txs", type=int, default=300_000)
    ap.add_argument("--block", type=int, default=200, help="transactions per block")
    ap.add_argument("--generators", type=int, default=4, help="senders (one key each)")
    ap.add_argument("--logs", type=Path, help="summarize the LevelDB LOG files under this dir")
    args = ap.parse_args()
    if args.logs is not None:
        summarize_logs(args.logs)
        return
    root = Path(tempfile.mkdtemp(prefix="mc-compaction-"))
    try:
        chain, makers = LocalChain.create(root, "anchor", args.generators)
        ledger = chain.ledger
        t0, p0, m0 = time.perf_counter(), _process_cpu_s(), _thread_cpu_s()
        g = args.generators
        for i in range(0, args.txs, args.block):
            raws = [makers[j % g].make(j // g).encode() for j in range(i, i + args.block)]
            for raw in raws:  # what admission reads: is the nonce used?
                tx = Transaction.decode(raw)
                ledger.state_get_uncached(nonce_key(tx.sender, tx.nonce))
            chain.commit(raws)
        wall = time.perf_counter() - t0
        background = (_process_cpu_s() - p0) - (_thread_cpu_s() - m0)
        stats = ledger.store._db.get_property(b"leveldb.stats")  # type: ignore[attr-defined]
        bstats = ledger.blocks._db.get_property(b"leveldb.stats")  # type: ignore[attr-defined]
        ledger.close()
        n = args.txs
        print(f"{n} anchors in {wall:.1f} s ({n / wall:,.0f} tx/s, building and signing included)")
        print(
            f"background threads (LevelDB compactions): {background:.1f} s CPU, "
            f"{background / n * 1e6:.0f} µs per transaction"
        )
        print("main store (ledger/):")
        print(stats.decode() if stats else "(no statistics)")
        print("block store (ledger/blocks/):")
        print(bstats.decode() if bstats else "(no statistics)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
