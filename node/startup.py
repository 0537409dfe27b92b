"""Why a node refuses to start on its stores, and what its operator does next.

The daemon opens each store through ``open_store`` and checks what it opened with
``check_stores`` (storage.integrity's quick checks: a few hundred reads). A store
that does not open, or damaged data, stops the start with a NodeError naming the
store, what is wrong and the next step (RELIABILITY.md has the procedures);
``medchain node verify`` gives the same next steps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from medchain.storage import integrity
from medchain.storage.kv import StoreError, StoreLocked, StoreUnwritable
from medchain.storage.ledger import Ledger
from medchain.storage.vault import Vault

log = logging.getLogger("medchain.node")  # the daemon's: these are its log lines
T = TypeVar("T")

RELIABILITY = "RELIABILITY.md"


class NodeError(Exception):
    """The node cannot start, with the reason."""


def next_step(store: str, config: Path, unwritable: bool = False, locked: bool = False) -> str:
    """What an operator does about damage to ``store`` (RELIABILITY.md has the details)."""
    if locked:
        return "stop the node that runs on this data dir (medchain net down, or its service)"
    if unwritable:
        return (
            "the data is not damaged: make the data dir writable again (mount it read-write, "
            "fix its owner or permissions, free space), then start the node"
        )
    if store.startswith("ledger"):
        return (
            f"rebuild the ledger from the other members: medchain node resync --config {config} "
            f"(see {RELIABILITY}, 'Damaged ledger')"
        )
    if store == "vault":
        return (
            "the vault holds this institution's records and cannot be rebuilt from peers: "
            f"restore it from your backup, then run medchain node verify --config {config} "
            f"(see {RELIABILITY}, 'Damaged vault')"
        )
    return (
        f"medchain node resync --config {config} --reset-state "
        f"(see {RELIABILITY}, 'Damaged node-state' for what that forgets)"
    )


def open_store(store: str, fn: Callable[[], T], config: Path, refused: Callable[[], None]) -> T:
    """``fn()``, which opens ``store``. If the store does not open: ``refused()`` (the
    caller closes what it opened before), then a NodeError with the next step."""
    try:
        return fn()
    except StoreError as exc:
        refused()
        step = next_step(
            store, config, isinstance(exc, StoreUnwritable), isinstance(exc, StoreLocked)
        )
        raise NodeError(f"{exc}\nnext step: {step}") from None


def check_stores(
    ledger: Ledger, vault: Vault, org_id: str, config: Path, refused: Callable[[], None]
) -> None:
    """Refuse to start on damaged data: ``refused()`` (the caller closes its stores),
    then a NodeError listing the damage and a next step for each store. Findings that
    are not damage are logged as warnings."""
    t = time.monotonic()
    findings = integrity.quick(ledger, vault, org_id)
    damage = [f for f in findings if f.damage]
    for f in findings:
        if not f.damage:
            log.warning("%s", f, extra={"event": "storage-notice", "store": f.store})
    if damage:
        refused()
        stores = sorted({f.store for f in damage})
        raise NodeError(
            "this node's data is damaged; refusing to start:\n  "
            + "\n  ".join(str(f) for f in damage)
            + "".join(f"\nnext step: {next_step(s, config)}" for s in stores)
        )
    log.info(
        "storage checked in %.0f ms: ledger at height %d, vault of %d records",
        (time.monotonic() - t) * 1000,
        ledger.height,
        vault.stored_count() or 0,
        extra={"event": "storage-checked"},
    )
