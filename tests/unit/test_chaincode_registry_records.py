"""registry and records: identities, credentials, keys, the notary."""

from __future__ import annotations

from medchain.contracts.sdk import pseudonym_of
from tests.chain import Chain


def test_patients_register_under_a_pseudonym_only() -> None:
    c = Chain()
    k, pseudonym = c.patient()
    assert pseudonym == pseudonym_of(k.public_key, "patient") and len(pseudonym) == 32
    assert c.q("registry", "patient", {"patient": pseudonym}) == {
        "pseudonym": pseudonym,
        "status": "active",
        "registered": c.now,
    }
    assert "already registered" in c.fails(k, "registry", "register_patient")
    who = c.q("registry", "whoami", caller=k)
    assert who["kind"] == "patient" and who["id"] == pseudonym
    # nothing but the pseudonym, a status, a time and keys in the registry entry
    raw = c.ledger.state_get(b"registry\x00pat/" + pseudonym.encode())
    assert raw is not None and b"name" not in raw and b"birth" not in raw


def test_practitioners_registered_by_their_admin_and_suspendable() -> None:
    c = Chain()
    patient, pid = c.patient()
    assert "only an organization's admin" in c.fails(
        patient,
        "registry",
        "register_practitioner",
        {"key": b"k" * 32, "license": "L1", "department": "ER", "role": "physician"},
    )
    doc, doc_id = c.practitioner("hospital-a")
    rec = c.q("registry", "practitioner", {"practitioner": doc_id})
    assert (rec["org"], rec["role"], rec["status"]) == ("hospital-a", "physician", "active")
    assert "already in use" in c.fails(
        c.admins["hospital-b"],
        "registry",
        "register_practitioner",
        {"key": doc.public_key, "license": "L2", "department": "ER", "role": "nurse"},
    )
    lic = rec["license"]
    assert "already registered" in c.fails(
        c.admins["hospital-a"],
        "registry",
        "register_practitioner",
        {"key": b"n" * 32, "license": lic, "department": "ER", "role": "nurse"},
    )
    assert "physician" in str(c.q("registry", "practitioners", {"org": "hospital-a"}))
    # another organization's admin cannot suspend; the own admin can, and the key stops working
    assert "only the practitioner's organization" in c.fails(
        c.admins["hospital-b"], "registry", "suspend_practitioner", {"practitioner": doc_id}
    )
    c.ok(c.admins["hospital-a"], "registry", "suspend_practitioner", {"practitioner": doc_id})
    why = c.fails(doc, "records", "anchor", c.anchor_args(doc, "hospital-a", "r1", pid))
    assert "suspended" in why
    c.ok(c.admins["hospital-a"], "registry", "reinstate_practitioner", {"practitioner": doc_id})
    c.anchor(doc, "hospital-a", "r1", pid)
    # a regulator may suspend too
    c.ok(c.admins["regulator"], "registry", "suspend_practitioner", {"practitioner": doc_id})
    assert c.q("registry", "practitioner", {"practitioner": doc_id})["status"] == "suspended"


