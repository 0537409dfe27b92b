"""What the patient portal says, in words: a consent's data period, categories,
purpose, grantee and true state, and who accessed a record, with what
decision and why — pure functions over what the chaincodes return.

People and organizations are named from the registry only: an organization
by its name in the genesis, a practitioner by what the registry holds of
them (license, role, department, organization: it holds no names of people).
Nothing here reads or returns another patient's data: a request by another
patient is "another patient", never their pseudonym.

A consent's state is its true one: "active", "expired" (past its expiry, even
if never revoked), "revoked" (by the patient), or, for a consent a referral
opened, the referral's own closing state ("completed", "cancelled") when the
referral closed it (``consent.close_for_referral`` marks it revoked).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any

EPOCH = date(1970, 1, 1)
OPEN_FROM = (date(1900, 1, 1) - EPOCH).days  # consent.parse_period's open start
OPEN_TO = (date(9999, 12, 31) - EPOCH).days  # and open end

PURPOSE_WORDS = {
    "treatment": "your care and treatment",
    "payment": "paying for your care (claims)",
    "research": "medical research",
}
# FHIR resource types (a record's category) in plain words; others are spelled out.
CATEGORY_WORDS = {
    "AllergyIntolerance": "allergies and intolerances",
    "CarePlan": "care plans",
    "Condition": "conditions and diagnoses",
    "DiagnosticReport": "test and imaging reports",
    "DocumentReference": "clinical documents",
    "Encounter": "visits and hospital stays",
    "ImagingStudy": "imaging studies",
    "Immunization": "vaccinations",
    "MedicationRequest": "prescriptions",
    "MedicationStatement": "medicines taken",
    "Observation": "measurements and test results",
    "Procedure": "procedures and operations",
    "ServiceRequest": "orders and referrals",
}
ALL = "*"
# What a portal grant form offers besides the categories of the patient's own records.
GRANT_CATEGORIES = (
    "Condition",
    "Observation",
    "Procedure",
    "MedicationRequest",
    "Immunization",
    "AllergyIntolerance",
    "DiagnosticReport",
    "Encounter",
)
REFERRAL_CLOSED = ("completed", "cancelled")  # the referral chaincode's closing states
DECISION_WORDS = {"permit": "permitted", "deny": "denied"}
RELEASE_REFUSED = "release-refused"
EN_DASH = " \u2013 "


def day_text(day: int) -> str:
    try:
        return (EPOCH + timedelta(days=day)).isoformat()
    except OverflowError:
        return "any date"


def period_text(period: Any) -> str:
    """A consent's data period: "the last 730 days", "2024-01-01 to 2026-12-31"
    (with an en dash), "from 2024-01-01", "up to 2026-12-31" or "any date"."""
    if not isinstance(period, dict):
        return "any date"
    if "last_days" in period:
        return f"the last {period['last_days']} days"
    start, end = period.get("from_day", OPEN_FROM), period.get("to_day", OPEN_TO)
    if not isinstance(start, int) or not isinstance(end, int):
        return "any date"
    open_start, open_end = start <= OPEN_FROM, end >= OPEN_TO
    if open_start and open_end:
        return "any date"
    if open_start:
        return f"up to {day_text(end)}"
    if open_end:
        return f"from {day_text(start)}"
    return f"{day_text(start)}{EN_DASH}{day_text(end)}"


def category_text(category: str) -> str:
    if category == ALL:
        return "all your records"
    words = CATEGORY_WORDS.get(category)
    if words is not None:
        return words
    return " ".join(re.findall(r"[A-Z][a-z]*|[a-z]+|\d+", category)).lower() + " records"


def categories_text(categories: Any) -> str:
    cats = [c for c in categories if isinstance(c, str)] if isinstance(categories, list) else []
    if not cats or ALL in cats:
        return category_text(ALL)
    return ", ".join(category_text(c) for c in cats)


def purpose_text(purpose: Any) -> str:
    return PURPOSE_WORDS.get(str(purpose), str(purpose))


def short_id(v: Any, n: int = 10) -> str:
    s = str(v or "")
    return s if len(s) <= n else s[:n] + "…"


class Registry:
    """Names from the registry, for one answer: organizations by id (genesis),
    practitioners by id (looked up once each with ``practitioner``; None if
    unknown)."""

    def __init__(
        self,
        org_names: Mapping[str, str],
        practitioner: Callable[[str], Mapping[str, Any] | None],
    ) -> None:
        self.org_names = org_names
        self._lookup = practitioner
        self._pracs: dict[str, Mapping[str, Any] | None] = {}

    def org_name(self, org: Any) -> str:
        if not isinstance(org, str) or not org:
            return "an unknown organization"
        return self.org_names.get(org) or org

    def practitioner(self, pid: str) -> Mapping[str, Any] | None:
        if pid not in self._pracs:
            self._pracs[pid] = self._lookup(pid)
        return self._pracs[pid]

    def org_party(self, org: Any) -> dict[str, Any]:
        return {
            "kind": "org",
            "org": org,
            "org_name": self.org_name(org),
            "text": self.org_name(org),
        }

    def practitioner_party(self, pid: Any, org: Any = None) -> dict[str, Any]:
        """A practitioner as the registry has them: license, role, department,
        organization (and status, if not active); a short id if unknown."""
        rec = self.practitioner(pid) if isinstance(pid, str) and pid else None
        if rec is None:
            out = {"kind": "practitioner", "org": org, "org_name": self.org_name(org)}
            where = f" at {self.org_name(org)}" if org else ""
            return {**out, "text": f"practitioner {short_id(pid)}{where}"}
        org = rec.get("org", org)
        out = {
            "kind": "practitioner",
            "org": org,
            "org_name": self.org_name(org),
            "license": str(rec.get("license", "")),
            "role": str(rec.get("role", "")),
            "department": str(rec.get("department", "")),
            "status": str(rec.get("status", "")),
        }
        what = ", ".join(x for x in (out["role"], out["department"]) if x)
        text = f"{out['license']} ({what}) at {out['org_name']}"
        if out["status"] and out["status"] != "active":
            text += f" — {out['status']}"
        return {**out, "text": text}


# -- consents -------------------------------------------------------------------------


def consent_state(c: Mapping[str, Any], referral: Mapping[str, Any] | None, now_ms: int) -> str:
    """The consent's true state (see the module docstring)."""
    expires = int(c.get("expires_ms") or 0)
    if c.get("status") == "active":
        return "expired" if expires <= now_ms else "active"
    closed_ms = c.get("revoked_ms")
    if referral is not None:
        for step in referral.get("history") or ():
            if step.get("status") in REFERRAL_CLOSED and step.get("timestamp_ms") == closed_ms:
                return str(step["status"])
    if isinstance(closed_ms, int) and closed_ms >= expires:
        return "expired"  # it had run out before it was closed
    return "revoked"


