"""The start check of a vault: one damaged record is a warning (its fetches name
it), a vault where nothing checks out is damage; `node verify` (full) names
every damaged record as damage."""

from __future__ import annotations

import random
from typing import Any

import msgpack

from medchain.storage.integrity import RECORDS_ANCHOR, RECORDS_HEAD, check_vault
from medchain.storage.vault import P_RECORD, Vault

ORG = "hospital-a"


class Anchors:
    """The two ledger reads check_vault makes, over a fixed set of anchors."""

    def __init__(self, hashes: dict[str, bytes]) -> None:
        self.hashes = hashes

    def state_scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        assert prefix == RECORDS_HEAD + ORG.encode() + b":"
        return [(RECORDS_HEAD + r.encode(), msgpack.packb({"version": 1})) for r in self.hashes]

    def state_get(self, key: bytes) -> bytes | None:
        rid = key[len(RECORDS_ANCHOR) : -5].decode()
        h = self.hashes.get(rid)
        return None if h is None else msgpack.packb({"content_hash": h})


def vault_with(n: int) -> tuple[Vault, Anchors]:
    vault = Vault.in_memory(bytes(32))
    hashes = {
        f"{ORG}:Observation:{i:04d}": vault.put(f"{ORG}:Observation:{i:04d}", b"{}", b"s", {})
        for i in range(n)
    }
    return vault, Anchors(hashes)


def tamper(vault: Vault, record_id: str) -> None:
    key = P_RECORD + record_id.encode()
    raw = bytearray(vault.store.get(key) or b"")
    raw[-3] ^= 0x01
    vault.store.write({key: bytes(raw)})


def damage(findings: list[Any]) -> list[str]:
    return [str(f) for f in findings if f.damage]


def test_one_damaged_anchored_record_is_a_warning_at_start() -> None:
    vault, anchors = vault_with(10)  # fewer than the sample: every record is checked
    victim = sorted(anchors.hashes)[7]
    tamper(vault, victim)
    for seed in range(5):
        found = check_vault(anchors, vault, ORG, rng=random.Random(seed))  # type: ignore[arg-type]
        assert damage(found) == []
        assert any(victim in str(f) for f in found)
    full = check_vault(anchors, vault, ORG, full=True)  # type: ignore[arg-type]
    assert damage(full) and all(victim in d for d in damage(full))


def test_a_vault_where_nothing_checks_out_is_damage() -> None:
    vault, anchors = vault_with(6)
    for rid in anchors.hashes:
        tamper(vault, rid)
    assert damage(check_vault(anchors, vault, ORG))  # type: ignore[arg-type]
