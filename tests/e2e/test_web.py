"""The web UI in a real browser (Debian's Chromium, headless, driven by
Playwright) against a real 4-node consortium: the explorer's height advances,
a block opens, a patient signs in with their key (in the page, and with the
CLI for encrypted keys), watches a new access arrive live, revokes a consent
and sees the next access denied; a wrong signature is refused; nobody without
a session sees a patient's data (tests/e2e/test_web_privacy.py: the explorer's
public view). Screenshots go to artifacts/web/."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from medchain.client.rpc import TxBuilder
from medchain.node.rpc.jsonval import from_json
from medchain.storage.crypto import Signer
from medchain.storage.keyfile import save_key
from tests.e2e.harness import E2ECluster, cluster
from tests.e2e.scenario import anchor_record, builder, org_consent, register_doctor, send
from tests.helpers import signed_anchor_args

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "web"
CHROMIUM = os.environ.get("MEDCHAIN_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


WEIGHT = {
    "resourceType": "Observation",
    "id": "w-weight-1",
    "status": "final",
    "code": {
        "coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}],
        "text": "Body weight",
    },
    "effectiveDateTime": "2026-10-03T09:30:00Z",
    "valueQuantity": {"value": 72.5, "unit": "kg"},
}


def setup_patient(c: E2ECluster, key_file: Path) -> dict[str, Any]:
    """A patient with two records at hospital A, a doctor at B, a consent for B."""
    chain = c.genesis.chain_id
    signer = Signer(hashlib.sha256(b"web patient").digest())
    save_key(key_file, signer)
    patient = TxBuilder(signer, chain)
    doc_a = builder(chain, b"web doctor a")
    doc_b = builder(chain, b"web doctor b")
    with c.client(0) as A, c.client(1) as B:
        pseudonym = send(A, patient, "registry", "register_patient", {})["pseudonym"]
        register_doctor(A, c.builders[0], doc_a, "A-7")
        register_doctor(B, c.builders[1], doc_b, "B-7")
        anchor_record(A, doc_a, "w-cond-1", pseudonym, "hospital-a", "Condition", "2026-10-01")
        anchor_record(A, doc_a, "w-proc-1", pseudonym, "hospital-a", "Procedure", "2026-10-02")
        # A real FHIR resource in hospital B's vault, anchored by its doctor: the
        # patient opens it from the portal of node 0 (fetched over libp2p from B).
        stored = from_json(
            B.call("records.put", {"items": [{"resource": WEIGHT, "patient": pseudonym}]})[0]
        )
        assert stored["status"] == "stored", stored
        rid, cat, date = stored["record_id"], stored["category"], stored["clinical_date"]
        ch, fr = stored["content_hash"], stored["fields_root"]
        args = signed_anchor_args(
            chain, doc_b.signer, rid, pseudonym, "hospital-b", cat, date, ch, fr
        )
        send(B, doc_b, "records", "anchor", args)
        consent = send(A, patient, "consent", "grant", org_consent())["consent_id"]
    c.sync()
    return {
        "pseudonym": pseudonym,
        "doc_b": doc_b,
        "consent": consent,
        "signer": signer,
        "weight": rid,
    }


def access(c: E2ECluster, doc_b: TxBuilder, record: str) -> str:
    with c.client(1) as B:
        return str(
            send(B, doc_b, "access", "request", {"record_id": record, "purpose": "treatment"})[
                "decision"
            ]
        )


def http_get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def http_post(url: str, body: Any) -> tuple[int, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.skipif(
    os.environ.get("MEDCHAIN_SKIP_BROWSER") == "1", reason="MEDCHAIN_SKIP_BROWSER=1"
)
def test_explorer_and_patient_portal_in_chromium(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), (
        f"no Chromium at {CHROMIUM} (make test installs it: scripts/browser-deps.sh)"
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with cluster(4, http=True) as c:
        key_file = tmp_path / "patient.key"
        p = setup_patient(c, key_file)
        base = f"http://127.0.0.1:{c.nodes[0].config.http_port}"
        # operators (no session) see no patient data
        status, body = http_get(base + "/api/portal/me")
        assert status == 401 and "sign in" in body["error"]
        status, body = http_post(base + "/api/portal/fetch", {"tx": "00"})
        assert status == 401 and "sign in" in body["error"]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                # -- the consortium page: height advances without a reload
                page.goto(base + "/")
                expect(page.locator("#members tbody tr")).to_have_count(4)
                expect(page.locator("#members")).to_contain_text("Hospital A")
                h0 = int(page.text_content("#height") or "0")
                page.evaluate("window.__marker = 'same page'")
                tx_ids = [c.submit(i % 4, i % 4, f"web-{i}") for i in range(6)]
                c.wait_committed(tx_ids, [0])
                page.wait_for_function(
                    f"() => Number(document.querySelector('#height').textContent) > {h0}",
                    timeout=15_000,
                )
                assert page.evaluate("window.__marker") == "same page"
                page.screenshot(path=str(ARTIFACTS / "consortium.png"), full_page=True)
                # -- a block page: header, certificate, transactions
                # (the newest block may be the empty one that seals the last outcomes)
                page.locator("#blocks tbody tr").filter(
                    has_not=page.locator("td:nth-child(3)", has_text=re.compile(r"^0$"))
                ).locator("a").first.click()
                expect(page.locator("#cert-summary")).to_contain_text("of 3 required signatures")
                assert len(page.text_content("#block-hash") or "") == 64
                expect(page.locator("#txs tbody tr").first).to_be_visible()
                page.screenshot(path=str(ARTIFACTS / "block.png"), full_page=True)
                # -- search by tx id
                page.fill("#search-q", tx_ids[0])
                page.press("#search-q", "Enter")
                expect(page.locator("main")).to_contain_text(tx_ids[0])
                expect(page.locator("main")).to_contain_text("kv.put")
                # -- search by height, by block hash; a record id needs a sign-in
                for q, kind in (
                    ("2", "block"),
                    (http_get(base + "/api/blocks/2")[1]["hash"], "block"),
                    (tx_ids[0], "tx"),
                ):
                    status, found = http_get(f"{base}/api/search?q={q}")
                    assert status == 200 and found["kind"] == kind, (q, found)
                status, found = http_get(f"{base}/api/search?q=w-cond-1")
                assert status == 401 and "sign in to see it" in found["error"]
                # the web UI is on only where enabled: these nodes say where it listens
                assert all('"event":"http-ready"' in c.log_text(i) for i in range(4))
                # -- the patient signs in with their key file (signed in the page)
                page.goto(base + "/#/portal")
                page.set_input_files("#keyfile", str(key_file))
                page.click("#signin")
                expect(page.locator("#patient-id")).to_have_text(p["pseudonym"])
                expect(page.locator("#records")).to_contain_text("w-cond-1")
                expect(page.locator("#consents")).to_contain_text("Hospital B")
                expect(page.locator("#live")).to_have_text("live updates: on")
                # signed in, the patient finds their own record by its id
                page.fill("#search-q", "w-cond-1")
                page.press("#search-q", "Enter")
                # the record page itself (the portal, still shown, also says "Condition")
                expect(page.locator("main h1")).to_contain_text("Record w-cond-1")
                expect(page.locator("main")).to_contain_text("Condition")
                page.goto(base + "/#/portal")
                expect(page.locator("#live")).to_have_text("live updates: on")
                page.evaluate("window.__marker = 'portal'")
                # -- a doctor at hospital B reads a record: the access appears live
                assert access(c, p["doc_b"], "w-cond-1") == "permit"
                row = page.locator("#access-log tbody tr", has_text="w-cond-1")
                expect(row).to_contain_text("permit", timeout=15_000)
                expect(row.locator(".who")).to_contain_text(
                    "B-7 (physician, cardiology) at Hospital B"
                )
                assert page.evaluate("window.__marker") == "portal", "the page was reloaded"
                page.screenshot(path=str(ARTIFACTS / "portal-access.png"), full_page=True)
                # -- the patient opens a record held by hospital B: signed in the page,
                # logged on chain, sealed to the patient's key, opened and checked here
                page.click(f"button.open-record[data-id='{p['weight']}']")
                expect(page.locator("#record-integrity")).to_contain_text(
                    "matches the fingerprint anchored on chain", timeout=30_000
                )
                expect(page.locator("#record-view h3")).to_contain_text("Body weight")
                expect(page.locator("#record-view h3")).to_contain_text("72.5 kg")
                own = page.locator("#access-log tbody tr", has_text=p["weight"])
                expect(own.locator(".who")).to_have_text("you", timeout=15_000)
                expect(own).to_contain_text("the patient's own record")
                page.screenshot(path=str(ARTIFACTS / "portal-record.png"), full_page=True)
                # -- revoke the consent from the page (signed in the browser)
                page.click(f"button.revoke[data-id='{p['consent']}']")
                expect(page.locator("#consent-msg")).to_contain_text("consent revoked in block")
                expect(page.locator(f"tr[data-consent='{p['consent']}'] .status")).to_have_text(
                    "revoked"
                )
                # the next access is denied, and that too appears live
                assert access(c, p["doc_b"], "w-cond-1") == "deny"
                expect(page.locator("#access-log tbody tr", has_text="revoked")).to_have_count(
                    1, timeout=15_000
                )
                page.screenshot(path=str(ARTIFACTS / "portal-revoked.png"), full_page=True)
                assert not errors, errors
                # -- a wrong signature is refused (fresh browser context: no session)
                other = browser.new_context().new_page()
                other.goto(base + "/#/portal")
                other.click("#get-challenge")
                expect(other.locator("#cli-cmd")).to_contain_text("--challenge ")
                cmd = other.text_content("#cli-cmd") or ""
                challenge = cmd.split("--challenge ")[1].strip()
                thief = Signer.generate()
                other.fill("#cli-key", p["signer"].public_key.hex())
                other.fill("#cli-sig", thief.sign(bytes.fromhex(challenge)).hex())
                other.click("#cli-signin")
                expect(other.locator("#signin-error")).to_contain_text("does not verify")
                other.screenshot(path=str(ARTIFACTS / "wrong-signature.png"), full_page=True)
                # -- the CLI path for encrypted keys: medchain portal sign
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "medchain.cli",
                        "portal",
                        "sign",
                        "--key",
                        str(key_file),
                        "--json",
                        *cmd.split("medchain portal sign --key YOUR_KEY_FILE ")[1].split(),
                    ],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=60,
                )
                signed = json.loads(out.stdout)
                other.fill("#cli-key", signed["public_key"])
                other.fill("#cli-sig", signed["signature"])
                other.click("#cli-signin")
                expect(other.locator("#patient-id")).to_have_text(p["pseudonym"])
                # signed in without the key in the page: revoking needs the key file
                expect(other.locator("main")).to_contain_text("sign in with your key file")
                # -- by now the commit-rate chart has samples to draw
                page.goto(base + "/")
                expect(page.locator("#chart path.rate")).to_have_count(1, timeout=20_000)
                page.screenshot(path=str(ARTIFACTS / "consortium-chart.png"), full_page=True)
            finally:
                browser.close()


@pytest.mark.skipif(
    os.environ.get("MEDCHAIN_SKIP_BROWSER") == "1", reason="MEDCHAIN_SKIP_BROWSER=1"
)
def test_the_page_opens_libsodium_sealed_boxes_and_refuses_altered_ones() -> None:
    """nacl.js (BLAKE2b, XSalsa20, Poly1305 in JS; X25519 in WebCrypto) against
    libsodium's crypto_box_seal through pynacl, at block-boundary sizes."""
    import base64
    import functools
    import http.server
    import threading

    from playwright.sync_api import sync_playwright

    from medchain.node.records.wire import sealed_payload
    from medchain.storage.crypto import seal_to

    web = ROOT / "node" / "web"  # serves /static/... as the node does
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(web))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    signer = Signer(hashlib.sha256(b"sealed boxes").digest())
    sizes = [0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000, 70_000]
    cases = [os.urandom(n) for n in sizes]
    boxes = [base64.b64encode(seal_to(signer.public_key, m)).decode() for m in cases]
    payload = sealed_payload(b'{"resourceType":"Observation"}', b"salt" * 8)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{httpd.server_port}/static/index.html")
                page.wait_for_function(
                    "() => typeof Nacl === 'object' && typeof MsgPack === 'object'"
                )
                js_open = """async ([b64, seedHex]) => {
                    const seed = Uint8Array.from(seedHex.match(/../g), (x) => parseInt(x, 16));
                    const box = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                    try {
                        const m = await Nacl.openSealed(box, seed);
                        return Array.from(m, (x) => x.toString(16).padStart(2, "0")).join("");
                    } catch (e) { return "error: " + e.message; }
                }"""
                seed = signer.seed.hex()
                for m, b in zip(cases, boxes, strict=True):
                    assert page.evaluate(js_open, [b, seed]) == m.hex(), len(m)
                # altered anywhere (ephemeral key, tag, ciphertext), or the wrong key: refused
                raw = base64.b64decode(boxes[12])
                for at in (0, 31, 32, 47, 48, len(raw) - 1):
                    bad = bytearray(raw)
                    bad[at] ^= 1
                    got = page.evaluate(js_open, [base64.b64encode(bytes(bad)).decode(), seed])
                    assert got.startswith("error: "), at
                other = Signer(hashlib.sha256(b"someone else").digest()).seed.hex()
                assert page.evaluate(js_open, [boxes[12], other]).startswith("error: ")
                # the sealed record payload decodes: [version, content, salt seed]
                decoded = page.evaluate(
                    """async ([b64, seedHex]) => {
                        const seed = Uint8Array.from(seedHex.match(/../g), (x) => parseInt(x, 16));
                        const box = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                        const [v, content, salt] = MsgPack.decode(await Nacl.openSealed(box, seed));
                        return [v, new TextDecoder().decode(content), salt.length];
                    }""",
                    [base64.b64encode(seal_to(signer.public_key, payload)).decode(), seed],
                )
                assert decoded == [1, '{"resourceType":"Observation"}', 32]
            finally:
                browser.close()
    finally:
        httpd.shutdown()


