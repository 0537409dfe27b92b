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

from medchain.contracts.sdk import (
    DAY_MS,
    Args,
    Context,
    Identity,
    Record,
    Reject,
    Result,
    Value,
    arg_choice,
    arg_id,
    arg_int,
    arg_list,
    args_dict,
    called_by,
    date_of_day,
    day_of,
    day_of_ms,
    ms_to_iso,
    query,
    require,
    transaction,
)

PURPOSES = ("treatment", "payment", "research")

# Decision reasons: stable strings (access logs, member systems and tests match
# on them); the scope, purpose and sliding-window reasons add the values.
OWN_RECORD = "the patient's own record"
CUSTODIAN_ORG = "the requester's organization is the custodian"
CONSENTED = "consented"
KEY_REVOKED = "the requester's key is revoked"
SUSPENDED = "the practitioner is suspended"
NOT_ACTIVE = "the requester is not an active practitioner or admin"
STANDING = (KEY_REVOKED, SUSPENDED, NOT_ACTIVE)  # about the requester, before any consent
NO_CONSENT = "the patient has not consented to this requester"
OTHER_GRANTEE = "the consent is for another grantee"
NOT_NAMED = "the record is not among those the consent names"
OUT_OF_PERIOD = "the record is outside the consent's data period"
EXPIRED = "the consent expired"
REVOKED = "the consent was revoked"

PURPOSE_CODES = (("treatment", "TREAT"), ("payment", "HPAYMT"), ("research", "HRESCH"))
MAX_DAYS = 36_500


def load(ctx: Context, consent_id: str) -> Value:
    c = ctx.get_obj(b"c/" + consent_id.encode())
    require(c is not None, f"no consent {consent_id}")
    return c


def parse_period(period: Value) -> Record:
    require(isinstance(period, dict), "period must be a map: {from, to} dates or {last_days}")
    if "last_days" in period:
        return {"last_days": arg_int(period, "last_days", 1, MAX_DAYS)}
    start = day_of(period.get("from", "1900-01-01"))
    end = day_of(period.get("to", "9999-12-31"))
    require(start <= end, "the period ends before it starts")
    return {"from_day": start, "to_day": end}


def store(ctx: Context, consent: Record) -> None:
    ctx.put_obj(b"c/" + consent["id"].encode(), consent)
    ctx.put(b"pat/" + consent["patient"].encode() + b"/" + consent["id"].encode(), b"")


@transaction
def grant(ctx: Context, args: Args) -> Result:
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
    if expires is None:
        if days is None:
            raise Reject("give an expiry: days or expires_ms")
        expires = ctx.timestamp_ms + days * DAY_MS
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
        "expires_ms": expires,
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
def revoke(ctx: Context, args: Args) -> Result:
    a = args_dict(args)
    c = load(ctx, arg_id(a, "consent_id"))
    who = ctx.caller
    require(
        who.kind == "patient" and who.active and who.id == c["patient"],
        "only the patient who granted it may revoke a consent",
    )
    require(c["status"] == "active", f"consent is already {c['status']}")
    c["status"] = "revoked"
    c["revoked_ms"] = ctx.timestamp_ms
    store(ctx, c)
    ctx.emit("revoked", {"patient": c["patient"], "consent": c["id"]})
    return {"consent_id": c["id"], "status": "revoked"}


@transaction
@called_by("referral")
def grant_for_referral(ctx: Context, args: Args) -> Result:
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
@called_by("referral")
def close_for_referral(ctx: Context, args: Args) -> Result:
    require(ctx.origin == "referral", "only the referral chaincode closes referral permissions")
    c = load(ctx, arg_id(args_dict(args), "consent_id"))
    if c["status"] == "active":
        c["status"] = "revoked"
        c["revoked_ms"] = ctx.timestamp_ms
        store(ctx, c)
        ctx.emit("revoked", {"patient": c["patient"], "consent": c["id"]})
    return {"consent_id": c["id"], "status": c["status"]}


