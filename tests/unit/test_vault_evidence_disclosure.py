"""The vault, canonical content and salted fields, selective disclosure,
evidence certificates (each kind of tampering), and the importer's plan."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from node.importer import (
    SKIP_INVALID,
    SKIP_NO_ENCOUNTER,
    SKIP_REFERENCE,
    SKIP_UNKNOWN_PATIENT,
    SKIP_UNMAPPED,
    ProviderMap,
    plan_import,
    shift_dates,
)
from storage.block import BlockHeader, CommitCertificate
from storage.crypto import Signer
from storage.evidence import Evidence, verify_evidence
from storage.fhirdoc import Disclosure, canonical_json, content_hash, disclose, fields_root
from storage.kv import LevelDBKV
from storage.tx import Transaction
from storage.vault import Vault, VaultIntegrityError, master_key_from_seed
from tests.chain import Chain

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


def anchored_chain() -> tuple[Chain, Any, str, bytes]:
    c = Chain()
    _, patient = c.patient()
    doc, _ = c.practitioner("hospital-a")
    content = canonical_json(CONDITION)
    args = c.anchor_args(doc, "hospital-a", "rec-1", patient, content=content)
    others = [c.anchor_args(doc, "hospital-a", f"other-{i}", patient) for i in range(4)]
    res = c.block(
        [(doc, "records", "anchor", o) for o in others[:2]]
        + [(doc, "records", "anchor", args)]
        + [(doc, "records", "anchor", o) for o in others[2:]]
    )
    assert all(r.ok for r in res)
    anchor = c.q("records", "get", {"record_id": "rec-1"})
    loc = c.ledger.tx(anchor["tx_id"])
    assert loc is not None
    block = c.ledger.block(anchor["height"])
    assert block is not None
    ev = Evidence(
        c.genesis.encode(),
        block.header_bytes,
        c.ledger.certificate(anchor["height"]).encode(),  # type: ignore[union-attr]
        block.txs[loc.index],
        loc.index,
        len(block.txs),
        tuple(block.inclusion_proof(loc.index)),
        "rec-1",
        1,
    )
    return c, ev, patient, content


def failing(verdict: Any) -> str:
    assert not verdict.ok
    return next(t for ok, t in verdict.checks if not ok)


def test_evidence_verifies_offline_and_every_tampering_fails() -> None:
    c, ev, _, content = anchored_chain()
    data = ev.encode()
    good = verify_evidence(data, c.genesis.hash(), content)
    assert good.ok, good.lines()
    assert good.facts["height"] == c.ledger.height and good.facts["custodian"] == "hospital-a"
    # the content given must be the anchored one
    assert "differs from the anchored record" in failing(
        verify_evidence(data, c.genesis.hash(), content.replace(b"Diabetes", b"Asthma!!"))
    )
    # tx bytes changed (re-signed by someone else): not in the block
    tx = Transaction.decode(ev.tx)
    forged = Transaction(
        tx.chain_id, tx.sender, tx.nonce + 1, tx.contract, tx.method, tx.args, tx.signature
    )
    assert "Merkle path" in failing(
        verify_evidence(Evidence(**{**ev.__dict__, "tx": forged.encode()}).encode())
    )
    # Merkle path altered
    path = list(ev.path)
    path[0] = bytes(32)
    assert "Merkle path" in failing(
        verify_evidence(Evidence(**{**ev.__dict__, "path": tuple(path)}).encode())
    )
    # header altered (time moved): the certificate no longer matches
    h = BlockHeader.decode(ev.header)
    moved = BlockHeader(
        **{**{f: getattr(h, f) for f in h.__slots__}, "timestamp_ms": h.timestamp_ms + 1}
    ).encode()
    assert "commit certificate" in failing(
        verify_evidence(Evidence(**{**ev.__dict__, "header": moved}).encode())
    )
    # one validator signature forged
    cert = CommitCertificate.decode(ev.certificate)
    votes = list(cert.votes)
    votes[1] = (votes[1][0], Signer.generate().sign(b"x"))
    bad_cert = CommitCertificate(cert.seq, cert.view, cert.block_hash, tuple(votes)).encode()
    assert "bad signature from validator" in failing(
        verify_evidence(Evidence(**{**ev.__dict__, "certificate": bad_cert}).encode())
    )
    # validator set swapped: another consortium's genesis
    orgs = list(c.genesis.organizations)
    orgs[2] = replace(orgs[2], node_key=Signer.generate().public_key)
    other = replace(c.genesis, organizations=tuple(orgs))
    assert "validator set" in failing(
        verify_evidence(Evidence(**{**ev.__dict__, "genesis": other.encode()}).encode())
    )
    assert "expected one" in failing(
        verify_evidence(
            Evidence(**{**ev.__dict__, "genesis": other.encode()}).encode(), c.genesis.hash()
        )
    )
    # any single flipped byte anywhere fails, with a reason
    for i in range(0, len(data), max(1, len(data) // 300)):
        flipped = bytearray(data)
        flipped[i] ^= 0x01
        v = verify_evidence(bytes(flipped), c.genesis.hash(), content)
        assert not v.ok, f"byte {i} flipped still verifies"
        assert failing(v)


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
    assert [r["id"] for r, _ in plan.by_org["hospital-a"]] == ["c1", "e1"]
    assert plan.skipped == {
        SKIP_UNKNOWN_PATIENT: 1,
        SKIP_UNMAPPED: 2,
        SKIP_NO_ENCOUNTER: 1,
        SKIP_INVALID: 1,
        SKIP_REFERENCE: 1,
    }
    assert plan.examples[SKIP_INVALID] == "Condition.000.ndjson:5"
    assert shift_dates(
        {"a": "2020-01-02T03:04:05Z", "b": ["2019-12-31"], "c": "not a date"}, 1
    ) == {"a": "2020-01-03T03:04:05Z", "b": ["2020-01-01"], "c": "not a date"}
