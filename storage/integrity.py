"""Is a node's data what it wrote? Checks of the ledger, the vault and node-state.

Two depths. ``quick`` runs at every start and costs a few hundred reads
whatever the ledger's size: the tip block and the ones just below it (the
newest writes are the ones a lost or damaged log takes with it), a random
sample of older blocks — each with its commit certificate, its link to its
predecessor, the hash index and the tx index of its transactions — the
consensus entry of the tip, and the vault's record count against the count
node-state keeps of it, with a sample of records decrypted and checked
against their hashes. ``full`` (``medchain node verify``) reads everything:
every block as ``verify_chain`` does, every entry of every store with
LevelDB's checksums, and every vault record.

A finding names the store, what is wrong and where; the caller says what to
do about it (RELIABILITY.md has the procedures).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import msgpack

from medchain.storage.block import Block, CommitCertificate
from medchain.storage.codec import DecodeError
from medchain.storage.kv import LevelDBKV, StorageDamaged
from medchain.storage.ledger import Ledger, LedgerError, verify_chain
from medchain.storage.vault import Vault, VaultIntegrityError

RECENT = 32  # newest blocks always checked at start
SEQ_SLACK = 2  # a node killed between a commit and its note in node-state lags by one
SAMPLES = 16  # older blocks and vault records sampled at start
MAX_TXS_CHECKED = 64  # of each checked block's transactions, in the tx index
RECORDS_HEAD = b"records\x00head/"
RECORDS_ANCHOR = b"records\x00rec/"

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Finding:
    store: str  # "ledger", "ledger block", "vault", "node-state"
    what: str
    damage: bool = True  # False: worth knowing, not a reason to stop

    def __str__(self) -> str:
        return f"{self.store}: {self.what}"


def _read(store: str, out: list[Finding], fn: Callable[[], object]) -> object:
    try:
        return fn()
    except (StorageDamaged, LedgerError, DecodeError, ValueError) as exc:
        out.append(Finding(store, str(exc)))
        return None


def check_block(ledger: Ledger, h: int) -> list[Finding]:
    """One committed block: present, decodable, certified, linked and indexed."""
    out: list[Finding] = []
    block = _read("ledger block", out, lambda: ledger.block(h))
    if not isinstance(block, Block):
        return out or [
            Finding("ledger block", f"block {h} is missing (the tip is {ledger.height})")
        ]
    if block.height != h:
        out.append(Finding("ledger block", f"the block stored at {h} says height {block.height}"))
    cert = _read("ledger block", out, lambda: ledger.certificate(h))
    if not isinstance(cert, CommitCertificate):
        out.append(Finding("ledger block", f"block {h} has no commit certificate"))
    else:
        why = cert.verify(ledger.chain_id, ledger.validators, block.header)
        if why:
            out.append(Finding("ledger block", f"block {h}'s commit certificate: {why}"))
    prev: bytes | None
    if h == 1:
        prev = ledger.genesis_hash
    else:
        before = _read("ledger block", out, lambda: ledger.block(h - 1))
        prev = before.hash if isinstance(before, Block) else None
        if prev is None and not out:
            out.append(Finding("ledger block", f"block {h - 1} is missing"))
    if prev is not None and block.header.prev_hash != prev:
        out.append(Finding("ledger block", f"block {h} does not extend block {h - 1}"))
    if ledger.state_root_at(h) is None:
        out.append(Finding("ledger block", f"block {h}'s state root is missing"))
    if ledger.results_root_at(h) is None:
        out.append(Finding("ledger block", f"block {h}'s results root is missing"))
    if _read("ledger", out, lambda: ledger.height_of(block.hash)) != h:
        out.append(Finding("ledger", f"block {h} is missing from the hash index"))
    for i, tx_id in enumerate(block.tx_ids()[:MAX_TXS_CHECKED]):
        loc = _read("ledger", out, partial(ledger.tx, tx_id))
        if loc is None:
            out.append(
                Finding("ledger", f"transaction {i} of block {h} is missing from the tx index")
            )
            break
    return out


def quick_ledger(ledger: Ledger, rng: random.Random | None = None) -> list[Finding]:
    try:
        return _quick_ledger(ledger, rng or random.Random())
    except (StorageDamaged, LedgerError) as exc:
        return [Finding("ledger", str(exc))]


def _quick_ledger(ledger: Ledger, rng: random.Random) -> list[Finding]:
    h = ledger.height
    out: list[Finding] = []
    if h == 0:
        return out
    heights = set(range(max(1, h - RECENT + 1), h + 1))
    heights.update(rng.randint(1, h) for _ in range(min(SAMPLES, h)))
    for x in sorted(heights, reverse=True):
        found = check_block(ledger, x)
        out.extend(found)
        if len(out) >= 5:
            break
    tip = ledger.block(h) if not out else None
    if tip is not None:
        if tip.hash != ledger.last_hash:
            out.append(
                Finding("ledger", f"the tip names a block hash that block {h} does not have")
            )
        if ledger.state_root_at(h) != ledger.state_root:
            out.append(Finding("ledger", f"the tip's state root differs from block {h}'s"))
    if (
        ledger.seq
        and _read("ledger", out, lambda: ledger.seq_entry(ledger.seq)) is None
        and not out
    ):
        out.append(
            Finding("ledger", f"the entry of consensus seq {ledger.seq} (the tip) is missing")
        )
    return out


def quick(ledger: Ledger, vault: Vault, org_id: str) -> list[Finding]:
    """The checks at every start: the ledger (``quick_ledger``), blocks above its tip,
    node-state against it, and the vault (a sample of ``org_id``'s records)."""
    return (
        quick_ledger(ledger)
        + blocks_above_tip(ledger)
        + check_node_state(ledger)
        + check_vault(ledger, vault, org_id)
    )


def blocks_above_tip(ledger: Ledger) -> list[Finding]:
    """Block-store entries above the tip are normal after a crash; many of them mean
    the main store lost recent writes (its log truncated): worth saying."""
    top = next(iter(ledger.blocks.scan(b"b", None, reverse=True)), None)
    if top is None or len(top[0]) < 9:
        return []
    highest = int.from_bytes(top[0][1:9], "big")
    if highest <= ledger.height + 1:
        return []
    return [
        Finding(
            "ledger",
            f"the tip is at height {ledger.height} but the block store holds blocks up to "
            f"{highest}: the main store lost recent writes; catching up from the other members",
            damage=False,
        )
    ]


def check_node_state(ledger: Ledger) -> list[Finding]:
    """Node-state (the ledger's mirror) must know of every commit but the last few: if it
    does not, it lost writes — this node's pool log and consensus votes among them."""
    if ledger.mirror is None or ledger.seq <= 1:
        return []
    try:
        told = ledger.mirrored_seq()
    except StorageDamaged as exc:
        return [Finding("node-state", str(exc))]
    if told is None:
        return [
            Finding(
                "node-state",
                f"it has lost its contents: the ledger is at consensus seq {ledger.seq}, and "
                "node-state knows of none (its log deleted or truncated, or replaced)",
            )
        ]
    if told < ledger.seq - SEQ_SLACK:
        return [
            Finding(
                "node-state",
                f"it lost its recent writes: it knows of consensus seq {told}, the ledger is at "
                f"{ledger.seq} (this node's pool log and consensus votes since then are gone)",
            )
        ]
    return []


def full_ledger(ledger: Ledger, progress: Progress | None = None) -> list[Finding]:
    try:
        out = [Finding("ledger", p) for p in verify_chain(ledger, progress=progress)]
    except (StorageDamaged, LedgerError) as exc:
        out = [Finding("ledger block" if "block" in str(exc) else "ledger", str(exc))]
    out += full_store("ledger", ledger.store)
    if ledger.blocks is not ledger.store:
        out += full_store("ledger block", ledger.blocks)
    return out


def custodial_records(ledger: Ledger, org_id: str) -> Iterator[tuple[str, int]]:
    """(record id, latest version) of every record anchored with ``org_id`` as custodian."""
    prefix = RECORDS_HEAD + org_id.encode() + b":"
    for key, raw in ledger.state_scan(prefix):
        head = msgpack.unpackb(raw, raw=False)
        yield key[len(RECORDS_HEAD) :].decode(), int(head["version"])


def _anchored_hashes(ledger: Ledger, record_id: str, version: int) -> set[bytes]:
    out = set()
    for v in range(1, version + 1):
        raw = ledger.state_get(RECORDS_ANCHOR + record_id.encode() + b"/" + v.to_bytes(4, "big"))
        if raw is not None:
            out.add(bytes(msgpack.unpackb(raw, raw=False)["content_hash"]))
    return out


def check_record(ledger: Ledger, vault: Vault, record_id: str, version: int) -> Finding | None:
    try:
        rec = vault.get(record_id)
    except VaultIntegrityError as exc:
        return Finding("vault", str(exc))
    except StorageDamaged as exc:
        return Finding("vault", str(exc))
    if rec is None:
        return None  # counted by the caller
    if rec.content_hash not in _anchored_hashes(ledger, record_id, version):
        return Finding("vault", f"record {record_id} differs from every version anchored on chain")
    return None


def check_vault(
    ledger: Ledger,
    vault: Vault,
    org_id: str,
    full: bool = False,
    rng: random.Random | None = None,
    progress: Progress | None = None,
) -> list[Finding]:
    """The vault against its own count, node-state's count of it, and the anchors this
    node is custodian of: a sample (``full``: all) decrypted and hash-checked."""
    rng = rng or random.Random()
    out: list[Finding] = []
    try:
        stored = vault.stored_count()
        mirrored = vault.mirrored_count()
    except StorageDamaged as exc:
        return [Finding("vault", str(exc))]
    if mirrored is not None and (stored is None or stored < mirrored):
        out.append(
            Finding(
                "vault",
                f"it holds {stored or 0} records, but this node stored {mirrored} "
                "(records were lost: a deleted log, or an old copy restored)",
            )
        )
    out += _vault_entries(vault, None if full else SAMPLES)
    anchored, absent = 0, 0
    chosen: list[tuple[str, int]] = []
    try:
        for record_id, version in custodial_records(ledger, org_id):
            anchored += 1
            if full or len(chosen) < SAMPLES:
                chosen.append((record_id, version))
            else:  # reservoir sampling: every record equally likely
                j = rng.randrange(anchored)
                if j < SAMPLES:
                    chosen[j] = (record_id, version)
    except (StorageDamaged, LedgerError) as exc:
        return [*out, Finding("ledger", str(exc))]
    bad_records: list[Finding] = []
    for n, (record_id, version) in enumerate(chosen, 1):
        try:
            present = vault.has(record_id)
        except StorageDamaged as exc:
            out.append(Finding("vault", str(exc)))
            break
        if not present:
            absent += 1
        else:
            found = check_record(ledger, vault, record_id, version)
            if found is not None:
                # At start, as for the entries above: one bad record is a warning.
                bad_records.append(found if full else dataclasses.replace(found, damage=False))
        if progress is not None and n % 256 == 0:
            progress(256)
    checked = len(chosen) - absent
    if not full and checked and len(bad_records) == checked:
        bad_records = [
            Finding("vault", f"none of the {checked} anchored records checked matches its anchor")
        ]
    out += bad_records
    if absent:  # anchored by a member system that keeps the content itself, or lost
        out.append(
            Finding(
                "vault",
                f"{absent} of {len(chosen)} records checked of the {anchored} anchored with "
                f"{org_id} as custodian are not in this vault (this node cannot release them)",
                damage=False,
            )
        )
    if full and isinstance(vault.store, LevelDBKV):
        try:
            vault.store.check_all(progress)
        except StorageDamaged as exc:
            out.append(Finding("vault", str(exc)))
    return out


def _vault_entries(vault: Vault, limit: int | None) -> list[Finding]:
    """The vault's first ``limit`` entries (None: all) decrypt under this node's key and
    match their hashes. At start (a limit) only a vault none of whose entries decrypts
    is damage — another node's vault put in its place; one damaged record is worth a
    warning (its fetches name it as an integrity error), not a node that will not run."""
    bad: list[Finding] = []
    seen = 0
    try:
        for record_id in vault.record_ids():
            if limit is not None and seen >= limit:
                break
            seen += 1
            try:
                vault.get(record_id)
            except VaultIntegrityError as exc:
                bad.append(Finding("vault", str(exc), damage=limit is None))
                if len(bad) >= 20:
                    break
    except StorageDamaged as exc:
        return [*bad, Finding("vault", str(exc))]
    if limit is not None and seen and len(bad) == seen:
        return [
            Finding(
                "vault",
                f"none of its first {seen} records decrypts under this "
                "node's key (is this another node's vault?)",
            )
        ]
    return bad


def full_store(name: str, store: object, progress: Progress | None = None) -> list[Finding]:
    if not isinstance(store, LevelDBKV):
        return []
    try:
        store.check_all(progress)
    except StorageDamaged as exc:
        return [Finding(name, str(exc))]
    return []
