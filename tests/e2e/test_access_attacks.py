"""Attacks on record releases and on the access log, on a real 4-node consortium.

A custodian releases a record only for a fresh access decision it has not
redeemed, re-checked at release time; a replay (via another node or straight
to the custodian), a stale decision, or a decision whose consent was revoked
since is refused and logged. Every denial — suspended practitioner, revoked
key, wrong custodian, a request naming two custodians' records — is in the
patient's access log with its true reason, also when several consents exist.

Hospital B's node runs with a short release window (``release_window_s``) for
the stale-decision attack; hospital A keeps the default.
"""

from __future__ import annotations

import base64
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from medchain.client.rpc import RpcClient
from medchain.client.signing import TxBuilder
from medchain.node.rpc.jsonval import from_json
from medchain.storage.tx import Transaction
from tests.e2e import scenario
from tests.e2e.harness import E2ECluster, cluster

pytestmark = pytest.mark.e2e

A, B, INSURER = 0, 1, 2
B_WINDOW_S = 4
WIDE = {"from": "2000-01-01", "to": "2099-12-31"}


@dataclass
class World:
    c: E2ECluster
    people: dict[str, TxBuilder] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)  # name -> pseudonym / practitioner id


def send(c: E2ECluster, node: int, who: TxBuilder, contract: str, method: str, args: Any) -> Any:
    """Through ``node``: the result of a transaction that committed."""
    with c.client(node) as cl:
        return from_json(scenario.send(cl, who, contract, method, args))


def fetch(c: E2ECluster, node: int, tx: Transaction) -> dict[str, Any]:
    with RpcClient(c.nodes[node].config.rpc_socket, timeout=60) as cl:
        reply: dict[str, Any] = cl.call(
            "records.fetch", {"tx": base64.b64encode(tx.encode()).decode()}
        )
    return reply


def items(reply: dict[str, Any]) -> dict[str, tuple[str, str, bool]]:
    """record -> (status, reason, sealed?)"""
    return {i["record_id"]: (i["status"], i["reason"], bool(i["sealed"])) for i in reply["items"]}


def access_log(w: World, patient: str) -> list[dict[str, Any]]:
    with w.c.client(INSURER) as cl:
        rows = cl.query(
            "access", "by_patient", {"patient": w.ids[patient]}, signer=w.people[patient]
        )
    return list(from_json(rows))


def wait_log(
    w: World, patient: str, match: Any, count: int = 1, timeout: float = 30
) -> list[dict[str, Any]]:
    """The patient's log entries for which ``match(entry)`` holds, once there are ``count``."""
    deadline = time.monotonic() + timeout
    while True:
        hits = [e for e in access_log(w, patient) if match(e)]
        if len(hits) >= count or time.monotonic() > deadline:
            return hits
        time.sleep(0.3)


def refusals_of(w: World, patient: str, tx: Transaction, count: int = 1) -> list[dict[str, Any]]:
    return wait_log(
        w,
        patient,
        lambda e: e.get("kind") == "release-refused" and e.get("decision_tx") == tx.tx_id,
        count,
    )


def store_and_anchor(
    w: World, node: int, author: str, patient: str, rid: str, rtype: str, date: str
) -> None:
    resource = {
        "resourceType": rtype,
        "id": rid,
        "subject": {"reference": "Patient/x"},
        "code": {"text": f"attack test {rid}"},
        ("onsetDateTime" if rtype == "Condition" else "performedDateTime"): date,
    }
    if rtype != "Condition":
        resource["authoredOn"] = date
    with w.c.client(node) as cl:
        put = from_json(
            cl.call(
                "records.put",
                {"items": [{"resource": resource, "patient": w.ids[patient], "record_id": rid}]},
            )[0]
        )
    assert put["status"] == "stored", put
    args = {
        "record_id": rid,
        "patient": w.ids[patient],
        "custodian": w.c.genesis.organizations[node].org_id,
        "category": put["category"],
        "clinical_year": put["clinical_year"],
        "content_hash": put["content_hash"],
        "fields_root": put["fields_root"],
        "author": w.people[author].public_key,
    }
    send(w.c, node, w.people[author], "records", "anchor", args)


def grant(w: World, patient: str, **kw: Any) -> str:
    args = {**scenario.org_consent(period=WIDE), **kw}
    return str(send(w.c, A, w.people[patient], "consent", "grant", args)["consent_id"])


