"""The benchmark suite behind BENCHMARKS.md.

    python -m benchmarks.suite --out bench-results [--runs 3] [--duration 10] [--soak 600]
                                [--parts loads,baseline,killed,catchup,soak]

- loads: for record anchors and a realistic mix, at n = 4 and n = 7, find the
  saturation throughput, then run 25/50/75/100 % of it (medians of --runs);
- baseline: the same pipeline unreplicated, in one process, and the ratio;
- killed: n = 4 anchors at 1,000 tx/s offered with one node SIGKILLed;
- catchup: a node down while ~8,000 transactions commit, then restarted: how
  fast state transfer brings it back (blocks/s, tx/s);
- soak: n = 4 anchors for --soak seconds at --soak-rate (1,000 tx/s, the target): every node's
  RSS over time (flat after warm-up?) and ledger bytes per transaction.

Every figure is written to JSON in --out; the summary is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from medchain.client.rpc import RpcClient
from medchain.localnet.bench.cluster import BenchResult, machine, run_bench
from medchain.localnet.bench.unreplicated import run_unreplicated
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

SATURATION_OFFER = {4: 3600.0, 7: 2400.0}  # well above what this machine commits
# The soak's warm-up: the state read cache (100,000 entries) and the pool's
# write-ahead log reach their working size in the first ~1.5 minutes at 800 tx/s.
WARMUP_S = 120


def med(results: list[BenchResult]) -> dict[str, Any]:
    def m(xs: list[float | None]) -> float | None:
        v = [x for x in xs if x is not None]
        return statistics.median(v) if v else None

    return {
        "committed_tx_s": m([r.committed_tx_s for r in results]),
        "p50_ms": m([r.p50_ms for r in results]),
        "p99_ms": m([r.p99_ms for r in results]),
        "runs": [asdict(r) for r in results],
    }


def loads(
    out: Path,
    runs: int,
    duration: float,
    report: dict[str, Any],
    kinds: tuple[str, ...] = ("anchor", "mix"),
    sizes: tuple[int, ...] = (4, 7),
) -> None:
    for kind in kinds:
        for n in sizes:
            sat_runs = [
                run_bench(
                    n=n,
                    rate=SATURATION_OFFER[n],
                    duration=duration,
                    kind=kind,
                    progress=lambda s: None,
                )
                for _ in range(runs)
            ]
            sat = statistics.median(r.committed_tx_s for r in sat_runs)
            row: dict[str, Any] = {
                "saturation_tx_s": sat,
                "saturation_runs": [asdict(r) for r in sat_runs],
                "levels": {},
            }
            print(f"{kind} n={n}: saturation {sat:.0f} tx/s", flush=True)
            for frac in (0.25, 0.5, 0.75, 1.0):
                rs = [
                    run_bench(
                        n=n, rate=frac * sat, duration=duration, kind=kind, progress=lambda s: None
                    )
                    for _ in range(runs)
                ]
                row["levels"][f"{int(frac * 100)}%"] = dict(med(rs), offered_tx_s=frac * sat)
                mm = row["levels"][f"{int(frac * 100)}%"]
                print(
                    f"  {int(frac * 100):>3}% ({frac * sat:.0f} offered): {mm['committed_tx_s']:.0f} tx/s, p50 {mm['p50_ms']:.0f} ms, p99 {mm['p99_ms']:.0f} ms",
                    flush=True,
                )
            report.setdefault("loads", {})[f"{kind}-n{n}"] = row
            (out / "suite.json").write_text(json.dumps(report, indent=2))


def baseline(out: Path, runs: int, report: dict[str, Any]) -> None:
    for kind in ("anchor", "mix"):
        rs = [run_unreplicated(kind, 20_000)["tx_per_s"] for _ in range(runs)]
        unrep = statistics.median(rs)
        entry: dict[str, Any] = {"unreplicated_tx_s": unrep, "runs": rs}
        sat = report.get("loads", {}).get(f"{kind}-n4", {}).get("saturation_tx_s")
        if sat:
            entry["replicated_n4_saturation_tx_s"] = sat
            entry["ratio_replicated_over_unreplicated"] = sat / unrep
        report.setdefault("baseline", {})[kind] = entry
        print(
            f"unreplicated {kind}: {unrep:.0f} tx/s"
            + (
                f"; n=4 replicated/unreplicated = {entry['ratio_replicated_over_unreplicated']:.2f}"
                if sat
                else ""
            ),
            flush=True,
        )
    (out / "suite.json").write_text(json.dumps(report, indent=2))


def killed(out: Path, runs: int, duration: float, report: dict[str, Any]) -> None:
    full = [
        run_bench(n=4, rate=1000, duration=duration, kind="anchor", progress=lambda s: None)
        for _ in range(runs)
    ]
    down = [
        run_bench(n=4, rate=1000, duration=duration, kind="anchor", progress=lambda s: None, kill=3)
        for _ in range(runs)
    ]
    a, b = med(full), med(down)
    report["killed"] = {
        "all_up": a,
        "one_killed": b,
        "ratio": b["committed_tx_s"] / a["committed_tx_s"],
    }
    print(
        f"n=4 anchors at 1000 offered: all up {a['committed_tx_s']:.0f} tx/s (p50 {a['p50_ms']:.0f}); one node killed {b['committed_tx_s']:.0f} tx/s "
        f"(p50 {b['p50_ms']:.0f}), ratio {report['killed']['ratio']:.2f}",
        flush=True,
    )
    (out / "suite.json").write_text(json.dumps(report, indent=2))


class LiveCluster:
    """Four node processes and their RPC clients, for the longer runs."""

    def __init__(self, n: int = 4) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mc-suite-"))
        self.cdir = self.root / "c"
        self.genesis = init_consortium(
            self.cdir, [OrgSpec.parse(x) for x in DEFAULT_ORGS[:n]], ports=free_ports(n)
        )
        self.nodes = local_nodes(self.cdir)
        self.procs = [spawn(nd) for nd in self.nodes]
        for nd, p in zip(self.nodes, self.procs, strict=True):
            wait_ready(nd, 60, p)

    def client(self, i: int) -> RpcClient:
        return RpcClient(self.nodes[i].config.rpc_socket, timeout=120)

    def load(
        self, kind: str, rate: float, seconds: float, sockets: list[int], tag: str
    ) -> list[subprocess.Popen[bytes]]:
        clients = {
            nd.org_id: RpcClient(nd.config.rpc_socket, timeout=120)
            for nd, p in zip(self.nodes, self.procs, strict=True)
            if p.poll() is None
        }
        files = save(setup(kind, clients, self.cdir, 2, self.genesis.chain_id), self.root)
        socks = ",".join(str(self.nodes[i].config.rpc_socket) for i in sockets)
        return [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "medchain.localnet.bench.loadgen",
                    "--sockets",
                    socks,
                    "--workload",
                    str(f),
                    "--rate",
                    str(rate / 2),
                    "--duration",
                    str(seconds),
                    "--out",
                    str(self.root / f"{tag}-{k}.jsonl"),
                ],
                cwd=self.root,
            )
            for k, f in enumerate(files)
        ]

    def rss_kb(self, i: int, field: str = "VmRSS") -> int:
        """A node's resident memory in KiB: ``VmRSS`` (all of it), ``RssAnon`` (heap and
        stacks: what the node allocated) or ``RssFile`` (pages of mapped files: LevelDB
        maps its table files, so reading them shows up here, reclaimable page cache)."""
        try:
            for line in Path(f"/proc/{self.procs[i].pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def close(self) -> None:
        for nd in self.nodes:
            stop(nd, timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


def catchup(out: Path, report: dict[str, Any]) -> None:
    c = LiveCluster()
    try:
        with c.client(3) as cl:
            start_height = cl.status()["height"]
        c.procs[3].kill()
        c.procs[3].wait()
        gens = c.load("anchor", 800, 10, [0, 1, 2], "catchup")
        for g in gens:
            g.wait(120)
        with c.client(0) as cl:
            target = cl.status()["height"]
            txs = sum(
                len(cl.call("block.get", {"height": h})["tx_ids"])
                for h in range(start_height + 1, target + 1)
            )
        t = time.perf_counter()
        c.procs[3] = spawn(c.nodes[3])
        wait_ready(c.nodes[3], 60, c.procs[3])
        ready = time.perf_counter() - t
        with c.client(3) as cl:
            while cl.status()["height"] < target:
                time.sleep(0.05)
        dt = time.perf_counter() - t
        blocks = target - start_height
        report["catchup"] = {
            "blocks": blocks,
            "txs": txs,
            "seconds_incl_restart": dt,
            "restart_s": ready,
            "blocks_per_s": blocks / dt,
            "tx_per_s": txs / dt,
        }
        print(
            f"catch-up: {blocks} blocks / {txs} txs in {dt:.1f}s incl. a {ready:.1f}s restart: {blocks / dt:.0f} blocks/s, {txs / dt:.0f} tx/s",
            flush=True,
        )
    finally:
        c.close()
    (out / "suite.json").write_text(json.dumps(report, indent=2))


def rss_growth(
    samples: list[dict[str, Any]], key: str = "rss_kb"
) -> tuple[list[float], list[float]]:
    """Per node, after the warm-up: growth from the median RSS of the first minute
    to the median of the last minute (single samples jitter by several percent
    as garbage is collected and trimmed), and the spread (max - min) / min."""
    warm = [s for s in samples if s["t"] >= WARMUP_S]
    growth: list[float] = []
    spread: list[float] = []
    if len(warm) < 2:
        return growth, spread
    t_first, t_last = warm[0]["t"], warm[-1]["t"]
    for i in range(len(warm[0][key])):
        series = [(s["t"], s[key][i]) for s in warm if s[key][i]]
        first = [v for t, v in series if t < t_first + 60]
        last = [v for t, v in series if t > t_last - 60]
        if first and last:
            growth.append(statistics.median(last) / statistics.median(first) - 1)
            values = [v for _, v in series]
            spread.append((max(values) - min(values)) / min(values))
    return growth, spread


def soak(out: Path, seconds: float, rate: float, report: dict[str, Any]) -> None:
    c = LiveCluster()
    try:
        gens = c.load("anchor", rate, seconds, [0, 1, 2, 3], "soak")
        samples: list[dict[str, Any]] = []
        t0 = time.time()
        while any(g.poll() is None for g in gens):
            sample: dict[str, Any] = {
                "t": round(time.time() - t0, 1),
                "rss_kb": [c.rss_kb(i) for i in range(4)],
                "anon_kb": [c.rss_kb(i, "RssAnon") for i in range(4)],
                "file_kb": [c.rss_kb(i, "RssFile") for i in range(4)],
            }
            try:
                with c.client(0) as cl:
                    sample["node0"] = cl.call("node.metrics")["memory"]
            except Exception as exc:  # a sample missed is not a failed soak
                sample["node0"] = {"error": str(exc)}
            samples.append(sample)
            print(
                f"  t={sample['t']:.0f}s rss MiB {[x // 1024 for x in sample['rss_kb']]} anon {[x // 1024 for x in sample['anon_kb']]} node0 {sample['node0']}",
                flush=True,
            )
            time.sleep(10)
        time.sleep(3)
        with c.client(0) as cl:
            height = cl.status()["height"]
            metrics = cl.call("node.metrics")
        txs = metrics["txs_committed"]
        ledger_bytes = sum(
            f.stat().st_size
            for f in (c.nodes[0].config.data_dir / "ledger").rglob("*")
            if f.is_file()
        )
        growth, spread = rss_growth(samples)
        anon_growth, anon_spread = rss_growth(samples, "anon_kb")
        report["soak"] = {
            "seconds": seconds,
            "offered_tx_s": rate,
            "txs_committed": txs,
            "height": height,
            "ledger_bytes": ledger_bytes,
            "ledger_bytes_per_tx": ledger_bytes / max(txs, 1),
            "rss_samples": samples,
            "rss_growth_after_warmup": growth,
            "rss_spread_after_warmup": spread,
            "anon_growth_after_warmup": anon_growth,
            "anon_spread_after_warmup": anon_spread,
            "warmup_s": WARMUP_S,
            "p50_ms": metrics["commit_latency_ms"]["p50_recent"],
            "p99_ms": metrics["commit_latency_ms"]["p99_recent"],
        }
        print(
            f"soak {seconds:.0f}s at {rate:.0f} tx/s: {txs} txs, ledger {ledger_bytes / max(txs, 1):.0f} bytes/tx, "
            f"RSS growth after {WARMUP_S} s warm-up per node (median of the first minute -> "
            f"median of the last): {', '.join(f'{g * 100:+.1f}%' for g in growth)}; "
            f"spread (max-min)/min: {', '.join(f'{g * 100:.1f}%' for g in spread)}; "
            f"anonymous memory only (RssAnon): {', '.join(f'{g * 100:+.1f}%' for g in anon_growth)}",
            flush=True,
        )
    finally:
        c.close()
    (out / "suite.json").write_text(json.dumps(report, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench-results"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--soak", type=float, default=600)
    ap.add_argument("--soak-rate", type=float, default=1000)
    ap.add_argument("--parts", default="loads,baseline,killed,catchup,soak")
    ap.add_argument("--kinds", default="anchor,mix", help="workloads for the loads part")
    ap.add_argument("--sizes", default="4,7", help="consortium sizes for the loads part")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "suite.json"
    report: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    report["machine"] = machine()
    report["cpu_count"] = os.cpu_count()
    parts = args.parts.split(",")
    if "loads" in parts:
        loads(
            args.out,
            args.runs,
            args.duration,
            report,
            tuple(args.kinds.split(",")),
            tuple(int(x) for x in args.sizes.split(",")),
        )
    if "baseline" in parts:
        baseline(args.out, args.runs, report)
    if "killed" in parts:
        killed(args.out, args.runs, args.duration, report)
    if "catchup" in parts:
        catchup(args.out, report)
    if "soak" in parts:
        soak(args.out, args.soak, args.soak_rate, report)
    print(f"results in {path}")


if __name__ == "__main__":
    main()
