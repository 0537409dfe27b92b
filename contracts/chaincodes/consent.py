"""consent: a patient's grants, in the spirit of FHIR Consent.

A grant names a grantee (an organization or a practitioner), the categories
of records (FHIR resource types, or "*"), the data period (absolute dates or a
sliding window of the last N days, judged at access time), the purpose
(treatment, payment, research) and an expiry. Only block time is used. The
patient may revoke at any time. Referrals open time-limited grants for exact
records through this chaincode.

State: c/<consent id> -> grant; pat/<patient>/<consent id> -> "".
"""

from __future__ import annotations

from contracts.sdk import (
    DAY_MS,
    Any,
    Reject,
    arg_choice,
    arg_id,
    arg_int,
    arg_list,
    args_dict,
    date_of_day,
    day_of,
    day_of_ms,
    ms_to_iso,
    query,
    require,
    transaction,
)

PURPOSES = ("treatment", "payment", "research")
PURPOSE_CODES = {"treatment": "TREAT", "payment": "HPAYMT", "research": "HRESCH"}
MAX_DAYS = 36_500


def load(ctx: Any, consent_id: str) -> Any:
    c = ctx.get_obj(b"c/" + consent_id.encode())
    require(c is not None, f"no consent {consent_id}")
    return c


def parse_period(period: Any) -> Any:
    require(isinstance(period, dict), "period must be a map: {from, to} dates or {last_days}")
    if "last_days" in period:
        return {"last_days": arg_int(period, "last_days", 1, MAX_DAYS)}
    start = day_of(period.get("from", "1900-01-01"))
    end = day_of(period.get("to", "9999-12-31"))
    require(start <= end, "the period ends before it starts")
    return {"from_day": start, "to_day": end}


def store(ctx: Any, consent: Any) -> None:
    ctx.put_obj(b"c/" + consent["id"].encode(), consent)
    ctx.put(b"pat/" + consent["patient"].encode() + b"/" + consent["id"].encode(), b"")


@transaction
def grant(ctx: Any, args: Any) -> Any:
    a = args_dict(args)
    who = ctx.caller
    require(
        who.kind == "patient" and who.active,
        "only a registered patient grants consent, with their own key",
    )
    grantee_kind = arg_choice(a, "grantee_kind", ("org", "practitioner"))
    grantee = arg_id(a, "grantee")
    if grantee_kind == "org":
        require(
            grantee in [o.org_id for o in ctx.genesis.organizations], f"no organization {grantee}"
        )
    else:
        require(
            ctx.read("registry", b"prac/" + grantee.encode()) is not None,
            f"no practitioner {grantee}",
        )
    categories = arg_list(a, "categories", 64)
    require(
        categories and all(isinstance(c, str) and 0 < len(c) <= 64 for c in categories),
        'categories: FHIR resource types, or ["*"]',
    )
    purpose = arg_choice(a, "purpose", PURPOSES)
    period = parse_period(a.get("period", {}))
    days = arg_int(a, "days", 1, MAX_DAYS, optional=True)
    expires = arg_int(a, "expires_ms", ctx.timestamp_ms + 1, optional=True)
    require(days is not None or expires is not None, "give an expiry: days or expires_ms")
    consent = {
        "id": ctx.tx_id.hex()[:24],
        "patient": who.id,
        "grantee_kind": grantee_kind,
        "grantee": grantee,
        "categories": sorted(categories),
        "records": [],
        "period": period,
        "purpose": purpose,
        "created_ms": ctx.timestamp_ms,
        "expires_ms": expires if expires is not None else ctx.timestamp_ms + days * DAY_MS,
        "status": "active",
        "revoked_ms": 0,
        "source": "patient",
    }
    store(ctx, consent)
    ctx.emit(
        "granted",
        {"patient": who.id, "consent": consent["id"], "grantee": grantee, "purpose": purpose},
    )
    return {"consent_id": consent["id"], "expires_ms": consent["expires_ms"]}


@transaction
def revoke(ctx: Any, args: Any) -> Any:
    a = args_dict(args)
    c = load(ctx, arg_id(a, "consent_id"))
    who = ctx.caller
    require(
        who.kind == "patient" and who.id == c["patient"],
        "only the patient who granted it may revoke a consent",
    )
    require(c["status"] == "active", f"consent is already {c['status']}")
    c["status"] = "revoked"
    c["revoked_ms"] = ctx.timestamp_ms
    store(ctx, c)
    ctx.emit("revoked", {"patient": c["patient"], "consent": c["id"]})
    return {"consent_id": c["id"], "status": "revoked"}


