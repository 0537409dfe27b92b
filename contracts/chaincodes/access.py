"""access: every access decision on a record, permit or deny, is a
transaction: requester, record, purpose, consent used, decision, reason, time.
The patient lists who read what, when, under which consent; a regulator lists
everything. Each decision emits an ``access`` event carrying the patient's
pseudonym, which is how a patient's subscription is told.

A custodian's node that refuses to release records for a permitting decision
(stale, no longer permitted, already redeemed) logs that too, as its own entry
(``refuse_release``). Entries carry ``kind``: "decision" or "release-refused".

State: log/<patient>/<time>/<tx id><record id> -> entry; all/<time>/<tx id><record id>
-> patient; refused/<decision tx id><record id>/<refusal> -> "".
"""

from __future__ import annotations

from contracts.sdk import (
    Any,
    Reject,
    arg_bytes,
    arg_choice,
    arg_id,
    arg_int,
    arg_list,
    arg_str,
    args_dict,
    be8,
    query,
    require,
    transaction,
)

PURPOSES = ("treatment", "payment", "research")
MAX_LIST = 5000


REQUESTERS = ("practitioner", "org-admin", "patient")
MAX_RECORDS = 500

# Why a custodian refused to release records for a permitting decision; one
# log entry per (decision, record, refusal).
REFUSALS = ("stale", "no-longer-permitted", "redeemed")


def require_requester(ctx: Any) -> None:
    # The runtime lets revoked and suspended keys of these kinds reach request
    # and request_many only, so that their attempts are logged as denials.
    require(
        ctx.caller.kind in REQUESTERS,
        "only practitioners, organization admins and patients request records",
    )


def addressed_to(ctx: Any, a: Any) -> Any:
    """The custodian a request is addressed to (optional): its node releases
    only what the request names of its own records; records held elsewhere are
    denied as sent to the wrong custodian."""
    custodian = arg_id(a, "custodian", optional=True)
    if custodian is not None:
        require(
            custodian in [o.org_id for o in ctx.genesis.organizations],
            f"no organization {custodian}",
        )
    return custodian


@transaction
def request(ctx: Any, args: Any) -> Any:
    """Decide and log one access by the caller (a practitioner, an admin, or the patient)."""
    a = args_dict(args)
    require_requester(ctx)
    purpose = arg_choice(a, "purpose", PURPOSES)
    return decide(ctx, arg_id(a, "record_id"), purpose, addressed_to(ctx, a))


@transaction
def request_many(ctx: Any, args: Any) -> Any:
    """Decide and log access to several records at once (one decision, one entry each)."""
    a = args_dict(args)
    require_requester(ctx)
    purpose = arg_choice(a, "purpose", PURPOSES)
    custodian = addressed_to(ctx, a)
    records = [arg_id({"r": r}, "r") for r in arg_list(a, "records", MAX_RECORDS)]
    require(records, "name at least one record")
    require(len(dict.fromkeys(records)) == len(records), "a record is named twice")
    return [decide(ctx, r, purpose, custodian) for r in records]


def wrong_custodian(held_by: str, addressed: str) -> str:
    return f"the record is held by {held_by}, not by {addressed}"


def entry_key(patient: str, timestamp_ms: int, tx_id: bytes, record_id: str) -> bytes:
    return b"log/" + patient.encode() + b"/" + be8(timestamp_ms) + b"/" + tx_id + record_id.encode()


def write_entry(ctx: Any, entry: Any) -> None:
    """Store a log entry under the patient and in the all-accesses index; tell subscribers."""
    key = entry_key(entry["patient"], ctx.timestamp_ms, ctx.tx_id, entry["record_id"])
    ctx.put_obj(key, entry)
    ctx.put(
        b"all/" + key[len(b"log/" + entry["patient"].encode() + b"/") :], entry["patient"].encode()
    )
    attrs = {
        "patient": entry["patient"],
        "record": entry["record_id"],
        "custodian": entry["custodian"],
        "decision": entry["decision"],
        "requester_org": entry["requester_org"],
        "purpose": entry["purpose"],
        "consent": entry["consent_id"],
    }
    if entry["kind"] == "release-refused":
        attrs["refusal"] = entry["refusal"]
    ctx.emit("access", attrs)