def referral_of(c: Mapping[str, Any]) -> str | None:
    source = c.get("source")
    if isinstance(source, str) and source.startswith("referral/"):
        return source[len("referral/") :]
    return None


def describe_consent(
    c: Mapping[str, Any],
    referrals: Mapping[str, Mapping[str, Any]],
    reg: Registry,
    now_ms: int,
) -> dict[str, Any]:
    """The words for one consent (added beside its chaincode fields)."""
    rid = referral_of(c)
    referral = referrals.get(rid) if rid is not None else None
    if c.get("grantee_kind") == "practitioner":
        grantee = reg.practitioner_party(c.get("grantee"))
    else:
        grantee = reg.org_party(c.get("grantee"))
    records = c.get("records") or []
    if records:
        n = len(records)
        scope = f"{n} record{'s' if n != 1 else ''} named by the referral"
    else:
        scope = categories_text(c.get("categories"))
        period = period_text(c.get("period"))
        if period != "any date":
            scope += f", dated {period}"
    out: dict[str, Any] = {
        "state": consent_state(c, referral, now_ms),
        "grantee_party": grantee,
        "grantee_text": grantee["text"],
        "scope_text": scope,
        "purpose_text": purpose_text(c.get("purpose")),
    }
    if rid is not None:
        ref: dict[str, Any] = {"id": rid}
        if referral is not None:
            ref.update(
                status=referral.get("status"),
                source_name=reg.org_name(referral.get("source")),
                target_name=reg.org_name(referral.get("target")),
            )
            ref["text"] = (
                f"referral from {ref['source_name']} to {ref['target_name']}, {ref['status']}"
            )
        else:
            ref["text"] = f"referral {short_id(rid)}"
        out["referral"] = ref
    return out


# -- the access log ---------------------------------------------------------------------