@transaction
def grant_for_referral(ctx: Any, args: Any) -> Any:
    """A time-limited grant for exactly the referred records (referral chaincode only)."""
    require(ctx.origin == "referral", "only the referral chaincode opens referral permissions")
    a = args_dict(args)
    consent = {
        "id": arg_id(a, "id"),
        "patient": arg_id(a, "patient"),
        "grantee_kind": "org",
        "grantee": arg_id(a, "grantee"),
        "categories": ["*"],
        "records": sorted(arg_list(a, "records", 1000)),
        "period": {"from_day": 0, "to_day": 3_000_000},
        "purpose": "treatment",
        "created_ms": ctx.timestamp_ms,
        "expires_ms": arg_int(a, "expires_ms", ctx.timestamp_ms),
        "status": "active",
        "revoked_ms": 0,
        "source": "referral/" + arg_id(a, "referral"),
    }
    store(ctx, consent)
    ctx.emit(
        "granted",
        {
            "patient": consent["patient"],
            "consent": consent["id"],
            "grantee": consent["grantee"],
            "purpose": "treatment",
        },
    )
    return {"consent_id": consent["id"]}


@transaction
def close_for_referral(ctx: Any, args: Any) -> Any:
    require(ctx.origin == "referral", "only the referral chaincode closes referral permissions")
    c = load(ctx, arg_id(args_dict(args), "consent_id"))
    if c["status"] == "active":
        c["status"] = "revoked"
        c["revoked_ms"] = ctx.timestamp_ms
        store(ctx, c)
        ctx.emit("revoked", {"patient": c["patient"], "consent": c["id"]})
    return {"consent_id": c["id"], "status": c["status"]}


def year_days(year: int) -> tuple[int, int]:
    """First and last day number of a calendar year."""
    return day_of(f"{year:04d}-01-01"), day_of(f"{year:04d}-12-31")


def period_miss(period: Any, clinical_year: int, today: int) -> Any:
    """Why a record of ``clinical_year`` is outside a consent's data period, or None.

    The chain knows only the record's year: a year wholly outside the period
    misses it; a year that overlaps it passes here, and the custodian, who holds
    the exact date, checks it at release."""
    first, last = year_days(clinical_year)
    if "last_days" in period:
        if last < today - period["last_days"]:
            return (
                2,
                f"the record is older than the consent's window of {period['last_days']} days",
            )
        return None
    if last < period["from_day"] or first > period["to_day"]:
        return (2, "the record is outside the consent's data period")
    return None


def evaluate(ctx: Any, requester: Any, record: Any, purpose: str) -> Any:
    """permit/deny for one requester, record and purpose, with the reason and consent id."""
    if requester.kind == "patient" and requester.active and requester.id == record["patient"]:
        return {"decision": "permit", "reason": "the patient's own record", "consent_id": None}
    if not requester.active or requester.kind not in ("practitioner", "org-admin"):
        return {
            "decision": "deny",
            "reason": "the requester is not an active practitioner or admin",
            "consent_id": None,
        }
    if requester.org == record["custodian"]:
        return {
            "decision": "permit",
            "reason": "the requester's organization is the custodian",
            "consent_id": None,
        }
    now = ctx.timestamp_ms
    today = day_of_ms(now)
    prefix = b"pat/" + record["patient"].encode() + b"/"
    # Checks go from the record's scope to the consent's state, so that among several
    # near misses the reason reported is that of the consent closest to permitting.
    best = (0, "the patient has not consented to this requester")
    for k, _ in ctx.scan(prefix):
        c = load(ctx, k[len(prefix) :].decode())
        if c["grantee_kind"] == "org":
            if c["grantee"] != requester.org:
                continue
        elif requester.kind != "practitioner" or c["grantee"] != requester.id:
            continue
        miss = None
        if c["records"]:
            if record["record_id"] not in c["records"]:
                miss = (1, "the record is not among those the consent names")
        elif "*" not in c["categories"] and record["category"] not in c["categories"]:
            miss = (1, f"the consent does not cover {record['category']} records")
        if miss is None:
            miss = period_miss(c["period"], record["clinical_year"], today)
        if miss is None and c["purpose"] != purpose:
            miss = (3, f"the consent is for {c['purpose']}, not {purpose}")
        if miss is None and c["status"] != "active":
            miss = (4, "the consent was revoked")
        if miss is None and c["expires_ms"] <= now:
            miss = (4, "the consent expired")
        if miss is None:
            return {"decision": "permit", "reason": "consented", "consent_id": c["id"]}
        if miss[0] >= best[0]:
            best = miss
    reason = best[1]
    return {"decision": "deny", "reason": reason, "consent_id": None}


