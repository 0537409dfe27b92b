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

from medchain.contracts.sdk import (
    Args,
    Context,
    Record,
    Reject,
    Result,
    Value,
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
NOT_A_REQUESTER = "only practitioners, organization admins and patients request records"
MAX_RECORDS = 500

# Why a custodian refused to release records for a permitting decision; one
# log entry per (decision, record, refusal).
REFUSALS = ("stale", "no-longer-permitted", "redeemed")


def standing_problem(ctx: Context) -> str | None:
    """Why the caller may not request records at all, or None. A node key is its
    organization's and its attempt is logged as a denial; a key nobody registered
    is attributable to no one, so its transaction fails. (The runtime lets revoked
    and suspended keys reach request and request_many only, so that their attempts
    are logged too.)"""
    kind = ctx.caller.kind
    if kind in REQUESTERS:
        return None
    require(kind == "node", NOT_A_REQUESTER)
    return NOT_A_REQUESTER


def request_problem(ctx: Context, a: Record) -> str | None:
    """What makes a request to be denied whole (logged for each record it names)."""
    problem = standing_problem(ctx)
    if problem is None and a.get("purpose") not in PURPOSES:
        problem = f"the purpose must be one of {', '.join(PURPOSES)}"
    custodian = a.get("custodian")
    if (
        problem is None
        and custodian is not None
        and custodian not in [o.org_id for o in ctx.genesis.organizations]
    ):
        problem = "the request is addressed to no organization of this consortium"
    return problem


def logged_purpose(a: Record) -> str:
    p = a.get("purpose")
    return p if p in PURPOSES else "invalid"


def addressed_to(a: Record) -> str | None:
    """The custodian a request is addressed to (optional): its node releases
    only what the request names of its own records; records held elsewhere are
    denied as sent to the wrong custodian."""
    c = a.get("custodian")
    return c if isinstance(c, str) else None


@transaction
def request(ctx: Context, args: Args) -> Result:
    """Decide and log one access by the caller (a practitioner, an admin, or the patient)."""
    a = args_dict(args)
    problem = request_problem(ctx, a)
    return decide(ctx, arg_id(a, "record_id"), logged_purpose(a), addressed_to(a), problem)


@transaction
def request_many(ctx: Context, args: Args) -> Result:
    """Decide and log access to several records at once (one decision, one entry each).

    Total over what names a patient's records: a bad purpose or addressee, too
    many records or records not in a list deny every record (logged), a record
    named twice is decided once, and names that are no anchored record are
    answered, unlogged (they name no patient)."""
    a = args_dict(args)
    problem = request_problem(ctx, a)
    names: Value = a.get("records")
    if isinstance(names, str):
        names = [names]
        problem = problem or "records must be a list of record ids"
    require(isinstance(names, list) and names, "name at least one record, in a list")
    if len(names) > MAX_RECORDS:  # (the transaction's size bounds how many more)
        problem = problem or f"a request names at most {MAX_RECORDS} records"
    purpose, custodian = logged_purpose(a), addressed_to(a)
    out = []
    for r in dict.fromkeys(n for n in names if isinstance(n, str)):
        h = None if not is_id(r) else ctx.read("records", b"head/" + r.encode())
        if h is None:
            out.append(unanchored(r))
        else:
            out.append(decide(ctx, r, purpose, custodian, problem))
    for n in names:
        if not isinstance(n, str):
            out.append(unanchored(str(n)[:64]))
    return out


def is_id(v: str) -> bool:
    try:
        arg_id({"r": v}, "r")
    except Reject:
        return False
    return True


def unanchored(name: str) -> Record:
    return {
        "record_id": name,
        "access_id": None,
        "decision": "deny",
        "reason": f"record {name} is not anchored",
        "consent_id": None,
    }


def wrong_custodian(held_by: str, addressed: str) -> str:
    return f"the record is held by {held_by}, not by {addressed}"


def entry_key(patient: str, timestamp_ms: int, tx_id: bytes, record_id: str) -> bytes:
    return b"log/" + patient.encode() + b"/" + be8(timestamp_ms) + b"/" + tx_id + record_id.encode()


def write_entry(ctx: Context, entry: Record) -> None:
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


def decide(
    ctx: Context,
    record_id: str,
    purpose: str,
    custodian: str | None = None,
    problem: str | None = None,
) -> Record:
    who = ctx.caller
    h = ctx.read("records", b"head/" + record_id.encode())
    require(h is not None, f"record {record_id} is not anchored")
    if problem is not None:
        verdict = {"decision": "deny", "reason": problem, "consent_id": None}
    elif custodian is not None and h["custodian"] != custodian and who.active:
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
def refuse_release(ctx: Context, args: Args) -> Result:
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


def is_regulator(ctx: Context) -> bool:
    return ctx.caller.is_admin_of() and ctx.caller.org_role == "regulator"


@query
def by_patient(ctx: Context, args: Args) -> Result:
    """Who read what, when, under which consent (the patient, signed query, or a
    regulator): the newest entries (see ``window``)."""
    a = args_dict(args)
    patient = arg_id(a, "patient")
    who = ctx.caller
    if not ((who.kind == "patient" and who.active and who.id == patient) or is_regulator(ctx)):
        raise Reject(
            "only the patient (signed query) or a regulator may read a patient's access log"
        )
    since, before = window(a)
    out: list[Value] = []
    for k, _ in ctx.scan(b"log/" + patient.encode() + b"/", reverse=True):
        ts = int.from_bytes(k[len(patient) + 5 : len(patient) + 13], "big")
        if ts >= before:
            continue
        if ts < since or len(out) >= MAX_LIST:
            break
        out.append(ctx.get_obj(k))
    out.reverse()
    return out


def window(a: Record) -> tuple[int, int]:
    """(since_ms, before_ms) of a log query: the newest MAX_LIST entries in
    [since, before), oldest first; page back with before_ms = the first one's time."""
    since = arg_int(a, "since_ms", 0, optional=True) or 0
    before = arg_int(a, "before_ms", 1, optional=True) or 1 << 62
    return since, before


@query
def all_accesses(ctx: Context, args: Args) -> Result:
    """Every access decision, newest first as ``by_patient`` (regulators only)."""
    if not is_regulator(ctx):
        raise Reject("only a regulator may list all accesses")
    since, before = window(args_dict(args))
    out: list[Value] = []
    for k, v in ctx.scan(b"all/", reverse=True):
        ts = int.from_bytes(k[4:12], "big")
        if ts >= before:
            continue
        if ts < since or len(out) >= MAX_LIST:
            break
        out.append(ctx.get_obj(b"log/" + v + b"/" + k[4:]))
    out.reverse()
    return out
