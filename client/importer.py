"""Bulk import of FHIR NDJSON (e.g. Synthea bulk exports) into a consortium.

Each record goes to the custodian its own references name (client/custodian.py:
encounter, performer, location, organization, ...; mapped to member
organizations by a provider map or a default custodian), is stored in that
custodian's vault through its node, and is anchored on chain in bulk, signed
by the custodian's import system (a practitioner of role "system"). Import is
idempotent: re-running it anchors nothing twice. Everything skipped is
counted by reason, with the first file:line of each.
"""

from __future__ import annotations

import datetime
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medchain.client.custodian import (
    DIRECTORY_TYPES,
    NO_INSTITUTION,
    Directory,
    ProviderMap,
    custodian_of,
)
from medchain.client.rpc import RpcClient
from medchain.client.signing import TxBuilder
from medchain.node.rpc.jsonval import from_json
from medchain.storage.fhirdoc import (
    FhirError,
    canonical_json,
    clinical_date,
    load_json,
    subject_id,
)

REFERENCE_TYPES = {
    "Patient",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Location",
    "Medication",
}
SKIP_INVALID = "invalid JSON"
SKIP_UNKNOWN_PATIENT = "unknown patient"
SKIP_UNMAPPED = "institution not in the provider map (give --map or --default-custodian)"
SKIP_NO_CUSTODIAN = (
    "names no institution, and the patient has no other records here (give --default-custodian)"
)
SKIP_CONFLICT = "resource id already used for another patient"
SKIP_REFERENCE = "reference data, not a patient record"
SKIP_NO_DATE = "no clinical date"
SKIP_NOT_CANONICAL = "not representable as canonical JSON (RFC 8785)"
DATE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})(.*)$")


@dataclass
class Plan:
    by_org: dict[str, list[tuple[dict[str, Any], str]]] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # reason -> first file:line

    by_patient: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, org: str, resource: dict[str, Any], pseudonym: str) -> None:
        self.by_org.setdefault(org, []).append((resource, pseudonym))
        self.by_patient.setdefault(pseudonym, Counter())[org] += 1

    def main_custodian(self, pseudonym: str) -> str | None:
        """The member holding most of the patient's records (ties: the first by id)."""
        counts = self.by_patient.get(pseudonym)
        if not counts:
            return None
        return min(counts, key=lambda org: (-counts[org], org))

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, where)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.by_org.values())


def shift_dates(value: Any, days: int) -> Any:
    """Move every ISO date / date-time string in a resource by ``days`` (synthetic data only)."""
    if days == 0:
        return value
    if isinstance(value, dict):
        return {k: shift_dates(v, days) for k, v in value.items()}
    if isinstance(value, list):
        return [shift_dates(v, days) for v in value]
    if isinstance(value, str):
        m = DATE_RE.match(value)
        if m:
            try:
                d = datetime.date.fromisoformat(m.group(1)) + datetime.timedelta(days=days)
            except ValueError:
                return value
            return d.isoformat() + m.group(2)
    return value


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                yield n, line


def read_resource(line: str) -> dict[str, Any]:
    """One NDJSON line as a FHIR resource; FhirError (a ValueError) if it is not one."""
    r = load_json(line)
    if not isinstance(r, dict) or not isinstance(r.get("resourceType"), str):
        raise FhirError("not a FHIR resource (no resourceType)")
    return r


def classify_line(
    line: str,
    patients: dict[str, str],
    directory: Directory,
    providers: ProviderMap,
    shift_days: int = 0,
) -> tuple[str, dict[str, Any], str] | str:
    """One NDJSON line: (custodian, resource with dates shifted, patient pseudonym), or
    the reason it is skipped. The custodian is NO_INSTITUTION when the resource names
    none (the plan then places it with the patient's other records). Total: any text
    gives one or the other."""
    try:
        r = read_resource(line)
    except FhirError:
        return SKIP_INVALID
    if r["resourceType"] in REFERENCE_TYPES:
        return SKIP_REFERENCE
    pseudonym = patients.get(subject_id(r) or "")
    if pseudonym is None:
        return SKIP_UNKNOWN_PATIENT
    try:
        org = custodian_of(r, directory, providers)
    except RecursionError:
        return SKIP_INVALID
    if org is None:
        return SKIP_UNMAPPED
    try:
        clinical_date(r)
    except FhirError:
        return SKIP_NO_DATE
    try:
        shifted = shift_dates(r, shift_days)
    except RecursionError:
        return SKIP_INVALID
    try:
        canonical_json(shifted)
    except FhirError:
        return SKIP_NOT_CANONICAL
    except RecursionError:
        return SKIP_INVALID
    return org, shifted, pseudonym


