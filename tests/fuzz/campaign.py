"""What the two long fuzz runs share (``tests.fuzz.run``, hypothesis, and
``tests.fuzz.atheris_run``, libFuzzer): the ``--target`` and ``--out`` options,
one line per target as it finishes, the JSON report rewritten after each, and
a non-zero exit on any finding."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from tests.fuzz.targets import TARGETS

Result = dict[str, Any]  # "target", "inputs", "findings", "seconds" and the run's own

target_option = click.option("--target", "names", multiple=True, help="only these targets")
out_option = click.option("--out", type=click.Path(path_type=Path), default=None)


def run_targets(
    names: Sequence[str],
    fuzz_one: Callable[[str], Result],
    columns: Callable[[Result], str],
    out: Path | None,
) -> NoReturn:
    """``fuzz_one`` each of ``names`` (none: every target) in turn; print its name,
    ``columns`` and its findings; exit 1 if any target had a finding."""
    results = []
    for name in names or sorted(TARGETS):
        r = fuzz_one(name)
        results.append(r)
        status = "ok" if not r["findings"] else f"FINDINGS {r['findings']}"
        click.echo(f"{name:20} {columns(r)}  {status}")
        if out:
            out.write_text(json.dumps(results, indent=2) + "\n")
    sys.exit(1 if any(r["findings"] for r in results) else 0)