PORTAL_RECORDS = [f"pp-cond-{i}" for i in range(5)]
PAGE = 20  # access-log entries a portal page shows (node/web/limits.py)


def setup_portal(c: E2ECluster, key_file: Path) -> dict[str, Any]:
    """A patient with consents of every kind and state (a dated range for hospital
    B, one for a practitioner, one that expires, one revoked, two from referrals:
    completed and cancelled) and more accesses than fit on one page: by a
    practitioner (permitted and denied), hospital B's admin and another patient."""
    chain = c.genesis.chain_id
    signer = Signer(hashlib.sha256(b"portal patient").digest())
    save_key(key_file, signer)
    patient = TxBuilder(signer, chain)
    other = builder(chain, b"portal other patient")
    doc_a = builder(chain, b"portal doctor a")
    doc_b = builder(chain, b"portal doctor b")
    admin_b = c.builders[1]
    out: dict[str, Any] = {"signer": signer}
    with c.client(0) as A, c.client(1) as B:
        pseudonym = send(A, patient, "registry", "register_patient", {})["pseudonym"]
        out["other"] = send(A, other, "registry", "register_patient", {})["pseudonym"]
        register_doctor(A, c.builders[0], doc_a, "A-17", department="cardiology")
        res = register_doctor(B, admin_b, doc_b, "B-17", department="oncology")
        out["doc_b_id"] = res["result"]["practitioner"]
        for rid in PORTAL_RECORDS:
            anchor_record(A, doc_a, rid, pseudonym, "hospital-a", "Condition", "2025-06-01")

        def grant(args: dict[str, Any]) -> str:
            return str(send(A, patient, "consent", "grant", args)["consent_id"])

        out["ranged"] = grant(org_consent(period={"from": "2024-01-01", "to": "2026-12-31"}))
        out["to_doctor"] = grant(
            {
                "grantee_kind": "practitioner",
                "grantee": out["doc_b_id"],
                "categories": ["Observation", "Procedure"],
                "purpose": "research",
                "period": {"last_days": 730},
                "days": 30,
            }
        )
        out["expires_ms"] = int(time.time() * 1000) + 3000
        out["expired"] = grant({**org_consent(), "days": None, "expires_ms": out["expires_ms"]})
        out["revoked"] = grant(org_consent(grantee="insurer"))
        send(A, patient, "consent", "revoke", {"consent_id": out["revoked"]})
        for name, close in (("completed", "complete"), ("cancelled", "cancel")):
            issued = {
                "patient": pseudonym,
                "target": "hospital-b",
                "records": PORTAL_RECORDS[:2],
                "valid_days": 30,
                "reason": "second opinion",
            }
            ref = send(A, doc_a, "referral", "issue", issued)["referral_id"]
            send(A, patient, "referral", "agree", {"referral_id": ref})
            send(B, admin_b, "referral", "accept", {"referral_id": ref})
            send(B, admin_b, "referral", close, {"referral_id": ref})
            out[name] = "ref-" + ref
        # accesses: 5 x 5 permitted to the practitioner, one denied, one by the
        # admin, one by another patient: 28, more than a page
        for _ in range(5):
            many = {"records": PORTAL_RECORDS, "purpose": "treatment"}
            send(B, doc_b, "access", "request_many", many)
        one = {"record_id": PORTAL_RECORDS[0], "purpose": "research"}
        assert send(B, doc_b, "access", "request", one)["decision"] == "deny"
        one["purpose"] = "treatment"
        send(B, admin_b, "access", "request", one)
        assert send(A, other, "access", "request", one)["decision"] == "deny"
    c.sync()
    out["pseudonym"] = pseudonym
    return out


