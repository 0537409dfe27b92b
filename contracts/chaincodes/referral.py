"""referral: moving a patient's care from one organization to another, in the
spirit of FHIR ServiceRequest.

The patient requests (or later agrees to) a referral; a practitioner at the
source organization issues it, naming the target organization and the record
anchors it carries; the contract checks the practitioner's credential, that
the records are the source's and the patient's, and the patient's agreement;
the target accepts, which opens a time-limited permission for exactly those
records; the referral is completed or cancelled (closing the permission).
Every step emits an event carrying the patient's pseudonym.

State: r/<id> -> referral; pat/<patient>/<id> -> "".
"""

from __future__ import annotations

from medchain.contracts.sdk import (
    DAY_MS,
    Args,
    Context,
    Record,
    Reject,
    Result,
    Value,
    arg_id,
    arg_int,
    arg_list,
    arg_str,
    args_dict,
    query,
    require,
    transaction,
)

ISSUER_ROLES = ("physician",)


def load(ctx: Context, rid: str) -> Value:
    r = ctx.get_obj(b"r/" + rid.encode())
    require(r is not None, f"no referral {rid}")
    return r


def save(ctx: Context, r: Record, step: str) -> None:
    r["history"] = [
        *r["history"],
        {
            "status": r["status"],
            "timestamp_ms": ctx.timestamp_ms,
            "by": ctx.caller.org or ctx.caller.id,
        },
    ]
    ctx.put_obj(b"r/" + r["id"].encode(), r)
    ctx.put(b"pat/" + r["patient"].encode() + b"/" + r["id"].encode(), b"")
    ctx.emit(
        step,
        {
            "patient": r["patient"],
            "referral": r["id"],
            "status": r["status"],
            "source": r["source"],
            "target": r["target"],
        },
    )


def require_org(ctx: Context, org: str) -> None:
    require(org in [o.org_id for o in ctx.genesis.organizations], f"no organization {org}")


@transaction
def request_referral(ctx: Context, args: Args) -> Result:
    """The patient asks for a referral (to a given target, or any)."""
    a = args_dict(args)
    who = ctx.caller
    require(who.kind == "patient" and who.active, "only the patient requests a referral")
    source = arg_id(a, "source")
    require_org(ctx, source)
    target = arg_id(a, "target", optional=True) or ""
    if target:
        require_org(ctx, target)
    r: Record = {
        "id": ctx.tx_id.hex()[:24],
        "patient": who.id,
        "source": source,
        "target": target,
        "status": "requested",
        "records": [],
        "issuer": "",
        "reason": None,
        "valid_days": 0,
        "consent_id": None,
        "history": [],
    }
    save(ctx, r, "requested")
    return {"referral_id": r["id"], "status": r["status"]}


@transaction
def issue(ctx: Context, args: Args) -> Result:
    """A physician of the source organization issues the referral."""
    a = args_dict(args)
    who = ctx.caller
    require(
        who.kind == "practitioner" and who.active, "only an active practitioner issues referrals"
    )
    require(who.role in ISSUER_ROLES, f"a {who.role} may not issue referrals")
    patient = arg_id(a, "patient")
    target = arg_id(a, "target")
    require_org(ctx, target)
    require(target != who.org, "a referral goes to another organization")
    records = arg_list(a, "records", 200)
    require(records, "a referral carries at least one record")
    for record_id in records:
        h = ctx.read("records", b"head/" + str(record_id).encode())
        require(h is not None, f"record {record_id} is not anchored")
        require(h["patient"] == patient, f"record {record_id} is another patient's")
        require(h["custodian"] == who.org, f"record {record_id} is not held by {who.org}")
    valid_days = arg_int(a, "valid_days", 1, 365)
    reason = a.get("reason")
    request_id = arg_id(a, "request_id", optional=True)
    if request_id:
        r = load(ctx, request_id)
        require(
            r["status"] == "requested" and r["patient"] == patient,
            "that referral request is not open for this patient",
        )
        require(r["source"] == who.org, "the patient asked another organization")
        require(not r["target"] or r["target"] == target, "the patient asked for another target")
        r["status"] = "agreed"  # the patient asked for it: that is their agreement
    else:
        r = {
            "id": ctx.tx_id.hex()[:24],
            "patient": patient,
            "source": who.org,
            "status": "awaiting-patient",
            "history": [],
            "consent_id": None,
        }
    r.update(
        {
            "target": target,
            "records": sorted(str(x) for x in records),
            "issuer": who.id,
            "reason": reason,
            "valid_days": valid_days,
        }
    )
    save(ctx, r, "issued")
    return {"referral_id": r["id"], "status": r["status"]}


