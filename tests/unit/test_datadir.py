"""storage.datadir: a stopped node's stores as the offline tools open them — wired
as the node wires them, read-only but for what a tool writes, none created, the
ones that do not open reported — and which store a running node holds."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medchain.storage.datadir import held_store, open_node_data
from medchain.storage.kv import LevelDBKV, StoreError, StoreReadOnly
from medchain.storage.ledger import Ledger
from medchain.storage.vault import Vault
from tests.helpers import Consortium

MASTER = bytes(range(32))


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Consortium]:
    """A data dir as a node leaves it: a ledger with a block, node-state, a vault."""
    c = Consortium.make()
    d = tmp_path / "data"
    d.mkdir()
    ledger = Ledger.open(d / "ledger", c.genesis)
    node_state = LevelDBKV(d / "node-state", name="node-state")
    ledger.mirror = node_state
    vault = Vault.open(d / "vault", MASTER, mirror=(node_state, ledger.store))
    c.commit(ledger, [c.tx(c.admin_keys[0]).encode()])
    vault.put("org-0:r1", b"content", bytes(32), {})
    for s in (vault, node_state, ledger):
        s.close()
    return d, c


def test_every_store_opens_read_only_and_wired(data: tuple[Path, Consortium]) -> None:
    d, c = data
    stores = open_node_data(d, c.genesis, MASTER)
    ledger, node_state, vault = stores.all()
    try:
        assert ledger.height == 1 and ledger.mirrored_seq() == ledger.seq
        assert vault.get("org-0:r1") is not None and vault.mirrored_count() == 1
        for write in (
            lambda: ledger.store.write({b"x": b"y"}),
            lambda: ledger.blocks.write({b"x": b"y"}),
            lambda: node_state.write({b"x": b"y"}),
            lambda: vault.put("org-0:r2", b"more", bytes(32), {}),
        ):
            with pytest.raises(StoreReadOnly):
                write()
    finally:
        stores.close()


def test_only_the_stores_named_writable_take_writes(data: tuple[Path, Consortium]) -> None:
    d, c = data
    stores = open_node_data(d, c.genesis, MASTER, writable=("ledger", "node-state"))
    ledger, node_state, vault = stores.all()
    try:
        ledger.store.write({b"x": b"y"})
        node_state.write({b"x": b"y"})
        with pytest.raises(StoreReadOnly):
            vault.put("org-0:r2", b"more", bytes(32), {})
    finally:
        stores.close()


def test_a_store_that_does_not_open_is_reported_and_none_is_created(
    data: tuple[Path, Consortium],
) -> None:
    d, c = data
    shutil.rmtree(d / "vault")
    stores = open_node_data(d, c.genesis, MASTER, writable=("vault",))
    assert stores.ledger is not None and stores.node_state is not None and stores.vault is None
    assert [s for s, _ in stores.failures] == ["vault"]
    assert "the vault store at" in str(stores.failures[0][1])
    with pytest.raises(StoreError, match="the vault store at"):
        stores.all()  # closes the others: they open again
    assert not (d / "vault").exists()
    open_node_data(d, c.genesis, MASTER).close()


def test_the_store_a_running_node_holds_is_named(data: tuple[Path, Consortium]) -> None:
    d, _ = data
    assert held_store(d) is None
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import plyvel, sys; db = plyvel.DB(sys.argv[1]); print('open', flush=True); "
            "sys.stdin.read()",
            str(d / "node-state"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        assert held_store(d) == "node-state"
    finally:
        holder.communicate("", timeout=30)
    assert held_store(d) is None
