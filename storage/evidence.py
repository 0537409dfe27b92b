"""Evidence certificates: proof, checkable offline by anyone holding the
consortium's genesis, that one version of a record was anchored by a
transaction that SUCCEEDED on chain, at a given height and time — and
nothing about any other record.

The format, and the verification algorithm step by step, are specified in
docs/evidence.md so that a third party can write a verifier without this
code (tests/unit/test_evidence_independent.py is one). In short, a file
(canonical msgpack) carries:

- the genesis (chain id and validator set);
- the header of block h, which holds the anchoring transaction, with its
  commit certificate, and the transaction id's Merkle path to its tx root;
- the header of block h+1 with its commit certificate: it extends block h
  and carries block h's *results root* (storage.receipts);
- the transaction's receipt (id, sender, outcome, events root) and its
  Merkle path to that results root: the outcome is proven, not claimed;
- the one ``anchored``/``amended`` event of the record version, and its
  Merkle path to the receipt's events root: the anchor itself, not the
  bulk transaction around it;
- for a transaction that anchors this record alone, its bytes (so the
  author's own signature on it can be checked too).

``verify_evidence`` checks every link and reports each as held or failed;
every fact it reports comes from a signed or proven byte. A failed or
rejected transaction is refused with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medchain.storage.anchor import anchor_sign_bytes
from medchain.storage.block import BlockHeader, CommitCertificate
from medchain.storage.codec import (
    DecodeError,
    as_bytes,
    as_int,
    as_list,
    as_str,
    as_value,
    fields,
    pack,
    unpack,
)
from medchain.storage.crypto import sha256, verify
from medchain.storage.fhirdoc import FhirError, canonical_json, load_json
from medchain.storage.genesis import Genesis, GenesisError
from medchain.storage.ledger import Ledger, LedgerError
from medchain.storage.merkle import verify_inclusion
from medchain.storage.receipts import (
    MAX_EVENTS,
    Receipt,
    block_receipts,
    event_leaf,
    event_path,
    receipt_path,
    results_root,
)
from medchain.storage.state import Event
from medchain.storage.tx import MAX_TX_BYTES, Transaction

MAGIC = "medchain-evidence/v2"
OLD_MAGIC = "medchain-evidence/v1"
MAX_EVIDENCE_BYTES = 1024 * 1024
MAX_PATH = 64
MAX_EVENT_BYTES = 16 * 1024
ANCHOR_EVENTS = ("anchored", "amended")
SINGLE_ANCHOR_METHODS = ("anchor", "amend")
ANCHOR_KEYS = (
    "author",
    "author_id",
    "author_sig",
    "category",
    "clinical_year",
    "content_hash",
    "custodian",
    "fields_root",
    "patient",
    "record_id",
    "supersedes",
    "version",
)


class EvidenceUnavailable(Exception):
    """No certificate can be made (yet) for this record version, with the reason."""


@dataclass(frozen=True)
class Evidence:
    genesis: bytes
    header: bytes
    certificate: bytes
    next_header: bytes
    next_certificate: bytes
    receipt: bytes
    tx_index: int
    tx_count: int
    tx_path: tuple[bytes, ...]
    receipt_path: tuple[bytes, ...]
    event: bytes
    event_index: int
    event_path: tuple[bytes, ...]
    tx: bytes = b""  # the anchoring transaction, when it anchors only this record

    def encode(self) -> bytes:
        return pack(
            [
                MAGIC,
                self.genesis,
                self.header,
                self.certificate,
                self.next_header,
                self.next_certificate,
                self.receipt,
                self.tx_index,
                self.tx_count,
                list(self.tx_path),
                list(self.receipt_path),
                self.event,
                self.event_index,
                list(self.event_path),
                self.tx,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> Evidence:
        obj = unpack(data, MAX_EVIDENCE_BYTES, "evidence")
        if isinstance(obj, list) and obj and obj[0] == OLD_MAGIC:
            raise DecodeError(
                "evidence: a format-1 certificate (medchain-evidence/v1) proves only that a "
                "transaction is in a block, not that it succeeded; it is not accepted: export "
                "a new certificate"
            )
        f = fields(obj, 15, "evidence")
        if f[0] != MAGIC:
            raise DecodeError("evidence: not a medchain evidence file (wrong magic)")

        def path(v: Any, what: str) -> tuple[bytes, ...]:
            return tuple(as_bytes(p, what, 32) for p in as_list(v, what, MAX_PATH))

        return cls(
            genesis=as_bytes(f[1], "evidence.genesis"),
            header=as_bytes(f[2], "evidence.header"),
            certificate=as_bytes(f[3], "evidence.certificate"),
            next_header=as_bytes(f[4], "evidence.next_header"),
            next_certificate=as_bytes(f[5], "evidence.next_certificate"),
            receipt=as_bytes(f[6], "evidence.receipt"),
            tx_index=as_int(f[7], "evidence.tx_index"),
            tx_count=as_int(f[8], "evidence.tx_count", 1),
            tx_path=path(f[9], "evidence.tx_path"),
            receipt_path=path(f[10], "evidence.receipt_path"),
            event=as_bytes(f[11], "evidence.event", max_len=MAX_EVENT_BYTES),
            event_index=as_int(f[12], "evidence.event_index", 0, MAX_EVENTS - 1),
            event_path=path(f[13], "evidence.event_path"),
            tx=as_bytes(f[14], "evidence.tx", max_len=MAX_TX_BYTES),
        )


def anchor_message(chain_id: str, a: dict[str, Any]) -> bytes:
    """What an authoring practitioner signed for the anchor ``a`` (storage/anchor.py)."""
    return anchor_sign_bytes(
        chain_id,
        a["record_id"],
        a["version"],
        a["patient"],
        a["custodian"],
        a["category"],
        a["clinical_year"],
        a["content_hash"],
        a["fields_root"],
    )


# -- export ---------------------------------------------------------------------------


def build_evidence(
    ledger: Ledger, height: int, tx_id: bytes, record_id: str, version: int
) -> Evidence:
    """The certificate of the anchor of ``record_id`` ``version``, committed by ``tx_id``
    at ``height``. Raises EvidenceUnavailable if the ledger cannot prove it (yet)."""
    block = ledger.block(height)
    loc = ledger.tx(tx_id)
    cert = ledger.certificate(height)
    if block is None or cert is None or loc is None or loc.height != height:
        raise EvidenceUnavailable(f"block {height} is not in this node's ledger")
    nxt = ledger.block(height + 1)
    next_cert = ledger.certificate(height + 1)
    if nxt is None or next_cert is None:
        raise EvidenceUnavailable(
            f"block {height + 1}, which certifies the outcomes of block {height}, is not "
            "committed yet; try again in a moment"
        )
    results = ledger.results(height, len(block.txs))
    receipts = block_receipts(block.tx_ids(), block.txs, results)
    if results_root(receipts) != nxt.header.results_root:
        raise LedgerError(f"the stored results of block {height} do not match its successor")
    result = results[loc.index]
    if not result.ok:
        raise EvidenceUnavailable(f"transaction {tx_id.hex()} failed: it proves nothing")
    index = next(
        (
            i
            for i, e in enumerate(result.events)
            if e.contract == "records"
            and e.name in ANCHOR_EVENTS
            and isinstance(e.attrs, dict)
            and e.attrs.get("record_id") == record_id
            and e.attrs.get("version") == version
        ),
        None,
    )
    if index is None:
        raise EvidenceUnavailable(
            f"transaction {tx_id.hex()} does not anchor {record_id} v{version}"
        )
    raw = block.txs[loc.index]
    tx = Transaction.decode(raw)
    single = tx.contract == "records" and tx.method in SINGLE_ANCHOR_METHODS
    return Evidence(
        genesis=ledger.genesis.encode(),
        header=block.header_bytes,
        certificate=cert.encode(),
        next_header=nxt.header_bytes,
        next_certificate=next_cert.encode(),
        receipt=receipts[loc.index],
        tx_index=loc.index,
        tx_count=len(block.txs),
        tx_path=tuple(block.inclusion_proof(loc.index)),
        receipt_path=tuple(receipt_path(receipts, loc.index)),
        event=event_leaf(result.events[index]),
        event_index=index,
        event_path=tuple(event_path(result, index)),
        tx=raw if single else b"",
    )


# -- verification -----------------------------------------------------------------------


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


def decode_anchor_event(data: bytes) -> dict[str, Any]:
    """The anchor an ``anchored``/``amended`` event of the records chaincode carries."""
    e = fields(unpack(data, MAX_EVENT_BYTES, "event"), 3, "event")
    event = Event(
        as_str(e[0], "event.contract"), as_str(e[1], "event.name"), as_value(e[2], "event")
    )
    if event.contract != "records" or event.name not in ANCHOR_EVENTS:
        raise DecodeError(
            f"event: {event.contract}.{event.name} is not a record anchor (records.anchored or amended)"
        )
    a = event.attrs
    if not isinstance(a, dict):
        raise DecodeError("event: the anchor is not a map")
    if sorted(a) != sorted(ANCHOR_KEYS):
        raise DecodeError("event: the anchor does not have exactly the fields of an anchor")
    v = as_int(a.get("version"), "anchor.version", 1)
    sup = as_int(a.get("supersedes"), "anchor.supersedes")
    if (event.name == "anchored" and (v, sup) != (1, 0)) or (
        event.name == "amended" and (v < 2 or sup != v - 1)
    ):
        raise DecodeError(f"event: {event.name} with version {v} superseding {sup}")
    return {
        "record_id": as_str(a.get("record_id"), "anchor.record_id", 256, 1),
        "version": v,
        "supersedes": sup,
        "patient": as_str(a.get("patient"), "anchor.patient", 128, 1),
        "custodian": as_str(a.get("custodian"), "anchor.custodian", 128, 1),
        "category": as_str(a.get("category"), "anchor.category", 64, 1),
        "clinical_year": as_int(a.get("clinical_year"), "anchor.clinical_year", 1000, 9999),
        "content_hash": as_bytes(a.get("content_hash"), "anchor.content_hash", 32),
        "fields_root": as_bytes(a.get("fields_root"), "anchor.fields_root", 32),
        "author": as_bytes(a.get("author"), "anchor.author", 32),
        "author_id": as_str(a.get("author_id"), "anchor.author_id", 128),
        "author_sig": as_bytes(a.get("author_sig"), "anchor.author_sig", max_len=64),
        "name": event.name,
    }


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
    v.check(True, "the file is a well-formed evidence certificate (medchain-evidence/v2)")
    try:
        genesis = Genesis.decode(ev.genesis)
    except (DecodeError, GenesisError) as exc:
        v.check(False, f"the genesis inside is invalid: {exc}")
        return v
    ghash = genesis.hash()
    chain, validators = genesis.chain_id, genesis.validators
    v.facts.update(
        chain_id=chain,
        genesis_hash=ghash.hex(),
        validators=validators.n,
        genesis_pinned=expected_genesis_hash is not None,
    )
    if expected_genesis_hash is not None:
        same = ghash == expected_genesis_hash
        if not v.check(
            same,
            f"the genesis is the expected one ({ghash.hex()[:16]}…)"
            if same
            else f"the genesis is not the expected one: expected {expected_genesis_hash.hex()[:16]}…, "
            f"the certificate's is {ghash.hex()[:16]}…",
        ):
            return v
    else:
        v.check(
            True, f"genesis {ghash.hex()} (compare with the consortium's published genesis hash)"
        )
    try:
        header = BlockHeader.decode(ev.header)
        cert = CommitCertificate.decode(ev.certificate)
        nxt = BlockHeader.decode(ev.next_header)
        next_cert = CommitCertificate.decode(ev.next_certificate)
        receipt = Receipt.decode(ev.receipt)
    except DecodeError as exc:
        v.check(False, f"a part of the certificate does not decode: {exc}")
        return v
    h = header.height
    for hd, c, what in ((header, cert, f"block {h}"), (nxt, next_cert, f"block {nxt.height}")):
        same_set = hd.chain_id == chain and hd.validator_set_hash == validators.hash()
        if not v.check(
            same_set,
            f"{what} belongs to chain {chain} and names the genesis validator set"
            if same_set
            else f"{what} is of another chain or names another validator set",
        ):
            return v
        why = c.verify(chain, validators, hd)
        if not v.check(
            why is None,
            f"{len(c.votes)} of {validators.n} validators signed {what} (quorum {validators.quorum})"
            if why is None
            else f"{what}: commit certificate: {why}",
        ):
            return v
    linked = nxt.height == h + 1 and nxt.prev_hash == header.hash()
    if not v.check(
        linked,
        f"block {h + 1} extends block {h}"
        if linked
        else "the second header does not extend the first (heights or previous hash)",
    ):
        return v
    v.facts.update(height=h, timestamp_ms=header.timestamp_ms, block_hash=header.hash().hex())
    v.facts.update(tx_id=receipt.tx_id.hex(), submitted_by=receipt.sender.hex())
    in_block = verify_inclusion(receipt.tx_id, ev.tx_index, ev.tx_count, ev.tx_path, header.tx_root)
    if not v.check(
        in_block,
        f"transaction {receipt.tx_id.hex()[:16]}… is in block {h} (Merkle path to its tx root)"
        if in_block
        else f"the Merkle path does not lead from the transaction to block {h}'s tx root",
    ):
        return v
    proven = verify_inclusion(
        ev.receipt, ev.tx_index, ev.tx_count, ev.receipt_path, nxt.results_root
    )
    if not v.check(
        proven,
        f"its receipt is in block {h}'s results root, which block {h + 1} carries"
        if proven
        else f"the receipt's Merkle path does not lead to the results root block {h + 1} carries",
    ):
        return v
    if not v.check(
        receipt.ok,
        "the transaction succeeded on chain"
        if receipt.ok
        else f"the transaction FAILED on chain (result code {receipt.code}): a failed or "
        "rejected transaction proves nothing",
    ):
        return v
    has_event = ev.event_index < receipt.event_count and verify_inclusion(
        ev.event, ev.event_index, receipt.event_count, ev.event_path, receipt.events_root
    )
    if not v.check(
        has_event,
        f"the anchor is one of the {receipt.event_count} events the transaction emitted "
        "(Merkle path to its events root)"
        if has_event
        else "the event's Merkle path does not lead to the receipt's events root",
    ):
        return v
    try:
        a = decode_anchor_event(ev.event)
    except DecodeError as exc:
        v.check(False, f"the proven event is not a record anchor: {exc}")
        return v
    v.check(True, f"the event anchors record {a['record_id']} version {a['version']}")
    _check_author(v, chain, a, receipt, ev.tx)
    v.facts.update(
        record_id=a["record_id"],
        version=a["version"],
        supersedes=a["supersedes"],
        patient=a["patient"],
        custodian=a["custodian"],
        category=a["category"],
        clinical_year=a["clinical_year"],
        content_hash=a["content_hash"].hex(),
        fields_root=a["fields_root"].hex(),
        author=a["author"].hex(),
        author_id=a["author_id"],
    )
    if content is not None:
        try:
            h2 = sha256(canonical_json(load_json(content)))
        except FhirError as exc:
            v.check(False, f"the content given is not a record's JSON: {str(exc)[:100]}")
            return v
        v.check(
            h2 == a["content_hash"],
            "the content given is exactly the anchored record"
            if h2 == a["content_hash"]
            else "the content given differs from the anchored record (SHA-256 mismatch)",
        )
    return v


def _check_author(v: Verdict, chain: str, a: dict[str, Any], receipt: Receipt, raw: bytes) -> None:
    """The author's own signature: over the anchor, or over the transaction they sent."""
    if a["author_sig"]:
        good = len(a["author_sig"]) == 64 and verify(
            a["author"], anchor_message(chain, a), a["author_sig"]
        )
        v.check(
            good,
            f"the author ({a['author_id'] or a['author'].hex()[:16]}) signed this anchor"
            if good
            else "the author's signature over the anchor does not verify",
        )
    else:
        good = a["author"] == receipt.sender
        v.check(
            good,
            f"the author ({a['author_id'] or a['author'].hex()[:16]}) sent the anchoring transaction"
            if good
            else "the anchor carries no author signature and its author did not send it",
        )
    if raw:
        try:
            tx = Transaction.decode(raw)
        except DecodeError as exc:
            v.check(False, f"the transaction inside does not decode: {exc}")
            return
        good = sha256(raw) == receipt.tx_id and tx.chain_id == chain and tx.verify_signature()
        v.check(
            good,
            "the anchoring transaction's own signature is valid"
            if good
            else "the transaction inside is not the one the receipt names, or its signature is invalid",
        )
