"""Bulk import planning on populations the demo does not use: custodians from
the resources' own references, dates for every type, conflicts reported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medchain.client.custodian import Directory, ProviderMap, custodian_of, ref_parts
from medchain.client.importer import (
    SKIP_CONFLICT,
    SKIP_NO_CUSTODIAN,
    SKIP_REFERENCE,
    SKIP_UNMAPPED,
    plan_import,
)
from medchain.storage.fhirdoc import FhirError, clinical_date
from tests.population import write_population

SYNTHEA = Path(__file__).resolve().parents[3] / "shared" / "data" / "synthea-10"
MEMBERS = ("hospital-a", "hospital-b", "clinic-c")


def spread(names: list[str]) -> ProviderMap:
    return ProviderMap({n: MEMBERS[i % len(MEMBERS)] for i, n in enumerate(names)})


def line_of(where: str, source: Path) -> str:
    name, n = where.rsplit(":", 1)
    return (source / name).read_text().splitlines()[int(n) - 1]


def test_population_without_encounters_is_anchored(tmp_path: Path) -> None:
    pop = write_population(tmp_path)
    patients = {p: f"ps-{p}" for p in pop["patients"]}
    plan = plan_import(tmp_path, spread(pop["institutions"]), patients)
    assert plan.total >= 0.99 * pop["clinical"], dict(plan.skipped)
    assert set(plan.skipped) == {SKIP_REFERENCE}
    # Allergies and devices name only the patient: they go with the patient's records.
    for org, items in plan.by_org.items():
        for resource, pseudonym in items:
            if resource["resourceType"] in ("AllergyIntolerance", "Device"):
                assert org == plan.main_custodian(pseudonym)


def test_each_reference_shape_names_its_institution(tmp_path: Path) -> None:
    pop = write_population(tmp_path, patients=2, per_patient=8)
    directory = Directory()
    for f in ("Organization", "Location", "PractitionerRole"):
        for line in (tmp_path / f"{f}.000.ndjson").read_text().splitlines():
            directory.learn(json.loads(line))
    names = pop["institutions"]
    providers = spread(names)
    seen = set()
    for f in ("Immunization", "Observation", "Procedure", "MedicationRequest"):
        for line in (tmp_path / f"{f}.000.ndjson").read_text().splitlines():
            r = json.loads(line)
            inst = next(directory.institutions(r))
            assert inst.name in names, (f, r)
            assert custodian_of(r, directory, providers) == providers.table[inst.name]
            seen.add(f)
    assert len(seen) == 4


def test_unmapped_institutions_are_reported_or_defaulted(tmp_path: Path) -> None:
    pop = write_population(tmp_path, patients=3, per_patient=8)
    patients = {p: f"ps-{p}" for p in pop["patients"]}
    none = plan_import(tmp_path, ProviderMap({}), patients)
    assert none.total == 0
    assert none.skipped[SKIP_UNMAPPED] == 3 * 8
    assert none.skipped[SKIP_NO_CUSTODIAN] == 3 * 2
    assert '"resourceType":"' in line_of(none.examples[SKIP_UNMAPPED], tmp_path)
    default = plan_import(tmp_path, ProviderMap({}, default="hospital-a"), patients)
    assert default.total == pop["clinical"] and set(default.by_org) == {"hospital-a"}


def test_a_resource_id_under_two_patients_is_a_conflict(tmp_path: Path) -> None:
    pop = write_population(tmp_path, patients=2, per_patient=4)
    obs = tmp_path / "Observation.000.ndjson"
    first = json.loads(obs.read_text().splitlines()[0])
    other = next(p for p in pop["patients"] if p not in first["subject"]["reference"])
    twin = {**first, "subject": {"reference": f"Patient/{other}"}}
    with obs.open("a") as fh:
        fh.write(json.dumps(twin) + "\n")
    plan = plan_import(tmp_path, spread(pop["institutions"]), {p: p for p in pop["patients"]})
    assert plan.skipped[SKIP_CONFLICT] == 1
    assert json.loads(line_of(plan.examples[SKIP_CONFLICT], tmp_path)) == twin
    kept = [r for items in plan.by_org.values() for r, _ in items if r["id"] == first["id"]]
    assert len(kept) == 1 and kept[0]["subject"] == first["subject"]


@pytest.mark.parametrize(
    ("resource", "day"),
    [
        ({"resourceType": "Device", "manufactureDate": "2019-01-02T00:00:00Z"}, "2019-01-02"),
        ({"resourceType": "Device", "meta": {"lastUpdated": "2024-02-03T01:02:03Z"}}, "2024-02-03"),
        ({"resourceType": "MedicationDispense", "whenHandedOver": "2021-06-07"}, "2021-06-07"),
        ({"resourceType": "Claim", "created": "2020-01-31T10:00:00Z"}, "2020-01-31"),
        ({"resourceType": "ImagingStudy", "started": "2018-11-30"}, "2018-11-30"),
        ({"resourceType": "Goal", "startDate": "2017"}, "2017-01-01"),
        ({"resourceType": "Procedure", "performedPeriod": {"start": "2016-04"}}, "2016-04-01"),
        (
            {"resourceType": "Specimen", "collection": {"collectedDateTime": "2015-02-03"}},
            "2015-02-03",
        ),
        (
            {
                "resourceType": "Observation",
                "effectiveDateTime": "2020-02-30",
                "issued": "2020-03-01",
            },
            "2020-03-01",
        ),
    ],
)
def test_clinical_date_for_every_dated_type(resource: dict[str, object], day: str) -> None:
    assert clinical_date(resource) == day


def test_undated_resource_has_no_clinical_date() -> None:
    with pytest.raises(FhirError):
        clinical_date({"resourceType": "Device", "id": "d"})


def test_reference_shapes() -> None:
    assert ref_parts({"reference": "Patient/123"}) == ("Patient", "123")
    assert ref_parts({"reference": "urn:uuid:abc"}) == (None, "abc")
    assert ref_parts({"reference": "Location?identifier=sys|v1"}) == ("Location", "v1")
    assert ref_parts({"identifier": {"value": "x"}, "type": "Organization"}) == (
        "Organization",
        "x",
    )
    assert ref_parts("Patient/1") == (None, None)


@pytest.mark.skipif(
    not SYNTHEA.is_dir(), reason="the shared Synthea sample is not beside the checkout"
)
def test_synthea_sample_without_its_encounter_file(tmp_path: Path) -> None:
    """The shape testers reported: no Encounter file; ≥ 99 % still anchored."""
    for f in SYNTHEA.glob("*.ndjson"):
        if not f.name.startswith(("Encounter", "log")):
            shutil.copy(f, tmp_path / f.name)
    names = [json.loads(x)["name"] for x in (tmp_path / "Organization.000.ndjson").open()]
    patients = {
        json.loads(x)["id"]: f"p-{n}"
        for n, x in enumerate((tmp_path / "Patient.000.ndjson").open())
    }
    plan = plan_import(tmp_path, spread(names), patients)
    clinical = plan.total + sum(n for r, n in plan.skipped.items() if r != SKIP_REFERENCE)
    assert plan.total >= 0.99 * clinical, (plan.total, dict(plan.skipped), plan.examples)


def test_the_custodian_reports_an_id_held_for_another_patient() -> None:
    from medchain.node.records.store import PutItem, RecordConflict, RecordStore
    from medchain.storage.vault import Vault

    store = RecordStore(Vault.in_memory(bytes(32)), "hospital-a")
    obs = {"resourceType": "Observation", "id": "o1", "effectiveDateTime": "2024-01-02"}
    first = store.put_many([PutItem(obs, "patient-1")])[0]
    assert isinstance(first, dict) and first["status"] == "stored"
    (again,) = store.put_many([PutItem(obs, "patient-1")])
    (other,) = store.put_many([PutItem(obs, "patient-2")])
    o3 = dict(obs, id="o3")
    _, twice = store.put_many([PutItem(o3, "patient-4"), PutItem(o3, "patient-5")])
    assert isinstance(again, dict) and again["status"] == "exists"
    assert isinstance(other, RecordConflict) and "another patient" in str(other)
    assert isinstance(twice, RecordConflict) and "two patients" in str(twice)