def latest_date(source: Path) -> datetime.date | None:
    best = None
    for path in sorted(source.glob("*.ndjson")):
        if path.name.startswith(("log", "Patient", "Organization", "Practitioner", "Location")):
            continue
        for _, line in _lines(path):
            try:
                d = clinical_date(read_resource(line))
            except FhirError:
                continue
            try:
                day = datetime.date.fromisoformat(d)
            except ValueError:
                continue
            best = day if best is None or day > best else best
    return best


def read_directory(files: list[Path]) -> Directory:
    """First pass: what the reference data and encounters say about institutions."""
    directory = Directory()
    for path in files:
        if not path.name.startswith(DIRECTORY_TYPES):
            continue
        for _, line in _lines(path):
            try:
                directory.learn(read_resource(line))
            except (FhirError, RecursionError):
                continue
    return directory


def plan_import(
    source: Path, providers: ProviderMap, patients: dict[str, str], shift_days: int = 0
) -> Plan:
    """Read NDJSON files, decide each record's custodian and patient, or why it is skipped."""
    plan = Plan()
    files = sorted(p for p in Path(source).glob("*.ndjson") if not p.name.startswith("log"))
    directory = read_directory(files)
    owner: dict[tuple[str, str], str] = {}  # (type, id) -> the patient it was planned for
    unplaced: list[tuple[dict[str, Any], str, str]] = []
    for path in files:
        for n, line in _lines(path):
            where = f"{path.name}:{n}"
            out = classify_line(line, patients, directory, providers, shift_days)
            if isinstance(out, str):
                plan.skip(out, where)
                continue
            org, resource, pseudonym = out
            key = (str(resource["resourceType"]), str(resource.get("id")))
            if owner.setdefault(key, pseudonym) != pseudonym:
                plan.skip(SKIP_CONFLICT, where)
                continue
            if org == NO_INSTITUTION:
                unplaced.append((resource, pseudonym, where))
            else:
                plan.add(org, resource, pseudonym)
    for resource, pseudonym, where in unplaced:
        main = plan.main_custodian(pseudonym) or providers.default
        if main is None:
            plan.skip(SKIP_NO_CUSTODIAN, where)
        else:
            plan.add(main, resource, pseudonym)
    return plan


@dataclass
class ImportReport:
    stored: int = 0
    anchored: int = 0
    existing: int = 0
    invalid: int = 0
    conflicts: list[str] = field(default_factory=list)  # the custodian's reasons
    per_org: Counter[str] = field(default_factory=Counter)
    record_ids: dict[str, list[str]] = field(
        default_factory=dict
    )  # patient pseudonym -> record ids


def run_import(
    plan: Plan,
    clients: dict[str, RpcClient],
    importers: dict[str, TxBuilder],
    chunk: int = 120,  # ~370 bytes an anchor: one bulk transaction stays under 64 KiB
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> ImportReport:
    """Store each custodian's records in its vault and anchor them in bulk."""
    report = ImportReport()
    done = 0
    total = plan.total
    for org, items in sorted(plan.by_org.items()):
        cl, signer = clients[org], importers[org]
        for i in range(0, len(items), chunk):
            part = items[i : i + chunk]
            stored = cl.call(
                "records.put", {"items": [{"resource": r, "patient": p} for r, p in part]}
            )
            anchors = []
            for s in stored:
                if s.get("status") == "invalid":
                    report.invalid += 1
                    continue
                if s.get("status") == "conflict":
                    report.conflicts.append(f"{org}: {s.get('reason')}")
                    continue
                s = from_json(s)
                report.stored += s["status"] == "stored"
                anchors.append(
                    {
                        "record_id": s["record_id"],
                        "patient": s["patient"],
                        "custodian": org,
                        "category": s["category"],
                        "clinical_year": s["clinical_year"],
                        "content_hash": s["content_hash"],
                        "fields_root": s["fields_root"],
                        "author": signer.public_key,  # the import system signs the tx: no separate author_sig
                    }
                )
                report.record_ids.setdefault(s["patient"], []).append(s["record_id"])
            if anchors:
                res = cl.submit(
                    signer.build("records", "anchor_bulk", {"anchors": anchors}),
                    wait=True,
                    timeout_ms=60_000,
                )
                if res.get("status") != "committed":
                    raise RuntimeError(
                        f"anchoring at {org} failed: {res.get('reason') or res.get('status')}"
                    )
                statuses = Counter(x["status"] for x in res["result"]["results"])
                report.anchored += statuses["anchored"]
                report.existing += statuses["exists"]
                report.per_org[org] += statuses["anchored"] + statuses["exists"]
            done += len(part)
            progress(done, total)
    return report
