"""Execution cost per transaction type (microseconds, median of runs).

    python -m benchmarks.chaincode [--runs 5] [--n 200]

Times only ``Executor.execute`` on blocks of n transactions of one type (the
chaincode work: identity resolution, checks, state reads and writes, events),
not signing or committing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from typing import Any

from medchain.localnet.bench.cluster import machine
from medchain.node.consensus.chain import propose_block
from medchain.storage.block import make_certificate
from medchain.storage.crypto import Signer
from medchain.storage.tx import make_tx
from tests.chain import Chain
from tests.helpers import org_consent

LOCAL = "urn:medchain:items"


def timed_block(c: Chain, txs: list[tuple[Signer, str, str, Any]]) -> float:
    """Execute one block of txs; return microseconds per transaction (and commit it)."""
    raws = []
    for signer, contract, method, args in txs:
        c.nonce += 1
        raws.append(make_tx(signer, c.genesis.chain_id, c.nonce, contract, method, args).encode())
    c.now += 1000
    block = propose_block(c.ledger, raws, c.now, c.node_keys[0].public_key)
    t = time.perf_counter()
    executed = c.executor.execute(c.ledger, block)
    dt = time.perf_counter() - t
    bad = [r.data for r in executed.results if not r.ok]
    assert not bad, bad[:3]
    cert = make_certificate(
        c.genesis.chain_id, 0, block.header, [(i, c.node_keys[i]) for i in range(3)]
    )
    c.ledger.commit_block(executed, cert)
    return dt / len(txs) * 1e6


def scenario(n: int) -> dict[str, float]:
    c = Chain()
    out: dict[str, float] = {}
    keys = [Signer(hashlib.sha256(b"bench %d" % i).digest()) for i in range(n)]
    out["kv.put"] = timed_block(
        c, [(k, "kv", "put", {"key": f"k{i}", "value": "v" * 200}) for i, k in enumerate(keys)]
    )
    out["registry.register_patient"] = timed_block(
        c, [(k, "registry", "register_patient", {}) for k in keys]
    )
    patients = [c.q("registry", "whoami", caller=k)["id"] for k in keys]
    docs = [Signer(hashlib.sha256(b"doc %d" % i).digest()) for i in range(n)]
    out["registry.register_practitioner"] = timed_block(
        c,
        [
            (
                c.admins["hospital-a"],
                "registry",
                "register_practitioner",
                {"key": d.public_key, "license": f"L{i}", "department": "x", "role": "physician"},
            )
            for i, d in enumerate(docs)
        ],
    )
    doc = docs[0]
    docb, _ = c.practitioner("hospital-b")
    out["records.anchor"] = timed_block(
        c,
        [
            (
                doc,
                "records",
                "anchor",
                c.anchor_args(doc, "hospital-a", f"r{i}", patients[i], date="2025-12-01"),
            )
            for i in range(n)
        ],
    )
    bulk = [c.anchor_args(doc, "hospital-a", f"b{i}", patients[i]) for i in range(n)]
    out["records.anchor_bulk (per anchor)"] = (
        timed_block(c, [(doc, "records", "anchor_bulk", {"anchors": bulk})]) / n
    )
    out["consent.grant"] = timed_block(
        c,
        [(k, "consent", "grant", org_consent(period={"last_days": 365})) for k in keys],
    )
    out["access.request (permit)"] = timed_block(
        c,
        [
            (docb, "access", "request", {"record_id": f"r{i}", "purpose": "treatment"})
            for i in range(n)
        ],
    )
    out["access.request (deny)"] = timed_block(
        c,
        [
            (docb, "access", "request", {"record_id": f"r{i}", "purpose": "research"})
            for i in range(n)
        ],
    )
    out["referral.issue"] = timed_block(
        c,
        [
            (
                doc,
                "referral",
                "issue",
                {
                    "patient": patients[i],
                    "target": "hospital-b",
                    "records": [f"r{i}"],
                    "valid_days": 10,
                },
            )
            for i in range(n)
        ],
    )
    refs = [k[len(b"referral\x00r/") :].decode() for k, _ in c.ledger.state_scan(b"referral\x00r/")]
    by_patient = {}
    for rid in refs:
        r = c.executor.query(
            c.ledger,
            "referral",
            "get",
            {"referral_id": rid},
            c.ledger.height,
            c.now,
            caller=doc.public_key,
        )
        by_patient[r["patient"]] = rid
    out["referral.agree"] = timed_block(
        c,
        [
            (k, "referral", "agree", {"referral_id": by_patient[p]})
            for k, p in zip(keys, patients, strict=True)
        ],
    )
    out["referral.accept"] = timed_block(
        c, [(docb, "referral", "accept", {"referral_id": by_patient[p]}) for p in patients]
    )
    reg, ins = c.admins["regulator"], c.admins["insurer"]
    c.ok(reg, "dictionary", "add_system", {"system": LOCAL, "name": "items", "version": "1"})
    out["dictionary.add_codes (per code)"] = (
        timed_block(
            c,
            [
                (
                    reg,
                    "dictionary",
                    "add_codes",
                    {
                        "system": LOCAL,
                        "codes": [{"code": f"C{i}", "display": "x"} for i in range(n)],
                    },
                )
            ],
        )
        / n
    )
    c.ok(
        ins,
        "settlement",
        "register_product",
        {
            "product_id": "p",
            "name": "p",
            "deductible_cents": 1000,
            "annual_limit_cents": 10**9,
            "catalog": [
                {
                    "system": LOCAL,
                    "code": "C1",
                    "unit_price_cents": 5000,
                    "coverage_bp": 8000,
                    "per_item_cap_cents": 5000,
                    "per_year_cap_cents": 10**8,
                }
            ],
        },
    )
    out["settlement.enroll"] = timed_block(
        c,
        [
            (
                ins,
                "settlement",
                "enroll",
                {"patient": p, "product_id": "p", "start": "2025-01", "end": "2026-12"},
            )
            for p in patients
        ],
    )
    out["settlement.submit_claim"] = timed_block(
        c,
        [
            (
                doc,
                "settlement",
                "submit_claim",
                {
                    "claim_id": f"cl{i}",
                    "patient": patients[i],
                    "product_id": "p",
                    "encounter_id": f"e{i}",
                    "encounter_month": "2025-12",
                    "records": [f"r{i}"],
                    "diagnoses": [],
                    "items": [{"system": LOCAL, "code": "C1", "quantity": 1}],
                },
            )
            for i in range(n)
        ],
    )
    out["settlement.record_payment"] = timed_block(
        c,
        [
            (
                ins,
                "settlement",
                "record_payment",
                {"claim_id": f"cl{i}", "amount_cents": 3200, "reference": "x"},
            )
            for i in range(n)
        ],
    )
    out["consent.revoke"] = timed_block(
        c,
        [
            (
                k,
                "consent",
                "revoke",
                {
                    "consent_id": c.q("consent", "list_for_patient", {"patient": p}, caller=k)[0][
                        "id"
                    ]
                },
            )
            for k, p in zip(keys, patients, strict=True)
        ],
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    runs = [scenario(args.n) for _ in range(args.runs)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        f"chaincode execution cost, median of {args.runs} runs, blocks of {args.n} ({machine()}):"
    )
    for k, v in med.items():
        print(f"  {k:<36} {v:8.0f} µs")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"machine": machine(), "runs": args.runs, "n": args.n, "median_us": med},
                fh,
                indent=2,
            )


if __name__ == "__main__":
    main()