def verdict(decision: str, reason: str, consent_id: str | None = None) -> Record:
    return {"decision": decision, "reason": reason, "consent_id": consent_id}


def evaluate(
    ctx: Context, requester: Identity, record: Record, purpose: str, exact_day: int | None = None
) -> Record:
    """permit/deny for one requester, record and purpose, with the reason and consent id.

    The requester's own standing comes first (a revoked key, a suspended
    practitioner), then the patient's own record and the custodian's own
    organization, then the patient's consents (see ``closest``). ``exact_day``:
    the record's exact clinical day, known to its custodian only (at release)."""
    if requester.status == "revoked":
        return verdict("deny", KEY_REVOKED)
    if requester.status == "suspended":
        return verdict("deny", SUSPENDED)
    if requester.kind == "patient" and requester.active and requester.id == record["patient"]:
        return verdict("permit", OWN_RECORD)
    if not requester.active or requester.kind not in ("practitioner", "org-admin"):
        return verdict("deny", NOT_ACTIVE)
    if requester.org == record["custodian"]:
        return verdict("permit", CUSTODIAN_ORG)
    return closest(ctx, requester, record, purpose, exact_day)


def names_requester(c: Record, requester: Identity) -> bool:
    if c["grantee_kind"] == "org":
        return bool(c["grantee"] == requester.org)
    return bool(requester.kind == "practitioner" and c["grantee"] == requester.id)


def year_days(year: int) -> tuple[int, int]:
    """First and last day number of a calendar year."""
    return day_of(f"{year:04d}-01-01"), day_of(f"{year:04d}-12-31")


def period_miss(
    period: Record, clinical_year: int, today: int, exact_day: int | None = None
) -> tuple[int, str] | None:
    """Why a record of ``clinical_year`` is outside a consent's data period, as
    (rank 2, reason), or None. The one place that compares a record's date with
    a period.

    The chain knows only the record's year: a year wholly outside the period
    misses it; a year that overlaps it passes here, and the custodian, who holds
    the exact date, checks it at release (``exact_day``, a day number)."""
    first, last = (exact_day, exact_day) if exact_day is not None else year_days(clinical_year)
    if "last_days" in period:
        if last < today - period["last_days"]:
            return (
                2,
                f"the record is older than the consent's window of {period['last_days']} days",
            )
        return None
    if last < period["from_day"] or first > period["to_day"]:
        return (2, OUT_OF_PERIOD)
    return None


def misses(
    c: Record, record: Record, purpose: str, now_ms: int, exact_day: int | None = None
) -> list[tuple[int, str]]:
    """The conditions a consent naming the requester fails for this record, as
    (rank, reason), rank from least to most specific: 0 scope (records or
    categories), 1 purpose, 2 data period, 3 expired, 4 revoked."""
    out = []
    if c["records"]:
        if record["record_id"] not in c["records"]:
            out.append((0, NOT_NAMED))
    elif "*" not in c["categories"] and record["category"] not in c["categories"]:
        out.append((0, f"the consent does not cover {record['category']} records"))
    if c["purpose"] != purpose:
        out.append((1, f"the consent is for {c['purpose']}, not {purpose}"))
    period = period_miss(c["period"], record["clinical_year"], day_of_ms(now_ms), exact_day)
    if period is not None:
        out.append(period)
    if c["expires_ms"] <= now_ms:
        out.append((3, EXPIRED))
    if c["status"] != "active":
        out.append((4, REVOKED))
    return out


