"""settlement: insurance products, enrolment, claims adjudicated by the
contract, payments — in the spirit of FHIR Claim / ClaimResponse.

Money is integer cents; ratios are basis points (10000 = 100 %). A product has
a yearly deductible and annual limit, and a catalog of items: code (in a
system of the dictionary), unit price, coverage ratio, per-item cap, per-year
cap per patient, and optional admission criteria (diagnosis codes, in either
ICD-10 or SNOMED CT: the dictionary's maps decide). Adjudication per item:

    submitted = unit price x quantity
    eligible  = min(submitted, per-item cap, what is left of the per-year cap)
    deductible = min(eligible, what is left of the yearly deductible)
    benefit   = min((eligible - deductible) x coverage, what is left of the annual limit)
    copay     = submitted - benefit

A duplicate claim (same hospital and encounter), a claim without anchored
records of the patient at that hospital, or a patient not enrolled in the
encounter's month is recorded with outcome "error" and no benefit.

Dates beside a patient's pseudonym are months ("YYYY-MM"): enrolment runs from a
first to a last covered month, and a claim names the month of its encounter.
An exact encounter date on chain could single the patient out; the hospital
keeps it in the encounter record (anchored, so provable).

State: prod/<id>, enr/<patient>/<product>, claim/<id>, enc/<hospital>/<encounter>,
use/<patient>/<product>/<year>.
"""

from __future__ import annotations

from medchain.contracts.sdk import (
    BASIS_POINTS,
    Args,
    Context,
    Identity,
    Record,
    Reject,
    Result,
    Value,
    apply_ratio,
    arg_id,
    arg_int,
    arg_list,
    arg_str,
    args_dict,
    query,
    require,
    transaction,
)

MAX_CENTS = 1_000_000_000_000
CLAIMANTS = ("hospital", "clinic", "exam-centre")


def arg_month(args: Record, name: str) -> Value:
    """A month ``YYYY-MM`` (no day: see the module doc)."""
    v: Value = args.get(name)
    ok = isinstance(v, str) and len(v) == 7 and v[4] == "-" and v[:4].isdigit() and v[5:].isdigit()
    require(ok and 1 <= int(v[5:]) <= 12, f"{name} must be a month YYYY-MM (no day)")
    return v


def require_insurer(ctx: Context) -> Identity:
    who = ctx.caller
    require(
        who.is_admin_of() and who.org_role == "insurer",
        "only an insurer's admin manages products and payments",
    )
    return who


def load_product(ctx: Context, pid: str) -> Value:
    p = ctx.get_obj(b"prod/" + pid.encode())
    require(p is not None, f"no product {pid}")
    return p


def parse_code(c: Value) -> Record:
    item = args_dict(c)
    return {"system": arg_str(item, "system", 200), "code": arg_str(item, "code", 64)}


@transaction
def register_product(ctx: Context, args: Args) -> Result:
    a = args_dict(args)
    who = require_insurer(ctx)
    pid = arg_id(a, "product_id")
    existing = ctx.get_obj(b"prod/" + pid.encode())
    require(
        existing is None or existing["insurer"] == who.org,
        f"product {pid} belongs to another insurer",
    )
    catalog = []
    for raw in arg_list(a, "catalog", 1000):
        it = args_dict(raw)
        catalog.append(
            {
                "system": arg_str(it, "system", 200),
                "code": arg_str(it, "code", 64),
                "display": arg_str(it, "display", 200, optional=True) or "",
                "unit_price_cents": arg_int(it, "unit_price_cents", 0, MAX_CENTS),
                "coverage_bp": arg_int(it, "coverage_bp", 0, BASIS_POINTS),
                "per_item_cap_cents": arg_int(it, "per_item_cap_cents", 0, MAX_CENTS),
                "per_year_cap_cents": arg_int(it, "per_year_cap_cents", 0, MAX_CENTS),
                "requires_diagnosis": [
                    parse_code(c) for c in arg_list(it, "requires_diagnosis", 100, optional=True)
                ],
            }
        )
    require(catalog, "a product needs a catalog")
    product = {
        "product_id": pid,
        "insurer": who.org,
        "name": arg_str(a, "name", 200),
        "deductible_cents": arg_int(a, "deductible_cents", 0, MAX_CENTS),
        "annual_limit_cents": arg_int(a, "annual_limit_cents", 0, MAX_CENTS),
        "catalog": catalog,
        "version": (existing["version"] + 1) if existing else 1,
    }
    ctx.put_obj(b"prod/" + pid.encode(), product)
    ctx.emit("product", {"product": pid, "insurer": who.org, "version": product["version"]})
    return {"product_id": pid, "version": product["version"]}