@transaction
def agree(ctx: Context, args: Args) -> Result:
    r = load(ctx, arg_id(args_dict(args), "referral_id"))
    who = ctx.caller
    require(who.kind == "patient" and who.active and who.id == r["patient"], "only the referred patient agrees")
    require(r["status"] == "awaiting-patient", f"the referral is {r['status']}")
    r["status"] = "agreed"
    save(ctx, r, "agreed")
    return {"referral_id": r["id"], "status": r["status"]}


@transaction
def accept(ctx: Context, args: Args) -> Result:
    """The target organization accepts: a permission for exactly the referred records opens."""
    r = load(ctx, arg_id(args_dict(args), "referral_id"))
    who = ctx.caller
    require(who.acts_for(r["target"]), f"only {r['target']} accepts this referral")
    require(
        r["status"] == "agreed",
        "the patient has not agreed to this referral"
        if r["status"] == "awaiting-patient"
        else f"the referral is {r['status']}",
    )
    grant = ctx.call(
        "consent",
        "grant_for_referral",
        {
            "id": "ref-" + r["id"],
            "patient": r["patient"],
            "grantee": r["target"],
            "records": r["records"],
            "expires_ms": ctx.timestamp_ms + r["valid_days"] * DAY_MS,
            "referral": r["id"],
        },
    )
    r["consent_id"] = grant["consent_id"]
    r["status"] = "accepted"
    save(ctx, r, "accepted")
    return {"referral_id": r["id"], "status": r["status"], "consent_id": r["consent_id"]}


@transaction
def complete(ctx: Context, args: Args) -> Result:
    r = load(ctx, arg_id(args_dict(args), "referral_id"))
    require(ctx.caller.acts_for(r["target"]), f"only {r['target']} completes this referral")
    require(r["status"] == "accepted", f"the referral is {r['status']}")
    ctx.call("consent", "close_for_referral", {"consent_id": r["consent_id"]})
    r["status"] = "completed"
    save(ctx, r, "completed")
    return {"referral_id": r["id"], "status": r["status"]}


@transaction
def cancel(ctx: Context, args: Args) -> Result:
    a = args_dict(args)
    r = load(ctx, arg_id(a, "referral_id"))
    who = ctx.caller
    patient = who.kind == "patient" and who.active and who.id == r["patient"]
    require(
        patient or who.acts_for(r["source"]) or who.acts_for(r["target"] or "-"),
        "only the patient or the organizations involved cancel",
    )
    require(r["status"] not in ("completed", "cancelled"), f"the referral is already {r['status']}")
    if r["consent_id"]:
        ctx.call("consent", "close_for_referral", {"consent_id": r["consent_id"]})
    r["status"] = "cancelled"
    r["cancel_reason"] = arg_str(a, "reason", 200, optional=True) or ""
    save(ctx, r, "cancelled")
    return {"referral_id": r["id"], "status": r["status"]}


@query
def get(ctx: Context, args: Args) -> Result:
    r = load(ctx, arg_id(args_dict(args), "referral_id"))
    who = ctx.caller
    if not (
        (who.kind == "patient" and who.active and who.id == r["patient"])
        or who.acts_for(r["source"])
        or who.acts_for(r["target"] or "-")
    ):
        raise Reject("only the patient and the organizations involved may read a referral")
    return r


@query
def by_patient(ctx: Context, args: Args) -> Result:
    patient = arg_id(args_dict(args), "patient")
    who = ctx.caller
    if not (
        (who.kind == "patient" and who.active and who.id == patient)
        or (who.is_admin_of() and who.org_role == "regulator")
    ):
        raise Reject(
            "only the patient (signed query) or a regulator may list a patient's referrals"
        )
    prefix = b"pat/" + patient.encode() + b"/"
    return [load(ctx, k[len(prefix) :].decode()) for k, _ in ctx.scan(prefix)]
