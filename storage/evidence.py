"""Evidence certificates: proof, checkable offline by anyone, that a record's
fingerprint was committed by the consortium at a given height and time.

One file (canonical msgpack) holds: the genesis (validator set and chain id;
the validator set has no history beyond it, as membership does not change
after genesis), the block header, its commit certificate, the anchoring
transaction's bytes (with its signature), its index and the Merkle path to
the header's transaction root, and which record of the transaction is meant.

``verify_evidence`` checks every link and reports each as held or failed:
the file parses, the genesis matches an expected hash (when given), the
header names that validator set, a quorum of distinct validators signed the
header hash, the transaction is in the block, its signature is valid, it
anchors the record, the author's signature over the anchor is valid, and,
given the record's content, that the content hashes to the anchored value.
Any flipped byte fails one of these with a specific reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from storage.block import BlockHeader, CommitCertificate
from storage.codec import DecodeError, as_bytes, as_int, as_list, as_str, fields, pack, unpack
from storage.crypto import sha256, sign_bytes, verify
from storage.fhirdoc import canonical_json
from storage.genesis import Genesis, GenesisError
from storage.merkle import verify_inclusion
from storage.tx import Transaction

MAGIC = "medchain-evidence/v1"
MAX_EVIDENCE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Evidence:
    genesis: bytes
    header: bytes
    certificate: bytes
    tx: bytes
    tx_index: int
    tx_count: int
    path: tuple[bytes, ...]
    record_id: str
    version: int

    def encode(self) -> bytes:
        return pack(
            [
                MAGIC,
                self.genesis,
                self.header,
                self.certificate,
                self.tx,
                self.tx_index,
                self.tx_count,
                list(self.path),
                self.record_id,
                self.version,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> Evidence:
        f = fields(unpack(data, MAX_EVIDENCE_BYTES, "evidence"), 10, "evidence")
        if f[0] != MAGIC:
            raise DecodeError("evidence: not a medchain evidence file (wrong magic)")
        return cls(
            as_bytes(f[1], "evidence.genesis"),
            as_bytes(f[2], "evidence.header"),
            as_bytes(f[3], "evidence.certificate"),
            as_bytes(f[4], "evidence.tx"),
            as_int(f[5], "evidence.tx_index"),
            as_int(f[6], "evidence.tx_count", 1),
            tuple(as_bytes(p, "evidence.path", 32) for p in as_list(f[7], "evidence.path", 64)),
            as_str(f[8], "evidence.record_id", 128, 1),
            as_int(f[9], "evidence.version", 1),
        )


@dataclass
class Verdict:
    checks: list[tuple[bool, str]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(ok for ok, _ in self.checks)

    def check(self, ok: bool, text: str) -> bool:
        self.checks.append((ok, text))
        return ok

    def lines(self) -> list[str]:
        return [("  OK    " if ok else "  FAIL  ") + text for ok, text in self.checks]


def anchor_message(chain_id: str, a: dict[str, Any], version: int) -> bytes:
    # Mirrors contracts.sdk.anchor_sign_bytes (storage cannot import contracts).
    return sign_bytes(
        "medchain/anchor/v1",
        chain_id,
        a["record_id"],
        version,
        a["patient"],
        a["custodian"],
        a["category"],
        a["clinical_date"],
        a["content_hash"],
        a["fields_root"],
    )


def find_anchor(tx: Transaction, record_id: str) -> dict[str, Any] | None:
    """The anchor for ``record_id`` inside a records.anchor / amend / anchor_bulk transaction."""
    if tx.contract != "records" or not isinstance(tx.args, dict):
        return None
    if tx.method in ("anchor", "amend"):
        items = [tx.args]
    elif tx.method == "anchor_bulk":
        items = tx.args.get("anchors") or []
    else:
        return None
    for it in items:
        if isinstance(it, dict) and it.get("record_id") == record_id:
            return it
    return None


def verify_evidence(
    data: bytes,
    expected_genesis_hash: bytes | None = None,
    content: bytes | None = None,
) -> Verdict:
    v = Verdict()
    try:
        ev = Evidence.decode(data)
    except DecodeError as exc:
        v.check(False, f"the file is not a valid evidence certificate: {exc}")
        return v
    v.check(True, "the file is a well-formed evidence certificate")
    try:
        genesis = Genesis.decode(ev.genesis)
    except (DecodeError, GenesisError) as exc:
        v.check(False, f"the genesis inside is invalid: {exc}")
        return v
    ghash = genesis.hash()
    v.facts.update(
        chain_id=genesis.chain_id, genesis_hash=ghash.hex(), validators=genesis.validators.n
    )
    if expected_genesis_hash is not None:
        if not v.check(
            ghash == expected_genesis_hash, f"the genesis is the expected one ({ghash.hex()[:16]}…)"
        ):
            return v
    else:
        v.check(
            True, f"genesis {ghash.hex()} (compare with the consortium's published genesis hash)"
        )
    try:
        header = BlockHeader.decode(ev.header)
        cert = CommitCertificate.decode(ev.certificate)
        tx = Transaction.decode(ev.tx)
    except DecodeError as exc:
        v.check(False, f"a part of the certificate does not decode: {exc}")
        return v
    v.facts.update(
        height=header.height, timestamp_ms=header.timestamp_ms, block_hash=header.hash().hex()
    )
    v.check(header.chain_id == genesis.chain_id, f"the block belongs to chain {genesis.chain_id}")
    v.check(
        header.validator_set_hash == genesis.validators.hash(),
        "the block names the genesis validator set",
    )
    why = cert.verify(genesis.chain_id, genesis.validators, header)
    v.check(
        why is None,
        f"{genesis.validators.quorum} of {genesis.validators.n} validators signed the block (commit certificate)"
        if why is None
        else f"commit certificate: {why}",
    )
    tx_id = sha256(ev.tx)
    v.facts["tx_id"] = tx_id.hex()
    inside = ev.tx_index < ev.tx_count and verify_inclusion(
        tx_id, ev.tx_index, ev.tx_count, ev.path, header.tx_root
    )
    v.check(
        inside,
        f"the transaction is in block {header.height} (Merkle path to its transaction root)"
        if inside
        else "the Merkle path does not lead from the transaction to the block's transaction root",
    )
    v.check(
        tx.chain_id == genesis.chain_id and tx.verify_signature(),
        "the transaction's signature is valid"
        if tx.verify_signature()
        else "the transaction's signature is invalid",
    )
    anchor = find_anchor(tx, ev.record_id)
    if not v.check(anchor is not None, f"the transaction anchors record {ev.record_id}"):
        return v
    assert anchor is not None
    if not anchor.get("author_sig"):
        # The author signed the anchoring transaction itself (checked above).
        good_author = anchor.get("author") == tx.sender and tx.verify_signature()
        v.check(
            good_author,
            "the author signed the anchoring transaction"
            if good_author
            else "the anchor carries no author signature and was not signed by its author",
        )
    else:
        try:
            good_author = verify(
                anchor["author"],
                anchor_message(genesis.chain_id, anchor, ev.version),
                anchor["author_sig"],
            )
        except (KeyError, TypeError):
            good_author = False
        v.check(good_author, "the authoring practitioner's signature over the anchor is valid")
    v.facts.update(
        record_id=ev.record_id,
        version=ev.version,
        patient=anchor.get("patient"),
        custodian=anchor.get("custodian"),
        category=anchor.get("category"),
        clinical_date=anchor.get("clinical_date"),
        content_hash=anchor["content_hash"].hex()
        if isinstance(anchor.get("content_hash"), bytes)
        else None,
    )
    if content is not None:
        try:
            doc = json.loads(content)
            h = sha256(canonical_json(doc))
        except ValueError as exc:
            v.check(False, f"the content given is not JSON: {exc}")
            return v
        v.check(
            h == anchor.get("content_hash"),
            "the content given is exactly the anchored record"
            if h == anchor.get("content_hash")
            else "the content given differs from the anchored record (SHA-256 mismatch)",
        )
    return v
