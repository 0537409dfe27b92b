"""Records on a real 4-node consortium: import, consented fetch across
institutions, timeline, tampering, evidence and selective disclosure —
through the CLI where an operator or a patient would use it."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from medchain.client.records import fetch_records
from medchain.client.signing import TxBuilder
from medchain.localnet.processes import spawn, wait_ready
from medchain.storage.crypto import Signer
from medchain.storage.keyfile import save_key
from tests.e2e.harness import E2ECluster, cluster
from tests.e2e.scenario import add_importers, medchain, org_consent, register_doctor, send

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "synthea-10"
PATIENTS = ("a5cb8ce9", "8e1a0a7c")  # records at both hospitals


def subset(dest: Path) -> dict[str, str]:
    """The sample's lines for two patients (plus a broken line), and their Synthea ids."""
    dest.mkdir()
    ids: dict[str, str] = {}
    for line in (DATA / "Patient.000.ndjson").read_text().splitlines():
        pid = json.loads(line)["id"]
        if pid.startswith(PATIENTS):
            ids[pid[:8]] = pid
    for f in ("Encounter", "Condition", "MedicationRequest", "Procedure"):
        keep = [
            ln
            for ln in (DATA / f"{f}.000.ndjson").read_text().splitlines()
            if any(p in ln for p in ids.values())
        ]
        (dest / f"{f}.000.ndjson").write_text(
            "\n".join(keep) + "\n" + ("{broken json\n" if f == "Condition" else "")
        )
    return ids


def key(c: E2ECluster, path: Path) -> TxBuilder:
    s = Signer.generate()
    save_key(path, s)
    return TxBuilder(s, c.genesis.chain_id)