def requester_party(e: Mapping[str, Any], me: str, reg: Registry) -> dict[str, Any]:
    """Who asked, as the patient may know them."""
    kind, rid, org = e.get("requester_kind"), e.get("requester"), e.get("requester_org")
    if kind == "practitioner":
        return reg.practitioner_party(rid, org)
    if kind == "org-admin":
        return {
            **reg.org_party(org),
            "kind": kind,
            "text": f"the administrator of {reg.org_name(org)}",
        }
    if kind == "node":
        return {**reg.org_party(org), "kind": kind, "text": f"the node of {reg.org_name(org)}"}
    if kind == "patient":
        return {"kind": kind, "text": "you" if rid == me else "another patient"}
    return {"kind": str(kind), "text": "an unknown requester"}


def describe_access(
    e: Mapping[str, Any],
    me: str,
    reg: Registry,
    consents: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """An access-log entry as the portal shows it: the chaincode's fields, who
    asked in words, the decision and its reason (a custodian's refusal to
    release says so), and the consent it was made under. Another patient's
    pseudonym is left out."""
    out = dict(e)
    if e.get("requester_kind") == "patient" and e.get("requester") != me:
        out["requester"] = ""  # another patient's pseudonym is theirs, not this patient's
    party = requester_party(e, me, reg)
    out["requester_party"] = party
    out["requester_text"] = party["text"]
    decision = str(e.get("decision", ""))
    if e.get("kind") == RELEASE_REFUSED:
        out["decision_text"] = f"not released ({e.get('refusal', '')})"
    else:
        out["decision_text"] = DECISION_WORDS.get(decision, decision)
    out["reason_text"] = str(e.get("reason") or "")
    cid = e.get("consent_id")
    if isinstance(cid, str) and cid:
        c = consents.get(cid)
        grantee = c.get("grantee_text") if c is not None else None
        out["consent_text"] = (
            f"your consent to {grantee}" if grantee else f"consent {short_id(cid, 12)}"
        )
    else:
        out["consent_text"] = ""
    out["custodian_name"] = reg.org_name(e.get("custodian"))
    return out


# A page of the log is named by a cursor: the position (time, transaction,
# record) of the last entry shown, in the chaincode's own order of entries
# (access: log/<patient>/<time>/<tx id><record id>).
Position = tuple[int, str, str]
CURSOR = re.compile(r"^(\d{1,19})\.([0-9a-f]{64})\.([A-Za-z0-9._:-]{1,128})$")


def position(e: Mapping[str, Any]) -> Position:
    tx = e.get("tx_id")
    tx_hex = tx.get("$bytes", "") if isinstance(tx, dict) else str(tx or "")
    return (int(e.get("timestamp_ms") or 0), str(tx_hex), str(e.get("record_id", "")))


def cursor_of(p: Position) -> str:
    return f"{p[0]}.{p[1]}.{p[2]}"


def parse_cursor(s: str) -> Position | None:
    m = CURSOR.match(s)
    if m is None:
        return None
    return int(m[1]), m[2], m[3]


def access_page(
    entries: list[Any], before: Position | None, limit: int, window_full: bool
) -> tuple[list[Any], Position | None]:
    """One page of the log, newest first: the ``limit`` newest of ``entries``
    (oldest first, as ``access.by_patient`` returns them) older than ``before``,
    and the position to page on from (None: no older entries). ``window_full``:
    the query returned as many entries as it may, so older ones may exist."""
    keyed = [(position(e), e) for e in entries if isinstance(e, dict)]
    keyed.sort(key=lambda x: x[0])
    if before is not None:
        keyed = [x for x in keyed if x[0] < before]
    page = keyed[-limit:][::-1]
    more = len(keyed) > limit or (window_full and bool(page))
    return [e for _, e in page], (page[-1][0] if more and page else None)


def grant_options(orgs: list[tuple[str, str, str]], record_categories: list[str]) -> Any:
    """What the portal's grant form offers: the organizations (id, name, role),
    the categories (common ones and those of the patient's own records, in words)
    and the purposes."""
    cats = list(GRANT_CATEGORIES)
    cats += sorted({c for c in record_categories if isinstance(c, str)} - set(cats))
    return {
        "organizations": [{"id": o, "name": name, "role": role} for o, name, role in orgs],
        "categories": [{"value": c, "text": category_text(c)} for c in cats],
        "purposes": [{"value": p, "text": t} for p, t in PURPOSE_WORDS.items()],
    }
