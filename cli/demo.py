"""``medchain demo``: the whole story on a real local consortium, narrated.

Four node processes (Hospital A, Hospital B, an insurer, a regulator) on
loopback; the Synthea sample imported across the two hospitals; one patient
walked through consent, a cross-institution timeline, a referral, a claim,
their access log, an offline evidence certificate, tampering caught, and a
revoked consent. Everything goes through the nodes' RPC sockets, as a
hospital's systems or a patient's app would.
"""

from __future__ import annotations

import base64
import datetime
import json
import shutil
import tempfile
import time
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import click

# The sample population beside the checkout (`make demo` runs in the checkout).
DEFAULT_DATA = Path("..") / "shared" / "data" / "synthea-10"
# Which of the two hospitals holds each provider's records (installed with the package).
PROVIDERS = Path(str(resources.files("medchain") / "configs" / "synthea-providers.toml"))
DEMO_ORGS = ["Hospital A:hospital", "Hospital B:hospital", "Insurer:insurer", "Regulator:regulator"]
DEMO_PATIENT = "a5cb8ce9"  # a Synthea patient with records at both hospitals
LOCAL = "urn:medchain:items"
SNOMED = "http://snomed.info/sct"


class Story:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.step_t = self.t0
        self.timings: list[tuple[str, float]] = []
        self.n = 0

    def step(self, title: str) -> None:
        now = time.perf_counter()
        if self.n:
            self.timings[-1] = (self.timings[-1][0], now - self.step_t)
        self.n += 1
        self.step_t = now
        self.timings.append((title, 0.0))
        click.secho(f"\n{self.n:>2}. {title}", bold=True)

    def say(self, text: str = "", **style: Any) -> None:
        click.secho(f"    {text}", **style)

    def finish(self) -> None:
        self.timings[-1] = (self.timings[-1][0], time.perf_counter() - self.step_t)


@click.command()
@click.option(
    "--data",
    "data",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="MEDCHAIN_SYNTHEA",
    help="Synthea FHIR NDJSON directory (default: ../shared/data/synthea-10).",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to create the consortium (default: a temporary directory, removed afterwards).",
)
@click.option(
    "--keep",
    is_flag=True,
    envvar="KEEP",
    help="Leave the consortium running at the end (stop it with `medchain net down --dir ...`).",
)
def demo(data: Path | None, directory: Path | None, keep: bool) -> None:
    """Run the full scenario on a real 4-node consortium and narrate it."""
    data = data or DEFAULT_DATA
    if not (data / "Encounter.000.ndjson").exists():
        raise click.ClickException(
            f"no Synthea NDJSON in {data}: give --data DIR (or MEDCHAIN_SYNTHEA)"
        )
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="medchain-demo-"))
    cdir = root / "consortium"
    from medchain.localnet.processes import net_down

    ok = False
    try:
        run(cdir, data, keep)
        ok = True
    finally:
        if not (keep and ok):
            if (cdir / "genesis.toml").exists():
                net_down(cdir)
            if directory is None:
                shutil.rmtree(root, ignore_errors=True)


