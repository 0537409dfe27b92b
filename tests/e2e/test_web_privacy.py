"""The explorer's public view holds nothing clinical, on a real 4-node consortium
(hospital A, hospital B, insurer, regulator) with its web UI on.

Two patients' records, a consent, permitted and denied accesses, and a claim
with ICD-10 diagnoses go on chain. A stranger then reads every explorer
route (every block, every transaction, the records, searches): no byte of
any answer carries a pseudonym, a diagnosis code, a record id, a consent id,
an access's requester or decision — while the same scan over the regulator's
view finds every one of them (the positive control: the scan cannot pass
for want of data). Patients, organization admins and the regulator then see
exactly their scope; a key revoked or rotated after its login loses its view
at once. Last, the page in Chromium: no detail anonymously, detail after an
admin or the regulator signs in with a key file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from medchain.client.signing import TxBuilder
from medchain.contracts.sdk import rotation_sign_bytes
from medchain.node.web.portal import login_sign_bytes
from medchain.storage.crypto import Signer
from medchain.storage.keyfile import load_key
from tests.e2e.browser import CHROMIUM, browser_page
from tests.e2e.harness import E2ECluster, cluster
from tests.e2e.scenario import (
    ICD10,
    LOCAL,
    add_code_systems,
    anchor_record,
    builder,
    care_product,
    commit,
    org_consent,
    register_doctor,
)

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "web"
DIAGNOSES = ("E11.9", "I10")
RECORDS = ("pv-a-1", "pv-a-2", "pv-b-1")  # P1 at A, P2 at A, P2 at B
NO_SUCH_RECORD = "pv-none-9"
CLAIM = "pv-claim-1"


@dataclass
class World:
    c: E2ECluster
    base: str
    p1: TxBuilder
    p2: TxBuilder
    doc_a: TxBuilder
    pseudonym: dict[str, str] = field(default_factory=dict)
    txs: dict[str, str] = field(default_factory=dict)  # what -> tx id
    consent: str = ""

    @property
    def chain(self) -> str:
        return self.c.genesis.chain_id


def setup(c: E2ECluster, base: str) -> World:
    chain = c.genesis.chain_id
    w = World(
        c,
        base,
        builder(chain, b"pv patient 1"),
        builder(chain, b"pv patient 2"),
        builder(chain, b"pv doctor a"),
    )
    doc_b = builder(chain, b"pv doctor b")
    admin_a, admin_b, admin_ins, admin_reg = c.builders
    with c.client(0) as A, c.client(1) as B, c.client(2) as INS, c.client(3) as REG:
        for name, p in (("p1", w.p1), ("p2", w.p2)):
            res = commit(A, p, "registry", "register_patient", {})
            w.pseudonym[name] = res["result"]["pseudonym"]
            w.txs[f"register-{name}"] = res["tx_id"]
        for cl, admin, doc, lic in ((A, admin_a, w.doc_a, "PV-A"), (B, admin_b, doc_b, "PV-B")):
            res = register_doctor(cl, admin, doc, lic, department="gp")
            w.txs[f"practitioner-{lic}"] = res["tx_id"]
        for rid, who, cl, doc, custodian in (
            ("pv-a-1", "p1", A, w.doc_a, "hospital-a"),
            ("pv-a-2", "p2", A, w.doc_a, "hospital-a"),
            ("pv-b-1", "p2", B, doc_b, "hospital-b"),
        ):
            res = anchor_record(cl, doc, rid, w.pseudonym[who], custodian)
            w.txs[f"anchor-{rid}"] = res["tx_id"]
        res = commit(A, w.p1, "consent", "grant", org_consent(period={"last_days": 3650}))
        w.consent, w.txs["consent"] = res["result"]["consent_id"], res["tx_id"]
        for rid, want in (("pv-a-1", "permit"), ("pv-a-2", "deny")):
            res = commit(B, doc_b, "access", "request", {"record_id": rid, "purpose": "treatment"})
            assert res["result"]["decision"] == want
            w.txs[f"access-{want}"] = res["tx_id"]
        for name, tx in add_code_systems(REG, admin_reg).items():
            w.txs[f"dictionary-{name}"] = tx
        product = care_product("pv-care")
        w.txs["product"] = commit(INS, admin_ins, "settlement", "register_product", product)[
            "tx_id"
        ]
        enrol = {
            "patient": w.pseudonym["p1"],
            "product_id": "pv-care",
            "start": "2025-01",
            "end": "2026-12",
        }
        w.txs["enroll"] = commit(INS, admin_ins, "settlement", "enroll", enrol)["tx_id"]
        claim = {
            "claim_id": CLAIM,
            "patient": w.pseudonym["p1"],
            "product_id": "pv-care",
            "encounter_id": "pv-enc-1",
            "encounter_month": "2025-11",
            "records": ["pv-a-1"],
            "diagnoses": [{"system": ICD10, "code": code} for code in DIAGNOSES],
            "items": [{"system": LOCAL, "code": "CONSULT", "quantity": 1}],
        }
        res = commit(A, w.doc_a, "settlement", "submit_claim", claim)
        assert res["result"]["outcome"] == "complete", res
        w.txs["claim"] = res["tx_id"]
    c.sync()
    return w


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with cluster(4, http=True) as c:
        yield setup(c, f"http://127.0.0.1:{c.nodes[0].config.http_port}")


# -- HTTP ------------------------------------------------------------------------------


def request(
    url: str, body: Any = None, token: str | None = None
) -> tuple[int, bytes, dict[str, str]]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def get(w: World, path: str, token: str | None = None) -> tuple[int, Any]:
    status, raw, _ = request(w.base + path, token=token)
    return status, json.loads(raw)


def login(w: World, signer: Signer, path: str = "/api/session") -> tuple[int, Any]:
    _, raw, _ = request(f"{w.base}{path}/challenge", {})
    ch = json.loads(raw)
    assert ch["audience"] == "hospital-a" and ch["chain_id"] == w.chain
    sig = signer.sign(login_sign_bytes(w.chain, ch["audience"], bytes.fromhex(ch["challenge"])))
    body = {
        "public_key": signer.public_key.hex(),
        "challenge": ch["challenge"],
        "signature": sig.hex(),
    }
    status, raw, headers = request(f"{w.base}{path}/login", body)
    out = json.loads(raw)
    if status == 200:
        cookie = headers.get("Set-Cookie", headers.get("set-cookie", ""))
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=1800" in cookie
        out["token"] = cookie.split(";")[0].split("=", 1)[1]
    return status, out


def token_of(w: World, signer: Signer) -> str:
    status, out = login(w, signer)
    assert status == 200, out
    return str(out["token"])


def crawl(w: World, token: str | None) -> dict[str, tuple[int, bytes]]:
    """Every explorer route, as this viewer: path -> (status, body)."""
    out: dict[str, tuple[int, bytes]] = {}

    def fetch(path: str) -> bytes:
        status, raw, headers = request(w.base + path, token=token)
        assert "traceback" not in raw.decode(errors="replace").lower()
        out[path] = (status, raw)
        return raw

    for path in ("/api/status", "/api/members", "/api/history"):
        fetch(path)
    height = json.loads(fetch("/api/blocks?limit=100"))["height"]
    fetch("/api/blocks?limit=5&before=4")
    tx_ids: list[str] = []
    for h in range(1, height + 1):
        b = json.loads(fetch(f"/api/blocks/{h}"))
        fetch(f"/api/blocks/{b['hash']}")
        tx_ids += b["tx_ids"]
    assert set(w.txs.values()) <= set(tx_ids)
    for t in tx_ids:
        fetch(f"/api/tx/{t}")
    queries = [*RECORDS, NO_SUCH_RECORD, CLAIM, w.consent, *w.pseudonym.values()]
    for rid in (*RECORDS, NO_SUCH_RECORD):
        fetch(f"/api/records/{rid}")
    for q in queries:
        fetch(f"/api/search?q={q}")
    for q in ("1", str(height), w.txs["claim"]):
        fetch(f"/api/search?q={q}")
    return out


def found(secret: str, data: bytes) -> bool:
    """``secret`` as a value of its own, not inside a longer hex string: a consent
    id is its grant's tx id's first 24 hex digits, and tx ids are public."""
    return (
        re.search(rb"(?<![0-9a-f])" + re.escape(secret.encode()) + rb"(?![0-9a-f])", data)
        is not None
    )


def secrets(w: World) -> list[str]:
    """Everything clinical or personal the setup put on chain."""
    return [
        *w.pseudonym.values(),
        *DIAGNOSES,
        "icd-10",
        *RECORDS,
        CLAIM,
        w.consent,
        "permit",
        "deny",
    ]


# -- the JSON API ----------------------------------------------------------------------


def test_a_stranger_reads_nothing_clinical_and_the_regulator_everything(world: World) -> None:
    w = world
    reg = token_of(w, w.c.builders[3].signer)
    anon = crawl(w, None)
    full = crawl(w, reg)
    # (the chain may grow between the two crawls: the last outcomes are sealed by a later block)
    assert {p for p in anon if "/api/tx/" in p} <= {p for p in full if "/api/tx/" in p}
    anon_bytes = b"\n".join(raw for _, raw in anon.values())
    full_bytes = b"\n".join(raw for _, raw in full.values())
    for s in secrets(w):
        assert not found(s, anon_bytes), f"a stranger sees {s!r}"
        assert found(s, full_bytes), f"positive control: the regulator's view lacks {s!r}"
    # transactions carry no organization at all for a stranger (requester orgs,
    # custodians, hospitals, insurers, grantees); the regulator sees them
    anon_txs = b"".join(raw for p, (_, raw) in anon.items() if p.startswith("/api/tx/"))
    full_txs = b"".join(raw for p, (_, raw) in full.items() if p.startswith("/api/tx/"))
    for org in ("hospital-a", "hospital-b", "insurer", "regulator"):
        assert org.encode() not in anon_txs
        assert org.encode() in full_txs
    assert b'"requester_org": "hospital-b"' in full_txs
    # every route answers a stranger; records only with "sign in"
    for path, (status, _) in anon.items():
        q = path.partition("?q=")[2] if path.startswith("/api/search") else ""
        public_search = q.isdigit() or q == w.txs["claim"]
        hidden = path.startswith("/api/records/") or (bool(q) and not public_search)
        assert status == (401 if hidden else 200), (path, status)
    # what a stranger does get: heights, hashes, counts, calls, sizes, outcomes
    status, t = get(w, f"/api/tx/{w.txs['claim']}")
    assert status == 200 and t["detail"] == "public"
    assert (t["contract"], t["method"], t["status"]) == ("settlement", "submit_claim", "committed")
    assert t["size"] > 100 and len(t["block_hash"]) == 64 and t["height"] >= 1
    assert not {"args", "events", "result", "reason", "sender", "nonce"} & set(t)
    status, b = get(w, f"/api/blocks/{t['height']}")
    entry = next(x for x in b["txs"] if x["tx_id"] == w.txs["claim"])
    assert entry == {
        "tx_id": w.txs["claim"],
        "size": t["size"],
        "contract": "settlement",
        "method": "submit_claim",
        "ok": True,
        "detail": "public",
    }
    members = json.loads(anon["/api/members"][1])
    assert [m["org_id"] for m in members] == ["hospital-a", "hospital-b", "insurer", "regulator"]
    assert all(m["up"] for m in members)
    # searches still resolve heights, hashes and tx ids for a stranger ...
    assert json.loads(anon[f"/api/search?q={w.txs['claim']}"][1]) == {
        "kind": "tx",
        "ref": w.txs["claim"],
    }
    assert json.loads(anon["/api/search?q=1"][1]) == {"kind": "block", "ref": "1"}
    # ... but say the same about a record id whether it exists or not
    for rid in RECORDS:
        assert anon[f"/api/records/{rid}"] == anon[f"/api/records/{NO_SUCH_RECORD}"]
        assert anon[f"/api/search?q={rid}"] == anon[f"/api/search?q={NO_SUCH_RECORD}"]
    status, raw = anon[f"/api/records/{NO_SUCH_RECORD}"]
    assert status == 401 and "sign in to see it" in json.loads(raw)["error"]
    for q in (CLAIM, w.consent, *w.pseudonym.values()):
        assert anon[f"/api/search?q={q}"] == anon[f"/api/search?q={NO_SUCH_RECORD}"]
    # the regulator's answers are never cacheable
    _, _, headers = request(f"{w.base}/api/tx/{w.txs['claim']}", token=reg)
    assert headers.get("Cache-Control", headers.get("cache-control")) == "no-store"


FULL, EVENTS, PUBLIC = "full", "events", "public"
# what each viewer sees of each transaction (viewer -> tx -> level)
SCOPE: dict[str, dict[str, str | set[str]]] = {
    "p1": {
        "register-p1": FULL,
        "register-p2": PUBLIC,
        "anchor-pv-a-1": FULL,
        "anchor-pv-a-2": PUBLIC,
        "anchor-pv-b-1": PUBLIC,
        "consent": FULL,
        "access-permit": FULL,
        "access-deny": PUBLIC,
        "claim": FULL,
        "enroll": FULL,
        "product": PUBLIC,
        "practitioner-PV-A": PUBLIC,
    },
    "p2": {
        "register-p1": PUBLIC,
        "register-p2": FULL,
        "anchor-pv-a-1": PUBLIC,
        "anchor-pv-a-2": FULL,
        "anchor-pv-b-1": FULL,
        "consent": PUBLIC,
        "access-permit": PUBLIC,
        "access-deny": FULL,
        "claim": PUBLIC,
        "enroll": PUBLIC,
    },
    "hospital-a": {
        "register-p1": PUBLIC,
        "anchor-pv-a-1": FULL,
        "anchor-pv-a-2": FULL,
        "anchor-pv-b-1": PUBLIC,
        "consent": PUBLIC,
        # hospital A is the records' custodian: it sees these accesses' events
        "access-permit": EVENTS,
        "access-deny": EVENTS,
        "claim": FULL,
        "practitioner-PV-A": FULL,
        "practitioner-PV-B": PUBLIC,
        "product": PUBLIC,
    },
    "hospital-b": {
        "anchor-pv-a-1": PUBLIC,
        "anchor-pv-b-1": FULL,
        "consent": EVENTS,  # the grantee sees the grant, not its arguments
        "access-permit": FULL,
        "access-deny": FULL,
        "claim": PUBLIC,
        "enroll": PUBLIC,
        "practitioner-PV-B": FULL,
    },
    "insurer": {
        "anchor-pv-a-1": PUBLIC,
        "access-permit": PUBLIC,
        "claim": EVENTS,  # the adjudication event, not the diagnoses
        "product": FULL,
        "enroll": FULL,
    },
    "regulator": {what: FULL for what in ("claim", "access-deny", "consent", "register-p2")},
}
# which records each viewer may open
RECORD_SCOPE = {
    "p1": {"pv-a-1"},
    "p2": {"pv-a-2", "pv-b-1"},
    "hospital-a": {"pv-a-1", "pv-a-2"},
    "hospital-b": {"pv-b-1"},
    "insurer": set(),
    "regulator": set(RECORDS),
}


def test_each_viewer_sees_exactly_their_scope(world: World) -> None:
    w = world
    c = w.c
    signers = {
        "p1": w.p1.signer,
        "p2": w.p2.signer,
        "hospital-a": c.builders[0].signer,
        "hospital-b": c.builders[1].signer,
        "insurer": c.builders[2].signer,
        "regulator": c.builders[3].signer,
    }
    kinds = {"p1": "patient", "p2": "patient", "regulator": "regulator"}
    for name, signer in signers.items():
        status, me = login(w, signer)
        assert status == 200, (name, me)
        token = me["token"]
        assert me["kind"] == kinds.get(name, "org")
        assert me["id"] == w.pseudonym.get(name, name)
        for what, want in SCOPE[name].items():
            status, t = get(w, f"/api/tx/{w.txs[what]}", token)
            assert status == 200
            ok = t["detail"] in want if isinstance(want, set) else t["detail"] == want
            assert ok, f"{name} sees {what} as {t['detail']}, not {want}"
            text = json.dumps(t)
            if t["detail"] == PUBLIC:
                assert not {"args", "events", "sender"} & set(t)
            if t["detail"] == EVENTS:
                assert not {"args", "result", "reason", "sender", "nonce"} & set(t)
                assert t["events"], f"{name}: an events view with no events of {what}"
            if what == "claim":
                assert ("E11.9" in text) == (t["detail"] == FULL), (name, text)
            if name in ("p1", "p2"):
                other = w.pseudonym["p2" if name == "p1" else "p1"]
                assert other not in text, f"{name} learns the other patient's pseudonym"
        for rid in (*RECORDS, NO_SUCH_RECORD):
            status, r = get(w, f"/api/records/{rid}", token)
            if rid in RECORD_SCOPE[name]:
                assert status == 200 and r["history"], (name, rid, r)
                assert r["record"]["record_id"] == rid
            else:
                # not in view: the same answer as for a record that does not exist
                assert status == 404, (name, rid, r)
                assert r["error"] == f"no record {rid} in your view"
            status, found = get(w, f"/api/search?q={rid}", token)
            assert (status == 200) == (rid in RECORD_SCOPE[name]), (name, rid, found)
        # the block list names a sender only where the viewer has the full tx
        status, t = get(w, f"/api/tx/{w.txs['claim']}", token)
        _, b = get(w, f"/api/blocks/{t['height']}", token)
        entry = next(x for x in b["txs"] if x["tx_id"] == w.txs["claim"])
        assert ("sender" in entry) == (entry["detail"] == FULL) == (t["detail"] == FULL)


def test_only_patients_and_admins_sign_in_and_bad_logins_are_clear_4xx(world: World) -> None:
    w = world
    c = w.c
    node_key = load_key(c.dir / "hospital-a" / "node.key")
    for signer, why in (
        (w.doc_a.signer, "practitioner"),
        (node_key, "node key"),
        (Signer.generate(), "not an active patient or organization admin"),
    ):
        status, out = login(w, signer)
        assert status == 403 and why in out["error"], out
    # a signature by someone else, over another audience, or reused: refused
    _, raw, _ = request(f"{w.base}/api/session/challenge", {})
    ch = json.loads(raw)["challenge"]
    admin = c.builders[1].signer
    for sig in (
        Signer.generate().sign(login_sign_bytes(w.chain, "hospital-a", bytes.fromhex(ch))),
        admin.sign(login_sign_bytes(w.chain, "hospital-b", bytes.fromhex(ch))),
    ):
        body = {"public_key": admin.public_key.hex(), "challenge": ch, "signature": sig.hex()}
        status, raw, _ = request(f"{w.base}/api/session/login", body)
        assert status == 403 and "does not verify" in json.loads(raw)["error"]
    for body in ({}, {"public_key": "zz", "challenge": ch, "signature": "00"}, [1, 2]):
        status, raw, _ = request(f"{w.base}/api/session/login", body)
        assert status == 400 and "public_key" in json.loads(raw)["error"]
    status, raw, _ = request(f"{w.base}/api/session/login", None)
    assert status == 405
    for path in ("/api/tx/xyz", "/api/blocks/notablock", f"/api/records/{'x' * 200}"):
        status, out = get(w, path)
        assert 400 <= status < 500 and out["error"], (path, out)
    assert get(w, "/api/session")[0] == 401
    # the portal stays for patients: an admin's session does not open it
    token = token_of(w, admin)
    assert get(w, "/api/portal/me", token)[0] == 401
    status, out = login(w, admin, "/api/portal")
    assert status == 403 and "not an active patient" in out["error"]
    status, out = login(w, w.p1.signer, "/api/portal")
    assert status == 200 and out["patient"] == w.pseudonym["p1"]
    assert get(w, "/api/portal/me", out["token"])[1]["patient"] == w.pseudonym["p1"]
    # the portal's answers are the patient's own: p1's consents and access log name
    # p1's record and p1's grantee, nothing of p2's; an admin's session gets none
    for path in ("/api/portal/me", "/api/portal/accesses"):
        status, body = get(w, path, out["token"])
        assert status == 200, (path, body)
        text = json.dumps(body)
        assert "pv-a-1" in text and "Hospital B" in text, path
        for other in (w.pseudonym["p2"], "pv-a-2", "pv-b-1"):
            assert other not in text, (path, other)
    assert get(w, "/api/portal/accesses", token)[0] == 401
    # and a patient signed in at the explorer is the same patient in the portal
    assert get(w, "/api/portal/me", token_of(w, w.p1.signer))[0] == 200


def test_a_key_revoked_or_rotated_after_login_loses_its_view_at_once(world: World) -> None:
    w = world
    c = w.c
    p2 = token_of(w, w.p2.signer)
    ins = token_of(w, c.builders[2].signer)
    assert get(w, f"/api/tx/{w.txs['anchor-pv-b-1']}", p2)[1]["detail"] == FULL
    assert get(w, f"/api/tx/{w.txs['product']}", ins)[1]["detail"] == FULL
    with c.client(0) as A, c.client(2) as INS:
        commit(A, w.p2, "registry", "revoke_key", {"key": w.p2.public_key})
        new = Signer(hashlib.sha256(b"pv insurer admin 2").digest())
        proof = new.sign(rotation_sign_bytes(w.chain, c.builders[2].public_key, new.public_key))
        commit(
            INS,
            c.builders[2],
            "registry",
            "rotate_key",
            {"new_key": new.public_key, "proof": proof},
        )
    c.sync()
    for token, what in ((p2, "anchor-pv-b-1"), (ins, "product")):
        assert get(w, f"/api/tx/{w.txs[what]}", token)[1]["detail"] == PUBLIC
        assert get(w, "/api/session", token)[0] == 401
        assert get(w, "/api/records/pv-b-1", token)[0] == 401
    assert get(w, "/api/portal/me", p2)[0] == 401
    status, out = login(w, w.p2.signer)
    assert status == 403 and "revoked" in out["error"]
    status, out = login(w, c.builders[2].signer)
    assert status == 403 and "revoked" in out["error"]
    # the rotated-in key is the insurer's admin now, with the insurer's view
    token = token_of(w, new)
    assert get(w, f"/api/tx/{w.txs['product']}", token)[1]["detail"] == FULL


# -- the page in a browser --------------------------------------------------------------


@pytest.mark.skipif(
    os.environ.get("MEDCHAIN_SKIP_BROWSER") == "1", reason="MEDCHAIN_SKIP_BROWSER=1"
)
def test_the_page_hides_details_until_an_admin_or_the_regulator_signs_in(world: World) -> None:
    from playwright.sync_api import expect

    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    w = world
    c = w.c
    p1 = w.pseudonym["p1"]
    claim = w.txs["claim"]
    _, t = get(w, f"/api/tx/{claim}")
    with browser_page() as (_browser, page, errors):

        def main_text() -> str:
            return page.locator("main").inner_text()

        # -- anonymous: the claim's page and its block show no detail
        page.goto(f"{w.base}/#/tx/{claim}")
        expect(page.locator("#tx-hidden")).to_contain_text("sign in to see details")
        expect(page.locator("main")).to_contain_text("settlement.submit_claim")
        expect(page.locator("#tx-args")).to_contain_text("sign in to see details")
        for s in (p1, *DIAGNOSES, "hospital-a", "practitioner"):
            assert s not in main_text(), s
        page.screenshot(path=str(ARTIFACTS / "privacy-tx-anonymous.png"), full_page=True)
        page.goto(f"{w.base}/#/block/{t['height']}")
        row = page.locator("#txs tbody tr", has_text="settlement.submit_claim")
        expect(row).to_contain_text("sign in to see details")
        assert p1 not in main_text()
        # a record: "sign in to see it", the same as for an id that does not exist
        page.goto(f"{w.base}/#/record/pv-a-1")
        expect(page.locator("#sign-in-hint")).to_contain_text("Sign in")
        shown = main_text()
        page.goto(f"{w.base}/#/record/{NO_SUCH_RECORD}")
        expect(page.locator("#sign-in-hint")).to_be_visible()
        assert main_text() == shown
        page.fill("#search-q", "pv-a-1")
        page.press("#search-q", "Enter")
        expect(page.locator("#sign-in-hint")).to_be_visible()
        assert p1 not in main_text()
        # -- the regulator signs in with its key file (signed in the page)
        page.goto(f"{w.base}/#/tx/{claim}")
        expect(page.locator("#tx-hidden")).to_be_visible()
        page.click("#nav-signin")
        page.set_input_files("#keyfile", str(c.dir / "regulator" / "admin.key"))
        page.click("#signin")
        expect(page.locator("#signed-in-as")).to_contain_text("regulator")
        # back where it was, now in full
        expect(page.locator("#tx-args")).to_contain_text("E11.9")
        expect(page.locator("#tx-args")).to_contain_text(p1)
        expect(page.locator("#tx-sender")).to_contain_text("practitioner")
        expect(page.locator("#tx-hidden")).to_have_count(0)
        page.screenshot(path=str(ARTIFACTS / "privacy-tx-regulator.png"), full_page=True)
        page.goto(f"{w.base}/#/record/pv-a-1")
        expect(page.locator("#record-versions")).to_contain_text(p1[:10])
        expect(page.locator("#record-versions")).not_to_contain_text("object Object")
        page.click("#signout")
        expect(page.locator("#nav-signin")).to_be_visible()
        page.goto(f"{w.base}/#/tx/{claim}")
        expect(page.locator("#tx-hidden")).to_contain_text("sign in to see details")
        # -- hospital B's admin: not hospital A's claim, but its own access
        page.goto(f"{w.base}/#/signin")
        page.set_input_files("#keyfile", str(c.dir / "hospital-b" / "admin.key"))
        page.click("#signin")
        expect(page.locator("#signed-in-as")).to_contain_text("hospital-b admin")
        page.goto(f"{w.base}/#/tx/{claim}")
        expect(page.locator("#tx-hidden")).to_contain_text("not in your view")
        assert "E11.9" not in main_text() and p1 not in main_text()
        page.goto(f"{w.base}/#/tx/{w.txs['access-permit']}")
        expect(page.locator("#tx-args")).to_contain_text("pv-a-1")
        expect(page.locator("#tx-events")).to_contain_text("permit")
        page.screenshot(path=str(ARTIFACTS / "privacy-tx-org-admin.png"), full_page=True)
        assert not errors, errors