@pytest.mark.skipif(
    os.environ.get("MEDCHAIN_SKIP_BROWSER") == "1", reason="MEDCHAIN_SKIP_BROWSER=1"
)
def test_portal_says_in_words_who_may_see_what_and_who_did_and_grants(tmp_path: Path) -> None:
    """Issue 19, point 6: consents in words (dates, categories, purpose, grantee by
    the registry, the true state of referral, expired and revoked ones), the
    access log naming who accessed with the decision and its reason, one page at
    a time, a consent granted from the page (signed in it) committed on chain,
    and the explorer's record page showing the SHA-256 in hex."""
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with cluster(4, http=True) as c:
        key_file = tmp_path / "patient.key"
        p = setup_portal(c, key_file)
        base = f"http://127.0.0.1:{c.nodes[0].config.http_port}"
        status, body = http_get(base + "/api/portal/accesses")
        assert status == 401 and "sign in" in body["error"]
        time.sleep(max(0.0, p["expires_ms"] / 1000 - time.time()))
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(base + "/#/portal")
                page.set_input_files("#keyfile", str(key_file))
                page.click("#signin")
                expect(page.locator("#patient-id")).to_have_text(p["pseudonym"])

                def consent(cid: str) -> Any:
                    return page.locator(f"#consents tr[data-consent='{cid}']")

                # -- consents in words
                ranged = consent(p["ranged"])
                expect(ranged.locator(".scope")).to_contain_text("2024-01-01 \u2013 2026-12-31")
                expect(ranged.locator(".scope")).to_contain_text("conditions and diagnoses")
                expect(ranged.locator(".purpose")).to_contain_text("your care and treatment")
                expect(ranged.locator(".grantee")).to_have_text("Hospital B")
                expect(ranged.locator(".status")).to_have_text("active")
                doctor = consent(p["to_doctor"])
                expect(doctor.locator(".scope")).to_contain_text("the last 730 days")
                expect(doctor.locator(".scope")).to_contain_text("procedures")
                expect(doctor.locator(".purpose")).to_contain_text("research")
                for part in ("B-17", "physician", "oncology", "Hospital B"):
                    expect(doctor.locator(".grantee")).to_contain_text(part)
                expect(page.locator("#consents")).not_to_contain_text("from_day")
                expect(page.locator("#consents")).not_to_contain_text(p["doc_b_id"][:10])
                # -- each in its true state; only an active one can be revoked
                for name in ("expired", "revoked", "completed", "cancelled"):
                    expect(consent(p[name]).locator(".status")).to_have_text(name)
                    expect(consent(p[name]).locator("button.revoke")).to_have_count(0)
                expect(consent(p["completed"]).locator(".scope")).to_contain_text("2 records")
                expect(consent(p["completed"])).to_contain_text("referral from Hospital A")
                expect(ranged.locator("button.revoke")).to_be_enabled()
                page.screenshot(path=str(ARTIFACTS / "portal-consents.png"), full_page=True)
                # -- the access log: who, the decision and its reason, by pages
                log = page.locator("#access-log tbody tr")
                expect(log).to_have_count(PAGE)
                first = [log.nth(i).get_attribute("data-access") for i in range(PAGE)]
                by_doctor = log.filter(has_text="B-17").filter(has_text="permitted").first
                for part in ("physician", "oncology", "Hospital B", "permitted", "consented"):
                    expect(by_doctor).to_contain_text(part)
                expect(by_doctor.locator(".consent")).to_contain_text("Hospital B")
                denied = log.filter(has_text="research")
                expect(denied).to_contain_text("denied")
                expect(denied).to_contain_text("B-17")
                expect(denied).to_contain_text("the consent is for treatment, not research")
                expect(log.filter(has_text="administrator of Hospital B")).to_have_count(1)
                stranger = log.filter(has_text="another patient")
                expect(stranger).to_contain_text("the requester is not an active practitioner")
                expect(page.locator("main")).not_to_contain_text(p["other"])
                expect(page.locator("#access-prev")).to_be_disabled()
                page.click("#access-next")
                expect(log).to_have_count(28 - PAGE)
                second = [log.nth(i).get_attribute("data-access") for i in range(28 - PAGE)]
                assert len(set(first) | set(second)) == 28, "a page repeats or skips entries"
                expect(page.locator("#access-next")).to_be_disabled()
                page.screenshot(path=str(ARTIFACTS / "portal-access-page-2.png"), full_page=True)
                page.click("#access-prev")
                expect(log).to_have_count(PAGE)
                assert log.first.get_attribute("data-access") == first[0]
                # -- grant a consent from the page, signed in it
                page.select_option("#grant-org", "insurer")
                page.check("#grant-categories input[value='Condition']")
                page.check("#grant-categories input[value='Procedure']")
                page.select_option("#grant-purpose", "payment")
                page.select_option("#grant-period", "range")
                page.fill("#grant-from", "2025-01-01")
                page.fill("#grant-to", "2025-12-31")
                page.fill("#grant-days", "90")
                page.click("#grant")
                expect(page.locator("#consent-msg")).to_contain_text("consent granted in block")
                new = page.locator("#consents tbody tr", has_text="Insurer").filter(
                    has_text="2025-01-01 \u2013 2025-12-31"
                )
                expect(new).to_have_count(1)
                expect(new.locator(".status")).to_have_text("active")
                expect(new.locator(".purpose")).to_contain_text("paying for your care")
                page.screenshot(path=str(ARTIFACTS / "portal-granted.png"), full_page=True)
                # committed: another node's chaincode lists it for the patient
                granted = new.get_attribute("data-consent")
                with c.client(1) as B:
                    listed = from_json(
                        B.query(
                            "consent",
                            "list_for_patient",
                            {"patient": p["pseudonym"]},
                            TxBuilder(p["signer"], c.genesis.chain_id),
                        )
                    )
                mine = next(x for x in listed if x["id"] == granted)
                assert (mine["grantee_kind"], mine["grantee"]) == ("org", "insurer")
                assert mine["categories"] == ["Condition", "Procedure"]
                assert mine["purpose"] == "payment" and mine["status"] == "active"
                assert mine["period"] == {"from_day": 20089, "to_day": 20453}
                assert mine["expires_ms"] - mine["created_ms"] == 90 * 86_400_000
                # -- the explorer's record page shows the SHA-256 in hex
                page.goto(f"{base}/#/record/{PORTAL_RECORDS[0]}")
                digest = hashlib.sha256(f"record {PORTAL_RECORDS[0]}".encode()).hexdigest()
                expect(page.locator("#record-versions td.sha256")).to_have_text(digest)
                page.screenshot(path=str(ARTIFACTS / "record-hash.png"), full_page=True)
                assert not errors, errors
            finally:
                browser.close()