@transaction
def enroll(ctx: Context, args: Args) -> Result:
    a = args_dict(args)
    who = require_insurer(ctx)
    product = load_product(ctx, arg_id(a, "product_id"))
    require(product["insurer"] == who.org, "only the product's insurer enrolls patients in it")
    patient = arg_id(a, "patient")
    pat = ctx.read("registry", b"pat/" + patient.encode())
    require(pat is not None and pat["status"] == "active", f"patient {patient} is not registered")
    start, end = arg_month(a, "start"), arg_month(a, "end")
    require(start <= end, "enrolment ends before it starts")
    ctx.put_obj(
        b"enr/" + patient.encode() + b"/" + product["product_id"].encode(),
        {"start_month": start, "end_month": end},
    )
    ctx.emit("enrolled", {"patient": patient, "product": product["product_id"], "insurer": who.org})
    return {"patient": patient, "product_id": product["product_id"]}


def find_item(ctx: Context, product: Record, system: str, code: str) -> Value:
    for entry in product["catalog"]:
        if entry["system"] == system and entry["code"] == code:
            return entry
    for entry in product["catalog"]:
        if entry["system"] != system and ctx.query(
            "dictionary",
            "matches",
            {
                "system": system,
                "code": code,
                "any_of": [{"system": entry["system"], "code": entry["code"]}],
            },
        ):
            return entry
    return None


def admitted(ctx: Context, entry: Record, diagnoses: list[Record]) -> bool:
    wanted = entry["requires_diagnosis"]
    if not wanted:
        return True
    for d in diagnoses:
        if ctx.query(
            "dictionary", "matches", {"system": d["system"], "code": d["code"], "any_of": wanted}
        ):
            return True
    return False


def error_response(ctx: Context, claim: Record, reason: str) -> Record:
    claim.update(
        {
            "outcome": "error",
            "disposition": reason,
            "items": [],
            "total_submitted_cents": 0,
            "total_benefit_cents": 0,
            "total_copay_cents": 0,
        }
    )
    return claim


