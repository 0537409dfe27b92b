"""access.refuse_release (a custodian's node logs a refused release) and the
runtime rule that revoked or suspended keys reach access requests only."""

from __future__ import annotations

from typing import Any

from medchain.contracts.runtime import Context
from tests.chain import Chain
from tests.helpers import org_consent


def setup() -> tuple[Chain, Any, str, Any, dict[str, Any]]:
    """A permitted decision of hospital-b's doctor on hospital-a's record."""
    c = Chain()
    pk, patient = c.patient()
    doc_a, _ = c.practitioner("hospital-a")
    doc_b, _ = c.practitioner("hospital-b")
    c.anchor(doc_a, "hospital-a", "r1", patient)
    c.anchor(doc_a, "hospital-a", "r2", patient)
    c.ok(pk, "consent", "grant", org_consent(period={"last_days": 365}))
    c.ok(doc_b, "access", "request_many", {"records": ["r1", "r2"], "purpose": "treatment"})
    decision = c.q("access", "by_patient", {"patient": patient}, caller=pk)[-1]
    return c, pk, patient, doc_b, decision


def refusal(decision: dict[str, Any], *items: tuple[str, str]) -> dict[str, Any]:
    return {
        "decision": decision["tx_id"],
        "decided_ms": decision["timestamp_ms"],
        "items": [
            {"record_id": r, "refusal": code, "reason": f"refused: {code}"} for r, code in items
        ],
    }


def test_the_custodians_node_logs_one_entry_per_decision_record_and_refusal() -> None:
    c, pk, patient, doc_b, decision = setup()
    node_a = c.node_keys[0]
    res = c.tx(node_a, "access", "refuse_release", refusal(decision, ("r1", "redeemed")))
    assert res.ok and res.data[0]["logged"] is True, res.data
    ev = res.events[0]
    assert (ev.name, ev.attrs["refusal"], ev.attrs["decision"]) == ("access", "redeemed", "deny")
    entry = c.q("access", "by_patient", {"patient": patient}, caller=pk)[-1]
    assert entry["kind"] == "release-refused" and entry["decision_tx"] == decision["tx_id"]
    assert (entry["record_id"], entry["decision"], entry["reason"]) == (
        "r1",
        "deny",
        "refused: redeemed",
    )
    assert entry["requester"] == decision["requester"] and entry["custodian"] == "hospital-a"
    # the same (decision, record, refusal) again: skipped; another refusal: its own entry
    again = c.ok(
        node_a, "access", "refuse_release", refusal(decision, ("r1", "redeemed"), ("r1", "stale"))
    )
    assert [x["logged"] for x in again] == [False, True]
    log = c.q("access", "by_patient", {"patient": patient}, caller=pk)
    assert [e["refusal"] for e in log if e["kind"] == "release-refused"] == ["redeemed", "stale"]
    assert len(c.q("access", "all_accesses", {}, caller=c.admins["regulator"])) == len(log)


def test_only_the_custodians_node_logs_refusals_of_real_permits() -> None:
    c, pk, patient, doc_b, decision = setup()
    args = refusal(decision, ("r1", "stale"))
    assert "only the node of hospital-a" in c.fails(
        c.node_keys[1], "access", "refuse_release", args
    )
    assert "only a custodian's node" in c.fails(doc_b, "access", "refuse_release", args)
    assert "only a custodian's node" in c.fails(
        c.admins["hospital-a"], "access", "refuse_release", args
    )
    bad = dict(args, decided_ms=args["decided_ms"] + 1)
    assert "no access decision" in c.fails(c.node_keys[0], "access", "refuse_release", bad)
    bad = dict(args, items=[{"record_id": "r1", "refusal": "bored", "reason": "x"}])
    assert "refusal must be one of" in c.fails(c.node_keys[0], "access", "refuse_release", bad)
    assert "items must be a list" in c.fails(
        c.node_keys[0], "access", "refuse_release", dict(args, items="r1")
    )
    # a denied decision released nothing: there is nothing to refuse
    stranger, _ = c.practitioner("insurer")
    c.ok(stranger, "access", "request", {"record_id": "r1", "purpose": "treatment"})
    denied = c.q("access", "by_patient", {"patient": patient}, caller=pk)[-1]
    assert denied["decision"] == "deny"
    assert "no access decision" in c.fails(
        c.node_keys[0], "access", "refuse_release", refusal(denied, ("r1", "stale"))
    )


class CallsKv:
    """A stand-in access chaincode that tries to invoke other chaincode."""

    name = "access"

    def invoke(self, ctx: Context, method: str, args: Any) -> Any:
        return ctx.call("kv", "put", {"key": "k", "value": "v"})

    def query(self, ctx: Context, method: str, args: Any) -> Any:
        return None


def test_inactive_keys_reach_access_requests_only() -> None:
    c = Chain()
    pk, patient = c.patient()
    doc_a, _ = c.practitioner("hospital-a")
    doc_b, doc_b_id = c.practitioner("hospital-b")
    c.anchor(doc_a, "hospital-a", "r1", patient)
    c.ok(c.admins["hospital-b"], "registry", "suspend_practitioner", {"practitioner": doc_b_id})
    got = c.ok(doc_b, "access", "request", {"record_id": "r1", "purpose": "treatment"})
    assert (got["decision"], got["reason"]) == ("deny", "the practitioner is suspended")
    assert "the signing key is suspended" in c.fails(
        doc_b, "referral", "accept", {"referral_id": "x"}
    )
    c.ok(pk, "registry", "revoke_key", {"key": pk.public_key})
    own = c.ok(pk, "access", "request_many", {"records": ["r1"], "purpose": "treatment"})
    assert own[0]["reason"] == "the requester's key is revoked"
    assert "the signing key is revoked" in c.fails(pk, "consent", "grant", {})
    # an allowed call cannot reach further: invoking other chaincode is refused
    c.executor.natives["access"] = CallsKv()
    assert "the signing key is revoked" in c.fails(
        pk, "access", "request", {"record_id": "r1", "purpose": "treatment"}
    )
