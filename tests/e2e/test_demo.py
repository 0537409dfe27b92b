"""`make demo` must keep working: run the whole narrated scenario."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from medchain.localnet.processes import net_down
from medchain.node.web.portal import login_sign_bytes
from medchain.storage.keyfile import load_key

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "synthea-10"


@pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data/synthea-10")
def test_demo_runs_to_the_end_and_keeps_the_explorer_up_on_request(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "medchain.cli",
            "demo",
            "--data",
            str(DATA),
            "--dir",
            str(tmp_path),
            "--keep",
        ],
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
    # KEEP=1: the consortium stays up; the printed explorer answers, and the patient's
    # key file printed for the portal signs in there.
    cdir = tmp_path / "consortium"
    try:
        url = re.search(r"hospital-a\s+(http://127\.0\.0\.1:\d+/)", out)
        key = re.search(r"sign in with the key file (\S+)", out)
        assert url and key, out[-2000:]
        with urllib.request.urlopen(url.group(1) + "api/status", timeout=10) as resp:
            assert json.loads(resp.read())["height"] > 0
        signer = load_key(Path(key.group(1)))
        assert Path(key.group(1)).stat().st_mode & 0o777 == 0o600

        def post(path: str, body: dict[str, Any]) -> Any:
            req = urllib.request.Request(
                url.group(1) + path,
                data=json.dumps(body).encode(),
                headers={"content-type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())

        ch = post("api/portal/challenge", {})
        sig = signer.sign(
            login_sign_bytes(ch["chain_id"], ch["audience"], bytes.fromhex(ch["challenge"]))
        )
        who = post(
            "api/portal/login",
            {
                "public_key": signer.public_key.hex(),
                "challenge": ch["challenge"],
                "signature": sig.hex(),
            },
        )
        assert who["patient"]
    finally:
        net_down(cdir)
