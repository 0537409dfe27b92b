"""`medchain records import` of a population shaped unlike the demo's (no
Encounter file, devices and allergies naming only the patient), on a real
consortium, the way a new user runs it: relative paths from their own
working directory, no pseudonym map and no import keys made beforehand."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from medchain.client.rpc import RpcClient
from tests.population import write_population

pytestmark = pytest.mark.e2e
ORGS = ["Hospital A:hospital", "Hospital B:hospital", "Insurer:insurer", "Regulator:regulator"]


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medchain.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_import_registers_patients_and_anchors_99_percent(tmp_path: Path) -> None:
    pop = write_population(tmp_path / "export", patients=8, institutions=6, per_patient=40)
    orgs = [a for o in ORGS for a in ("--org", o)]
    init = cli(tmp_path, "consortium", "init", "--dir", "net", "--import-keys", *orgs)
    assert init.returncode == 0, init.stderr
    made = {p.parent.name for p in (tmp_path / "net").glob("*/importer.key")}
    assert made == {"hospital-a", "hospital-b"}  # care providers only; registered on first use
    names = pop["institutions"]
    (tmp_path / "map.toml").write_text(
        "[providers]\n"
        + "".join(f'"{n}" = "hospital-{"ab"[i % 2]}"\n' for i, n in enumerate(names[:-1]))
    )
    up = cli(tmp_path, "net", "up", "--dir", "net")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        args = ["records", "import", "--source", "export", "--dir", "net", "--map", "map.toml"]
        # The last institution is not in the map: its records go to the default custodian.
        first = cli(tmp_path, *args, "--default-custodian", "hospital-b", "--json")
        assert first.returncode == 0, first.stdout + first.stderr
        report = json.loads(first.stdout)
        assert report["patients_registered"] == 8
        assert report["anchored"] >= 0.99 * pop["clinical"], report

        second = cli(tmp_path, *args, "--default-custodian", "hospital-b", "--json")
        assert second.returncode == 0, second.stdout + second.stderr
        again = json.loads(second.stdout)
        assert again["patients_registered"] == 0
        assert (again["anchored"], again["already_anchored"]) == (0, report["anchored"])

        mapping = json.loads((tmp_path / "net" / "patients.json").read_text())
        assert set(mapping) == set(pop["patients"])
        for f in [tmp_path / "net" / "patients.json", *(tmp_path / "net" / "patients").iterdir()]:
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        assert not [p for p in (tmp_path / "net" / "patients").iterdir() if "pat-" in p.name]

        # Records of one patient sit at both custodians, allergies and devices included.
        with RpcClient(tmp_path / "net" / "hospital-a" / "data" / "node.sock") as cl:
            rows = cl.call("records.timeline", {"patient": mapping[pop["patients"][0]]})
        assert {r["custodian"] for r in rows} == {"hospital-a", "hospital-b"}
        assert {r["category"] for r in rows} >= {"AllergyIntolerance", "Device", "Observation"}
    finally:
        cli(tmp_path, "net", "down", "--dir", "net")


def test_import_of_nothing_fails_with_the_reasons(tmp_path: Path) -> None:
    write_population(tmp_path / "export", patients=2, per_patient=4)
    orgs = [a for o in ORGS for a in ("--org", o)]
    assert cli(tmp_path, "consortium", "init", "--dir", "net", *orgs).returncode == 0
    up = cli(tmp_path, "net", "up", "--dir", "net")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        r = cli(tmp_path, "records", "import", "--source", "export", "--dir", "net")
        assert r.returncode != 0
        assert "nothing to import" in r.stderr and "provider map" in r.stderr
        assert "Traceback" not in r.stderr
    finally:
        cli(tmp_path, "net", "down", "--dir", "net")
