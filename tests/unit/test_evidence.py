"""Evidence certificates: a certificate proves one anchor of a transaction that
succeeded, and nothing about any other record; every way of forging one that
was found (a rejected transaction, a changed version) or can be thought of
fails with a specific reason."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from medchain.storage.block import BlockHeader, CommitCertificate
from medchain.storage.codec import pack, unpack
from medchain.storage.crypto import Signer
from medchain.storage.evidence import (
    OLD_MAGIC,
    Evidence,
    EvidenceUnavailable,
    build_evidence,
    verify_evidence,
)
from medchain.storage.fhirdoc import canonical_json
from medchain.storage.merkle import inclusion_proof, merkle_root
from medchain.storage.receipts import Receipt, block_receipts, event_leaf
from medchain.storage.state import Event
from tests.chain import Chain

CONDITION = {
    "resourceType": "Condition",
    "id": "c-1",
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
    "subject": {"reference": "Patient/p-1"},
    "onsetDateTime": "2025-03-04T10:00:00+01:00",
}


def failing(verdict: Any) -> str:
    assert not verdict.ok
    return next(t for ok, t in verdict.checks if not ok)


class Scene:
    """A chain where hospital A anchored rec-1 alone, and a bulk import of records of
    two patients; then a rejected anchor by hospital B of rec-1, and a sealing block."""

    def __init__(self) -> None:
        c = self.c = Chain()
        _, self.patient = c.patient()
        _, self.other_patient = c.patient()
        self.doc, _ = c.practitioner("hospital-a")
        self.imp, _ = c.practitioner("hospital-a", role="system")
        self.doc_b, _ = c.practitioner("hospital-b")
        self.content = canonical_json(CONDITION)
        single = c.anchor_args(self.doc, "hospital-a", "rec-1", self.patient, content=self.content)
        bulk = [
            c.anchor_args(
                self.imp,
                "hospital-a",
                f"bulk-{i}",
                (self.patient, self.other_patient)[i % 2],
                content=b"bulk %d" % i,
            )
            for i in range(6)
        ]
        res = c.block(
            [
                (self.doc, "records", "anchor", single),
                (self.imp, "records", "anchor_bulk", {"anchors": bulk}),
            ]
        )
        assert all(r.ok for r in res)
        self.anchor_height = c.ledger.height
        # hospital B "anchors" rec-1 again: rejected, yet kept in a committed block
        hijack = c.anchor_args(self.doc_b, "hospital-b", "rec-1", self.patient, content=b"{}")
        assert not c.tx(self.doc_b, "records", "anchor", hijack).ok
        self.rejected_height = c.ledger.height
        c.tx(c.admins["hospital-a"], "kv", "put", {"key": "seal", "value": b"x"})

    def evidence(self, record_id: str) -> Evidence:
        a = self.c.q("records", "get", {"record_id": record_id})
        return build_evidence(self.c.ledger, a["height"], a["tx_id"], record_id, a["version"])

    def verify(self, ev: Evidence, **kw: Any) -> Any:
        return verify_evidence(ev.encode(), self.c.genesis.hash(), **kw)


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene()


def test_a_certificate_verifies_offline_with_every_fact_proven(scene: Scene) -> None:
    ev = scene.evidence("rec-1")
    good = scene.verify(ev, content=scene.content)
    assert good.ok, good.lines()
    f = good.facts
    assert (f["record_id"], f["version"], f["custodian"], f["patient"]) == (
        "rec-1",
        1,
        "hospital-a",
        scene.patient,
    )
    assert f["height"] == scene.anchor_height and f["clinical_year"] == 2025
    assert ev.tx, "a single anchor carries its transaction, so the author's own signature shows"
    assert any("anchoring transaction's own signature is valid" in t for _, t in good.checks)
    assert "differs from the anchored record" in failing(
        scene.verify(ev, content=scene.content.replace(b"44054006", b"38341003"))
    )


def test_a_bulk_anchor_is_proven_without_disclosing_the_others(scene: Scene) -> None:
    ev = scene.evidence("bulk-3")
    v = scene.verify(ev)
    assert v.ok, v.lines()
    assert v.facts["patient"] == scene.other_patient and ev.tx == b""
    data = ev.encode()
    for i in range(6):
        if i != 3:
            assert f"bulk-{i}".encode() not in data
    assert scene.patient.encode() not in data  # the other patient of the import
    assert len(data) < 4096


def test_a_rejected_transaction_proves_nothing(scene: Scene) -> None:
    """Finding 1: a certificate assembled around a transaction the chain REJECTED."""
    c = scene.c
    h = scene.rejected_height
    block = c.ledger.block(h)
    nxt = c.ledger.block(h + 1)
    assert block is not None and nxt is not None
    results = c.ledger.results(h, len(block.txs))
    assert not results[0].ok
    receipts = block_receipts(block.tx_ids(), block.txs, results)
    fake = Event(
        "records",
        "anchored",
        {
            "record_id": "rec-1",
            "version": 1,
            "supersedes": 0,
            "patient": scene.patient,
            "custodian": "hospital-b",
            "category": "Condition",
            "clinical_year": 2025,
            "content_hash": bytes(32),
            "fields_root": bytes(32),
            "author": scene.doc_b.public_key,
            "author_id": "x",
            "author_sig": b"",
        },
    )
    cert = c.ledger.certificate(h)
    next_cert = c.ledger.certificate(h + 1)
    assert cert is not None and next_cert is not None

    def assemble(receipt: bytes, receipt_path: list[bytes]) -> Evidence:
        return Evidence(
            c.genesis.encode(),
            block.header_bytes,
            cert.encode(),
            nxt.header_bytes,
            next_cert.encode(),
            receipt,
            0,
            1,
            tuple(block.inclusion_proof(0)),
            tuple(receipt_path),
            event_leaf(fake),
            0,
            (),
            block.txs[0],
        )

    honest = assemble(receipts[0], inclusion_proof(receipts, 0))
    assert "FAILED on chain" in failing(scene.verify(honest))
    # the receipt rewritten to claim success, with the forged anchor as its event
    lie = replace(
        Receipt.decode(receipts[0]),
        code=0,
        events_root=merkle_root([event_leaf(fake)]),
        event_count=1,
    )
    claimed = assemble(lie.encode(), inclusion_proof([lie.encode()], 0))
    assert "results root" in failing(scene.verify(claimed))
    # and the exporter refuses to make one
    with pytest.raises(EvidenceUnavailable):
        build_evidence(c.ledger, h, block.tx_ids()[0], "rec-1", 1)


def test_the_record_version_is_covered(scene: Scene) -> None:
    """Finding 2: changing the version in a certificate no longer verifies."""
    ev = scene.evidence("bulk-2")
    contract, name, attrs = unpack(ev.event, 1 << 16)
    for version in range(256):
        if version == 1:
            continue
        forged = replace(ev, event=pack([contract, name, dict(attrs, version=version)]))
        assert not scene.verify(forged).ok


def test_every_flipped_byte_fails_with_a_reason(scene: Scene) -> None:
    for ev in (scene.evidence("rec-1"), scene.evidence("bulk-4")):
        data = ev.encode()
        for i in range(len(data)):
            flipped = bytearray(data)
            flipped[i] ^= 0x01
            v = verify_evidence(bytes(flipped), scene.c.genesis.hash(), scene.content)
            assert not v.ok, f"byte {i} flipped still verifies"
            assert failing(v)


def test_forged_parts_are_named(scene: Scene) -> None:
    c = scene.c
    ev = scene.evidence("rec-1")
    h = BlockHeader.decode(ev.header)
    moved = replace(h, timestamp_ms=h.timestamp_ms + 1).encode()
    assert "commit certificate" in failing(scene.verify(replace(ev, header=moved)))
    cert = CommitCertificate.decode(ev.next_certificate)
    votes = list(cert.votes)
    votes[1] = (votes[1][0], Signer.generate().sign(b"x"))
    bad = replace(cert, votes=tuple(votes)).encode()
    assert "bad signature from validator" in failing(
        scene.verify(replace(ev, next_certificate=bad))
    )
    h0 = scene.anchor_height - 1  # another block, with its own valid certificate
    other_block, other_cert = c.ledger.block(h0), c.ledger.certificate(h0)
    assert other_block is not None and other_cert is not None
    spliced = replace(ev, header=other_block.header_bytes, certificate=other_cert.encode())
    assert "does not extend" in failing(scene.verify(spliced))
    orgs = list(c.genesis.organizations)
    orgs[2] = replace(orgs[2], node_key=Signer.generate().public_key)
    stranger = replace(c.genesis, organizations=tuple(orgs)).encode()
    assert "another validator set" in failing(
        verify_evidence(replace(ev, genesis=stranger).encode())
    )
    assert "expected one" in failing(scene.verify(replace(ev, genesis=stranger)))
    assert "not the one the receipt names" in failing(
        scene.verify(replace(ev, tx=scene.evidence("rec-1").tx[:-1] + b"\x00"))
    )


def test_an_old_certificate_is_refused_with_the_reason(scene: Scene) -> None:
    v1 = pack([OLD_MAGIC, b"g", b"h", b"c", b"t", 0, 1, [], "rec-1", 1])
    assert "proves only that a transaction is in a block" in failing(verify_evidence(v1))


def test_no_certificate_before_the_next_block_certifies_the_outcome() -> None:
    c = Chain()
    _, patient = c.patient()
    doc, _ = c.practitioner("hospital-a")
    c.anchor(doc, "hospital-a", "r", patient)
    a = c.q("records", "get", {"record_id": "r"})
    with pytest.raises(EvidenceUnavailable, match="not committed yet"):
        build_evidence(c.ledger, a["height"], a["tx_id"], "r", 1)
    c.tx(c.admins["hospital-a"], "kv", "put", {"key": "k", "value": b"v"})
    assert verify_evidence(build_evidence(c.ledger, a["height"], a["tx_id"], "r", 1).encode()).ok


def test_content_with_a_key_twice_is_refused(scene: Scene) -> None:
    """Two readers of such a file could see two different records (the tester's
    "valueInteger": 5, "valueInteger": 95): it never matches an anchor."""
    ev = scene.evidence("rec-1")
    text = scene.content.decode()
    twice = text[:-1] + ',"onsetDateTime":"1999-01-01"}'
    assert "twice" in failing(scene.verify(ev, content=twice.encode()))
    from medchain.storage.fhirdoc import FhirError, load_json

    with pytest.raises(FhirError, match="twice"):
        load_json('{"medchain_disclosure": 2, "value": 5, "value": 95}')
