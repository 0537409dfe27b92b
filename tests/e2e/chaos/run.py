"""Long chaos runs: ``python -m tests.e2e.chaos.run --runs 5 --seconds 120``.

Prints each run's counts and the totals, writes them as JSON (``--out``),
exits non-zero if anything was lost, duplicated or corrupt."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from tests.e2e.chaos.engine import run_chaos


@click.command()
@click.option("--runs", default=5, show_default=True)
@click.option("--seconds", default=120.0, show_default=True, help="faults per run, seconds")
@click.option("--n", "sizes", multiple=True, type=int, default=(4, 7), show_default=True)
@click.option("--rate", default=60.0, show_default=True, help="offered tx/s")
@click.option("--seed", default=1, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None)
def main(
    runs: int, seconds: float, sizes: tuple[int, ...], rate: float, seed: int, out: Path | None
) -> None:
    reports = []
    for size in sizes:
        for r in range(runs):
            s = seed + 1000 * size + r
            click.echo(f"run {r + 1}/{runs}: n={size}, {seconds:.0f} s, seed {s}")
            t0 = time.monotonic()
            rep = run_chaos(n=size, seconds=seconds, seed=s, rate=rate, log=click.echo)
            d = rep.to_json()
            d["wall_s"] = round(time.monotonic() - t0, 1)
            reports.append(d)
            click.echo(
                f"  kills {rep.kills}, pauses {rep.pauses}, cuts {rep.cuts}, "
                f"acknowledged {rep.acknowledged}, committed {rep.committed}, lost {rep.lost}, "
                f"duplicated {rep.duplicated}, height {rep.height}, views {rep.view_changes}, "
                f"ledgers verified {rep.ledgers_verified}/{size}, problems {rep.problems}"
            )
    keys = ("kills", "pauses", "cuts", "acknowledged", "committed", "lost", "duplicated")
    total = {k: sum(r[k] for r in reports) for k in keys}
    total["runs"] = len(reports)
    total["problems"] = sum(len(r["problems"]) for r in reports)
    click.echo(f"total: {total}")
    if out:
        out.write_text(json.dumps({"runs": reports, "total": total}, indent=2) + "\n")
    sys.exit(1 if total["lost"] or total["duplicated"] or total["problems"] else 0)


if __name__ == "__main__":
    main()
