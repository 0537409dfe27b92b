"""SIGKILL a process that commits blocks to LevelDB, many times, at random
moments; the ledger must always reopen whole and verifiable."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medchain.node.consensus.chain import replay_ledger
from medchain.storage.ledger import Ledger, verify_chain
from tests.helpers import Consortium

ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("MEDCHAIN_CRASH_KILLS", "24"))


@pytest.mark.e2e
def test_sigkill_during_commits_never_corrupts(tmp_path: Path) -> None:
    c = Consortium.make()
    data = tmp_path / "ledger"
    rng = random.Random(20261122)
    heights = []
    for i in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.crash_writer", str(data), str(i)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()  # the child has opened the ledger
        assert line.startswith("ready"), proc.stderr.read().decode() if proc.stderr else line
        time.sleep(rng.uniform(0.005, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ledger = Ledger.open(data, c.genesis)
        try:
            assert verify_chain(ledger) == [], f"after kill {i}"
            heights.append(ledger.height)
        finally:
            ledger.close()
    assert heights == sorted(heights) and heights[-1] > KILLS  # progress was made and never lost
    ledger = Ledger.open(data, c.genesis)
    try:
        assert replay_ledger(ledger, c.executor()) == []  # every state root recomputes
    finally:
        ledger.close()
