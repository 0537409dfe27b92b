"""referral, dictionary and settlement."""

from __future__ import annotations

from typing import Any

import pytest

from medchain.contracts.sdk import Reject
from tests.chain import Chain

ICD10 = "http://hl7.org/fhir/sid/icd-10"
SNOMED = "http://snomed.info/sct"
LOCAL = "urn:medchain:items"


def referral_setup() -> tuple[Chain, Any, str, Any, Any]:
    c = Chain()
    pk, patient = c.patient()
    doc_a, _ = c.practitioner("hospital-a")
    doc_b, _ = c.practitioner("hospital-b")
    for rid in ("x1", "x2", "x3"):
        c.anchor(doc_a, "hospital-a", rid, patient)
    return c, pk, patient, doc_a, doc_b


def decision(c: Chain, who: Any, record: str) -> str:
    return str(
        c.q(
            "consent",
            "check",
            {"record_id": record, "purpose": "treatment", "requester": who.public_key},
        )["decision"]
    )


def test_referral_full_flow_opens_exactly_the_referred_records() -> None:
    c, pk, patient, doc_a, doc_b = referral_setup()
    issued = c.tx(
        doc_a,
        "referral",
        "issue",
        {
            "patient": patient,
            "target": "hospital-b",
            "records": ["x1", "x2"],
            "valid_days": 14,
            "reason": {"system": SNOMED, "code": "44054006"},
        },
    )
    assert issued.ok and issued.data["status"] == "awaiting-patient"
    assert issued.events[0].attrs["patient"] == patient
    rid = issued.data["referral_id"]
    assert "has not agreed" in c.fails(doc_b, "referral", "accept", {"referral_id": rid})
    assert "only the referred patient" in c.fails(doc_b, "referral", "agree", {"referral_id": rid})
    c.ok(pk, "referral", "agree", {"referral_id": rid})
    assert "only hospital-b" in c.fails(doc_a, "referral", "accept", {"referral_id": rid})
    assert decision(c, doc_b, "x1") == "deny"
    acc = c.tx(doc_b, "referral", "accept", {"referral_id": rid})
    assert acc.ok and acc.data["status"] == "accepted"
    assert {e.name for e in acc.events} >= {"granted", "accepted"} and all(
        e.attrs["patient"] == patient for e in acc.events
    )
    assert decision(c, doc_b, "x1") == "permit" and decision(c, doc_b, "x2") == "permit"
    assert decision(c, doc_b, "x3") == "deny"  # exactly the referred records
    c.ok(doc_b, "referral", "complete", {"referral_id": rid})
    assert decision(c, doc_b, "x1") == "deny"
    r = c.q("referral", "get", {"referral_id": rid}, caller=pk)
    assert [h["status"] for h in r["history"]] == [
        "awaiting-patient",
        "agreed",
        "accepted",
        "completed",
    ]


def test_referral_permission_is_time_limited_and_cancellable() -> None:
    c, pk, patient, doc_a, doc_b = referral_setup()
    req = c.ok(pk, "referral", "request_referral", {"source": "hospital-a", "target": "hospital-b"})
    res = c.ok(
        doc_a,
        "referral",
        "issue",
        {
            "patient": patient,
            "target": "hospital-b",
            "records": ["x1"],
            "valid_days": 2,
            "request_id": req["referral_id"],
        },
    )
    assert res["status"] == "agreed"  # the patient's request is their agreement
    c.ok(doc_b, "referral", "accept", {"referral_id": res["referral_id"]})
    assert decision(c, doc_b, "x1") == "permit"
    c.advance(days=3)
    c.anchor(doc_a, "hospital-a", "later", patient)
    assert decision(c, doc_b, "x1") == "deny"  # expired
    res2 = c.ok(
        doc_a,
        "referral",
        "issue",
        {"patient": patient, "target": "hospital-b", "records": ["x2"], "valid_days": 30},
    )
    c.ok(pk, "referral", "agree", {"referral_id": res2["referral_id"]})
    c.ok(doc_b, "referral", "accept", {"referral_id": res2["referral_id"]})
    assert decision(c, doc_b, "x2") == "permit"
    c.ok(pk, "referral", "cancel", {"referral_id": res2["referral_id"]})
    assert decision(c, doc_b, "x2") == "deny"


