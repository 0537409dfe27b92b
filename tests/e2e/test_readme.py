"""README's quick-start and records blocks, pasted into a shell as a new user
would: from the checkout, the blocks in order, nothing else."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYNTHEA = ROOT.parent / "shared" / "data" / "synthea-10"
pytestmark = pytest.mark.e2e


def readme_blocks() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    found = re.findall(r"<!-- readme-test: ([\w-]+) -->\n```sh\n(.*?)```", text, flags=re.S)
    return [(name, body) for name, body in found]


def test_readme_marks_its_runnable_blocks() -> None:
    assert [name for name, _ in readme_blocks()] == ["quick-start", "records"]


@pytest.mark.skipif(not SYNTHEA.is_dir(), reason="the Synthea sample is not beside the checkout")
def test_readme_blocks_run_top_to_bottom(tmp_path: Path) -> None:
    assert (ROOT / ".venv" / "bin" / "activate").exists(), "README assumes make's .venv"
    script = "set -e\n" + "".join(body for _, body in readme_blocks())
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDCHAIN_")}
    env["TMPDIR"] = str(tmp_path)  # where `mktemp -d` puts the user's working directory
    try:
        r = subprocess.run(
            ["sh", "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            stdin=subprocess.DEVNULL,
        )
        assert r.returncode == 0, f"{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
        assert "Traceback" not in r.stderr, r.stderr
        assert "VERIFIED: record" in r.stdout and "NOT VERIFIED" not in r.stdout
        assert "permit" in r.stdout  # the access log names the doctor's read
        (work,) = [p for p in tmp_path.iterdir() if (p / "net").is_dir()]
        assert (work / "record.json").exists() and (work / "net" / "patients.json").exists()
    finally:
        for net in tmp_path.glob("*/net"):
            subprocess.run(
                [sys.executable, "-m", "medchain.cli", "net", "down", "--dir", str(net)],
                capture_output=True,
                timeout=120,
            )