def decide(ctx: Any, record_id: str, purpose: str, custodian: Any = None) -> Any:
    who = ctx.caller
    h = ctx.read("records", b"head/" + record_id.encode())
    require(h is not None, f"record {record_id} is not anchored")
    if custodian is not None and h["custodian"] != custodian and who.active:
        verdict = {
            "decision": "deny",
            "reason": wrong_custodian(h["custodian"], custodian),
            "consent_id": None,
        }
    else:  # an inactive key's own standing is the reason, wherever it was sent
        verdict = ctx.query("consent", "check", {"record_id": record_id, "purpose": purpose})
    entry = {
        "kind": "decision",
        "access_id": ctx.tx_id.hex()[:24] + "-" + record_id,
        "patient": h["patient"],
        "record_id": record_id,
        "custodian": h["custodian"],
        "requester": who.id,
        "requester_kind": who.kind,
        "requester_org": who.org,
        "purpose": purpose,
        "decision": verdict["decision"],
        "reason": verdict["reason"],
        "consent_id": verdict["consent_id"],
        "timestamp_ms": ctx.timestamp_ms,
        "height": ctx.height,
        "tx_id": ctx.tx_id,
    }
    write_entry(ctx, entry)
    return {
        "record_id": record_id,
        "access_id": entry["access_id"],
        "decision": verdict["decision"],
        "reason": verdict["reason"],
        "consent_id": verdict["consent_id"],
    }


@transaction
def refuse_release(ctx: Any, args: Any) -> Any:
    """A custodian's node logs that it refused to release records for a committed
    access decision that permitted them: stale, no longer permitted at release
    time, or already redeemed. Only the node of each record's custodian logs
    for that record; one entry per (decision, record, refusal), repeats are
    skipped. args: {decision: tx id, decided_ms: its block time,
    items: [{record_id, refusal, reason}]}."""
    a = args_dict(args)
    who = ctx.caller
    require(who.kind == "node" and who.active, "only a custodian's node logs refused releases")
    decision = arg_bytes(a, "decision", 32)
    decided_ms = arg_int(a, "decided_ms")
    refused = arg_list(a, "items", MAX_RECORDS)
    require(refused, "name at least one refused record")
    out = []
    for it in refused:
        it = args_dict(it)
        record_id = arg_id(it, "record_id")
        refusal = arg_choice(it, "refusal", REFUSALS)
        reason = arg_str(it, "reason", 300)
        h = ctx.read("records", b"head/" + record_id.encode())
        require(h is not None, f"record {record_id} is not anchored")
        require(
            h["custodian"] == who.org,
            f"only the node of {h['custodian']} logs refused releases of {record_id}",
        )
        original = ctx.get_obj(entry_key(h["patient"], decided_ms, decision, record_id))
        require(
            original is not None
            and original.get("kind", "decision") == "decision"
            and original["decision"] == "permit",
            f"no access decision {decision.hex()[:12]} permitting {record_id}",
        )
        mark = b"refused/" + decision + record_id.encode() + b"/" + refusal.encode()
        if ctx.get(mark) is not None:
            out.append({"record_id": record_id, "logged": False})
            continue
        ctx.put(mark, b"")
        entry = {
            "kind": "release-refused",
            "access_id": ctx.tx_id.hex()[:24] + "-" + record_id,
            "patient": h["patient"],
            "record_id": record_id,
            "custodian": h["custodian"],
            "requester": original["requester"],
            "requester_kind": original["requester_kind"],
            "requester_org": original["requester_org"],
            "purpose": original["purpose"],
            "decision": "deny",
            "reason": reason,
            "refusal": refusal,
            "consent_id": original["consent_id"],
            "decision_tx": decision,
            "timestamp_ms": ctx.timestamp_ms,
            "height": ctx.height,
            "tx_id": ctx.tx_id,
        }
        write_entry(ctx, entry)
        out.append({"record_id": record_id, "logged": True, "access_id": entry["access_id"]})
    return out


def is_regulator(ctx: Any) -> Any:
    return ctx.caller.is_admin_of() and ctx.caller.org_role == "regulator"


@query
def by_patient(ctx: Any, args: Any) -> Any:
    """Who read what, when, under which consent (the patient, signed query, or a regulator)."""
    a = args_dict(args)
    patient = arg_id(a, "patient")
    who = ctx.caller
    if not ((who.kind == "patient" and who.id == patient) or is_regulator(ctx)):
        raise Reject(
            "only the patient (signed query) or a regulator may read a patient's access log"
        )
    since = arg_int(a, "since_ms", 0, optional=True) or 0
    out = []
    for _, v in ctx.scan_obj(b"log/" + patient.encode() + b"/", limit=MAX_LIST):
        if v["timestamp_ms"] >= since:
            out.append(v)
    return out


@query
def all_accesses(ctx: Any, args: Any) -> Any:
    """Every access decision since a time (regulators only)."""
    if not is_regulator(ctx):
        raise Reject("only a regulator may list all accesses")
    since = arg_int(args_dict(args), "since_ms", 0, optional=True) or 0
    out = []
    for k, v in ctx.scan(b"all/"):
        ts = int.from_bytes(k[4:12], "big")
        if ts < since:
            continue
        entry = ctx.get_obj(b"log/" + v + b"/" + k[4:])
        out.append(entry)
        if len(out) >= MAX_LIST:
            break
    return out