def test_key_rotation_and_revocation() -> None:
    c = Chain()
    pk, pseudonym = c.patient()
    new = c.key()
    bad = dict(c.rotation(pk, new), proof=new.sign(b"something else"))
    assert "proof of possession" in c.fails(pk, "registry", "rotate_key", bad)
    c.ok(pk, "registry", "rotate_key", c.rotation(pk, new))
    assert "revoked" in c.fails(pk, "consent", "grant", {})  # the old key is dead
    assert c.q("registry", "whoami", caller=new)["id"] == pseudonym  # same pseudonym, new key
    # an org admin rotates its own (genesis) key
    admin2 = c.key()
    c.ok(c.admins["insurer"], "registry", "rotate_key", c.rotation(c.admins["insurer"], admin2))
    assert c.q("registry", "whoami", caller=admin2)["kind"] == "org-admin"
    assert "revoked" in c.fails(c.admins["insurer"], "lifecycle", "approve", {"id": "x"})
    # admin revokes a practitioner's key, then gives a new one
    doc, doc_id = c.practitioner("hospital-a")
    assert "revoked by its owner" in c.fails(
        c.admins["hospital-b"], "registry", "revoke_key", {"key": doc.public_key}
    )
    c.ok(c.admins["hospital-a"], "registry", "revoke_key", {"key": doc.public_key})
    assert "revoked" in c.fails(doc, "records", "anchor", {})
    doc2 = c.key()
    c.ok(
        c.admins["hospital-a"],
        "registry",
        "add_practitioner_key",
        {"practitioner": doc_id, "key": doc2.public_key},
    )
    c.anchor(doc2, "hospital-a", "rec-x", pseudonym)
    # a patient can revoke its own key (lost device)
    c.ok(new, "registry", "revoke_key", {"key": new.public_key})
    assert c.q("registry", "identity", {"key": new.public_key})["status"] == "revoked"


def test_anchor_rules() -> None:
    c = Chain()
    pk, patient = c.patient()
    doc, _ = c.practitioner("hospital-a")
    nurse_b, _ = c.practitioner("hospital-b", role="nurse")
    # only the custodian's practitioners (or admin) anchor; patients and insurers do not
    assert "only practitioners or admins" in c.fails(
        pk, "records", "anchor", c.anchor_args(doc, "hospital-a", "r1", patient)
    )
    assert "only care providers" in c.fails(
        c.admins["insurer"], "records", "anchor", c.anchor_args(doc, "insurer", "r1", patient)
    )
    # the author must belong to the custodian, sign correctly, and the patient must be registered
    assert "not an active practitioner of hospital-b" in c.fails(
        nurse_b, "records", "anchor", c.anchor_args(doc, "hospital-b", "r1", patient)
    )
    forged = dict(c.anchor_args(doc, "hospital-a", "r1", patient), author_sig=doc.sign(b"other"))
    assert "signature" in c.fails(doc, "records", "anchor", forged)
    assert "not registered" in c.fails(
        doc, "records", "anchor", c.anchor_args(doc, "hospital-a", "r1", "f" * 32)
    )
    c.anchor(doc, "hospital-a", "r1", patient, date="2025-11-02")
    assert "already anchored" in c.fails(
        doc, "records", "anchor", c.anchor_args(doc, "hospital-a", "r1", patient)
    )
    rec = c.q("records", "get", {"record_id": "r1"})
    assert (rec["custodian"], rec["version"], rec["clinical_year"], rec["patient"]) == (
        "hospital-a",
        1,
        2025,
        patient,
    )
    assert rec["author"] == doc.public_key and len(rec["content_hash"]) == 32


def test_an_anchor_carries_no_exact_date_nor_any_other_extra_field() -> None:
    c = Chain()
    _, patient = c.patient()
    doc, _ = c.practitioner("hospital-a")
    with_date = dict(c.anchor_args(doc, "hospital-a", "r1", patient), clinical_date="2025-11-02")
    assert "not clinical_date (exact dates stay with the custodian)" in c.fails(
        doc, "records", "anchor", with_date
    )
    bulk = {"anchors": [dict(c.anchor_args(doc, "hospital-a", "r2", patient), birth="x")]}
    assert "not birth" in c.fails(doc, "records", "anchor_bulk", bulk)
    year_as_text = dict(c.anchor_args(doc, "hospital-a", "r3", patient), clinical_year="2025")
    assert "clinical_year must be an integer" in c.fails(doc, "records", "anchor", year_as_text)