def closest(
    ctx: Context, requester: Identity, record: Record, purpose: str, exact_day: int | None = None
) -> Record:
    """Judge the patient's consents for ``requester``.

    Permit if a consent naming the requester (its organization, or the
    practitioner) passes every condition: the first such in consent-id order.
    Otherwise deny with the reason of the CLOSEST consent naming the requester:
    the one failing the fewest conditions; among those, the one whose most
    specific failing condition ranks highest (revoked > expired > data period >
    purpose > scope); then the most recently created; then the highest id. The
    reason is that consent's most specific failing condition. If no consent
    names the requester: OTHER_GRANTEE when the patient has consents (all for
    others), else NO_CONSENT."""
    now = ctx.timestamp_ms
    prefix = b"pat/" + record["patient"].encode() + b"/"
    best: tuple[Value, str] | None = None  # (sort key, reason)
    others = False
    for k, _ in ctx.scan(prefix):  # consent-id order: deterministic
        c = load(ctx, k[len(prefix) :].decode())
        if not names_requester(c, requester):
            others = True
            continue
        failed = misses(c, record, purpose, now, exact_day)
        if not failed:
            return verdict("permit", CONSENTED, c["id"])
        top = max(failed)
        key = (-len(failed), top[0], c["created_ms"], c["id"])
        if best is None or key > best[0]:
            best = (key, top[1])
    if best is not None:
        return verdict("deny", best[1])
    return verdict("deny", OTHER_GRANTEE if others else NO_CONSENT)


def record_head(ctx: Context, record_id: str) -> Value:
    h = ctx.read("records", b"head/" + record_id.encode())
    if h is None:
        return None
    return ctx.read(
        "records", b"rec/" + record_id.encode() + b"/" + h["version"].to_bytes(4, "big")
    )


@query
def check(ctx: Context, args: Args) -> Result:
    """check(requester, record) -> {decision, reason, consent_id}. ``requester``: a
    public key (default: the caller). ``clinical_date``: the record's exact date
    (ISO), which only its custodian knows, to judge data periods by the day.
    ``granted_under``: the consent an earlier decision permitted under (a custodian
    re-checking at release): that consent must still permit, and a refusal names
    its failure, not another consent's."""
    a = args_dict(args)
    record_id = arg_id(a, "record_id")
    purpose = arg_choice(a, "purpose", PURPOSES)
    exact = a.get("clinical_date")
    exact_day = None if exact is None else day_of(exact)
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
    v = evaluate(ctx, requester, record, purpose, exact_day)
    under = arg_id(a, "granted_under", optional=True)
    if under is None or v["reason"] in STANDING or v["consent_id"] == under:
        return v
    if v["decision"] == "permit" and v["consent_id"] is None:
        return v  # the patient's own record, or the custodian's own organization
    # A decision holds at release only under the consent it was made under: a release
    # under another would leave the log naming a consent that does not cover it.
    c = ctx.get_obj(b"c/" + under.encode())
    if c is None or c["patient"] != record["patient"] or not names_requester(c, requester):
        return verdict("deny", "the consent the decision was made under is not this patient's")
    failed = misses(c, record, purpose, ctx.timestamp_ms, exact_day)
    if failed:
        return verdict("deny", max(failed)[1], c["id"])
    return verdict("permit", CONSENTED, c["id"])


def visible_to(ctx: Context, patient: str) -> bool:
    who = ctx.caller
    return (who.kind == "patient" and who.active and who.id == patient) or (
        who.is_admin_of() and who.org_role == "regulator"
    )


@query
def list_for_patient(ctx: Context, args: Args) -> Result:
    patient = arg_id(args_dict(args), "patient")
    if not visible_to(ctx, patient):
        raise Reject("only the patient (signed query) or a regulator may list a patient's consents")
    prefix = b"pat/" + patient.encode() + b"/"
    return [load(ctx, k[len(prefix) :].decode()) for k, _ in ctx.scan(prefix)]


@query
def get(ctx: Context, args: Args) -> Value:
    c = load(ctx, arg_id(args_dict(args), "consent_id"))
    if not visible_to(ctx, c["patient"]) and not (
        ctx.caller.active and ctx.caller.org == c["grantee"]
    ):
        raise Reject("only the patient, the grantee or a regulator may read a consent")
    return c


@query
def fhir(ctx: Context, args: Args) -> Result:
    """The consent as a FHIR R4 Consent resource."""
    c = get(ctx, args)
    period = c["period"]
    provision: Record = {
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
                "code": dict(PURPOSE_CODES)[c["purpose"]],
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
