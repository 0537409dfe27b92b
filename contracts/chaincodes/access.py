"""access: every access decision on a record, permit or deny, is a
transaction: requester, record, purpose, consent used, decision, reason, time.
The patient lists who read what, when, under which consent; a regulator lists
everything. Each decision emits an ``access`` event carrying the patient's
pseudonym, which is how a patient's subscription is told.

State: log/<patient>/<time>/<tx id> -> entry; all/<time>/<tx id> -> patient.
"""

from __future__ import annotations

from contracts.sdk import (
    Any,
    Reject,
    arg_choice,
    arg_id,
    arg_int,
    arg_list,
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


@transaction
def request(ctx: Any, args: Any) -> Any:
    """Decide and log one access by the caller (a practitioner, an admin, or the patient)."""
    a = args_dict(args)
    require(
        ctx.caller.kind in REQUESTERS,
        "only practitioners, organization admins and patients request records",
    )
    return decide(ctx, arg_id(a, "record_id"), arg_choice(a, "purpose", PURPOSES))


@transaction
def request_many(ctx: Any, args: Any) -> Any:
    """Decide and log access to several records at once (one decision, one entry each)."""
    a = args_dict(args)
    require(
        ctx.caller.kind in REQUESTERS,
        "only practitioners, organization admins and patients request records",
    )
    purpose = arg_choice(a, "purpose", PURPOSES)
    records = arg_list(a, "records", MAX_RECORDS)
    require(records, "name at least one record")
    return [decide(ctx, arg_id({"r": r}, "r"), purpose) for r in records]


def decide(ctx: Any, record_id: str, purpose: str) -> Any:
    who = ctx.caller
    h = ctx.read("records", b"head/" + record_id.encode())
    require(h is not None, f"record {record_id} is not anchored")
    verdict = ctx.query("consent", "check", {"record_id": record_id, "purpose": purpose})
    entry = {
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
    entry_key = be8(ctx.timestamp_ms) + b"/" + ctx.tx_id + record_id.encode()
    ctx.put_obj(b"log/" + h["patient"].encode() + b"/" + entry_key, entry)
    ctx.put(b"all/" + entry_key, h["patient"].encode())
    ctx.emit(
        "access",
        {
            "patient": h["patient"],
            "record": record_id,
            "decision": verdict["decision"],
            "requester_org": who.org,
            "purpose": purpose,
            "consent": verdict["consent_id"],
        },
    )
    return {
        "record_id": record_id,
        "access_id": entry["access_id"],
        "decision": verdict["decision"],
        "reason": verdict["reason"],
        "consent_id": verdict["consent_id"],
    }


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