def adjudicate(
    ctx: Context, claim: Record, product: Record, diagnoses: list[Record], items: list[Value]
) -> Record:
    year = int(claim["encounter_month"][:4])
    use_key = (
        b"use/"
        + claim["patient"].encode()
        + b"/"
        + product["product_id"].encode()
        + b"/"
        + str(year).encode()
    )
    use = ctx.get_obj(use_key) or {"deductible_cents": 0, "benefit_cents": 0, "by_code": {}}
    lines = []
    denied = 0
    capped = 0
    for seq, raw in enumerate(items, start=1):
        it = args_dict(raw)
        system, code = arg_str(it, "system", 200), arg_str(it, "code", 64)
        qty = arg_int(it, "quantity", 1, 10_000)
        entry = find_item(ctx, product, system, code)
        line: Record = {
            "sequence": seq,
            "system": system,
            "code": code,
            "quantity": qty,
            "submitted_cents": 0,
            "eligible_cents": 0,
            "deductible_cents": 0,
            "benefit_cents": 0,
            "copay_cents": 0,
            "reasons": [],
        }
        if entry is None:
            line["submitted_cents"] = (
                arg_int(it, "unit_price_cents", 0, MAX_CENTS, optional=True) or 0
            )
            line["copay_cents"] = line["submitted_cents"]
            line["reasons"] = ["not covered by the product"]
            denied += 1
            lines.append(line)
            continue
        submitted = entry["unit_price_cents"] * qty
        line["submitted_cents"] = submitted
        if not admitted(ctx, entry, diagnoses):
            line["copay_cents"] = submitted
            line["reasons"] = ["admission criteria not met: no qualifying diagnosis"]
            denied += 1
            lines.append(line)
            continue
        key = entry["system"] + "|" + entry["code"]
        eligible = min(submitted, entry["per_item_cap_cents"])
        if eligible < submitted:
            line["reasons"].append("per-item cap applied")
        year_left = max(0, entry["per_year_cap_cents"] - use["by_code"].get(key, 0))
        if eligible > year_left:
            eligible = year_left
            line["reasons"].append(
                "per-year cap reached" if year_left == 0 else "per-year cap applied"
            )
        ded = min(eligible, max(0, product["deductible_cents"] - use["deductible_cents"]))
        if ded:
            line["reasons"].append("deductible applied")
        benefit = apply_ratio(eligible - ded, entry["coverage_bp"])
        annual_left = max(0, product["annual_limit_cents"] - use["benefit_cents"])
        if benefit > annual_left:
            benefit = annual_left
            line["reasons"].append("annual limit reached")
        by_code = dict(use["by_code"])
        by_code[key] = by_code.get(key, 0) + eligible
        use = {
            "deductible_cents": use["deductible_cents"] + ded,
            "benefit_cents": use["benefit_cents"] + benefit,
            "by_code": by_code,
        }
        line.update(
            {
                "eligible_cents": eligible,
                "deductible_cents": ded,
                "benefit_cents": benefit,
                "copay_cents": submitted - benefit,
            }
        )
        if benefit < submitted:
            capped += 1
        lines.append(line)
    ctx.put_obj(use_key, use)
    claim["items"] = lines
    claim["total_submitted_cents"] = sum(x["submitted_cents"] for x in lines)
    claim["total_benefit_cents"] = sum(x["benefit_cents"] for x in lines)
    claim["total_copay_cents"] = sum(x["copay_cents"] for x in lines)
    claim["outcome"] = (
        "complete" if denied == 0 else ("partial" if denied < len(lines) else "error")
    )
    claim["disposition"] = f"{len(lines) - denied} of {len(lines)} items approved" + (
        f", {capped} reduced" if capped else ""
    )
    return claim


@transaction
def submit_claim(ctx: Context, args: Args) -> Result:
    a = args_dict(args)
    who = ctx.caller
    require(
        who.kind in ("practitioner", "org-admin") and who.active and who.org_role in CLAIMANTS,
        "only a care provider submits claims",
    )
    claim_id = arg_id(a, "claim_id")
    require(ctx.get_obj(b"claim/" + claim_id.encode()) is None, f"claim {claim_id} already exists")
    product = load_product(ctx, arg_id(a, "product_id"))
    patient = arg_id(a, "patient")
    encounter = arg_id(a, "encounter_id")
    month = arg_month(a, "encounter_month")
    records = arg_list(a, "records", 200)
    diagnoses = [parse_code(d) for d in arg_list(a, "diagnoses", 50)]
    items = arg_list(a, "items", 200)
    require(items, "a claim has at least one item")
    claim = {
        "claim_id": claim_id,
        "patient": patient,
        "hospital": who.org,
        "insurer": product["insurer"],
        "product_id": product["product_id"],
        "encounter_id": encounter,
        "encounter_month": month,
        "records": sorted(str(r) for r in records),
        "diagnoses": diagnoses,
        "submitted_ms": ctx.timestamp_ms,
        "status": "adjudicated",
        "paid_cents": 0,
        "payments": [],
    }
    if who.org is None:  # (a care provider's member acts for it)
        raise Reject("only a care provider submits claims")
    enc_key = b"enc/" + who.org.encode() + b"/" + encounter.encode()
    enrolment = ctx.get_obj(b"enr/" + patient.encode() + b"/" + product["product_id"].encode())
    anchored = bool(records)
    for r in records:
        h = ctx.read("records", b"head/" + str(r).encode())
        if h is None or h["patient"] != patient or h["custodian"] != who.org:
            anchored = False
    claimed = ctx.get(enc_key)
    if claimed is not None:
        claim = error_response(
            ctx,
            claim,
            f"duplicate claim: encounter {encounter} was already claimed as {claimed.decode()}",
        )
    elif not anchored:
        claim = error_response(
            ctx, claim, "claim without anchored records of this patient at this provider"
        )
    elif enrolment is None or not enrolment["start_month"] <= month <= enrolment["end_month"]:
        claim = error_response(
            ctx, claim, "the patient is not enrolled in this product in the encounter's month"
        )
    else:
        ctx.put(enc_key, claim_id.encode())
        claim = adjudicate(ctx, claim, product, diagnoses, items)
    ctx.put_obj(b"claim/" + claim_id.encode(), claim)
    ctx.put(b"pclaim/" + patient.encode() + b"/" + claim_id.encode(), b"")
    ctx.emit(
        "adjudicated",
        {
            "claim": claim_id,
            "patient": patient,
            "hospital": who.org,
            "insurer": product["insurer"],
            "outcome": claim["outcome"],
            "benefit_cents": claim["total_benefit_cents"],
        },
    )
    return {
        k: claim[k]
        for k in (
            "claim_id",
            "outcome",
            "disposition",
            "total_submitted_cents",
            "total_benefit_cents",
            "total_copay_cents",
            "items",
        )
    }