def run(cdir: Path, data: Path, keep: bool) -> None:
    from medchain.client.custodian import ProviderMap
    from medchain.client.importer import latest_date, plan_import, run_import
    from medchain.client.records import fetch_records
    from medchain.client.rpc import RpcClient
    from medchain.client.signing import TxBuilder
    from medchain.localnet.processes import free_ports, local_nodes, net_up, spawn, stop, wait_ready
    from medchain.node.consortium import OrgSpec, init_consortium
    from medchain.storage.crypto import Signer
    from medchain.storage.evidence import verify_evidence
    from medchain.storage.fhirdoc import Disclosure, disclose, summary
    from medchain.storage.keyfile import save_key

    s = Story()
    click.secho(
        "medchain demo: sharing health records across institutions, with consent, on a permissioned chain",
        bold=True,
    )

    # 1 -------------------------------------------------------------------------------
    s.step("A consortium of four institutions, one node process each")
    ports = free_ports(8)  # p2p, then each node's web UI (explorer and patient portal)
    genesis = init_consortium(
        cdir, [OrgSpec.parse(o) for o in DEMO_ORGS], ports=ports[:4], http_ports=ports[4:]
    )
    statuses = net_up(cdir)
    s.say(
        f"chain {genesis.chain_id}, genesis {genesis.hash().hex()[:24]}…; {genesis.validators.n} validators, quorum {genesis.validators.quorum}"
    )
    for st in statuses:
        s.say(f"{st['org']:<11} height {st['height']}, peers {', '.join(st['peers'])}")
    nodes = {n.org_id: n for n in local_nodes(cdir)}
    rpc = {o: RpcClient(n.config.rpc_socket, timeout=120) for o, n in nodes.items()}
    chain = genesis.chain_id
    admin = {o: TxBuilder.from_key_file(cdir / o / "admin.key", chain) for o in nodes}

    def send(org: str, who: TxBuilder, contract: str, method: str, args: Any) -> Any:
        res = rpc[org].submit(who.build(contract, method, args), wait=True, timeout_ms=60_000)
        if res["status"] != "committed":
            raise click.ClickException(
                f"{contract}.{method} failed: {res.get('reason') or res['status']}"
            )
        return res["result"]

    def sync() -> None:
        """Let every node reach the newest block before reading on another node than the
        one that committed a write (each node commits a moment apart)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            heights = [c.status()["height"] for c in rpc.values()]
            if min(heights) == max(heights):
                return
            time.sleep(0.02)

    def person(name: str, org: str | None = None) -> TxBuilder:
        signer = Signer.generate()
        if org:
            save_key(cdir / org / f"{name}.key", signer)
        return TxBuilder(signer, chain)

    # 2 -------------------------------------------------------------------------------
    s.step("People: practitioners registered by their hospitals, patients under pseudonyms")
    importer = {o: person("importer", o) for o in ("hospital-a", "hospital-b")}
    doc_a, doc_b = person("dr-a", "hospital-a"), person("dr-b", "hospital-b")
    for org, who, lic, dept, role in [
        ("hospital-a", importer["hospital-a"], "A-IMPORT", "health information", "system"),
        ("hospital-b", importer["hospital-b"], "B-IMPORT", "health information", "system"),
        ("hospital-a", doc_a, "A-1042", "internal medicine", "physician"),
        ("hospital-b", doc_b, "B-2201", "cardiology", "physician"),
    ]:
        send(
            org,
            admin[org],
            "registry",
            "register_practitioner",
            {"key": who.public_key, "license": lic, "department": dept, "role": role},
        )
    patient_keys: dict[str, TxBuilder] = {}
    pseudonyms: dict[str, str] = {}
    for line in (data / "Patient.000.ndjson").read_text().splitlines():
        pid = json.loads(line)["id"]
        patient_keys[pid] = person(f"patient-{pid[:8]}")
        pseudonyms[pid] = send("hospital-a", patient_keys[pid], "registry", "register_patient", {})[
            "pseudonym"
        ]
    demo_pid = next(p for p in pseudonyms if p.startswith(DEMO_PATIENT))
    patient, me = patient_keys[demo_pid], pseudonyms[demo_pid]
    # The patient's own key file (mode 0600), to sign in to the web portal with.
    patient_key_file = cdir / "patients" / f"patient-{demo_pid[:8]}.key"
    patient_key_file.parent.mkdir(mode=0o700, exist_ok=True)
    save_key(patient_key_file, patient.signer)
    s.say("2 import systems and 2 physicians registered by their hospitals' admins")
    s.say(
        f"{len(pseudonyms)} patients registered themselves with their own keys; on chain only pseudonyms, e.g. {me}"
    )

    # 3 -------------------------------------------------------------------------------
    s.step(
        f"Importing the Synthea sample ({data.name}) into the two hospitals' vaults and anchoring it"
    )
    newest = latest_date(data)
    shift = (datetime.date.today() - datetime.timedelta(days=7) - newest).days if newest else 0
    plan = plan_import(data, ProviderMap.load(PROVIDERS), pseudonyms, shift)
    t = time.perf_counter()
    with click.progressbar(length=plan.total, label="    importing") as bar:
        done = [0]

        def progress(n: int, total: int) -> None:
            bar.update(n - done[0])
            done[0] = n

        report = run_import(plan, {o: rpc[o] for o in plan.by_org}, importer, progress=progress)
    dt = time.perf_counter() - t
    s.say(
        f"{report.anchored} records stored encrypted at their custodians and anchored in {dt:.1f}s ({report.anchored / dt:.0f} records/s)"
    )
    s.say(
        ", ".join(f"{o}: {n}" for o, n in sorted(report.per_org.items()))
        + f"; synthetic dates shifted {shift} days so the history ends last week"
    )
    for reason, n in sorted(plan.skipped.items()):
        s.say(f"skipped {n}: {reason}", dim=True)
    again = run_import(plan, {o: rpc[o] for o in plan.by_org}, importer)
    s.say(
        f"import run again: {again.anchored} anchored twice, {again.existing} recognised as already anchored"
    )

    # 4 -------------------------------------------------------------------------------
    s.step(f"The patient {me[:12]}… has records at both hospitals")
    sync()
    rows = rpc["hospital-b"].call("records.timeline", {"patient": me})
    by = Counter(r["custodian"] for r in rows)
    s.say(
        f"{len(rows)} anchors on chain: " + ", ".join(f"{n} at {o}" for o, n in sorted(by.items()))
    )
    s.say(
        "the chain holds fingerprints, dates, types and custodians; the records themselves stay encrypted at the hospitals"
    )

    # 5 -------------------------------------------------------------------------------
    s.step(
        "The patient grants Hospital B: conditions and medications of the last 2 years, for treatment, 30 days"
    )
    consent = send(
        "hospital-a",
        patient,
        "consent",
        "grant",
        {
            "grantee_kind": "org",
            "grantee": "hospital-b",
            "categories": ["Condition", "MedicationRequest"],
            "purpose": "treatment",
            "period": {"last_days": 730},
            "days": 30,
        },
    )
    s.say(f"consent {consent['consent_id']} committed, signed by the patient's own key")
    fhir = rpc["hospital-a"].query(
        "consent", "fhir", {"consent_id": consent["consent_id"]}, signer=patient
    )
    s.say(
        f"as FHIR: Consent/{fhir['id']} {fhir['status']}, provision {fhir['provision']['type']} "
        f"{[c['code'] for c in fhir['provision']['class']]} for {fhir['provision']['purpose'][0]['code']}",
        dim=True,
    )

    # 6 -------------------------------------------------------------------------------
    s.step("Hospital B's doctor builds the patient's timeline across institutions")
    sync()
    rows = rpc["hospital-b"].call(
        "records.timeline", {"patient": me, "requester": doc_b.public_key.hex()}
    )
    at_a = [r for r in rows if r["custodian"] == "hospital-a"]
    permitted = [r["record_id"] for r in at_a if r["decision"] == "permit"]
    denied = [r for r in at_a if r["decision"] != "permit"]
    t = time.perf_counter()
    fetched = fetch_records(rpc["hospital-b"], doc_b, permitted)
    fetch_ms = (time.perf_counter() - t) * 1000
    good = [f for f in fetched if f.status == "ok"]
    s.say(
        f"{len(at_a)} records at Hospital A: {len(permitted)} permitted by the consent, {len(denied)} not"
    )
    s.say(
        f"fetched {len(good)} from Hospital A's node in {fetch_ms:.0f} ms, access logged on chain first, "
        f"each record sealed to the doctor's key and checked against its anchored SHA-256"
    )
    for f in good[:6]:
        s.say(f"  {record_date(f)}  {f.anchor['category']:<18} {summary(f.resource or {})}")
    reasons = Counter(r["reason"] for r in denied)
    for why, n in reasons.most_common(3):
        s.say(f"  denied {n}: {why}", dim=True)

    # 7 -------------------------------------------------------------------------------
    s.step("Referral A -> B carrying a procedure record, agreed by the patient, accepted by B")
    procedures = [r for r in at_a if r["category"] == "Procedure"]
    proc = procedures[-1]
    sync()
    before = fetch_records(rpc["hospital-b"], doc_b, [proc["record_id"]])[0]
    ref = send(
        "hospital-a",
        doc_a,
        "referral",
        "issue",
        {
            "patient": me,
            "target": "hospital-b",
            "records": [proc["record_id"]],
            "valid_days": 14,
            "reason": {
                "system": SNOMED,
                "code": "183519002",
                "display": "Referral to cardiology service",
            },
        },
    )
    send("hospital-a", patient, "referral", "agree", {"referral_id": ref["referral_id"]})
    acc = send("hospital-b", doc_b, "referral", "accept", {"referral_id": ref["referral_id"]})
    sync()
    after = fetch_records(rpc["hospital-b"], doc_b, [proc["record_id"]])[0]
    s.say(
        f"before: {before.status} ({before.reason}); after acceptance: {after.status}, via permission {acc['consent_id']}"
    )
    s.say(
        f"the procedure: {summary(after.resource or {})} on {record_date(after)} (14-day permission for exactly this record)"
    )

    # 8 -------------------------------------------------------------------------------
    s.step(
        "A claim for the latest encounter at Hospital A, adjudicated by the contract, paid by the insurer"
    )
    send(
        "regulator",
        admin["regulator"],
        "dictionary",
        "add_system",
        {"system": LOCAL, "name": "Consortium billing items", "version": "2026"},
    )
    send(
        "insurer",
        admin["insurer"],
        "settlement",
        "register_product",
        {
            "product_id": "standard-care",
            "name": "Standard care",
            "deductible_cents": 5_000,
            "annual_limit_cents": 2_000_000,
            "catalog": [
                {
                    "system": LOCAL,
                    "code": "CONSULT",
                    "unit_price_cents": 15_000,
                    "coverage_bp": 8_000,
                    "per_item_cap_cents": 15_000,
                    "per_year_cap_cents": 150_000,
                },
                {
                    "system": LOCAL,
                    "code": "LAB-PANEL",
                    "unit_price_cents": 9_000,
                    "coverage_bp": 7_000,
                    "per_item_cap_cents": 6_000,
                    "per_year_cap_cents": 60_000,
                },
            ],
        },
    )
    send(
        "insurer",
        admin["insurer"],
        "settlement",
        "enroll",
        {"patient": me, "product_id": "standard-care", "start": "2020-01", "end": "2030-12"},
    )
    encounters = [r for r in at_a if r["category"] == "Encounter"]
    enc = encounters[-1]
    # Hospital A, the custodian, knows the encounter's date; the claim names its month only.
    own = rpc["hospital-a"].call("records.timeline", {"patient": me})
    month = next(r["clinical_date"] for r in own if r["record_id"] == enc["record_id"])[:7]
    claim = send(
        "hospital-a",
        doc_a,
        "settlement",
        "submit_claim",
        {
            "claim_id": "A-2026-0001",
            "patient": me,
            "product_id": "standard-care",
            "encounter_id": enc["record_id"].split(":")[-1],
            "encounter_month": month,
            "records": [enc["record_id"]],
            "diagnoses": [],
            "items": [
                {"system": LOCAL, "code": "CONSULT", "quantity": 1},
                {"system": LOCAL, "code": "LAB-PANEL", "quantity": 1},
                {"system": LOCAL, "code": "MASSAGE", "quantity": 1, "unit_price_cents": 4_000},
            ],
        },
    )
    for line in claim["items"]:
        s.say(
            f"  {line['code']:<10} submitted {line['submitted_cents'] / 100:>7.2f}  insurer pays {line['benefit_cents'] / 100:>7.2f}  "
            f"patient pays {line['copay_cents'] / 100:>7.2f}  {'; '.join(line['reasons'])}"
        )
    s.say(f"outcome {claim['outcome']}: {claim['disposition']}")
    dup = send(
        "hospital-a",
        doc_a,
        "settlement",
        "submit_claim",
        {
            "claim_id": "A-2026-0002",
            "patient": me,
            "product_id": "standard-care",
            "encounter_id": enc["record_id"].split(":")[-1],
            "encounter_month": month,
            "records": [enc["record_id"]],
            "diagnoses": [],
            "items": [{"system": LOCAL, "code": "CONSULT", "quantity": 1}],
        },
    )
    s.say(f"the same encounter claimed again: {dup['outcome']}, {dup['disposition']}", dim=True)
    pay = send(
        "insurer",
        admin["insurer"],
        "settlement",
        "record_payment",
        {
            "claim_id": "A-2026-0001",
            "amount_cents": claim["total_benefit_cents"],
            "reference": "SEPA-77012",
        },
    )
    s.say(
        f"insurer recorded payment of {claim['total_benefit_cents'] / 100:.2f}: claim {pay['status']}"
    )

    # 9 -------------------------------------------------------------------------------
    s.step("The patient reads their access log: who read what, when, under which consent")
    sync()
    log = rpc["hospital-a"].query("access", "by_patient", {"patient": me}, signer=patient)
    per = Counter((e["requester_org"], e["decision"], e["consent_id"] or e["reason"]) for e in log)
    for (org, decision, basis), n in sorted(per.items()):
        s.say(f"  {n:>3} x {decision:<6} to {org:<10} under {basis}")
    try:
        rpc["hospital-a"].query("access", "by_patient", {"patient": me})
    except Exception as exc:
        s.say(
            f"an unsigned query for the same log is refused: {str(exc).split(' (code')[0]}",
            dim=True,
        )

    # 10 ------------------------------------------------------------------------------
    s.step("Evidence: a certificate a court can verify offline, years later, without any node")
    rec = good[0]
    ev_path = cdir / "evidence.mcev"
    sync()
    res = rpc["hospital-b"].call("evidence.get", {"record_id": rec.record_id})
    ev_path.write_bytes(base64.b64decode(res["evidence"]))
    content_path = cdir / "record.json"
    content_path.write_text(json.dumps(rec.resource))
    t = time.perf_counter()
    verdict = verify_evidence(ev_path.read_bytes(), genesis.hash(), content_path.read_bytes())
    verify_ms = (time.perf_counter() - t) * 1000
    s.say(f"{ev_path.name}: {ev_path.stat().st_size} bytes for record {rec.record_id}")
    for line in verdict.lines():
        s.say(line.strip(), fg="green" if line.strip().startswith("OK") else "red")
    s.say(
        f"verified offline in {verify_ms:.1f} ms: {'VERIFIED' if verdict.ok else 'FAILED'}",
        bold=True,
    )
    proof = (
        disclose(
            rec.record_id,
            rec.anchor["version"],
            rec.resource or {},
            fetch_records(rpc["hospital-a"], patient, [rec.record_id])[0].salt_seed,
            "code",
        )
        if rec.resource and "code" in rec.resource
        else None
    )
    if proof is not None:
        ok = Disclosure.from_json(json.loads(json.dumps(proof.to_json()))).verify(
            rec.anchor["fields_root"]
        )
        s.say(
            f"selective disclosure by the patient: code = {proof.value.get('text', '')!r} proven ({ok}) with {len(proof.path)} hashes, other fields hidden"
        )

    # 11 ------------------------------------------------------------------------------
    s.step(
        "Tampering is caught: a flipped byte in the evidence, and an altered record in Hospital A's vault"
    )
    data_ev = bytearray(ev_path.read_bytes())
    data_ev[len(data_ev) // 2] ^= 0x01
    bad = verify_evidence(bytes(data_ev), genesis.hash())
    s.say(
        f"evidence with one byte flipped: {'VERIFIED' if bad.ok else 'NOT VERIFIED'} — "
        + next(t for ok2, t in bad.checks if not ok2),
        fg="red",
    )
    target = good[1] if len(good) > 1 else good[0]
    node_a = nodes["hospital-a"]
    stop(node_a)
    _tamper_vault(node_a.config.data_dir / "vault", target.record_id)
    proc_a = spawn(node_a)
    wait_ready(node_a, 60, proc_a)
    rpc["hospital-a"] = RpcClient(node_a.config.rpc_socket, timeout=120)
    s.say(
        "Hospital A's node was stopped, one vault entry altered on disk, the node restarted (its ledger intact)"
    )
    hit = fetch_records(rpc["hospital-b"], doc_b, [target.record_id])[0]
    s.say(f"Hospital B fetches it again: {hit.status}: {hit.reason}", fg="red")

    # 12 ------------------------------------------------------------------------------
    s.step("The patient revokes the consent; access is denied again, and logged")
    send("hospital-a", patient, "consent", "revoke", {"consent_id": consent["consent_id"]})
    sync()
    again_rec = fetch_records(rpc["hospital-b"], doc_b, [good[0].record_id])[0]
    s.say(
        f"Hospital B asks for {good[0].record_id.split(':')[1]} again: {again_rec.status}: {again_rec.reason}"
    )
    # Compare the nodes at one height: the denied fetch's access log was just committed,
    # and each node commits it a moment apart.
    sync()
    heights = {o: RpcClient(n.config.rpc_socket).status() for o, n in nodes.items()}
    roots = {st["state_root"] for st in heights.values()}
    top = min(st["height"] for st in heights.values())
    s.say(
        f"all four nodes at height >= {top} with {'one identical' if len(roots) == 1 else len(roots)} state root"
    )

    s.finish()
    click.secho("\nSummary", bold=True)
    for title, secs in s.timings:
        click.echo(f"  {secs:6.1f}s  {title}")
    click.echo(
        f"  {time.perf_counter() - s.t0:6.1f}s  in all; {report.anchored} records imported, fetch {fetch_ms:.0f} ms, evidence verified in {verify_ms:.1f} ms"
    )
    web = {o: f"http://127.0.0.1:{n.config.http_port}/" for o, n in nodes.items()}
    click.secho("\nExplorer and patient portal (each node serves its own)", bold=True)
    for o, url in web.items():
        click.echo(f"  {o:<11} {url}")
    click.echo(
        f"  patient portal: {web['hospital-a']}#/portal — sign in with the key file {patient_key_file}"
    )
    if keep:
        click.secho(
            f"\nThe consortium keeps running in {cdir}; stop it with: medchain net down --dir {cdir}",
            bold=True,
        )
    else:
        click.echo("  (the consortium stops now: run `make demo KEEP=1` to keep it up and look)")
    for c in rpc.values():
        c.close()


def _tamper_vault(path: Path, record_id: str) -> None:
    """Flip one byte of a stored (encrypted) record, as a disk fault or an intruder would."""
    from medchain.storage.kv import LevelDBKV
    from medchain.storage.vault import P_RECORD

    db = LevelDBKV(path, create=False, name="vault")
    try:
        key = P_RECORD + record_id.encode()
        raw = db.get(key)
        assert raw is not None, f"{record_id} is not in the vault"
        value = bytearray(raw)
        value[-5] ^= 0x40
        db.write({key: bytes(value)}, sync=True)
    finally:
        db.close()


def record_date(fetched: Any) -> str:
    """A fetched record's exact clinical date (from its content: the chain has its year)."""
    from medchain.storage.fhirdoc import FhirError, clinical_date

    try:
        return clinical_date(fetched.resource or {})
    except FhirError:
        return str(fetched.anchor["clinical_year"])