@pytest.mark.skipif(not DATA.exists(), reason="needs ../shared/data/synthea-10")
def test_import_fetch_consent_tamper_evidence_disclosure(tmp_path: Path) -> None:
    with cluster(4) as c:
        d = c.dir
        src = tmp_path / "src"
        ids = subset(src)
        add_importers(d)
        doc_b = key(c, d / "hospital-b" / "doctor.key")
        with c.client(1) as b:
            register_doctor(b, c.builders[1], doc_b, "B-9")
        patient = key(c, tmp_path / "patient.key")
        other = key(c, tmp_path / "other.key")
        with c.client(0) as a:
            me = send(a, patient, "registry", "register_patient", {})["pseudonym"]
            them = send(a, other, "registry", "register_patient", {})["pseudonym"]
        (tmp_path / "patients.json").write_text(
            json.dumps({ids[PATIENTS[0]]: me, ids[PATIENTS[1]]: them})
        )
        args = [
            "records",
            "import",
            "--source",
            str(src),
            "--dir",
            str(d),
            "--map",
            str(ROOT / "configs" / "synthea-providers.toml"),
            "--patients",
            str(tmp_path / "patients.json"),
            "--shift-to-today",
        ]
        first = json.loads(medchain(*args, "--json").stdout)
        assert first["anchored"] == first["records"] > 400 and first["skipped"] == {
            "invalid JSON": 1
        }
        assert set(first["per_org"]) == {"hospital-a", "hospital-b"}
        again = json.loads(medchain(*args, "--json").stdout)
        assert (
            again["anchored"] == 0 and again["already_anchored"] == first["anchored"]
        )  # idempotent

        c.sync()
        with c.client(1) as b:
            rows = b.call("records.timeline", {"patient": me, "requester": doc_b.public_key.hex()})
            at_a = [r for r in rows if r["custodian"] == "hospital-a"]
            conds = [r["record_id"] for r in at_a if r["category"] == "Condition"]
            procs = [r["record_id"] for r in at_a if r["category"] == "Procedure"]
            assert conds and procs
            # no consent: denied, and the denial is on chain in the patient's access log
            denied = fetch_records(b, doc_b, conds[-1:])[0]
            assert denied.status == "denied" and "not consented" in denied.reason
            with c.client(0) as a:
                send(a, patient, "consent", "grant", org_consent(period={"last_days": 3650}))
            c.sync()
            got = fetch_records(b, doc_b, conds[-3:] + procs[-1:])
            assert [g.status for g in got] == ["ok", "ok", "ok", "denied"]
            assert all(g.resource and g.resource["resourceType"] == "Condition" for g in got[:3])
            assert not got[0].salt_seed  # a practitioner never receives the field salts
            c.sync()
            log = b.query("access", "by_patient", {"patient": me}, signer=patient)
            assert [e["decision"] for e in log] == ["deny", "permit", "permit", "permit", "deny"]
        # the timeline, as B's doctor sees it
        tl = medchain(
            "records",
            "timeline",
            "--patient",
            me,
            "--key",
            str(d / "hospital-b" / "doctor.key"),
            "--config",
            str(d / "hospital-b" / "node.toml"),
        ).stdout
        assert "✓" in tl and "✗" in tl and f"timeline of patient {me}" in tl
        # evidence: export, verify offline (with the content), and a flipped byte fails
        record = conds[-1]
        ev = tmp_path / "record.mcev"
        medchain(
            "evidence",
            "export",
            "--record",
            record,
            "--out",
            str(ev),
            "--config",
            str(d / "regulator" / "node.toml"),
        )
        (tmp_path / "content.json").write_text(json.dumps(got[2].resource))
        ok = medchain(
            "evidence",
            "verify",
            str(ev),
            "--content",
            str(tmp_path / "content.json"),
            "--genesis",
            str(d / "genesis.toml"),
        )
        assert "VERIFIED: record" in ok.stdout and "FAIL" not in ok.stdout
        data = bytearray(ev.read_bytes())
        data[-40] ^= 0x20
        (tmp_path / "bad.mcev").write_bytes(bytes(data))
        bad = medchain("evidence", "verify", str(tmp_path / "bad.mcev"), check=False)
        assert bad.returncode == 7 and "FAIL" in bad.stdout and "NOT VERIFIED" in bad.stdout
        # selective disclosure by the patient, verified online and offline; a changed value fails
        proof = tmp_path / "code.json"
        medchain(
            "proof",
            "disclose",
            "--record",
            record,
            "--field",
            "code",
            "--key",
            str(tmp_path / "patient.key"),
            "--out",
            str(proof),
            "--config",
            str(d / "hospital-a" / "node.toml"),
        )
        assert (
            "code" in json.loads(proof.read_text())["field"] and "subject" not in proof.read_text()
        )
        assert (
            "VERIFIED"
            in medchain(
                "proof", "verify", str(proof), "--config", str(d / "insurer" / "node.toml")
            ).stdout
        )
        pin = ("--genesis", str(d / "genesis.toml"))
        assert (
            "VERIFIED"
            in medchain("proof", "verify", str(proof), "--evidence", str(ev), *pin).stdout
        )
        doc = json.loads(proof.read_text())
        doc["value"] = {"text": "something else"}
        (tmp_path / "forged.json").write_text(json.dumps(doc))
        forged = medchain(
            "proof", "verify", str(tmp_path / "forged.json"), "--evidence", str(ev), check=False
        )
        assert forged.returncode == 7 and "NOT VERIFIED" in forged.stdout
        # tamper with Hospital A's vault on disk: the fetch names the record as an integrity error
        c.signal(0, signal.SIGTERM)
        import plyvel

        db = plyvel.DB(str(c.nodes[0].config.data_dir / "vault"))
        v = bytearray(db.get(b"R" + conds[-2].encode()))
        v[-9] ^= 0x04
        db.put(b"R" + conds[-2].encode(), bytes(v), sync=True)
        db.close()
        c.procs[0] = spawn(c.nodes[0])
        wait_ready(c.nodes[0], 60, c.procs[0])
        with c.client(1) as b:
            hit = fetch_records(b, doc_b, [conds[-2]])[0]
            assert (
                hit.status == "error"
                and f"integrity error in vault record {conds[-2]}" in hit.reason
            )
            # revoke: denied again
            c.sync()
            cid = b.query("consent", "list_for_patient", {"patient": me}, signer=patient)[0]["id"]
            with c.client(0) as a:
                send(a, patient, "consent", "revoke", {"consent_id": cid})
            c.sync()
            after = fetch_records(b, doc_b, conds[-1:])[0]
            assert after.status == "denied" and after.reason == "the consent was revoked"
        c.assert_consistent()
