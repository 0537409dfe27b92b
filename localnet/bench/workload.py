"""Benchmark workloads: setting up the chain state they need, and making
their signed transactions.

- ``kv``: a ~300-byte key-value put (the plumbing without chaincode logic).
- ``anchor``: a record anchor (~300 bytes) by a registered practitioner.
- ``mix``: a realistic mix — 60 % anchors, 30 % consented record accesses
  (consent check + access-log entry), 10 % insurance claims (adjudication).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from medchain.client.rpc import RpcClient
from medchain.client.signing import TxBuilder
from medchain.storage.crypto import Signer
from medchain.storage.tx import Transaction

LOCAL = "urn:medchain:items"
KINDS = ("kv", "anchor", "mix")


def _seed(tag: str) -> bytes:
    return hashlib.sha256(tag.encode()).digest()


def setup(
    kind: str, rpc: dict[str, RpcClient], cdir: Path, generators: int, chain: str
) -> list[dict[str, Any]]:
    """Register the practitioners, patients, consents, products a workload needs;
    return one JSON-able description per generator."""
    if kind == "kv":
        return [{"kind": "kv", "chain": chain, "seed": k + 1} for k in range(generators)]
    admin = {
        o: TxBuilder.from_key_file(cdir / o / "admin.key", chain)
        for o in ("hospital-a", "hospital-b", "insurer")
    }

    def send(org: str, who: TxBuilder, contract: str, method: str, args: Any) -> Any:
        r = rpc[org].submit(who.build(contract, method, args), wait=True, timeout_ms=60_000)
        assert r["status"] == "committed", r
        return r["result"]

    out = []
    if kind == "mix":
        send(
            "insurer",
            admin["insurer"],
            "settlement",
            "register_product",
            {
                "product_id": "bench",
                "name": "Bench",
                "deductible_cents": 1_000,
                "annual_limit_cents": 10**11,
                "catalog": [
                    {
                        "system": LOCAL,
                        "code": "CONSULT",
                        "unit_price_cents": 10_000,
                        "coverage_bp": 8_000,
                        "per_item_cap_cents": 10_000,
                        "per_year_cap_cents": 10**11,
                    }
                ],
            },
        )
    for k in range(generators):
        org, other = ("hospital-a", "hospital-b") if k % 2 == 0 else ("hospital-b", "hospital-a")
        author = TxBuilder(Signer(_seed(f"bench author {k}")), chain)
        reader = TxBuilder(Signer(_seed(f"bench reader {k}")), chain)
        patient = TxBuilder(Signer(_seed(f"bench patient {k}")), chain)
        send(
            org,
            admin[org],
            "registry",
            "register_practitioner",
            {
                "key": author.public_key,
                "license": f"BA{k}",
                "department": "bench",
                "role": "physician",
            },
        )
        send(
            other,
            admin[other],
            "registry",
            "register_practitioner",
            {
                "key": reader.public_key,
                "license": f"BR{k}",
                "department": "bench",
                "role": "physician",
            },
        )
        pseudonym = send(org, patient, "registry", "register_patient", {})["pseudonym"]
        desc: dict[str, Any] = {
            "kind": kind,
            "chain": chain,
            "seed": k + 1,
            "org": org,
            "author": _seed(f"bench author {k}").hex(),
            "reader": _seed(f"bench reader {k}").hex(),
            "patient": pseudonym,
        }
        if kind == "mix":
            records = [f"setup-{k}-{i}" for i in range(20)]
            for rid in records:
                send(
                    org,
                    author,
                    "records",
                    "anchor",
                    anchor_args(rid, pseudonym, org, author.public_key, rid),
                )
            send(
                org,
                patient,
                "consent",
                "grant",
                {
                    "grantee_kind": "org",
                    "grantee": other,
                    "categories": ["*"],
                    "purpose": "treatment",
                    "days": 30,
                },
            )
            send(
                "insurer",
                admin["insurer"],
                "settlement",
                "enroll",
                {
                    "patient": pseudonym,
                    "product_id": "bench",
                    "start": "2020-01",
                    "end": "2035-12",
                },
            )
            desc["records"] = records
        out.append(desc)
    return out


def anchor_args(record_id: str, patient: str, org: str, author: bytes, salt: str) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "patient": patient,
        "custodian": org,
        "category": "Observation",
        "clinical_year": 2026,
        "content_hash": hashlib.sha256(salt.encode()).digest(),
        "fields_root": hashlib.sha256(b"f" + salt.encode()).digest(),
        "author": author,
    }


class Maker:
    """Makes the i-th transaction of a generator's workload."""

    def __init__(self, desc: dict[str, Any]) -> None:
        self.d = desc
        self.kind = desc["kind"]
        chain = desc["chain"]
        if self.kind == "kv":
            self.author = TxBuilder(Signer(_seed(f"loadgen {desc['seed']}")), chain)
        else:
            self.author = TxBuilder(Signer(bytes.fromhex(desc["author"])), chain)
            self.reader = TxBuilder(Signer(bytes.fromhex(desc["reader"])), chain)

    def make(self, i: int) -> Transaction:
        d, seed = self.d, self.d["seed"]
        if self.kind == "kv":
            digest = hashlib.sha256(b"%d/%d" % (seed, i)).hexdigest()
            return self.author.build(
                "kv", "put", {"key": f"anchor/{seed}/{i}", "value": digest + "f" * 80}
            )
        slot = i % 10
        if self.kind == "anchor" or slot < 6:
            return self.author.build(
                "records",
                "anchor",
                anchor_args(
                    f"g{seed}-{i}", d["patient"], d["org"], self.author.public_key, f"{seed}/{i}"
                ),
            )
        if slot < 9:
            record = d["records"][i % len(d["records"])]
            return self.reader.build(
                "access", "request", {"record_id": record, "purpose": "treatment"}
            )
        return self.author.build(
            "settlement",
            "submit_claim",
            {
                "claim_id": f"c{seed}-{i}",
                "patient": d["patient"],
                "product_id": "bench",
                "encounter_id": f"e{seed}-{i}",
                "encounter_month": "2026-11",
                "records": [d["records"][0]],
                "diagnoses": [],
                "items": [{"system": LOCAL, "code": "CONSULT", "quantity": 1}],
            },
        )


def save(descs: list[dict[str, Any]], directory: Path) -> list[Path]:
    paths = []
    for k, d in enumerate(descs):
        p = directory / f"workload-{k}.json"
        p.write_text(json.dumps(d))
        paths.append(p)
    return paths
