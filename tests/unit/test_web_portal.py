"""The patient portal's words and pages (node/web/portal_view.py and the portal
routes, on an in-memory chain with the real chaincode): a consent's period,
categories, purpose, grantee and true state; the access log naming who asked,
page by page without repeating or skipping an entry, and never another
patient's pseudonym."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from medchain.node.consensus.driver import Driver, DriverConfig
from medchain.node.net.transport import MemoryHub
from medchain.node.web.app import History, build_app
from medchain.node.web.limits import WebLimits
from medchain.node.web.portal import Sessions
from medchain.node.web.portal_view import (
    Registry,
    access_page,
    category_text,
    consent_state,
    cursor_of,
    parse_cursor,
    period_text,
    position,
)
from medchain.node.web.protocol import HttpError, Request, Router
from medchain.storage.crypto import Signer
from tests.chain import Chain


class Portal:
    """The web app over a Chain, and one patient's session."""

    def __init__(self, c: Chain, patient: Signer, pseudonym: str) -> None:
        d = Driver(
            c.genesis,
            c.ledger,
            c.executor,
            c.node_keys[0],
            MemoryHub().transport(0),
            DriverConfig(offload=False),
        )
        limits = WebLimits(access_page_default=4, access_page_max=6)
        self.sessions = Sessions(c.genesis.chain_id, "hospital-a", lambda: 1000.0, limits)
        self.app: Router = build_app(d, self.sessions, History(d), None, limits, lambda: c.now)
        self.token = self.sessions.open(patient.public_key, pseudonym)

    def get(self, path: str, token: str | None = "", **query: str) -> tuple[int, Any]:
        headers = {}
        if token is not None:
            headers["authorization"] = f"Bearer {token or self.token}"

        async def one() -> tuple[int, Any]:
            try:
                resp = await self.app(Request("GET", path, dict(query), headers))
            except HttpError as exc:
                return exc.status, {"error": exc.message}
            return resp.status, json.loads(resp.body)

        return trio.run(one)


def referral(c: Chain, doc: Signer, patient: Signer, pseudonym: str, records: list[str]) -> str:
    admin_b = c.admins["hospital-b"]
    issued = {"patient": pseudonym, "target": "hospital-b", "records": records, "valid_days": 10}
    rid = str(c.ok(doc, "referral", "issue", issued)["referral_id"])
    c.ok(patient, "referral", "agree", {"referral_id": rid})
    c.ok(admin_b, "referral", "accept", {"referral_id": rid})
    return rid


