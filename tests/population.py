"""A FHIR R4 bulk export generated for tests, shaped unlike the Synthea sample
the demo uses: no Encounter file, custodians only through performers,
locations, requesters and organizations, allergies and devices that name only
the patient, identifier-style references (``Type?identifier=system|value``),
partial dates.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

SYS = "urn:example:ids"
NPI = "http://hl7.org/fhir/sid/us-npi"


def _ref(kind: str, value: str, display: str | None = None, system: str = SYS) -> dict[str, Any]:
    ref: dict[str, Any] = {"reference": f"{kind}?identifier={system}|{value}"}
    if display:
        ref["display"] = display
    return ref


def write_population(
    out: Path, patients: int = 6, institutions: int = 5, per_patient: int = 30, seed: int = 7
) -> dict[str, Any]:
    """Write NDJSON files into ``out``; return what a test needs to check the import:
    institution names, patient ids, the number of clinical resources."""
    rnd = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[dict[str, Any]]] = {}

    def add(r: dict[str, Any]) -> None:
        files.setdefault(r["resourceType"], []).append(r)

    names = [f"Clinic {chr(65 + i)} Health" for i in range(institutions)]
    for i, name in enumerate(names):
        add(
            {
                "resourceType": "Organization",
                "id": f"org-{i}",
                "name": name,
                "identifier": [{"system": SYS, "value": f"org-ident-{i}"}],
            }
        )
        add(
            {
                "resourceType": "Location",
                "id": f"loc-{i}",
                "name": f"{name} main site",
                "identifier": [{"system": SYS, "value": f"loc-ident-{i}"}],
                "managingOrganization": {
                    "identifier": {"system": SYS, "value": f"org-ident-{i}"},
                    "display": name,
                },
            }
        )
        npi = f"99900{i:05d}"
        add(
            {
                "resourceType": "Practitioner",
                "id": f"pr-{i}",
                "identifier": [{"system": NPI, "value": npi}],
            }
        )
        add(
            {
                "resourceType": "PractitionerRole",
                "id": f"role-{i}",
                "practitioner": {"identifier": {"system": NPI, "value": npi}},
                "organization": {
                    "identifier": {"system": SYS, "value": f"org-ident-{i}"},
                    "display": name,
                },
            }
        )
    pids = [f"pat-{k:03d}" for k in range(patients)]
    clinical = 0
    for pid in pids:
        add({"resourceType": "Patient", "id": pid})
        home = rnd.sample(range(institutions), 2)
        for j in range(per_patient):
            i = home[j % 2]
            year = rnd.randint(2000, 2025)
            kind = j % 4
            if kind == 0:
                r: dict[str, Any] = {
                    "resourceType": "Immunization",
                    "patient": {"reference": f"Patient/{pid}"},
                    "occurrenceDateTime": f"{year}-03-0{1 + j % 9}T10:00:00Z",
                    "location": _ref("Location", f"loc-ident-{i}"),
                    "vaccineCode": {"text": "influenza"},
                }
            elif kind == 1:
                r = {
                    "resourceType": "Observation",
                    "subject": {"reference": f"Patient/{pid}"},
                    "effectiveDateTime": f"{year}-05-12",
                    "performer": [_ref("Practitioner", f"99900{i:05d}", system=NPI)],
                    "code": {"text": "heart rate"},
                }
            elif kind == 2:
                r = {
                    "resourceType": "Procedure",
                    "subject": {"reference": f"Patient/{pid}"},
                    "performedPeriod": {"start": f"{year}-07"},
                    "performer": [{"actor": _ref("Organization", f"org-ident-{i}", names[i])}],
                    "code": {"text": "suture"},
                }
            else:
                r = {
                    "resourceType": "MedicationRequest",
                    "subject": {"reference": f"Patient/{pid}"},
                    "authoredOn": f"{year}-09-30",
                    "requester": _ref("Practitioner", f"99900{i:05d}", system=NPI),
                    "medicationCodeableConcept": {"text": "amoxicillin"},
                }
            r["id"] = f"{pid}-{j}"
            add(r)
            clinical += 1
        add(
            {
                "resourceType": "AllergyIntolerance",
                "id": f"{pid}-allergy",
                "patient": {"reference": f"Patient/{pid}"},
                "recordedDate": "2011-04-01",
                "code": {"text": "peanut"},
            }
        )
        add(
            {
                "resourceType": "Device",
                "id": f"{pid}-device",
                "patient": {"reference": f"Patient/{pid}"},
                "manufactureDate": "2019-01-02T00:00:00Z",
                "type": {"text": "glucose meter"},
            }
        )
        clinical += 2
    for kind, rows in files.items():
        (out / f"{kind}.000.ndjson").write_text(
            "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
        )
    return {"institutions": names, "patients": pids, "clinical": clinical}
