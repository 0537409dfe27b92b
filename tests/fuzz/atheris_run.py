"""The long coverage-guided fuzz run: ``python -m tests.fuzz.atheris_run
--runs 100000 [--target NAME] [--out FILE]``.

Each target of tests/fuzz/targets.py runs in its own process under libFuzzer
(atheris; ``pip install atheris``), seeded with the target's valid samples.
Prints runs, seconds, coverage and findings per target, writes JSON and exits
non-zero on any finding (the crashing inputs are kept in ``--work``)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import click

from tests.fuzz.campaign import Result, out_option, run_targets, target_option

DONE = re.compile(r"Done (\d+) runs in (\d+) second")
COV = re.compile(r"DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)")


def fuzz_one(name: str, runs: int, work: Path, max_len: int) -> Result:
    corpus = work / name / "corpus"
    artifacts = work / name / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "tests.fuzz.atheris_one",
        name,
        str(corpus),
        f"-runs={runs}",
        f"-max_len={max_len}",
        "-timeout=20",
        "-rss_limit_mb=4096",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/",
    ]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    seconds = time.monotonic() - t0
    out = proc.stderr + proc.stdout
    done = DONE.search(out)
    cov = COV.search(out)
    findings = []
    if proc.returncode != 0 or not done:
        tail = [ln for ln in out.splitlines() if "Error" in ln or "error" in ln][:5]
        findings.append(f"exit {proc.returncode}: " + " | ".join(tail or out.splitlines()[-5:]))
        findings += [str(p) for p in artifacts.iterdir()]
    return {
        "target": name,
        "inputs": int(done.group(1)) if done else 0,
        "edges": int(cov.group(1)) if cov else None,
        "features": int(cov.group(2)) if cov else None,
        "corpus": int(cov.group(3)) if cov else None,
        "findings": findings,
        "seconds": round(seconds, 1),
    }


@click.command()
@click.option("--runs", default=100_000, show_default=True, help="inputs per target")
@target_option
@click.option("--max-len", default=16384, show_default=True, help="longest input, bytes")
@click.option(
    "--work",
    type=click.Path(path_type=Path),
    default=Path("bench-results/fuzz-work"),
    show_default=True,
    help="corpora and crashing inputs",
)
@out_option
def main(runs: int, names: tuple[str, ...], max_len: int, work: Path, out: Path | None) -> None:
    run_targets(
        names,
        lambda name: fuzz_one(name, runs, work, max_len),
        lambda r: (
            f"{r['inputs']:>8} inputs  {r['edges']!s:>5} edges  "
            f"{r['corpus']!s:>5} corpus  {r['seconds']:>7}s"
        ),
        out,
    )


if __name__ == "__main__":
    main()