def test_consents_in_words_and_in_their_true_state() -> None:
    c = Chain()
    patient, me = c.patient()
    doc_a, _ = c.practitioner("hospital-a")
    _, doc_b = c.practitioner("hospital-b", role="nurse", department="oncology")
    for rid in ("r-1", "r-2"):
        c.anchor(doc_a, "hospital-a", rid, me)

    def grant(**kw: Any) -> str:
        args = {
            "grantee_kind": "org",
            "grantee": "hospital-b",
            "categories": ["Condition"],
            "purpose": "treatment",
            "days": 30,
            **kw,
        }
        return str(c.ok(patient, "consent", "grant", args)["consent_id"])

    ranged = grant(period={"from": "2024-01-01", "to": "2026-12-31"})
    to_nurse = grant(
        grantee_kind="practitioner",
        grantee=doc_b,
        categories=["FamilyMemberHistory", "Observation"],
        purpose="research",
        period={"last_days": 730},
    )
    anything = grant(categories=["*"], period={}, purpose="payment", grantee="insurer")
    short = grant(days=1, period={"to": "2025-12-31"})
    revoked = grant(period={"from": "2025-01-01"})
    c.ok(patient, "consent", "revoke", {"consent_id": revoked})
    completed = referral(c, doc_a, patient, me, ["r-1"])
    c.ok(c.admins["hospital-b"], "referral", "complete", {"referral_id": completed})
    cancelled = referral(c, doc_a, patient, me, ["r-1", "r-2"])
    c.ok(patient, "referral", "cancel", {"referral_id": cancelled})
    # the patient revokes a referral's permission while the referral is still open
    withdrawn = referral(c, doc_a, patient, me, ["r-2"])
    c.ok(patient, "consent", "revoke", {"consent_id": "ref-" + withdrawn})
    c.advance(days=2)  # past ``short``'s expiry

    status, body = Portal(c, patient, me).get("/api/portal/me")
    assert status == 200
    got = {x["id"]: x for x in body["consents"]}
    assert (
        got[ranged]["scope_text"] == "conditions and diagnoses, dated 2024-01-01 \u2013 2026-12-31"
    )
    assert got[ranged]["purpose_text"] == "your care and treatment"
    assert got[ranged]["grantee_text"] == "Hospital B"
    assert got[to_nurse]["scope_text"] == (
        "family member history records, measurements and test results, dated the last 730 days"
    )
    assert got[to_nurse]["purpose_text"] == "medical research"
    party = got[to_nurse]["grantee_party"]
    assert party["license"].startswith("LIC-") and party["org_name"] == "Hospital B"
    assert got[to_nurse]["grantee_text"] == f"{party['license']} (nurse, oncology) at Hospital B"
    assert doc_b not in json.dumps({k: v for k, v in got[to_nurse].items() if k != "grantee"})
    assert got[anything]["scope_text"] == "all your records"
    assert got[anything]["grantee_text"] == "Insurer"
    assert got[short]["scope_text"].endswith("dated up to 2025-12-31")
    assert got[revoked]["scope_text"].endswith("dated from 2025-01-01")
    states = {cid: got[cid]["state"] for cid in got}
    assert states == {
        ranged: "active",
        to_nurse: "active",
        anything: "active",
        short: "expired",
        revoked: "revoked",
        "ref-" + completed: "completed",
        "ref-" + cancelled: "cancelled",
        "ref-" + withdrawn: "revoked",
    }
    ref = got["ref-" + cancelled]
    assert ref["scope_text"] == "2 records named by the referral"
    assert ref["referral"]["text"] == "referral from Hospital A to Hospital B, cancelled"
    assert "referral" not in got[ranged]
    # what a grant form offers
    opts = body["grant_options"]
    assert [o["id"] for o in opts["organizations"]] == [o for o, _ in c.orgs]
    assert {"value": "Condition", "text": "conditions and diagnoses"} in opts["categories"]
    assert [p["value"] for p in opts["purposes"]] == ["treatment", "payment", "research"]


def test_the_access_log_pages_name_who_asked_and_never_another_patient() -> None:
    c = Chain()
    patient, me = c.patient()
    other, other_id = c.patient()
    doc_a, _ = c.practitioner("hospital-a")
    doc_b, _ = c.practitioner("hospital-b", department="oncology")
    records = [f"r-{i}" for i in range(3)]
    for rid in records:
        c.anchor(doc_a, "hospital-a", rid, me)
    args = {"grantee_kind": "org", "grantee": "hospital-b", "categories": ["*"]}
    consent = c.ok(
        patient, "consent", "grant", {**args, "purpose": "treatment", "period": {}, "days": 9}
    )["consent_id"]
    # three blocks of three entries at one time each: page boundaries fall inside them
    for _ in range(3):
        c.ok(doc_b, "access", "request_many", {"records": records, "purpose": "treatment"})
    c.ok(doc_b, "access", "request", {"record_id": "r-0", "purpose": "research"})
    c.ok(other, "access", "request", {"record_id": "r-0", "purpose": "treatment"})
    c.ok(c.admins["hospital-b"], "access", "request", {"record_id": "r-1", "purpose": "treatment"})
    c.ok(patient, "access", "request", {"record_id": "r-2", "purpose": "treatment"})
    portal = Portal(c, patient, me)

    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    sizes = []
    while True:
        query = {"limit": "4"} if cursor is None else {"limit": "4", "before": cursor}
        status, body = portal.get("/api/portal/accesses", **query)
        assert status == 200, body
        sizes.append(len(body["accesses"]))
        seen += body["accesses"]
        cursor = body["next"]
        if cursor is None:
            break
    assert sizes == [4, 4, 4, 1]
    ids = [e["access_id"] for e in seen]
    assert len(set(ids)) == len(ids) == 13, "a page repeats or skips an entry"
    assert [position(e) for e in seen] == sorted((position(e) for e in seen), reverse=True)
    by = [e["requester_text"] for e in seen[:4]]
    lic = seen[-1]["requester_party"]["license"]
    assert by == [
        "you",
        "the administrator of Hospital B",
        "another patient",
        f"{lic} (physician, oncology) at Hospital B",
    ]
    assert other_id not in json.dumps(seen), "another patient's pseudonym reached the page"
    mine, _admin, stranger, research = seen[:4]
    assert (mine["decision_text"], mine["reason_text"]) == ("permitted", "the patient's own record")
    assert stranger["decision_text"] == "denied"
    assert stranger["reason_text"] == "the requester is not an active practitioner or admin"
    assert research["reason_text"] == "the consent is for treatment, not research"
    permitted = seen[-1]
    assert (permitted["decision_text"], permitted["reason_text"]) == ("permitted", "consented")
    assert permitted["consent_id"] == consent
    assert permitted["consent_text"] == "your consent to Hospital B"
    assert permitted["custodian_name"] == "Hospital A"
    # the page size is bounded; a cursor is one the server made
    status, body = portal.get("/api/portal/accesses", limit="1000")
    assert status == 200 and len(body["accesses"]) == 6 and body["limit"] == 6
    status, body = portal.get("/api/portal/accesses")
    assert len(body["accesses"]) == 4  # the default
    for bad in ("x", "1.2.3", "12." + "g" * 64 + ".r-1", ""):
        status, body = portal.get("/api/portal/accesses", before=bad)
        assert status == 400 and "cursor" in body["error"], bad
    # only the patient's own session reads it
    assert portal.get("/api/portal/accesses", token=None)[0] == 401
    other_token = portal.sessions.open(other.public_key, other_id)
    status, body = portal.get("/api/portal/accesses", token=other_token)
    assert status == 200 and body["accesses"] == [] and body["next"] is None