def request(w: World, who: str, records: list[str], **kw: Any) -> Transaction:
    return w.people[who].build(
        "access", "request_many", {"records": records, "purpose": "treatment", **kw}
    )


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with cluster(4, start=False) as c:
        toml = c.nodes[B].config_path
        lines = toml.read_text().splitlines()
        toml.write_text(
            "\n".join([lines[0], f"release_window_s = {B_WINDOW_S}", *lines[1:]]) + "\n"
        )
        c.start_all()
        w = World(c)
        for name in ("p1", "p2", "p3", "doc_a", "doc_bb", "doc_b", "doc_s", "doc_r", "doc_x"):
            w.people[name] = scenario.builder(c.genesis.chain_id, b"attack " + name.encode())
        w.people["insurer_admin"] = c.builders[INSURER]
        for p in ("p1", "p2", "p3"):
            w.ids[p] = send(c, A, w.people[p], "registry", "register_patient", {})["pseudonym"]
        for name, node in (
            ("doc_a", A),
            ("doc_bb", B),
            ("doc_b", B),
            ("doc_s", B),
            ("doc_r", B),
            ("doc_x", B),
        ):
            with c.client(node) as cl:
                reg = scenario.register_doctor(cl, c.builders[node], w.people[name], f"ATT-{name}")
            w.ids[name] = reg["result"]["practitioner"]
        for rid, rtype in (
            ("a-cond-1", "Condition"),
            ("a-cond-2", "Condition"),
            ("a-cond-3", "Condition"),
            ("a-proc-1", "Procedure"),
        ):
            store_and_anchor(w, A, "doc_a", "p1", rid, rtype, "2025-06-01")
        store_and_anchor(w, A, "doc_a", "p2", "a-cond-e", "Condition", "2025-06-01")
        store_and_anchor(w, A, "doc_a", "p3", "a-cond-f", "Condition", "2025-06-01")
        store_and_anchor(w, B, "doc_bb", "p1", "b-cond-1", "Condition", "2025-07-01")
        c.sync()
        yield w


def test_a_replay_after_revocation_is_refused_and_logged(world: World) -> None:
    w = world
    cid = grant(w, "p1")
    w.c.sync()
    tx = request(w, "doc_b", ["a-cond-1"])
    first = items(fetch(w.c, B, tx))
    assert first["a-cond-1"][0] == "ok" and first["a-cond-1"][2]
    send(w.c, A, w.people["p1"], "consent", "revoke", {"consent_id": cid})
    w.c.sync()
    for node in (INSURER, A):  # via another node, and straight to the custodian
        status, reason, sealed = items(fetch(w.c, node, tx))["a-cond-1"]
        assert (status, sealed) == ("denied", False), (node, status, reason)
        assert "the consent was revoked" in reason, reason
    entries = refusals_of(w, "p1", tx)
    assert len(entries) == 1, entries  # one entry per (decision, record, reason)
    e = entries[0]
    assert e["record_id"] == "a-cond-1" and e["decision"] == "deny"
    assert e["requester"] == w.ids["doc_b"] and "the consent was revoked" in e["reason"]
    assert e["custodian"] == "hospital-a"


def test_b_replay_while_consented_is_refused_as_redeemed(world: World) -> None:
    w = world
    grant(w, "p1")
    w.c.sync()
    tx = request(w, "doc_b", ["a-cond-2"])
    assert items(fetch(w.c, B, tx))["a-cond-2"][0] == "ok"
    for node in (INSURER, A):
        status, reason, sealed = items(fetch(w.c, node, tx))["a-cond-2"]
        assert (status, sealed) == ("denied", False), (node, status, reason)
        assert "already redeemed" in reason, reason
    entries = refusals_of(w, "p1", tx)
    assert len(entries) == 1 and "already redeemed" in entries[0]["reason"], entries
    time.sleep(2)  # no second entry for the same (decision, record, reason)
    assert len(refusals_of(w, "p1", tx)) == 1


def test_b2_redemptions_survive_a_custodian_restart(world: World) -> None:
    w = world
    grant(w, "p1")
    w.c.sync()
    tx = request(w, "doc_b", ["a-cond-1"])
    assert items(fetch(w.c, B, tx))["a-cond-1"][0] == "ok"
    w.c.signal(A, signal.SIGTERM)
    w.c.start(A)
    w.c.sync()
    status, reason, sealed = items(fetch(w.c, INSURER, tx))["a-cond-1"]
    assert (status, sealed) == ("denied", False) and "already redeemed" in reason, reason


def test_c_stale_decision_is_refused_and_logged(world: World) -> None:
    w = world
    fresh = request(w, "p1", ["b-cond-1"])
    assert items(fetch(w.c, A, fresh))["b-cond-1"][0] == "ok"  # the window admits a fresh one
    stale = request(w, "p1", ["b-cond-1"])
    with w.c.client(A) as cl:
        res = cl.submit(stale, wait=True, timeout_ms=30_000)  # committed, never fetched
    assert res["status"] == "committed", res
    time.sleep(B_WINDOW_S + 1.5)
    status, reason, sealed = items(fetch(w.c, A, stale))["b-cond-1"]
    assert (status, sealed) == ("denied", False) and "stale" in reason, reason
    entries = refusals_of(w, "p1", stale)
    assert len(entries) == 1 and "stale" in entries[0]["reason"], entries
    assert entries[0]["custodian"] == "hospital-b"