def test_referral_checks_credentials_and_records() -> None:
    c, pk, patient, doc_a, doc_b = referral_setup()
    nurse, _ = c.practitioner("hospital-a", role="nurse")
    assert "a nurse may not issue" in c.fails(
        nurse,
        "referral",
        "issue",
        {"patient": patient, "target": "hospital-b", "records": ["x1"], "valid_days": 5},
    )
    assert "not held by hospital-b" in c.fails(
        doc_b,
        "referral",
        "issue",
        {"patient": patient, "target": "hospital-a", "records": ["x1"], "valid_days": 5},
    )
    _, other = c.patient()
    assert "another patient's" in c.fails(
        doc_a,
        "referral",
        "issue",
        {"patient": other, "target": "hospital-b", "records": ["x1"], "valid_days": 5},
    )
    assert "not anchored" in c.fails(
        doc_a,
        "referral",
        "issue",
        {"patient": patient, "target": "hospital-b", "records": ["nope"], "valid_days": 5},
    )
    assert "only the referral chaincode" in c.fails(
        doc_b,
        "consent",
        "grant_for_referral",
        {
            "id": "x",
            "patient": patient,
            "grantee": "hospital-b",
            "records": ["x1"],
            "expires_ms": c.now + 10**9,
            "referral": "r",
        },
    )
    c.ok(
        c.admins["regulator"],
        "registry",
        "suspend_practitioner",
        {"practitioner": c.q("registry", "whoami", caller=doc_a)["id"]},
    )
    assert "suspended" in c.fails(
        doc_a,
        "referral",
        "issue",
        {"patient": patient, "target": "hospital-b", "records": ["x1"], "valid_days": 5},
    )


def dictionary(c: Chain) -> None:
    reg = c.admins["regulator"]
    for system, name in ((ICD10, "ICD-10"), (SNOMED, "SNOMED CT"), (LOCAL, "Items")):
        c.ok(reg, "dictionary", "add_system", {"system": system, "name": name, "version": "2026"})
    c.ok(
        reg,
        "dictionary",
        "add_codes",
        {
            "system": ICD10,
            "codes": [
                {"code": "S83.5", "display": "Sprain of cruciate ligament of knee"},
                {"code": "J20.9", "display": "Acute bronchitis"},
            ],
        },
    )
    c.ok(
        reg,
        "dictionary",
        "add_codes",
        {
            "system": SNOMED,
            "codes": [
                {"code": "444470001", "display": "Injury of anterior cruciate ligament"},
                {"code": "10509002", "display": "Acute bronchitis"},
            ],
        },
    )
    c.ok(
        reg,
        "dictionary",
        "add_codes",
        {
            "system": LOCAL,
            "codes": [
                {"code": "MRI-KNEE", "display": "MRI of knee"},
                {"code": "VISIT", "display": "Consultation"},
            ],
        },
    )
    c.ok(
        reg,
        "dictionary",
        "add_mappings",
        {
            "source": SNOMED,
            "target": ICD10,
            "mappings": [
                {"source_code": "444470001", "target_code": "S83.5", "equivalence": "equivalent"},
                {"source_code": "10509002", "target_code": "J20.9", "equivalence": "equivalent"},
            ],
        },
    )


def test_dictionary_is_maintained_by_regulators_and_translates_both_ways() -> None:
    c = Chain()
    assert "only a regulator" in c.fails(
        c.admins["hospital-a"],
        "dictionary",
        "add_system",
        {"system": ICD10, "name": "x", "version": "1"},
    )
    dictionary(c)
    assert c.q(
        "dictionary", "translate", {"system": SNOMED, "code": "444470001", "target": ICD10}
    ) == [{"system": ICD10, "code": "S83.5", "equivalence": "equivalent"}]
    assert (
        c.q("dictionary", "translate", {"system": ICD10, "code": "S83.5", "target": SNOMED})[0][
            "code"
        ]
        == "444470001"
    )
    assert (
        c.q(
            "dictionary",
            "matches",
            {"system": SNOMED, "code": "444470001", "any_of": [{"system": ICD10, "code": "S83.5"}]},
        )
        is True
    )
    assert (
        c.q(
            "dictionary",
            "matches",
            {"system": SNOMED, "code": "10509002", "any_of": [{"system": ICD10, "code": "S83.5"}]},
        )
        is False
    )
    assert "not a code of" in c.fails(
        c.admins["regulator"],
        "dictionary",
        "add_mappings",
        {
            "source": SNOMED,
            "target": ICD10,
            "mappings": [{"source_code": "1", "target_code": "S83.5"}],
        },
    )


def settlement_setup() -> tuple[Chain, Any, str, Any]:
    c = Chain()
    dictionary(c)
    pk, patient = c.patient()
    doc, _ = c.practitioner("hospital-a")
    c.anchor(doc, "hospital-a", "enc1-note", patient)
    c.anchor(doc, "hospital-a", "enc2-note", patient)
    c.anchor(doc, "hospital-a", "enc3-note", patient)
    ins = c.admins["insurer"]
    c.ok(
        ins,
        "settlement",
        "register_product",
        {
            "product_id": "basic",
            "name": "Basic care",
            "deductible_cents": 10_000,
            "annual_limit_cents": 500_000,
            "catalog": [
                {
                    "system": LOCAL,
                    "code": "VISIT",
                    "unit_price_cents": 8_000,
                    "coverage_bp": 8_000,
                    "per_item_cap_cents": 8_000,
                    "per_year_cap_cents": 20_000,
                },
                {
                    "system": LOCAL,
                    "code": "MRI-KNEE",
                    "unit_price_cents": 60_000,
                    "coverage_bp": 9_000,
                    "per_item_cap_cents": 50_000,
                    "per_year_cap_cents": 100_000,
                    "requires_diagnosis": [{"system": ICD10, "code": "S83.5"}],
                },
            ],
        },
    )
    c.ok(
        ins,
        "settlement",
        "enroll",
        {"patient": patient, "product_id": "basic", "start": "2025-01", "end": "2026-12"},
    )
    return c, pk, patient, doc