@pytest.mark.parametrize(
    ("period", "text"),
    [
        ({"last_days": 30}, "the last 30 days"),
        ({"from_day": 19723, "to_day": 20818}, "2024-01-01 \u2013 2026-12-31"),
        ({"from_day": -25567, "to_day": 2_932_896}, "any date"),
        ({"from_day": 0, "to_day": 3_000_000}, "from 1970-01-01"),
        ({"from_day": -30000, "to_day": 19723}, "up to 2024-01-01"),
        ({}, "any date"),
        (None, "any date"),
        ({"from_day": "x"}, "any date"),
    ],
)
def test_periods_in_words(period: Any, text: str) -> None:
    assert period_text(period) == text


def test_categories_in_words() -> None:
    assert category_text("Immunization") == "vaccinations"
    assert category_text("*") == "all your records"
    assert category_text("RiskAssessment") == "risk assessment records"


def test_a_consent_closed_after_it_ran_out_is_expired_and_one_a_referral_closed_is_its_state() -> (
    None
):
    c = {"status": "revoked", "expires_ms": 100, "revoked_ms": 150}
    assert consent_state(c, None, 50) == "expired"
    assert consent_state({**c, "revoked_ms": 90}, None, 200) == "revoked"
    ref = {
        "history": [
            {"status": "accepted", "timestamp_ms": 10},
            {"status": "completed", "timestamp_ms": 90},
        ]
    }
    assert consent_state({**c, "revoked_ms": 90}, ref, 200) == "completed"
    assert consent_state({"status": "active", "expires_ms": 100}, None, 100) == "expired"
    assert consent_state({"status": "active", "expires_ms": 101}, None, 100) == "active"


def test_an_unknown_practitioner_is_a_short_id_and_cursors_round_trip() -> None:
    reg = Registry({"hospital-b": "Hospital B"}, lambda pid: None)
    party = reg.practitioner_party("abcdef0123456789", "hospital-b")
    assert party["text"] == "practitioner abcdef0123… at Hospital B"
    tx = "ab" * 32
    p = (1_767_225_600_000, tx, "rec.1:x-y")
    assert parse_cursor(cursor_of(p)) == p
    entries = [
        {"timestamp_ms": t, "tx_id": {"$bytes": tx}, "record_id": r, "n": i}
        for i, (t, r) in enumerate([(1, "a"), (2, "a"), (2, "b"), (3, "a")])
    ]
    page, older = access_page(entries, None, 2, window_full=False)
    assert [e["n"] for e in page] == [3, 2] and older == (2, tx, "b")
    page, older = access_page(entries, older, 2, window_full=False)
    assert [e["n"] for e in page] == [1, 0] and older is None
    # the query's window was full: older entries may lie beyond it
    assert access_page(entries, None, 9, window_full=True)[1] == (1, tx, "a")
    assert access_page([], None, 9, window_full=True) == ([], None)
