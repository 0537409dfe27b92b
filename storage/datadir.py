"""A stopped node's data dir as the offline tools open it (``medchain node verify``,
``node vault-restored``, ``node resync``): its stores by name, which of them a
running node holds, and all of them opened at once — none created, each read-only
unless the tool writes to it, and the ones that do not open reported while the
others open all the same."""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from medchain.storage.genesis import Genesis
from medchain.storage.kv import LevelDBKV, StoreError
from medchain.storage.ledger import Ledger
from medchain.storage.vault import Vault

T = TypeVar("T")

STORES = ("ledger", "ledger/blocks", "node-state", "vault")  # the LevelDB stores in a data dir


def held_store(data_dir: Path) -> str | None:
    """The store whose LevelDB lock another process holds (a node running on it)."""
    for name in STORES:
        lock = data_dir / name / "LOCK"
        if not lock.exists():
            continue
        with open(lock, "a") as fh:
            try:
                fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.lockf(fh, fcntl.LOCK_UN)
            except OSError:
                return name
    return None


@dataclass
class NodeData:
    """The stores of a data dir that opened; ``failures``: (store, why) of the others."""

    ledger: Ledger | None
    node_state: LevelDBKV | None
    vault: Vault | None
    failures: list[tuple[str, StoreError]] = field(default_factory=list)

    def close(self) -> None:
        for s in (self.vault, self.node_state, self.ledger):
            if s is not None:
                s.close()

    def all(self) -> tuple[Ledger, LevelDBKV, Vault]:
        """The three stores; if one did not open, the others closed and its error raised."""
        if self.failures:
            self.close()
            raise self.failures[0][1]
        assert self.ledger is not None and self.node_state is not None and self.vault is not None
        return self.ledger, self.node_state, self.vault


def open_node_data(
    data_dir: Path, genesis: Genesis, master_key: bytes, writable: Collection[str] = ()
) -> NodeData:
    """Open the ledger, node-state and vault in ``data_dir``, wired as the node wires
    them (node-state mirrors the ledger; both mirror the vault's count). A store is
    read-only unless its name is in ``writable``; none is created."""
    failures: list[tuple[str, StoreError]] = []

    def opening(store: str, fn: Callable[[bool], T]) -> T | None:
        try:
            return fn(store not in writable)
        except StoreError as exc:  # say so, and go on with the other stores
            failures.append((store, exc))
            return None

    ledger = opening(
        "ledger", lambda ro: Ledger.open(data_dir / "ledger", genesis, create=False, read_only=ro)
    )
    node_state = opening(
        "node-state",
        lambda ro: LevelDBKV(
            data_dir / "node-state", create=False, name="node-state", read_only=ro
        ),
    )
    if ledger is not None:
        ledger.mirror = node_state
    mirrors = [m for m in (node_state, None if ledger is None else ledger.store) if m is not None]
    vault = opening(
        "vault",
        lambda ro: Vault.open(
            data_dir / "vault", master_key, create=False, mirror=mirrors, read_only=ro
        ),
    )
    return NodeData(ledger, node_state, vault, failures)
