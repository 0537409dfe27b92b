"""Record-layer figures on a real local 4-node consortium.

    python -m benchmarks.records [--runs 3] [--fetches 50] [--data ../shared/data/synthea-10]

- import throughput: the Synthea sample into the two hospitals (records/s,
  stored in vaults and anchored on chain, committed);
- fetch latency: Hospital B's doctor fetching a ~50 KB record from Hospital A,
  including the access-log commit, sealing, and the hash check (p50 / p99);
- evidence verification time, offline.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from medchain.client.custodian import ProviderMap
from medchain.client.importer import latest_date, plan_import, run_import
from medchain.client.records import fetch_records
from medchain.client.rpc import RpcClient
from medchain.client.signing import TxBuilder
from medchain.contracts.sdk import anchor_sign_bytes
from medchain.localnet.bench.cluster import machine
from medchain.localnet.processes import DEFAULT_ORGS, free_ports, local_nodes, net_down, net_up
from medchain.node.consortium import OrgSpec, init_consortium
from medchain.node.rpc.jsonval import from_json
from medchain.storage.crypto import Signer
from medchain.storage.evidence import verify_evidence
from tests.e2e.scenario import register_doctor

ROOT = Path(__file__).resolve().parents[1]


def one_run(data: Path, fetches: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="mc-rec-"))
    cdir = root / "c"
    try:
        g = init_consortium(cdir, [OrgSpec.parse(x) for x in DEFAULT_ORGS[:4]], ports=free_ports(4))
        net_up(cdir)
        nodes = {n.org_id: n for n in local_nodes(cdir)}
        rpc = {o: RpcClient(n.config.rpc_socket, timeout=120) for o, n in nodes.items()}
        chain = g.chain_id
        admin = {o: TxBuilder.from_key_file(cdir / o / "admin.key", chain) for o in nodes}

        def send(org: str, who: TxBuilder, contract: str, method: str, args: Any) -> Any:
            r = rpc[org].submit(who.build(contract, method, args), wait=True, timeout_ms=60_000)
            assert r["status"] == "committed", r
            return r["result"]

        importer = {o: TxBuilder(Signer.generate(), chain) for o in ("hospital-a", "hospital-b")}
        doc_b = TxBuilder(Signer.generate(), chain)
        for o, who in importer.items():
            register_doctor(rpc[o], admin[o], who, "IMP", department="records", role="system")
        register_doctor(rpc["hospital-b"], admin["hospital-b"], doc_b, "D", department="x")
        pseudonyms = {}
        patient = None
        for line in (data / "Patient.000.ndjson").read_text().splitlines():
            pid = json.loads(line)["id"]
            who = TxBuilder(Signer.generate(), chain)
            pseudonyms[pid] = send("hospital-a", who, "registry", "register_patient", {})[
                "pseudonym"
            ]
            patient = patient or (who, pseudonyms[pid])
        assert patient is not None
        newest = latest_date(data)
        shift = (datetime.date.today() - datetime.timedelta(days=7) - newest).days if newest else 0
        plan = plan_import(
            data, ProviderMap.load(ROOT / "configs" / "synthea-providers.toml"), pseudonyms, shift
        )
        t = time.perf_counter()
        report = run_import(plan, {o: rpc[o] for o in plan.by_org}, importer)
        import_s = time.perf_counter() - t
        # a ~50 KB record at Hospital A, consented to Hospital B
        pk, me = patient
        big = {
            "resourceType": "DocumentReference",
            "id": "big-note",
            "status": "current",
            "date": datetime.date.today().isoformat(),
            "subject": {"reference": "Patient/x"},
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain",
                        "data": base64.b64encode(b"clinical narrative " * 1980).decode(),
                    }
                }
            ],
        }
        stored = from_json(
            rpc["hospital-a"].call("records.put", {"items": [{"resource": big, "patient": me}]})[0]
        )
        imp = importer["hospital-a"]
        sig = imp.signer.sign(
            anchor_sign_bytes(
                chain,
                stored["record_id"],
                1,
                me,
                "hospital-a",
                stored["category"],
                stored["clinical_year"],
                stored["content_hash"],
                stored["fields_root"],
            )
        )
        send(
            "hospital-a",
            imp,
            "records",
            "anchor",
            {
                "record_id": stored["record_id"],
                "patient": me,
                "custodian": "hospital-a",
                "category": stored["category"],
                "clinical_year": stored["clinical_year"],
                "content_hash": stored["content_hash"],
                "fields_root": stored["fields_root"],
                "author": imp.public_key,
                "author_sig": sig,
            },
        )
        send(
            "hospital-a",
            pk,
            "consent",
            "grant",
            {
                "grantee_kind": "org",
                "grantee": "hospital-b",
                "categories": ["DocumentReference"],
                "purpose": "treatment",
                "days": 30,
            },
        )
        size = len(json.dumps(big))
        lat = []
        for _ in range(fetches):
            t = time.perf_counter()
            f = fetch_records(rpc["hospital-b"], doc_b, [stored["record_id"]])[0]
            lat.append((time.perf_counter() - t) * 1000)
            assert f.status == "ok", f.reason
        ev = base64.b64decode(
            rpc["hospital-b"].call("evidence.get", {"record_id": stored["record_id"]})["evidence"]
        )
        vt = []
        for _ in range(20):
            t = time.perf_counter()
            assert verify_evidence(ev, g.hash()).ok
            vt.append((time.perf_counter() - t) * 1000)
        lat.sort()
        return {
            "records_imported": report.anchored,
            "import_s": import_s,
            "import_records_per_s": report.anchored / import_s,
            "record_bytes": size,
            "fetch_p50_ms": lat[len(lat) // 2],
            "fetch_p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "evidence_verify_ms": statistics.median(vt),
            "evidence_bytes": len(ev),
        }
    finally:
        if (cdir / "genesis.toml").exists():
            net_down(cdir)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fetches", type=int, default=50)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "synthea-10")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    runs = []
    for i in range(args.runs):
        r = one_run(args.data, args.fetches)
        print(
            f"run {i + 1}: "
            + ", ".join(
                f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()
            ),
            flush=True,
        )
        runs.append(r)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"medians over {args.runs} runs ({machine()}):")
    for k, v in med.items():
        print(f"  {k:<22} {v:10.1f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": machine(), "runs": runs, "median": med}, indent=2)
        )


if __name__ == "__main__":
    main()
