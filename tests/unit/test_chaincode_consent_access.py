"""consent and access log: every rule, permit and deny, and the audit trail."""

from __future__ import annotations

from typing import Any

import pytest

from medchain.contracts.sdk import Reject
from tests.chain import Chain
from tests.helpers import org_consent


def setup() -> tuple[Chain, Any, str, Any, str, Any, str]:
    c = Chain()
    pk, patient = c.patient()
    doc_a, _ = c.practitioner("hospital-a")
    doc_b, doc_b_id = c.practitioner("hospital-b")
    c.anchor(doc_a, "hospital-a", "cond-old", patient, category="Condition", date="2024-06-01")
    c.anchor(doc_a, "hospital-a", "cond-new", patient, category="Condition", date="2025-12-15")
    c.anchor(
        doc_a, "hospital-a", "med-new", patient, category="MedicationRequest", date="2025-12-20"
    )
    c.anchor(doc_a, "hospital-a", "proc-new", patient, category="Procedure", date="2025-12-21")
    return c, pk, patient, doc_a, "hospital-a", doc_b, doc_b_id


def check(c: Chain, who: Any, record: str, purpose: str = "treatment") -> dict[str, Any]:
    result: dict[str, Any] = c.q(
        "consent", "check", {"record_id": record, "purpose": purpose, "requester": who.public_key}
    )
    return result


def grant(c: Chain, pk: Any, **kw: Any) -> str:
    args = {
        **org_consent(categories=("Condition", "MedicationRequest"), period={"last_days": 365}),
        **kw,
    }
    return str(c.ok(pk, "consent", "grant", args)["consent_id"])


def test_only_the_patient_grants_and_revokes() -> None:
    c, pk, patient, doc_a, _, doc_b, _ = setup()
    assert "only a registered patient" in c.fails(
        doc_b, "consent", "grant", {"grantee_kind": "org", "grantee": "hospital-b"}
    )
    cid = grant(c, pk)
    other, _ = c.patient()
    assert "only the patient who granted it" in c.fails(
        other, "consent", "revoke", {"consent_id": cid}
    )
    assert "only the patient who granted it" in c.fails(
        doc_a, "consent", "revoke", {"consent_id": cid}
    )
    c.ok(pk, "consent", "revoke", {"consent_id": cid})
    assert "already revoked" in c.fails(pk, "consent", "revoke", {"consent_id": cid})


def test_check_permit_and_every_deny_reason() -> None:
    c, pk, patient, doc_a, _, doc_b, doc_b_id = setup()
    assert check(c, doc_b, "cond-new") == {
        "decision": "deny",
        "reason": "the patient has not consented to this requester",
        "consent_id": None,
    }
    assert check(c, doc_a, "cond-new")["reason"] == "the requester's organization is the custodian"
    cid = grant(c, pk)
    ok = check(c, doc_b, "cond-new")
    assert ok == {"decision": "permit", "reason": "consented", "consent_id": cid}
    assert check(c, doc_b, "med-new")["decision"] == "permit"
    assert "does not cover Procedure" in check(c, doc_b, "proc-new")["reason"]
    assert "not treatment" not in check(c, doc_b, "cond-new")["reason"]
    assert "is for treatment, not research" in check(c, doc_b, "cond-new", "research")["reason"]
    assert "older than the consent's window of 365 days" in check(c, doc_b, "cond-old")["reason"]
    # the sliding window moves with block time: in a year, the new record is still in, the old further out
    c.advance(days=20)
    c.ok(
        doc_a, "records", "anchor", c.anchor_args(doc_a, "hospital-a", "tick", patient)
    )  # a block at the new time
    assert check(c, doc_b, "cond-new")["decision"] == "permit"
    # expiry is judged by block time
    c.advance(days=11)
    c.ok(doc_a, "records", "anchor", c.anchor_args(doc_a, "hospital-a", "tick2", patient))
    assert check(c, doc_b, "cond-new")["reason"] == "the consent expired"
    cid2 = grant(c, pk, categories=["*"], period={"from": "2025-12-01", "to": "2025-12-31"})
    assert check(c, doc_b, "proc-new")["consent_id"] == cid2
    assert (
        check(c, doc_b, "cond-old")["reason"] == "the record is outside the consent's data period"
    )
    c.ok(pk, "consent", "revoke", {"consent_id": cid2})
    assert check(c, doc_b, "proc-new")["reason"] == "the consent was revoked"
    # a grant to one practitioner does not cover a colleague
    colleague, _ = c.practitioner("hospital-b")
    grant(c, pk, grantee_kind="practitioner", grantee=doc_b_id, categories=["*"])
    assert check(c, doc_b, "proc-new")["decision"] == "permit"
    assert check(c, colleague, "proc-new")["decision"] == "deny"


