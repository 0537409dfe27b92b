"""A patient's journey on a real 4-node consortium (hospital A, hospital B,
insurer, regulator): register -> anchor -> consent -> access (permit and
deny) -> referral -> claim -> revoke; every node ends with the same state."""

from __future__ import annotations

from typing import Any

import pytest

from medchain.client.rpc import RpcClient
from tests.e2e.harness import cluster
from tests.e2e.scenario import (
    LOCAL,
    add_code_systems,
    anchor_record,
    builder,
    care_product,
    org_consent,
    register_doctor,
    send,
)

pytestmark = pytest.mark.e2e


def synced(c: Any) -> RpcClient:
    """Node A, once it has every block any node has: a write committed on one node is
    read on another only after that node has caught up to it."""
    c.sync()
    return c.client(0)


def test_patient_journey_across_the_consortium() -> None:
    with cluster(4) as c:
        chain = c.genesis.chain_id
        A, B, INS, REG = (c.client(i) for i in range(4))
        admin_a, admin_b, admin_ins, admin_reg = c.builders
        patient = builder(chain, b"e2e patient")
        doc_a = builder(chain, b"e2e doctor a")
        doc_b = builder(chain, b"e2e doctor b")
        # register
        pseudonym = send(A, patient, "registry", "register_patient", {})["pseudonym"]
        register_doctor(A, admin_a, doc_a, "A-1")
        register_doctor(B, admin_b, doc_b, "B-1", department="emergency")
        # anchor two records at hospital A
        anchor_record(A, doc_a, "a-cond-1", pseudonym, "hospital-a", "Condition", "2025-11-20")
        anchor_record(A, doc_a, "a-proc-1", pseudonym, "hospital-a", "Procedure", "2025-11-21")
        # the patient subscribes to their own access events at hospital B's node... through their app on node A
        watcher = c.client(0)
        watcher.subscribe(kinds=["event"], contract="access", attrs={"patient": pseudonym})
        # access without consent: denied and logged
        denied = send(
            B, doc_b, "access", "request", {"record_id": "a-cond-1", "purpose": "treatment"}
        )
        assert denied["decision"] == "deny"
        # consent: conditions only, for treatment, last 2 years, 30 days
        cid = send(A, patient, "consent", "grant", org_consent())["consent_id"]
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
        add_code_systems(REG, admin_reg)
        send(INS, admin_ins, "settlement", "register_product", care_product("care"))
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
