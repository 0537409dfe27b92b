"""End-to-end benchmark of a real local consortium.

Starts n node processes (libp2p + Noise, LevelDB, fsync per block), runs
load-generator processes that submit signed transactions over RPC at a fixed
offered rate, and watches one node's committed blocks to measure committed
throughput and commit latency (submit -> committed at that node).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medchain.client.rpc import RpcClient
from medchain.localnet.bench.workload import save, setup
from medchain.localnet.processes import (
    DEFAULT_ORGS,
    free_ports,
    local_nodes,
    spawn,
    stop,
    wait_ready,
)
from medchain.node.consortium import OrgSpec, init_consortium
from medchain.storage.genesis import ConsensusParams


@dataclass
class BenchResult:
    nodes: int
    offered_tx_s: float
    duration_s: float
    submitted: int
    committed: int
    committed_tx_s: float
    p50_ms: float | None
    p99_ms: float | None
    busy: int
    blocks: int
    mean_block_txs: float
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        p50 = f"{self.p50_ms:.0f}" if self.p50_ms is not None else "-"
        p99 = f"{self.p99_ms:.0f}" if self.p99_ms is not None else "-"
        return (
            f"n={self.nodes} offered {self.offered_tx_s:.0f} tx/s: committed {self.committed_tx_s:.0f} tx/s, "
            f"latency p50 {p50} ms p99 {p99} ms, {self.blocks} blocks of {self.mean_block_txs:.0f} txs"
            + (f", {self.busy} busy" if self.busy else "")
            + (f", view {self.extra['final_view']}" if self.extra.get("final_view") else "")
        )


class Observer(threading.Thread):
    """Records when each transaction appears in a committed block at one node."""

    def __init__(self, socket: Path) -> None:
        super().__init__(daemon=True)
        self.socket = socket
        self.commit_time: dict[str, float] = {}
        self.blocks: list[tuple[float, int]] = []  # (time, txs)
        self.stop = threading.Event()

    def run(self) -> None:
        with RpcClient(self.socket, timeout=5) as sub, RpcClient(self.socket, timeout=30) as q:
            sub.subscribe(kinds=["block"])
            while not self.stop.is_set():
                for note in sub.notifications(timeout=0.5):
                    now = time.time()
                    ev = note["event"]
                    self.blocks.append((now, ev["txs"]))
                    if ev["txs"]:
                        for t in q.call("block.get", {"height": ev["height"]})["tx_ids"]:
                            self.commit_time[t] = now
                    if self.stop.is_set():
                        break


def run_bench(
    n: int = 4,
    rate: float = 600,
    duration: float = 15,
    warmup: float = 3,
    generators: int = 2,
    kind: str = "kv",
    params: ConsensusParams | None = None,
    keep: bool = False,
    progress: Any = print,
    kill: int | None = None,
) -> BenchResult:
    """One run. ``kill``: a node (not 0, which is observed) SIGKILLed before the load starts."""
    root = Path(tempfile.mkdtemp(prefix="mc-bench-"))
    procs = []
    try:
        cdir = root / "c"
        g = init_consortium(
            cdir,
            [OrgSpec.parse(x) for x in DEFAULT_ORGS[:n]],
            consensus=params or ConsensusParams(),
            ports=free_ports(n),
        )
        nodes = local_nodes(cdir)
        procs = [spawn(nd) for nd in nodes]
        for nd, p in zip(nodes, procs, strict=True):
            wait_ready(nd, 60, p)
        setup_clients = {nd.org_id: RpcClient(nd.config.rpc_socket, timeout=120) for nd in nodes}
        workloads = save(setup(kind, setup_clients, cdir, generators, g.chain_id), root)
        for cl in setup_clients.values():
            cl.close()
        if kill is not None:
            assert kill != 0, "node 0 is the one observed"
            procs[kill].kill()
            procs[kill].wait()
        live = [i for i in range(n) if i != kill]
        sockets = [str(nodes[i].config.rpc_socket) for i in live]
        obs = Observer(nodes[0].config.rpc_socket)
        obs.start()
        total = warmup + duration
        start_at = time.time() + 2 + 0.0002 * rate * total / generators  # after pre-signing
        gens = []
        for k in range(generators):
            out = root / f"gen{k}.jsonl"
            # Each generator spreads its batches over all nodes (a member system talks to its own node).
            mine = ",".join(sockets[(k + j) % len(sockets)] for j in range(len(sockets)))
            gens.append(
                (
                    out,
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "medchain.localnet.bench.loadgen",
                            "--sockets",
                            mine,
                            "--workload",
                            str(workloads[k]),
                            "--rate",
                            str(rate / generators),
                            "--duration",
                            str(total),
                            "--out",
                            str(out),
                            "--start-at",
                            str(start_at),
                        ],
                        cwd=root,
                    ),
                )
            )
        progress(f"  n={n}: {generators} generators offering {rate:.0f} tx/s for {total:.0f}s ...")
        for _, p in gens:
            p.wait(total + 120)
        time.sleep(3)  # let the tail commit
        obs.stop.set()
        obs.join(10)
        submit: dict[str, float] = {}
        busy = 0
        for out, _ in gens:
            for line in out.read_text().splitlines():
                d = json.loads(line)
                if d.get("summary"):
                    busy += d["busy"]
                else:
                    submit[d["tx"]] = d["t"]
        t0 = min(submit.values()) + warmup if submit else 0
        t1 = t0 + duration
        window = [tx for tx, t in submit.items() if t0 <= t < t1]
        lat = sorted(
            (obs.commit_time[tx] - submit[tx]) * 1000 for tx in window if tx in obs.commit_time
        )
        committed_in_window = sum(1 for tx, ct in obs.commit_time.items() if t0 <= ct < t1)
        blocks = [b for b in obs.blocks if t0 <= b[0] < t1]
        with RpcClient(nodes[0].config.rpc_socket, timeout=30) as c0:
            m = c0.call("node.metrics")
        extra = {"final_view": m["view"], "batch_cap": m.get("batch_cap")}
        return BenchResult(
            nodes=n,
            offered_tx_s=rate,
            duration_s=duration,
            submitted=len(window),
            committed=len(lat),
            committed_tx_s=committed_in_window / duration,
            p50_ms=lat[len(lat) // 2] if lat else None,
            p99_ms=lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None,
            busy=busy,
            blocks=len(blocks),
            mean_block_txs=statistics.mean([b[1] for b in blocks]) if blocks else 0.0,
            extra=extra,
        )
    finally:
        for nd in local_nodes(root / "c") if (root / "c" / "genesis.toml").exists() else []:
            stop(nd, timeout=5)
        for p in procs:
            if p.poll() is None:
                p.kill()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