def test_consent_as_fhir_and_who_may_read_it() -> None:
    c, pk, patient, _, _, doc_b, _ = setup()
    cid = grant(c, pk)
    fhir = c.q("consent", "fhir", {"consent_id": cid}, caller=pk)
    assert fhir["resourceType"] == "Consent" and fhir["status"] == "active"
    assert fhir["patient"] == {"reference": f"Patient/{patient}"}
    prov = fhir["provision"]
    assert prov["type"] == "permit" and prov["purpose"][0]["code"] == "TREAT"
    assert [x["code"] for x in prov["class"]] == ["Condition", "MedicationRequest"]
    assert prov["actor"][0]["reference"]["reference"] == "Organization/hospital-b"
    assert (
        c.q("consent", "get", {"consent_id": cid}, caller=doc_b)["id"] == cid
    )  # the grantee may read it
    stranger, _ = c.patient()
    with pytest.raises(Reject):
        c.q("consent", "get", {"consent_id": cid}, caller=stranger)
    with pytest.raises(Reject):
        c.q("consent", "list_for_patient", {"patient": patient})  # anonymous
    assert len(c.q("consent", "list_for_patient", {"patient": patient}, caller=pk)) == 1
    assert (
        len(c.q("consent", "list_for_patient", {"patient": patient}, caller=c.admins["regulator"]))
        == 1
    )


def test_every_access_decision_is_logged_and_emitted() -> None:
    c, pk, patient, doc_a, _, doc_b, _ = setup()
    denied = c.tx(doc_b, "access", "request", {"record_id": "cond-new", "purpose": "treatment"})
    assert denied.ok and denied.data["decision"] == "deny"
    ev = denied.events[0]
    assert (ev.contract, ev.name) == ("access", "access")
    assert (
        ev.attrs["patient"] == patient
        and ev.attrs["decision"] == "deny"
        and ev.attrs["requester_org"] == "hospital-b"
    )
    cid = grant(c, pk)
    permitted = c.ok(doc_b, "access", "request", {"record_id": "cond-new", "purpose": "treatment"})
    assert permitted["decision"] == "permit" and permitted["consent_id"] == cid
    stranger, _ = c.patient()
    assert "only practitioners" in c.fails(
        c.key(), "access", "request", {"record_id": "cond-new", "purpose": "treatment"}
    )
    assert (
        c.ok(stranger, "access", "request", {"record_id": "cond-new", "purpose": "treatment"})[
            "decision"
        ]
        == "deny"
    )
    own = c.ok(
        pk, "access", "request_many", {"records": ["cond-new", "med-new"], "purpose": "treatment"}
    )
    assert [(x["record_id"], x["decision"], x["reason"]) for x in own] == [
        ("cond-new", "permit", "the patient's own record"),
        ("med-new", "permit", "the patient's own record"),
    ]
    assert "not anchored" in c.fails(
        doc_b, "access", "request", {"record_id": "nope", "purpose": "treatment"}
    )
    log = c.q("access", "by_patient", {"patient": patient}, caller=pk)
    log = [e for e in log if e["requester_kind"] == "practitioner"]
    assert [(e["decision"], e["requester_org"], e["consent_id"]) for e in log] == [
        ("deny", "hospital-b", None),
        ("permit", "hospital-b", cid),
    ]
    assert all(e["record_id"] == "cond-new" and e["purpose"] == "treatment" for e in log)
    with pytest.raises(Reject, match="only the patient"):
        c.q("access", "by_patient", {"patient": patient}, caller=doc_b)
    assert len(c.q("access", "by_patient", {"patient": patient}, caller=c.admins["regulator"])) == 5
    assert len(c.q("access", "all_accesses", {}, caller=c.admins["regulator"])) == 5
    with pytest.raises(Reject, match="only a regulator"):
        c.q("access", "all_accesses", {}, caller=c.admins["hospital-a"])
