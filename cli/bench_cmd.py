"""``medchain bench``: committed throughput and commit latency of a real local consortium."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from pathlib import Path

import click


@click.command()
@click.option(
    "--nodes",
    "nodes",
    type=int,
    multiple=True,
    default=(4, 7),
    show_default=True,
    help="Consortium sizes to measure (repeatable).",
)
@click.option(
    "--rate",
    type=float,
    default=1200,
    show_default=True,
    help="Offered load, transactions per second.",
)
@click.option(
    "--duration",
    type=float,
    default=15,
    show_default=True,
    help="Measured seconds per run (after a warm-up).",
)
@click.option(
    "--runs", type=int, default=3, show_default=True, help="Runs per size; medians are reported."
)
@click.option(
    "--generators", type=int, default=2, show_default=True, help="Load-generator processes."
)
@click.option(
    "--kind",
    type=click.Choice(["kv", "anchor", "mix"]),
    default="anchor",
    show_default=True,
    help="Workload: key-value puts, record anchors, or a realistic mix (anchors, consented accesses, claims).",
)
@click.option(
    "--baseline/--no-baseline",
    default=True,
    show_default=True,
    help="Also measure the same pipeline unreplicated (one process) and report the ratio.",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write all results as JSON.",
)
def bench(
    nodes: tuple[int, ...],
    rate: float,
    duration: float,
    runs: int,
    generators: int,
    kind: str,
    baseline: bool,
    json_out: Path | None,
) -> None:
    """Start n node processes, offer signed transactions over RPC from separate
    load-generator processes, and report committed tx/s and latency p50/p99.
    (The full suite with load levels, baselines and catch-up: python -m benchmarks.suite)"""
    from medchain.localnet.bench.cluster import machine, run_bench
    from medchain.localnet.bench.unreplicated import run_unreplicated

    click.echo(
        f"medchain bench on {machine()}: {kind}, {runs} run(s) per size, offered {rate:.0f} tx/s, {duration:.0f}s measured"
    )
    report: dict[str, object] = {
        "machine": machine(),
        "kind": kind,
        "rate": rate,
        "duration_s": duration,
        "results": {},
    }
    for n in nodes:
        results = []
        for r in range(runs):
            res = run_bench(
                n=n,
                rate=rate,
                duration=duration,
                generators=generators,
                kind=kind,
                progress=lambda s: click.echo(s),
            )
            click.echo(f"  run {r + 1}: {res.line()}")
            results.append(res)
        med_tps = statistics.median(x.committed_tx_s for x in results)
        p50s = [x.p50_ms for x in results if x.p50_ms is not None]
        p99s = [x.p99_ms for x in results if x.p99_ms is not None]
        med_p50 = statistics.median(p50s) if p50s else float("nan")
        med_p99 = statistics.median(p99s) if p99s else float("nan")
        click.secho(
            f"n={n}: median committed {med_tps:.0f} tx/s, p50 {med_p50:.0f} ms, p99 {med_p99:.0f} ms",
            bold=True,
        )
        report["results"][str(n)] = {  # type: ignore[index]
            "runs": [asdict(x) for x in results],
            "median_committed_tx_s": med_tps,
            "median_p50_ms": med_p50,
            "median_p99_ms": med_p99,
        }
    if baseline and kind != "kv":
        base = [run_unreplicated(kind, 20_000)["tx_per_s"] for _ in range(runs)]
        unrep = statistics.median(base)
        report["unreplicated"] = {"runs": base, "median_tx_s": unrep}
        click.secho(
            f"unreplicated (one process, same workload): median {unrep:.0f} tx/s", bold=True
        )
        for n in nodes:
            r = report["results"][str(n)]  # type: ignore[index]
            r["ratio_to_unreplicated"] = r["median_committed_tx_s"] / unrep
            click.echo(f"  n={n}: replicated / unreplicated = {r['ratio_to_unreplicated']:.2f}")
    if json_out:
        json_out.write_text(json.dumps(report, indent=2))
        click.echo(f"results written to {json_out}")
