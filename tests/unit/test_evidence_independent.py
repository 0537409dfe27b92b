"""A second, independent verifier (tests/independent/verifier.py: written from
docs/evidence.md alone, standard library and PyNaCl, no project imports) and
medchain's own agree: on real certificates (single, bulk, amendment) they
verify with the same facts; on every forgery both refuse."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pytest

from medchain.storage.codec import pack, unpack
from medchain.storage.evidence import OLD_MAGIC, Evidence, build_evidence, verify_evidence
from tests.chain import Chain
from tests.independent import verifier as independent
from tests.unit.test_evidence import Scene

FACTS = (
    "record_id",
    "version",
    "patient",
    "custodian",
    "category",
    "clinical_year",
    "content_hash",
    "fields_root",
    "height",
    "timestamp_ms",
    "tx_id",
    "author",
)


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene()


def both(ev: bytes, pin: bytes | None, content: bytes | None = None) -> tuple[bool, bool]:
    ours = verify_evidence(ev, pin, content)
    theirs, lines, _ = independent.verify(ev, pin, content)
    assert lines, "the independent verifier says what it checked"
    return ours.ok, theirs


def test_the_independent_verifier_imports_nothing_of_the_project() -> None:
    tree = ast.parse(Path(independent.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert roots <= {
        "__future__",
        "argparse",
        "collections",
        "hashlib",
        "json",
        "math",
        "nacl",
        "pathlib",
        "struct",
        "sys",
        "typing",
    }, roots


def test_real_certificates_verify_alike_with_the_same_facts(scene: Scene) -> None:
    pin = scene.c.genesis.hash()
    for rid, content in (("rec-1", scene.content), ("bulk-3", None), ("bulk-0", None)):
        data = scene.evidence(rid).encode()
        ours = verify_evidence(data, pin, content)
        ok, lines, facts = independent.verify(data, pin, content)
        assert ours.ok and ok, (ours.lines(), lines)
        for k in FACTS:
            assert facts[k] == ours.facts[k], (k, facts[k], ours.facts[k])


def test_an_amendment_verifies_alike() -> None:
    c = Chain()
    _, patient = c.patient()
    doc, _ = c.practitioner("hospital-a")
    c.anchor(doc, "hospital-a", "r", patient, content=b"v1")
    amend = dict(
        c.anchor_args(doc, "hospital-a", "r", patient, content=b"v2", version=2), supersedes=1
    )
    assert c.ok(doc, "records", "amend", amend)["version"] == 2
    c.tx(c.admins["hospital-a"], "kv", "put", {"key": "k", "value": b"v"})
    a = c.q("records", "get", {"record_id": "r"})
    data = build_evidence(c.ledger, a["height"], a["tx_id"], "r", 2).encode()
    assert both(data, c.genesis.hash()) == (True, True)
    contract, _, attrs = unpack(Evidence.decode(data).event, 1 << 16)
    relabelled = replace(Evidence.decode(data), event=pack([contract, "anchored", attrs])).encode()
    assert both(relabelled, c.genesis.hash()) == (False, False)


def test_every_forgery_is_refused_by_both(scene: Scene) -> None:
    pin = scene.c.genesis.hash()
    ev = scene.evidence("bulk-2")
    contract, name, attrs = unpack(ev.event, 1 << 16)
    forged = [replace(ev, event=pack([contract, name, dict(attrs, version=v)])) for v in (0, 2, 7)]
    forged.append(replace(ev, event=pack([contract, name, dict(attrs, patient="someone-else")])))
    forged.append(replace(ev, tx_index=ev.tx_index + 1))
    forged.append(replace(ev, header=ev.next_header, certificate=ev.next_certificate))
    for f in forged:
        assert both(f.encode(), pin) == (False, False)
    v1 = pack([OLD_MAGIC, b"g", b"h", b"c", b"t", 0, 1, [], "rec-1", 1])
    assert both(v1, pin) == (False, False)
    data = ev.encode()
    for i in range(0, len(data), 3):
        flipped = bytearray(data)
        flipped[i] ^= 0x04
        assert both(bytes(flipped), pin) == (False, False), f"byte {i}"
    # a rejected transaction: see test_evidence.py for how it is assembled
    assert both(b"\x93\x01\x02\x03", pin) == (False, False)
    assert both(b"", None) == (False, False)


def test_without_a_pin_both_say_so(scene: Scene) -> None:
    data = scene.evidence("rec-1").encode()
    ours = verify_evidence(data)
    ok, lines, _ = independent.verify(data)
    assert ours.ok and ours.facts["genesis_pinned"] is False
    assert ok and any("NOT PINNED" in line for line in lines)
