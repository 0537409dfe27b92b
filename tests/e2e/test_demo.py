"""`make demo` must keep working: run the whole narrated scenario."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "synthea-10"


@pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data/synthea-10")
def test_demo_runs_to_the_end() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "cli", "demo", "--data", str(DATA)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    for expected in [
        "records stored encrypted at their custodians and anchored",
        "recognised as already anchored",
        "permitted by the consent",
        "after acceptance: ok",
        "outcome partial",
        "duplicate claim",
        "claim paid",
        "an unsigned query for the same log is refused",
        "VERIFIED",
        "evidence with one byte flipped: NOT VERIFIED",
        "integrity error in vault record",
        "denied: the consent was revoked",
        "with one identical state root",
    ]:
        assert expected in out, f"missing from the demo: {expected!r}\n{out[-4000:]}"