@transaction
def record_payment(ctx: Context, args: Args) -> Result:
    a = args_dict(args)
    who = require_insurer(ctx)
    claim_id = arg_id(a, "claim_id")
    claim = ctx.get_obj(b"claim/" + claim_id.encode())
    require(claim is not None, f"no claim {claim_id}")
    require(claim["insurer"] == who.org, "only the claim's insurer records payments")
    amount = arg_int(a, "amount_cents", 1, MAX_CENTS)
    require(
        claim["paid_cents"] + amount <= claim["total_benefit_cents"],
        "payment exceeds the adjudicated benefit",
    )
    claim["paid_cents"] += amount
    claim["payments"] = [
        *claim["payments"],
        {
            "amount_cents": amount,
            "reference": arg_str(a, "reference", 128),
            "timestamp_ms": ctx.timestamp_ms,
        },
    ]
    claim["status"] = (
        "paid" if claim["paid_cents"] == claim["total_benefit_cents"] else "partially-paid"
    )
    ctx.put_obj(b"claim/" + claim_id.encode(), claim)
    ctx.emit(
        "paid",
        {
            "claim": claim_id,
            "patient": claim["patient"],
            "hospital": claim["hospital"],
            "insurer": who.org,
            "amount_cents": amount,
            "status": claim["status"],
        },
    )
    return {"claim_id": claim_id, "status": claim["status"], "paid_cents": claim["paid_cents"]}


@query
def claim(ctx: Context, args: Args) -> Result:
    c = ctx.get_obj(b"claim/" + arg_id(args_dict(args), "claim_id").encode())
    if c is None:
        raise Reject("no such claim")
    if not readable(ctx, c):
        raise Reject("only the patient, the hospital, the insurer or a regulator may read a claim")
    return c


def readable(ctx: Context, c: Record) -> bool:
    who = ctx.caller
    return bool(
        (who.kind == "patient" and who.active and who.id == c["patient"])
        or who.acts_for(c["hospital"])
        or who.acts_for(c["insurer"])
        or (who.is_admin_of() and who.org_role == "regulator")
    )


@query
def claims(ctx: Context, args: Args) -> Result:
    """A patient's claims the caller may read (the patient, the claiming hospital, the
    insurer, a regulator), in claim id order."""
    patient = arg_id(args_dict(args), "patient")
    prefix = b"pclaim/" + patient.encode() + b"/"
    out: list[Record] = []
    for k, _ in ctx.scan(prefix):
        c = ctx.get_obj(b"claim/" + k[len(prefix) :])
        if c is not None and readable(ctx, c):
            out.append(c)
    return out


@query
def product(ctx: Context, args: Args) -> Result:
    return load_product(ctx, arg_id(args_dict(args), "product_id"))
