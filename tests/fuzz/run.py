"""The long fuzz run: ``python -m tests.fuzz.run --inputs 100000 [--target NAME]``.

Runs every target of tests/fuzz/targets.py for ``--inputs`` hypothesis
examples, prints inputs, rejections and findings per target, writes JSON
(``--out``) and exits non-zero on any finding."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from hypothesis import HealthCheck, given, settings

from tests.fuzz.strategies import inputs
from tests.fuzz.targets import TARGETS, Target


def fuzz_one(target: Target, n: int) -> dict[str, object]:
    counts = {"inputs": 0, "accepted": 0, "rejected": 0}
    findings: list[str] = []

    @settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(inputs(target))
    def fuzz(data: bytes) -> None:
        counts["inputs"] += 1
        try:
            target.run(data)
            counts["accepted"] += 1
        except target.typed:
            counts["rejected"] += 1
        except Exception as exc:
            findings.append(f"{type(exc).__name__}: {str(exc)[:300]} on {data[:200]!r}")
            raise

    t0 = time.monotonic()
    try:
        fuzz()
    except Exception as exc:  # hypothesis re-raises the (shrunk) finding
        findings.append(f"minimal: {type(exc).__name__}: {str(exc)[:500]}")
    return {
        "target": target.name,
        **counts,
        "findings": findings[-2:],
        "seconds": round(time.monotonic() - t0, 1),
    }


@click.command()
@click.option("--inputs", "n", default=100_000, show_default=True)
@click.option("--target", "names", multiple=True, help="only these targets")
@click.option("--out", type=click.Path(path_type=Path), default=None)
def main(n: int, names: tuple[str, ...], out: Path | None) -> None:
    results = []
    for name in names or sorted(TARGETS):
        r = fuzz_one(TARGETS[name], n)
        results.append(r)
        status = "ok" if not r["findings"] else f"FINDINGS {r['findings']}"
        click.echo(
            f"{name:20} {r['inputs']:>8} inputs  {r['accepted']:>8} accepted  "
            f"{r['rejected']:>8} rejected  {r['seconds']:>7}s  {status}"
        )
        if out:
            out.write_text(json.dumps(results, indent=2) + "\n")
    sys.exit(1 if any(r["findings"] for r in results) else 0)


if __name__ == "__main__":
    main()
