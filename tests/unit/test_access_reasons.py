"""Every access decision reason, with several consents present, on the real
chaincode over an in-memory ledger: the reason logged is the true one — the
requester's own standing first, then the closest consent's most specific
failing condition (see consent.closest). Reason strings are part of the
interface and are spelled out here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from medchain.contracts.sdk import Reject
from medchain.storage.crypto import Signer
from tests.chain import Chain
from tests.helpers import org_consent

WIDE = {"from": "2000-01-01", "to": "2099-12-31"}
OLD = {"from": "2000-01-01", "to": "2000-12-31"}
SNOMED = "http://snomed.info/sct"
RECORD = "cond"  # a Condition at hospital-a, dated 2025-12-15 (block time starts 2026-01-01);
# the chain knows its year only, its custodian the day

# consent specs: grant overrides plus flags (expire, revoke, advance_days: let
# block time pass first); grantee "@doc" is the requesting practitioner,
# "@colleague" another practitioner of hospital-b
FLAGS = ("expire", "revoke", "advance_days")
OWN: dict[str, Any] = {}
REVOKED = {"revoke": True}
EXPIRED = {"expire": True}
OUT_OF_PERIOD = {"period": OLD}
COLLEAGUE = {"grantee_kind": "practitioner", "grantee": "@colleague", "categories": ["*"]}
INSURER = {"grantee": "insurer"}


@dataclass
class World:
    c: Chain
    patient_key: Signer
    patient: str
    people: dict[str, Signer]
    ids: dict[str, str]


def world() -> World:
    c = Chain()
    pk, patient = c.patient()
    doc_a, _ = c.practitioner("hospital-a")
    doc, doc_id = c.practitioner("hospital-b")
    colleague, colleague_id = c.practitioner("hospital-b")
    suspended, suspended_id = c.practitioner("hospital-b")
    revoked, _ = c.practitioner("hospital-b")
    c.anchor(doc_a, "hospital-a", RECORD, patient, category="Condition", date="2025-12-15")
    c.anchor(doc_a, "hospital-a", "other", patient, category="Condition", date="2025-12-15")
    stranger, _ = c.patient()
    people = {
        "doc": doc,
        "doc_a": doc_a,
        "colleague": colleague,
        "suspended": suspended,
        "revoked": revoked,
        "stranger": stranger,
        "b_admin": c.admins["hospital-b"],
    }
    ids = {"@doc": doc_id, "@colleague": colleague_id, "suspended": suspended_id}
    return World(c, pk, patient, people, ids)


def give(w: World, specs: list[dict[str, Any]]) -> list[str]:
    """Grant each consent, then let the ones marked expire lapse and revoke the marked."""
    c, out = w.c, []
    c.advance(days=max([s.get("advance_days", 0) for s in specs], default=0))
    for spec in specs:
        args = org_consent(period=WIDE)
        args.update({k: v for k, v in spec.items() if k not in FLAGS})
        args["grantee"] = w.ids.get(args["grantee"], args["grantee"])
        if spec.get("expire"):
            del args["days"]
            args["expires_ms"] = c.now + 3000
        out.append(c.ok(w.patient_key, "consent", "grant", args)["consent_id"])
    c.advance(ms=10_000)
    for spec, cid in zip(specs, out, strict=True):
        if spec.get("revoke"):
            c.ok(w.patient_key, "consent", "revoke", {"consent_id": cid})
    return out


def referral_for_other(w: World) -> None:
    """A referral to hospital-b opening exactly the record "other"."""
    c = w.c
    ref = c.ok(
        w.people["doc_a"],
        "referral",
        "issue",
        {
            "patient": w.patient,
            "target": "hospital-b",
            "records": ["other"],
            "valid_days": 14,
            "reason": {"system": SNOMED, "code": "44054006"},
        },
    )["referral_id"]
    c.ok(w.patient_key, "referral", "agree", {"referral_id": ref})
    c.ok(w.people["doc"], "referral", "accept", {"referral_id": ref})


def request(w: World, who: str, purpose: str = "treatment", **kw: Any) -> dict[str, Any]:
    """Ask through access.request (logged) and return the decision; the log entry agrees."""
    c = w.c
    res: dict[str, Any] = c.ok(
        w.people[who], "access", "request", {"record_id": RECORD, "purpose": purpose, **kw}
    )
    last = c.q("access", "by_patient", {"patient": w.patient}, caller=w.patient_key)[-1]
    assert (last["kind"], last["tx_id"][:12].hex(), last["reason"], last["decision"]) == (
        "decision",
        res["access_id"][:24],
        res["reason"],
        res["decision"],
    )
    return res


CASES: list[tuple[str, list[dict[str, Any]], str, str, str]] = [
    # (case, consents, requester, purpose, reason)
    ("revoked", [REVOKED, COLLEAGUE], "doc", "treatment", "the consent was revoked"),
    ("expired", [EXPIRED, COLLEAGUE], "doc", "treatment", "the consent expired"),
    (
        "out of period",
        [OUT_OF_PERIOD, COLLEAGUE],
        "doc",
        "treatment",
        "the record is outside the consent's data period",
    ),
    (
        "sliding window",
        [{"period": {"last_days": 5}, "advance_days": 40}, INSURER],
        "doc",
        "treatment",
        "the record is older than the consent's window of 5 days",
    ),
    (
        "other grantee",
        [COLLEAGUE, INSURER],
        "doc",
        "treatment",
        "the consent is for another grantee",
    ),
    (
        "other grantee: practitioner grants never name an admin",
        [COLLEAGUE, INSURER],
        "b_admin",
        "treatment",
        "the consent is for another grantee",
    ),
    ("purpose", [OWN, COLLEAGUE], "doc", "research", "the consent is for treatment, not research"),
    (
        "category",
        [{"categories": ["Procedure"]}, COLLEAGUE],
        "doc",
        "treatment",
        "the consent does not cover Condition records",
    ),
    (
        "no consent at all",
        [],
        "doc",
        "treatment",
        "the patient has not consented to this requester",
    ),
    ("key revoked", [OWN, COLLEAGUE], "revoked", "treatment", "the requester's key is revoked"),
    ("suspended", [OWN, COLLEAGUE], "suspended", "treatment", "the practitioner is suspended"),
    (
        "another patient",
        [OWN, COLLEAGUE],
        "stranger",
        "treatment",
        "the requester is not an active practitioner or admin",
    ),
    # closest: fewest failing conditions, then the most specific one
    (
        "one miss each: revoked ranks highest",
        [OUT_OF_PERIOD, EXPIRED, REVOKED, COLLEAGUE],
        "doc",
        "treatment",
        "the consent was revoked",
    ),
    (
        "one miss each: expired over period",
        [OUT_OF_PERIOD, EXPIRED, COLLEAGUE],
        "doc",
        "treatment",
        "the consent expired",
    ),
    (
        "fewest misses wins",
        [{"period": OLD, "revoke": True}, {"categories": ["Procedure"]}],
        "doc",
        "treatment",
        "the consent does not cover Condition records",
    ),
    (
        "purpose over scope",
        [{"categories": ["Procedure"]}, {"purpose": "payment"}],
        "doc",
        "treatment",
        "the consent is for payment, not treatment",
    ),
    (
        "a consent of one's own before another grantee's",
        [{"purpose": "payment", "period": OLD}, COLLEAGUE],
        "doc",
        "treatment",
        "the record is outside the consent's data period",
    ),
    (
        "revoked and expired: revoked",
        [{"expire": True, "revoke": True}, COLLEAGUE],
        "doc",
        "treatment",
        "the consent was revoked",
    ),
    (
        "practitioner grant and org grant",
        [{"grantee_kind": "practitioner", "grantee": "@doc", "revoke": True}, EXPIRED],
        "doc",
        "treatment",
        "the consent was revoked",
    ),
]


@pytest.mark.parametrize(
    ("consents", "requester", "purpose", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_every_deny_reason_with_several_consents(
    consents: list[dict[str, Any]], requester: str, purpose: str, reason: str
) -> None:
    w = world()
    c = w.c
    if requester == "revoked":
        c.ok(
            c.admins["hospital-b"],
            "registry",
            "revoke_key",
            {"key": w.people["revoked"].public_key},
        )
    if requester == "suspended":
        c.ok(
            c.admins["hospital-b"],
            "registry",
            "suspend_practitioner",
            {"practitioner": w.ids["suspended"]},
        )
    give(w, consents)
    got = request(w, requester, purpose)
    assert (got["decision"], got["reason"], got["consent_id"]) == ("deny", reason, None)
    # the query gives the same verdict
    check = c.q(
        "consent",
        "check",
        {"record_id": RECORD, "purpose": purpose, "requester": w.people[requester].public_key},
    )
    assert check == {"decision": "deny", "reason": reason, "consent_id": None}


def test_record_list_of_a_referral() -> None:
    w = world()
    give(w, [COLLEAGUE])
    referral_for_other(w)
    assert request(w, "doc")["reason"] == "the record is not among those the consent names"


def test_wrong_custodian_is_logged_with_its_reason() -> None:
    w = world()
    give(w, [OWN, COLLEAGUE])
    got = request(w, "doc", custodian="hospital-b")
    assert (got["decision"], got["reason"]) == (
        "deny",
        "the record is held by hospital-a, not by hospital-b",
    )
    assert request(w, "doc", custodian="hospital-a")["decision"] == "permit"
    nowhere = request(w, "doc", custodian="nowhere")
    assert nowhere["reason"] == "the request is addressed to no organization of this consortium"


def test_a_malformed_request_naming_a_patients_records_is_still_logged() -> None:
    """The tester's unlogged attempts: a bad purpose, a record named twice, a real
    record beside a bogus id, a node key asking — each is a logged denial of the real
    records (nothing is released); only a key nobody registered is not attributable."""
    w = world()
    c = w.c
    log = lambda: c.q("access", "by_patient", {"patient": w.patient}, caller=w.patient_key)  # noqa: E731
    before = len(log())
    bad = c.ok(w.people["doc"], "access", "request_many", {"records": [RECORD], "purpose": "x"})
    assert bad[0]["decision"] == "deny" and "purpose must be one of" in bad[0]["reason"]
    twice = c.ok(
        w.people["suspended"],
        "access",
        "request_many",
        {"records": [RECORD, RECORD, "no-such", 7], "purpose": "treatment"},
    )
    assert [d["record_id"] for d in twice] == [RECORD, "no-such", "7"]
    assert [d["access_id"] is None for d in twice] == [False, True, True]
    node = c.ok(c.node_keys[1], "access", "request", {"record_id": RECORD, "purpose": "treatment"})
    assert node["reason"] == "only practitioners, organization admins and patients request records"
    entries = log()[before:]
    assert [(e["purpose"], e["decision"]) for e in entries] == [
        ("invalid", "deny"),
        ("treatment", "deny"),
        ("treatment", "deny"),
    ]
    nobody = Signer.generate()
    assert "only practitioners" in c.fails(
        nobody, "access", "request", {"record_id": RECORD, "purpose": "treatment"}
    )


def test_permits_name_the_permitting_consent() -> None:
    w = world()
    ids = give(w, [REVOKED, OWN, COLLEAGUE])
    got = request(w, "doc")
    assert (got["decision"], got["reason"], got["consent_id"]) == ("permit", "consented", ids[1])
    assert request(w, "doc_a")["reason"] == "the requester's organization is the custodian"
    own = w.c.ok(w.patient_key, "access", "request", {"record_id": RECORD, "purpose": "research"})
    assert own["reason"] == "the patient's own record"


def test_the_custodian_judges_data_periods_by_the_exact_date() -> None:
    """On chain a record's year overlapping the period passes; the custodian, who
    holds the exact date, passes it to the check at release."""
    w = world()
    c = w.c
    give(w, [{"period": {"from": "2025-01-01", "to": "2025-06-30"}}, COLLEAGUE])
    args = {"record_id": RECORD, "purpose": "treatment", "requester": w.people["doc"].public_key}
    assert c.q("consent", "check", args)["decision"] == "permit"
    exact = c.q("consent", "check", {**args, "clinical_date": "2025-12-15"})
    assert exact == {
        "decision": "deny",
        "reason": "the record is outside the consent's data period",
        "consent_id": None,
    }
    assert c.q("consent", "check", {**args, "clinical_date": "2025-03-01"})["decision"] == "permit"
    with pytest.raises(Reject, match="is not an ISO date"):
        c.q("consent", "check", {**args, "clinical_date": "soon"})


def test_a_release_recheck_names_the_failure_of_the_consent_the_decision_used() -> None:
    """The tester's case: permitted on chain under an org consent whose data period ends
    before the record's exact date (the chain judges by year); another consent, the
    doctor's own, is revoked. At release the refusal is the first consent's data
    period, not the other's revocation."""
    w = world()
    under, _, _ = give(
        w,
        [
            {"period": {"from": "2025-01-01", "to": "2025-09-30"}},
            {"categories": ["*"], "purpose": "research"},
            {
                "grantee_kind": "practitioner",
                "grantee": "@doc",
                "categories": ["*"],
                "revoke": True,
            },
        ],
    )
    decided = request(w, "doc")
    assert (decided["decision"], decided["consent_id"]) == ("permit", under)
    args = {
        "record_id": RECORD,
        "purpose": "treatment",
        "requester": w.people["doc"].public_key,
        "clinical_date": "2025-12-15",
    }
    closest_now = w.c.q("consent", "check", args)
    assert closest_now["decision"] == "deny"
    recheck = w.c.q("consent", "check", dict(args, granted_under=under))
    assert recheck == {
        "decision": "deny",
        "reason": "the record is outside the consent's data period",
        "consent_id": under,
    }