def denial_of(w: World, patient: str, tx: Transaction, record: str) -> dict[str, Any]:
    hits = wait_log(
        w, patient, lambda e: e.get("tx_id") == tx.tx_id and e["record_id"] == record, timeout=5
    )
    assert len(hits) == 1, hits
    return hits[0]


def test_d_every_denial_is_logged_with_its_true_reason(world: World) -> None:
    w = world
    grant(w, "p1")  # hospital B may read Conditions
    # a suspended practitioner
    send(
        w.c,
        B,
        w.c.builders[B],
        "registry",
        "suspend_practitioner",
        {"practitioner": w.ids["doc_s"]},
    )
    w.c.sync()
    tx = request(w, "doc_s", ["a-cond-3"])
    got = items(fetch(w.c, B, tx))
    assert got.get("a-cond-3", ())[:2] == ("denied", "the practitioner is suspended"), got
    e = denial_of(w, "p1", tx, "a-cond-3")
    assert (e["requester"], e["decision"], e["reason"]) == (
        w.ids["doc_s"],
        "deny",
        "the practitioner is suspended",
    )
    # a revoked key
    send(w.c, B, w.c.builders[B], "registry", "revoke_key", {"key": w.people["doc_r"].public_key})
    w.c.sync()
    tx = request(w, "doc_r", ["a-cond-3"])
    got = items(fetch(w.c, B, tx))
    assert got.get("a-cond-3", ())[:2] == ("denied", "the requester's key is revoked"), got
    assert denial_of(w, "p1", tx, "a-cond-3")["reason"] == "the requester's key is revoked"
    # one request naming records of two custodians: each custodian releases its own
    tx = request(w, "doc_b", ["a-proc-1", "a-cond-3", "b-cond-1"])
    got = items(fetch(w.c, INSURER, tx))
    assert got["a-proc-1"][:2] == ("denied", "the consent does not cover Procedure records"), got
    assert got["a-cond-3"][0] == "ok" and got["b-cond-1"][0] == "ok", got
    assert denial_of(w, "p1", tx, "a-proc-1")["decision"] == "deny"
    assert denial_of(w, "p1", tx, "b-cond-1")["decision"] == "permit"
    # a request addressed to hospital B naming hospital A's record
    tx = request(w, "doc_b", ["a-cond-3"], custodian="hospital-b")
    status, reason, sealed = items(fetch(w.c, B, tx))["a-cond-3"]
    assert (status, sealed) == ("denied", False), (status, reason)
    assert reason == "the record is held by hospital-a, not by hospital-b", reason
    assert denial_of(w, "p1", tx, "a-cond-3")["reason"] == reason


def test_e_several_consents_the_closest_ones_reason_is_logged(world: World) -> None:
    w = world
    c1 = grant(w, "p2")
    send(w.c, A, w.people["p2"], "consent", "revoke", {"consent_id": c1})
    grant(w, "p2", expires_ms=int(time.time() * 1000) + 2500, days=None)
    grant(w, "p2", period={"from": "2000-01-01", "to": "2000-12-31"})
    grant(w, "p2", grantee_kind="practitioner", grantee=w.ids["doc_x"], categories=["*"])
    time.sleep(3)
    w.c.sync()
    tx = request(w, "doc_b", ["a-cond-e"])
    got = items(fetch(w.c, B, tx))
    # three consents name hospital B, each failing one condition: the most specific wins
    assert got["a-cond-e"][:2] == ("denied", "the consent was revoked"), got
    assert denial_of(w, "p2", tx, "a-cond-e")["reason"] == "the consent was revoked"
    # the insurer has no consent of its own: the others are for another grantee
    tx = request(w, "insurer_admin", ["a-cond-e"])
    got = items(fetch(w.c, INSURER, tx))
    assert got["a-cond-e"][:2] == ("denied", "the consent is for another grantee"), got
    assert denial_of(w, "p2", tx, "a-cond-e")["reason"] == "the consent is for another grantee"
    # hospital B's colleague named by a consent of their own: permitted
    tx = request(w, "doc_x", ["a-cond-e"])
    assert items(fetch(w.c, B, tx))["a-cond-e"][0] == "ok"


def test_f_the_custodian_judges_the_data_period_by_the_exact_date(world: World) -> None:
    """The chain holds the record's year only: a consent for the first quarter of
    2025 permits a June 2025 record on chain; its custodian, who holds the date,
    refuses the release and logs why."""
    w = world
    grant(w, "p3", period={"from": "2025-01-01", "to": "2025-03-31"})
    w.c.sync()
    tx = request(w, "doc_b", ["a-cond-f"])
    status, reason, sealed = items(fetch(w.c, B, tx))["a-cond-f"]
    assert (status, sealed) == ("denied", False), (status, reason)
    assert reason.endswith("the record is outside the consent's data period"), reason
    assert denial_of(w, "p3", tx, "a-cond-f")["decision"] == "permit"  # the chain's view
    entries = refusals_of(w, "p3", tx)
    assert len(entries) == 1 and entries[0]["reason"] == reason, entries