def claim(
    c: Chain,
    doc: Any,
    patient: str,
    claim_id: str,
    encounter: str,
    items: list[dict[str, Any]],
    diagnoses: list[dict[str, str]] | None = None,
    records: list[str] | None = None,
) -> Any:
    return c.tx(
        doc,
        "settlement",
        "submit_claim",
        {
            "claim_id": claim_id,
            "patient": patient,
            "product_id": "basic",
            "encounter_id": encounter,
            "encounter_month": "2025-12",
            "records": records if records is not None else [f"{encounter}-note"],
            "diagnoses": diagnoses or [],
            "items": items,
        },
    )


def test_claim_adjudication_deductible_copay_caps_and_criteria() -> None:
    c, pk, patient, doc = settlement_setup()
    # a SNOMED diagnosis satisfies the ICD-10 admission criterion through the dictionary
    r = claim(
        c,
        doc,
        patient,
        "c1",
        "enc1",
        [
            {"system": LOCAL, "code": "VISIT", "quantity": 1},
            {"system": LOCAL, "code": "MRI-KNEE", "quantity": 1},
            {"system": LOCAL, "code": "ACUPUNCTURE", "quantity": 1, "unit_price_cents": 5_000},
        ],
        diagnoses=[{"system": SNOMED, "code": "444470001"}],
    )
    assert r.ok
    out = r.data
    visit, mri, acu = out["items"]
    # visit: 8000 submitted, deductible takes all of it (10000 deductible), benefit 0
    assert (
        visit["submitted_cents"],
        visit["deductible_cents"],
        visit["benefit_cents"],
        visit["copay_cents"],
    ) == (8_000, 8_000, 0, 8_000)
    # MRI: 60000 submitted, per-item cap 50000, remaining deductible 2000, 90% of 48000 = 43200
    assert (
        mri["eligible_cents"],
        mri["deductible_cents"],
        mri["benefit_cents"],
        mri["copay_cents"],
    ) == (50_000, 2_000, 43_200, 16_800)
    assert "per-item cap applied" in mri["reasons"] and "deductible applied" in mri["reasons"]
    assert acu["benefit_cents"] == 0 and acu["reasons"] == ["not covered by the product"]
    assert out["outcome"] == "partial" and out["total_benefit_cents"] == 43_200
    assert {e.name for e in r.events} == {"adjudicated"} and r.events[0].attrs["patient"] == patient
    # without a qualifying diagnosis the MRI is not admitted; per-year cap on visits: 20000
    r2 = claim(
        c,
        doc,
        patient,
        "c2",
        "enc2",
        [
            {"system": LOCAL, "code": "MRI-KNEE", "quantity": 1},
            {"system": LOCAL, "code": "VISIT", "quantity": 2},
        ],
        diagnoses=[{"system": SNOMED, "code": "10509002"}],
    )
    mri2, visits = r2.data["items"]
    assert (
        mri2["reasons"] == ["admission criteria not met: no qualifying diagnosis"]
        and mri2["benefit_cents"] == 0
    )
    assert visits["eligible_cents"] == 8_000  # per-item cap 8000 for the line
    assert visits["benefit_cents"] == 6_400  # deductible already met: 80 %
    r3 = claim(
        c,
        doc,
        patient,
        "c3",
        "enc3",
        [
            {"system": LOCAL, "code": "VISIT", "quantity": 1},
            {"system": LOCAL, "code": "VISIT", "quantity": 1},
        ],
    )
    v1, v2 = r3.data["items"]
    assert (
        v1["eligible_cents"] == 4_000 and "per-year cap applied" in v1["reasons"]
    )  # 8000 + 8000 used of 20000
    assert v2["eligible_cents"] == 0 and "per-year cap reached" in v2["reasons"]


