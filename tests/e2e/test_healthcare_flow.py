"""A patient's journey on a real 4-node consortium (hospital A, hospital B,
insurer, regulator): register -> anchor -> consent -> access (permit and
deny) -> referral -> claim -> revoke; every node ends with the same state."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from node.client import RpcClient, TxBuilder
from storage.crypto import Signer
from tests.e2e.harness import cluster
from tests.helpers import signed_anchor_args

pytestmark = pytest.mark.e2e
LOCAL = "urn:medchain:items"
ICD10 = "http://hl7.org/fhir/sid/icd-10"


def synced(c: Any) -> RpcClient:
    """Node A, once it has every block any node has: a write committed on one node is
    read on another only after that node has caught up to it."""
    c.sync()
    return c.client(0)


def send(cl: RpcClient, b: TxBuilder, contract: str, method: str, args: Any) -> Any:
    res = cl.submit(b.build(contract, method, args), wait=True, timeout_ms=30_000)
    assert res["status"] == "committed", f"{contract}.{method}: {res}"
    return res["result"]


def test_patient_journey_across_the_consortium() -> None:
    with cluster(4) as c:
        chain = c.genesis.chain_id
        A, B, INS, REG = (c.client(i) for i in range(4))
        admin_a, admin_b, admin_ins, admin_reg = c.builders
        patient = TxBuilder(Signer(hashlib.sha256(b"e2e patient").digest()), chain)
        doc_a = TxBuilder(Signer(hashlib.sha256(b"e2e doctor a").digest()), chain)
        doc_b = TxBuilder(Signer(hashlib.sha256(b"e2e doctor b").digest()), chain)
        # register
        pseudonym = send(A, patient, "registry", "register_patient", {})["pseudonym"]
        send(
            A,
            admin_a,
            "registry",
            "register_practitioner",
            {
                "key": doc_a.public_key,
                "license": "A-1",
                "department": "cardiology",
                "role": "physician",
            },
        )
        send(
            B,
            admin_b,
            "registry",
            "register_practitioner",
            {
                "key": doc_b.public_key,
                "license": "B-1",
                "department": "emergency",
                "role": "physician",
            },
        )
        # anchor two records at hospital A
        for rid, cat, date in (
            ("a-cond-1", "Condition", "2025-11-20"),
            ("a-proc-1", "Procedure", "2025-11-21"),
        ):
            content = f"record {rid}".encode()
            ch, fr = hashlib.sha256(content).digest(), hashlib.sha256(b"f" + content).digest()
            args = signed_anchor_args(
                chain, doc_a.signer, rid, pseudonym, "hospital-a", cat, date, ch, fr
            )
            send(A, doc_a, "records", "anchor", args)
        # the patient subscribes to their own access events at hospital B's node... through their app on node A
        watcher = c.client(0)
        watcher.subscribe(kinds=["event"], contract="access", attrs={"patient": pseudonym})
        # access without consent: denied and logged
        denied = send(
            B, doc_b, "access", "request", {"record_id": "a-cond-1", "purpose": "treatment"}
        )
        assert denied["decision"] == "deny"
        # consent: conditions only, for treatment, last 2 years, 30 days
        cid = send(
            A,
            patient,
            "consent",
            "grant",
            {
                "grantee_kind": "org",
                "grantee": "hospital-b",
                "categories": ["Condition"],
                "purpose": "treatment",
                "period": {"last_days": 730},
                "days": 30,
            },
        )["consent_id"]
        permitted = send(
            B, doc_b, "access", "request", {"record_id": "a-cond-1", "purpose": "treatment"}
        )
        assert permitted == {
            "record_id": "a-cond-1",
            "access_id": permitted["access_id"],
            "decision": "permit",
            "reason": "consented",
            "consent_id": cid,
        }
        assert (
            send(B, doc_b, "access", "request", {"record_id": "a-proc-1", "purpose": "treatment"})[
                "decision"
            ]
            == "deny"
        )
        notes = [
            n["event"]
            for n in watcher.notifications(timeout=10)
            if n["event"].get("contract") == "access"
        ][:3]
        assert [n["attrs"]["decision"] for n in notes] == ["deny", "permit", "deny"]
        # the patient (signed query) reads who accessed what; anonymous cannot
        log = synced(c).query("access", "by_patient", {"patient": pseudonym}, signer=patient)
        assert [(e["decision"], e["requester_org"]) for e in log] == [
            ("deny", "hospital-b"),
            ("permit", "hospital-b"),
            ("deny", "hospital-b"),
        ]
        with pytest.raises(Exception, match="only the patient"):
            synced(c).query("access", "by_patient", {"patient": pseudonym})
        # referral A -> B carrying the procedure record
        ref = send(
            A,
            doc_a,
            "referral",
            "issue",
            {
                "patient": pseudonym,
                "target": "hospital-b",
                "records": ["a-proc-1"],
                "valid_days": 14,
            },
        )
        send(A, patient, "referral", "agree", {"referral_id": ref["referral_id"]})
        send(B, doc_b, "referral", "accept", {"referral_id": ref["referral_id"]})
        assert (
            send(B, doc_b, "access", "request", {"record_id": "a-proc-1", "purpose": "treatment"})[
                "decision"
            ]
            == "permit"
        )
        # claim settled by the insurer
        for system, name in ((LOCAL, "Items"), (ICD10, "ICD-10")):
            send(
                REG,
                admin_reg,
                "dictionary",
                "add_system",
                {"system": system, "name": name, "version": "1"},
            )
        send(
            INS,
            admin_ins,
            "settlement",
            "register_product",
            {
                "product_id": "care",
                "name": "Care",
                "deductible_cents": 1_000,
                "annual_limit_cents": 1_000_000,
                "catalog": [
                    {
                        "system": LOCAL,
                        "code": "CONSULT",
                        "unit_price_cents": 12_000,
                        "coverage_bp": 7_500,
                        "per_item_cap_cents": 12_000,
                        "per_year_cap_cents": 100_000,
                    }
                ],
            },
        )
        send(
            INS,
            admin_ins,
            "settlement",
            "enroll",
            {
                "patient": pseudonym,
                "product_id": "care",
                "start": "2025-01",
                "end": "2026-12",
            },
        )
        adj = send(
            A,
            doc_a,
            "settlement",
            "submit_claim",
            {
                "claim_id": "claim-1",
                "patient": pseudonym,
                "product_id": "care",
                "encounter_id": "enc-1",
                "encounter_month": "2025-11",
                "records": ["a-cond-1"],
                "diagnoses": [],
                "items": [{"system": LOCAL, "code": "CONSULT", "quantity": 1}],
            },
        )
        assert (
            adj["outcome"] == "complete" and adj["total_benefit_cents"] == 8_250
        )  # (12000 - 1000) x 75 %
        send(
            INS,
            admin_ins,
            "settlement",
            "record_payment",
            {"claim_id": "claim-1", "amount_cents": 8_250, "reference": "PAY-1"},
        )
        assert (
            synced(c).query("settlement", "claim", {"claim_id": "claim-1"}, signer=patient)[
                "status"
            ]
            == "paid"
        )
        # revoke: access is denied again
        send(A, patient, "consent", "revoke", {"consent_id": cid})
        after = send(
            B, doc_b, "access", "request", {"record_id": "a-cond-1", "purpose": "treatment"}
        )
        assert after["decision"] == "deny" and after["reason"] == "the consent was revoked"
        fhir = synced(c).query("consent", "fhir", {"consent_id": cid}, signer=patient)
        assert fhir["resourceType"] == "Consent" and fhir["status"] == "inactive"
        # every node holds the same state
        top = max(c.heights())
        c.wait_height(top, [0, 1, 2, 3])
        c.assert_consistent()
        roots = {c.status(i)["state_root"] for i in range(4)}
        assert len(roots) == 1
        for cl in (A, B, INS, REG, watcher):
            cl.close()