def test_every_anchor_emits_one_event_carrying_exactly_the_anchor() -> None:
    c = Chain()
    _, p1 = c.patient()
    _, p2 = c.patient()
    imp, _ = c.practitioner("hospital-a", role="system")
    items = [c.anchor_args(imp, "hospital-a", f"b{i}", (p1, p2)[i % 2]) for i in range(3)]
    res = c.tx(imp, "records", "anchor_bulk", {"anchors": items})
    assert res.ok
    assert [e.name for e in res.events] == ["anchored"] * 3
    for e, rid in zip(res.events, ("b0", "b1", "b2"), strict=True):
        stored = c.q("records", "get", {"record_id": rid})
        assert e.contract == "records" and e.attrs["record_id"] == rid
        assert all(e.attrs[k] == stored[k] for k in e.attrs)
        assert "clinical_date" not in e.attrs and e.attrs["clinical_year"] == 2025
    again = c.tx(imp, "records", "anchor_bulk", {"anchors": items})
    assert again.ok and again.events == ()  # nothing anchored: nothing to prove


def test_amendments_keep_history_and_only_the_custodian_amends() -> None:
    c = Chain()
    _, patient = c.patient()
    doc, _ = c.practitioner("hospital-a")
    other, _ = c.practitioner("hospital-b")
    c.anchor(doc, "hospital-a", "r1", patient, content=b"v1")
    amend_other = dict(
        c.anchor_args(other, "hospital-b", "r1", patient, content=b"evil", version=2), supersedes=1
    )
    assert "only the custodian (hospital-a) may amend" in c.fails(
        other, "records", "amend", amend_other
    )
    stale = dict(
        c.anchor_args(doc, "hospital-a", "r1", patient, content=b"v2", version=2), supersedes=2
    )
    assert "at version 1" in c.fails(doc, "records", "amend", stale)
    good = dict(
        c.anchor_args(doc, "hospital-a", "r1", patient, content=b"v2", version=2), supersedes=1
    )
    assert c.ok(doc, "records", "amend", good) == {"record_id": "r1", "version": 2}
    hist = c.q("records", "history", {"record_id": "r1"})
    assert [(h["version"], h["supersedes"]) for h in hist] == [(1, 0), (2, 1)]
    assert hist[0]["content_hash"] != hist[1]["content_hash"]  # version 1 is untouched
    assert c.q("records", "get", {"record_id": "r1"})["version"] == 2
    assert c.q("records", "get", {"record_id": "r1", "version": 1})["version"] == 1


def test_bulk_anchoring_is_idempotent_and_timeline_is_in_date_order() -> None:
    c = Chain()
    _, p1 = c.patient()
    _, p2 = c.patient()
    doc, _ = c.practitioner("hospital-a", role="system")
    docb, _ = c.practitioner("hospital-b")
    items = [
        c.anchor_args(doc, "hospital-a", f"a{i}", p1 if i % 2 else p2, date=f"2025-0{9 - i}-01")
        for i in range(6)
    ]
    res = c.ok(doc, "records", "anchor_bulk", {"anchors": items})
    assert res["anchored"] == 6
    again = c.ok(doc, "records", "anchor_bulk", {"anchors": items})
    assert again["anchored"] == 0 and {r["status"] for r in again["results"]} == {"exists"}
    c.anchor(docb, "hospital-b", "b1", p1, date="2025-05-15")
    timeline = c.q("records", "by_patient", {"patient": p1})
    assert [r["clinical_year"] for r in timeline] == sorted(r["clinical_year"] for r in timeline)
    assert {r["custodian"] for r in timeline} == {"hospital-a", "hospital-b"}
    assert len(timeline) == 4


def test_a_category_is_a_resource_type_not_free_text() -> None:
    c = Chain()
    _, patient = c.patient()
    doc, _ = c.practitioner("hospital-a")
    for bad in ("John Smith 555-810-7203", "condition", "Cond1tion", "Ünicode"):
        args = c.anchor_args(doc, "hospital-a", "r", patient, category=bad)
        assert "FHIR resource type" in c.fails(doc, "records", "anchor", args)
    c.anchor(doc, "hospital-a", "r", patient, category="MedicationRequest")