def test_a_release_recheck_holds_only_under_the_decisions_own_consent() -> None:
    """The retester's case: logged as permitted under consent X, released because
    another consent Y covered the exact date. Now X must hold; Y needs a new request."""
    w = world()
    x, y = give(
        w,
        [
            {"period": {"from": "2025-01-01", "to": "2025-10-10"}},
            {"categories": ["*"], "period": {"from": "2025-10-11", "to": "2025-12-31"}},
        ],
    )
    decided = request(w, "doc")
    assert (decided["decision"], decided["consent_id"]) == ("permit", x)
    args = {
        "record_id": RECORD,
        "purpose": "treatment",
        "requester": w.people["doc"].public_key,
        "clinical_date": "2025-12-15",
        "granted_under": x,
    }
    assert w.c.q("consent", "check", args) == {
        "decision": "deny",
        "reason": "the record is outside the consent's data period",
        "consent_id": x,
    }
    assert w.c.q("consent", "check", dict(args, granted_under=y))["decision"] == "permit"


def test_the_access_log_returns_the_newest_entries_and_pages_back() -> None:
    """The retester flooded a log past its 5000-entry page: the page held the oldest,
    hiding the newest access. Pages are now the newest in [since_ms, before_ms)."""
    w = world()
    give(w, [OWN])
    times = []
    for _ in range(3):
        w.c.advance(ms=5000)
        request(w, "doc")
        times.append(w.c.now)
    log = w.c.q("access", "by_patient", {"patient": w.patient}, caller=w.patient_key)
    assert [e["timestamp_ms"] for e in log] == times
    older = w.c.q(
        "access", "by_patient", {"patient": w.patient, "before_ms": times[2]}, caller=w.patient_key
    )
    assert [e["timestamp_ms"] for e in older] == times[:2]
    newer = w.c.q(
        "access", "by_patient", {"patient": w.patient, "since_ms": times[1]}, caller=w.patient_key
    )
    assert [e["timestamp_ms"] for e in newer] == times[1:]
