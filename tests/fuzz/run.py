"""The long fuzz run: ``python -m tests.fuzz.run --inputs 100000 [--target NAME]``.

Runs every target of tests/fuzz/targets.py for ``--inputs`` hypothesis
examples, prints inputs, rejections and findings per target, writes JSON
(``--out``) and exits non-zero on any finding."""

from __future__ import annotations

import time
from pathlib import Path

import click
from hypothesis import given

from tests.fuzz.campaign import Result, out_option, run_targets, target_option
from tests.fuzz.strategies import fuzz_settings, inputs
from tests.fuzz.targets import TARGETS, Finding, accepts


def fuzz_one(name: str, n: int) -> Result:
    target = TARGETS[name]
    counts = {"inputs": 0, "accepted": 0, "rejected": 0}
    findings: list[str] = []

    @fuzz_settings(n)
    @given(inputs(target))
    def fuzz(data: bytes) -> None:
        counts["inputs"] += 1
        try:
            accepted = accepts(target, data)
        except Finding as finding:
            findings.append(str(finding))
            raise
        counts["accepted" if accepted else "rejected"] += 1

    t0 = time.monotonic()
    try:
        fuzz()
    except Exception as exc:  # hypothesis re-raises the (shrunk) finding
        findings.append(f"minimal: {type(exc).__name__}: {str(exc)[:500]}")
    return {
        "target": name,
        **counts,
        "findings": findings[-2:],
        "seconds": round(time.monotonic() - t0, 1),
    }


@click.command()
@click.option("--inputs", "n", default=100_000, show_default=True)
@target_option
@out_option
def main(n: int, names: tuple[str, ...], out: Path | None) -> None:
    run_targets(
        names,
        lambda name: fuzz_one(name, n),
        lambda r: (
            f"{r['inputs']:>8} inputs  {r['accepted']:>8} accepted  "
            f"{r['rejected']:>8} rejected  {r['seconds']:>7}s"
        ),
        out,
    )


if __name__ == "__main__":
    main()