def record_head(ctx: Any, record_id: str) -> Any:
    h = ctx.read("records", b"head/" + record_id.encode())
    if h is None:
        return None
    return ctx.read(
        "records", b"rec/" + record_id.encode() + b"/" + h["version"].to_bytes(4, "big")
    )


@query
def check(ctx: Any, args: Any) -> Any:
    """check(requester, record) -> {decision, reason, consent_id}. ``requester``: a
    public key (default: the caller)."""
    a = args_dict(args)
    record_id = arg_id(a, "record_id")
    purpose = arg_choice(a, "purpose", PURPOSES)
    record = record_head(ctx, record_id)
    if record is None:
        return {
            "decision": "deny",
            "reason": f"record {record_id} is not anchored",
            "consent_id": None,
        }
    requester = (
        ctx.identity(a["requester"]) if isinstance(a.get("requester"), bytes) else ctx.caller
    )
    return evaluate(ctx, requester, record, purpose)


def visible_to(ctx: Any, patient: str) -> Any:
    who = ctx.caller
    return (who.kind == "patient" and who.id == patient) or (
        who.is_admin_of() and who.org_role == "regulator"
    )


@query
def list_for_patient(ctx: Any, args: Any) -> Any:
    patient = arg_id(args_dict(args), "patient")
    if not visible_to(ctx, patient):
        raise Reject("only the patient (signed query) or a regulator may list a patient's consents")
    prefix = b"pat/" + patient.encode() + b"/"
    return [load(ctx, k[len(prefix) :].decode()) for k, _ in ctx.scan(prefix)]


@query
def get(ctx: Any, args: Any) -> Any:
    c = load(ctx, arg_id(args_dict(args), "consent_id"))
    if not visible_to(ctx, c["patient"]) and not (
        ctx.caller.active and ctx.caller.org == c["grantee"]
    ):
        raise Reject("only the patient, the grantee or a regulator may read a consent")
    return c


@query
def fhir(ctx: Any, args: Any) -> Any:
    """The consent as a FHIR R4 Consent resource."""
    c = get(ctx, args)
    period = c["period"]
    provision: dict[str, Any] = {
        "type": "permit",
        "period": {"start": ms_to_iso(c["created_ms"]), "end": ms_to_iso(c["expires_ms"])},
        "actor": [
            {
                "role": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                            "code": "IRCP",
                        }
                    ]
                },
                "reference": {
                    "reference": (
                        "Organization/" if c["grantee_kind"] == "org" else "Practitioner/"
                    )
                    + c["grantee"]
                },
            }
        ],
        "purpose": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                "code": PURPOSE_CODES[c["purpose"]],
            }
        ],
    }
    if "last_days" in period:
        provision["dataPeriod"] = {
            "extension": [
                {"url": "urn:medchain:sliding-window-days", "valueInteger": period["last_days"]}
            ]
        }
    else:
        provision["dataPeriod"] = {
            "start": date_of_day(period["from_day"]),
            "end": date_of_day(min(period["to_day"], 2_932_896)),
        }
    if c["records"]:
        provision["data"] = [
            {"meaning": "instance", "reference": {"reference": "urn:medchain:record:" + r}}
            for r in c["records"]
        ]
    elif "*" not in c["categories"]:
        provision["class"] = [
            {"system": "http://hl7.org/fhir/resource-types", "code": cat} for cat in c["categories"]
        ]
    return {
        "resourceType": "Consent",
        "id": c["id"],
        "status": "active"
        if c["status"] == "active" and c["expires_ms"] > ctx.timestamp_ms
        else "inactive",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/" + c["patient"]},
        "dateTime": ms_to_iso(c["created_ms"]),
        "policyRule": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
            ]
        },
        "provision": provision,
    }
