"""The vault, canonical content and salted fields, selective disclosure,
and the importer's plan (evidence certificates: test_evidence.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medchain.client.custodian import ProviderMap
from medchain.client.importer import (
    SKIP_INVALID,
    SKIP_REFERENCE,
    SKIP_UNKNOWN_PATIENT,
    SKIP_UNMAPPED,
    plan_import,
    shift_dates,
)
from medchain.storage.fhirdoc import (
    Disclosure,
    FhirError,
    canonical_json,
    content_hash,
    disclose,
    fields_root,
)
from medchain.storage.kv import LevelDBKV
from medchain.storage.vault import Vault, VaultIntegrityError, master_key_from_seed

CONDITION = {
    "resourceType": "Condition",
    "id": "c-1",
    "code": {
        "coding": [
            {
                "system": "http://snomed.info/sct",
                "code": "44054006",
                "display": "Diabetes mellitus type 2",
            }
        ]
    },
    "subject": {"reference": "Patient/p-1"},
    "onsetDateTime": "2025-03-04T10:00:00+01:00",
    "note": [{"text": "private remark"}],
}


def test_vault_round_trip_encrypted_at_rest_and_tamper_detected(tmp_path: Path) -> None:
    master = master_key_from_seed(b"\x07" * 32)
    v = Vault.open(tmp_path / "v", master)
    content = canonical_json(CONDITION)
    h = v.put(
        "hospital-a:Condition:c-1", content, b"s" * 32, {"patient": "p", "category": "Condition"}
    )
    v.put("hospital-a:Condition:c-2", canonical_json(dict(CONDITION, id="c-2")), b"t" * 32, {})
    rec = v.get("hospital-a:Condition:c-1")
    assert (
        rec is not None
        and rec.content == content
        and rec.content_hash == h
        and rec.salt_seed == b"s" * 32
    )
    v.close()
    raw = b"".join((tmp_path / "v").glob("*.log").__next__().read_bytes() for _ in range(1))
    assert b"Diabetes" not in raw and b"private remark" not in raw  # plaintext never on disk
    db = LevelDBKV(tmp_path / "v")
    a, b = db.get(b"Rhospital-a:Condition:c-1"), db.get(b"Rhospital-a:Condition:c-2")
    assert a is not None and b is not None
    flipped = bytearray(a)
    flipped[-3] ^= 1
    db.write({b"Rhospital-a:Condition:c-1": bytes(flipped)})
    db.write({b"Rhospital-a:Condition:c-2": a})  # swap in another record's ciphertext
    db.close()
    v = Vault.open(tmp_path / "v", master)
    with pytest.raises(VaultIntegrityError, match="c-1"):
        v.get("hospital-a:Condition:c-1")
    with pytest.raises(VaultIntegrityError, match="c-2"):
        v.get("hospital-a:Condition:c-2")  # bound to its record id
    with pytest.raises(VaultIntegrityError):
        Vault(v.store, master_key_from_seed(b"\x08" * 32)).get(
            "hospital-a:Condition:c-1"
        )  # another node's key
    v.close()


def test_selective_disclosure_reveals_one_field_only() -> None:
    seed = b"\x01" * 32
    root = fields_root(CONDITION, seed)
    proof = disclose("r", 1, CONDITION, seed, "code")
    assert proof.verify(root)
    doc = proof.to_json()
    assert "private remark" not in json.dumps(doc) and "onsetDateTime" not in json.dumps(doc)
    again = Disclosure.from_json(json.loads(json.dumps(doc)))
    assert again.verify(root)
    changed = Disclosure.from_json(
        dict(doc, value={"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]})
    )
    assert not changed.verify(root)
    assert not Disclosure.from_json(dict(doc, field="note")).verify(root)
    assert not Disclosure.from_json(dict(doc, salt="00" * 16)).verify(root)
    assert not proof.verify(fields_root(CONDITION, b"\x02" * 32))  # other salts: other root
    assert content_hash(CONDITION) == content_hash(
        json.loads(json.dumps(CONDITION, indent=4))
    )  # formatting does not matter


def test_importer_plans_custodians_and_reports_skips(tmp_path: Path) -> None:
    enc = {
        "resourceType": "Encounter",
        "id": "e1",
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2020-01-02T00:00:00Z"},
        "serviceProvider": {
            "reference": "Organization?identifier=x|org-1",
            "display": "GENERAL HOSPITAL",
        },
    }
    enc2 = dict(
        enc,
        id="e2",
        serviceProvider={
            "reference": "Organization?identifier=x|org-9",
            "display": "NOWHERE CLINIC",
        },
    )
    cond = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "onsetDateTime": "2020-01-02",
    }
    lines = {
        "Encounter.000.ndjson": [enc, enc2],
        "Condition.000.ndjson": [
            cond,
            dict(cond, id="c2", subject={"reference": "Patient/unknown"}),
            dict(cond, id="c3", encounter={"reference": "Encounter/e2"}),
            dict(cond, id="c4", encounter=None),
        ],
        "Organization.000.ndjson": [{"resourceType": "Organization", "id": "o"}],
    }
    for name, docs in lines.items():
        (tmp_path / name).write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    with (tmp_path / "Condition.000.ndjson").open("a") as fh:
        fh.write("{this is not json\n")
    plan = plan_import(
        tmp_path, ProviderMap({"GENERAL HOSPITAL": "hospital-a"}), {"p1": "pseudo-1"}
    )
    # c4 names no institution: it goes with the patient's other records.
    assert [r["id"] for r, _ in plan.by_org["hospital-a"]] == ["c1", "e1", "c4"]
    assert plan.skipped == {
        SKIP_UNKNOWN_PATIENT: 1,
        SKIP_UNMAPPED: 2,
        SKIP_INVALID: 1,
        SKIP_REFERENCE: 1,
    }
    assert plan.examples[SKIP_INVALID] == "Condition.000.ndjson:5"
    assert shift_dates(
        {"a": "2020-01-02T03:04:05Z", "b": ["2019-12-31"], "c": "not a date"}, 1
    ) == {"a": "2020-01-03T03:04:05Z", "b": ["2020-01-01"], "c": "not a date"}


@pytest.mark.parametrize(
    "field, value",
    [
        ("valueInteger", 95),
        ("valueInteger", -7),
        ("valueString", 'He said "no"'),
        ("note", [{"text": 'patient said "fine"'}]),
    ],
)
def test_a_disclosure_cannot_move_bytes_between_salt_and_value(field: str, value: object) -> None:
    """The tester's forgery: the leading bytes of the value's JSON moved into the salt,
    the rest kept as the new value. Leaves are length-prefixed and salts 16 bytes."""
    resource = dict(CONDITION, **{field: value})
    seed = b"\x05" * 32
    root = fields_root(resource, seed)
    real = disclose("r", 1, resource, seed, field).to_json()
    assert Disclosure.from_json(real).verify(root)
    text = canonical_json(value)
    for cut in range(1, len(text)):
        try:
            forged_value = json.loads(text[cut:])
        except ValueError:
            continue
        forged = dict(real, value=forged_value, salt=real["salt"] + text[:cut].hex())
        try:
            d = Disclosure.from_json(forged)
        except FhirError as exc:
            assert "salt is 16 bytes" in str(exc)
            continue
        assert not d.verify(root), (cut, forged_value)
    wide = Disclosure(
        "r", 1, field, json.loads(text[1:]) if text[:1] == b"9" else value, b"x" * 17, 0, 1, ()
    )
    assert not wide.verify(root)