def test_claim_errors_duplicates_missing_records_enrolment_and_payment() -> None:
    c, pk, patient, doc = settlement_setup()
    items = [{"system": LOCAL, "code": "VISIT", "quantity": 1}]
    first = claim(c, doc, patient, "c1", "enc1", items)
    assert first.data["outcome"] == "complete"
    dup = claim(c, doc, patient, "c2", "enc1", items)
    assert dup.data["outcome"] == "error" and "duplicate claim" in dup.data["disposition"]
    assert "already exists" in c.fails(doc, "settlement", "submit_claim", {"claim_id": "c1"})
    none = claim(c, doc, patient, "c3", "enc9", items, records=[])
    assert (
        none.data["outcome"] == "error" and "without anchored records" in none.data["disposition"]
    )
    foreign = claim(c, doc, patient, "c4", "enc8", items, records=["does-not-exist"])
    assert foreign.data["outcome"] == "error"
    _, stranger = c.patient()
    c.anchor(doc, "hospital-a", "s-note", stranger)
    not_enrolled = claim(c, doc, stranger, "c5", "s", items, records=["s-note"])
    assert "not enrolled" in not_enrolled.data["disposition"]
    assert "only a care provider" in c.fails(
        c.admins["insurer"], "settlement", "submit_claim", {"claim_id": "c9"}
    )
    # payment: only the insurer, never above the benefit
    benefit = c.q("settlement", "claim", {"claim_id": "c1"}, caller=doc)["total_benefit_cents"]
    assert benefit == 0  # all of it went to the deductible
    c2 = claim(c, doc, patient, "c6", "enc2", [{"system": LOCAL, "code": "VISIT", "quantity": 1}])
    assert c2.data["total_benefit_cents"] == 4_800  # 8000 - 2000 remaining deductible, 80 %
    assert "only an insurer" in c.fails(
        doc, "settlement", "record_payment", {"claim_id": "c6", "amount_cents": 1, "reference": "x"}
    )
    assert "exceeds" in c.fails(
        c.admins["insurer"],
        "settlement",
        "record_payment",
        {"claim_id": "c6", "amount_cents": 4_801, "reference": "x"},
    )
    paid = c.tx(
        c.admins["insurer"],
        "settlement",
        "record_payment",
        {"claim_id": "c6", "amount_cents": 4_800, "reference": "SEPA-1"},
    )
    assert paid.ok and paid.data["status"] == "paid" and paid.events[0].attrs["patient"] == patient
    assert c.q("settlement", "claim", {"claim_id": "c6"}, caller=pk)["status"] == "paid"
    with pytest.raises(Reject):
        c.q("settlement", "claim", {"claim_id": "c6"}, caller=c.admins["hospital-b"])


def test_annual_limit_and_product_ownership() -> None:
    c, pk, patient, doc = settlement_setup()
    assert "only an insurer" in c.fails(
        c.admins["hospital-a"],
        "settlement",
        "register_product",
        {
            "product_id": "p",
            "name": "x",
            "deductible_cents": 0,
            "annual_limit_cents": 0,
            "catalog": [],
        },
    )
    ins = c.admins["insurer"]
    c.ok(
        ins,
        "settlement",
        "register_product",
        {
            "product_id": "basic",
            "name": "Basic care v2",
            "deductible_cents": 0,
            "annual_limit_cents": 5_000,
            "catalog": [
                {
                    "system": LOCAL,
                    "code": "VISIT",
                    "unit_price_cents": 8_000,
                    "coverage_bp": 10_000,
                    "per_item_cap_cents": 8_000,
                    "per_year_cap_cents": 80_000,
                }
            ],
        },
    )
    r = claim(c, doc, patient, "c1", "enc1", [{"system": LOCAL, "code": "VISIT", "quantity": 1}])
    assert (
        r.data["items"][0]["benefit_cents"] == 5_000
        and "annual limit reached" in r.data["items"][0]["reasons"]
    )


def test_claims_and_enrolments_carry_months_never_exact_dates() -> None:
    c, _, patient, doc = settlement_setup()
    ins = c.admins["insurer"]
    exact = {"patient": patient, "product_id": "basic", "start": "2025-01-01", "end": "2026-12"}
    assert "start must be a month YYYY-MM (no day)" in c.fails(ins, "settlement", "enroll", exact)
    r = c.tx(
        doc,
        "settlement",
        "submit_claim",
        {
            "claim_id": "exact",
            "patient": patient,
            "product_id": "basic",
            "encounter_id": "e-x",
            "encounter_date": "2025-12-01",
            "records": ["e-x-note"],
            "diagnoses": [],
            "items": [{"system": LOCAL, "code": "CONSULT", "quantity": 1}],
        },
    )
    assert not r.ok and "encounter_month must be a month" in str(r.data)
    outside = claim(
        c, doc, patient, "late", "e1", [{"system": LOCAL, "code": "CONSULT", "quantity": 1}]
    )
    assert outside.ok
    stored = c.q("settlement", "claim", {"claim_id": "late"}, caller=doc)
    assert stored["encounter_month"] == "2025-12" and "encounter_day" not in stored
