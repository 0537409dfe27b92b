"""``medchain node verify`` and ``medchain node resync``: an operator's tools for a
node's data, run while the node is stopped (RELIABILITY.md has the procedures)."""

from __future__ import annotations

import fcntl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from medchain.cli.common import node_config_option

T = TypeVar("T")
STORES = ("ledger", "ledger/blocks", "node-state", "vault")


def _running(data_dir: Path) -> str | None:
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


def _refuse_if_running(data_dir: Path) -> None:
    busy = _running(data_dir)
    if busy is not None:
        raise click.ClickException(
            f"a node is running on {data_dir} (it holds {busy}/LOCK): stop it first"
        )


@click.command("verify")
@node_config_option
def verify(config: Path) -> None:
    """Check every byte of a stopped node's data: every block and certificate, the
    indexes, every store's checksums, every vault record against its anchor."""
    from medchain.node.config import NodeConfig
    from medchain.node.startup import next_step
    from medchain.storage import integrity
    from medchain.storage.genesis import Genesis
    from medchain.storage.keyfile import load_key
    from medchain.storage.kv import LevelDBKV, StoreError, StoreUnwritable
    from medchain.storage.ledger import Ledger
    from medchain.storage.vault import Vault, master_key_from_seed

    cfg = NodeConfig.load(config)
    genesis = Genesis.load(cfg.genesis_file)
    signer = load_key(cfg.key_file)
    data = cfg.data_dir
    _refuse_if_running(data)
    findings: list[integrity.Finding] = []
    t = time.monotonic()
    unwritable = False

    def opening(store: str, fn: Callable[[], T]) -> T | None:
        nonlocal unwritable
        try:
            return fn()
        except StoreError as exc:  # say so, and go on with the other stores
            unwritable = unwritable or isinstance(exc, StoreUnwritable)
            findings.append(integrity.Finding(store, str(exc)))
            return None

    ledger = opening("ledger", lambda: Ledger.open(data / "ledger", genesis, create=False))
    local = opening(
        "node-state", lambda: LevelDBKV(data / "node-state", create=False, name="node-state")
    )
    master = master_key_from_seed(signer.seed)
    mirrors = [m for m in (local, None if ledger is None else ledger.store) if m is not None]
    vault = opening(
        "vault", lambda: Vault.open(data / "vault", master, create=False, mirror=mirrors)
    )
    anchored = 0
    try:
        if ledger is not None:
            ledger.mirror = local
            with click.progressbar(
                length=max(ledger.height, 1), label="blocks and certificates", file=sys.stderr
            ) as bar:
                findings += integrity.full_ledger(ledger, progress=lambda n: bar.update(n))
            findings += integrity.check_node_state(ledger)
        if local is not None:
            findings += integrity.full_store("node-state", local)
        if vault is not None and ledger is not None:
            anchored = sum(1 for _ in integrity.custodial_records(ledger, cfg.org_id))
            with click.progressbar(
                length=max(anchored, 1), label="vault records", file=sys.stderr
            ) as bar:
                findings += integrity.check_vault(
                    ledger, vault, cfg.org_id, full=True, progress=lambda n: bar.update(n)
                )
        elif vault is not None:
            findings += integrity.full_store("vault", vault.store)
    finally:
        for o in (vault, local, ledger):
            if o is not None:
                o.close()
    damage = [f for f in findings if f.damage]
    for f in findings:
        click.echo(("DAMAGED " if f.damage else "note    ") + str(f))
    took = time.monotonic() - t
    if damage:
        for store in sorted({f.store for f in damage}):
            click.echo(f"next step: {next_step(store, config, unwritable)}", err=True)
        sys.exit(1)
    height = 0 if ledger is None else ledger.height
    click.echo(
        f"OK: {height} blocks, {anchored} custodial records, node-state and vault "
        f"checksums sound ({took:.1f} s)"
    )


@click.command("resync")
@node_config_option
@click.option(
    "--reset-state",
    is_flag=True,
    help="also set node-state aside (this node's consensus votes and pool; see RELIABILITY.md)",
)
def resync(config: Path, reset_state: bool) -> None:
    """Set a stopped node's ledger aside; at its next start the node fetches every
    block again from the other members, each checked against its commit certificate.
    The vault is never touched."""
    from medchain.node.config import NodeConfig

    cfg = NodeConfig.load(config)
    data = cfg.data_dir
    _refuse_if_running(data)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = []
    for name in ("ledger", "node-state") if reset_state else ("ledger",):
        src = data / name
        if src.exists():
            dst = data / f"{name}.set-aside-{stamp}"
            src.rename(dst)
            moved.append(f"{src} -> {dst}")
    if not moved:
        raise click.ClickException(f"no ledger in {data}: nothing to set aside")
    for m in moved:
        click.echo(f"set aside {m}")
    click.echo(
        f"next step: medchain node start --config {config} — it catches up from the other "
        f"members; then medchain node verify --config {config}. Remove the set-aside "
        "copies once it has."
    )


@click.command("vault-restored")
@node_config_option
def vault_restored(config: Path) -> None:
    """Accept a vault restored from a backup: the node starts again with what the copy
    holds. Records stored since the copy was made are not in it — re-import them from
    the source system (records import is idempotent)."""
    from medchain.node.config import NodeConfig
    from medchain.storage import integrity
    from medchain.storage.genesis import Genesis
    from medchain.storage.keyfile import load_key
    from medchain.storage.kv import LevelDBKV, StoreError
    from medchain.storage.ledger import Ledger
    from medchain.storage.vault import K_MIRROR, Vault, master_key_from_seed

    cfg = NodeConfig.load(config)
    genesis = Genesis.load(cfg.genesis_file)
    signer = load_key(cfg.key_file)
    data = cfg.data_dir
    _refuse_if_running(data)
    try:
        ledger = Ledger.open(data / "ledger", genesis, create=False)
        local = LevelDBKV(data / "node-state", create=False, name="node-state")
        vault = Vault.open(data / "vault", master_key_from_seed(signer.seed), create=False)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        held = vault.count_hint()
        before = local.get(K_MIRROR)
        absent = sum(
            1 for rid, _ in integrity.custodial_records(ledger, cfg.org_id) if not vault.has(rid)
        )
        for m in (local, ledger.store):
            m.write({K_MIRROR: held.to_bytes(8, "big")}, sync=True)
    finally:
        vault.close()
        local.close()
        ledger.close()
    was = "unknown" if before is None else str(int.from_bytes(before, "big"))
    click.echo(f"accepted the restored vault: {held} records (this node had stored {was})")
    if absent:
        click.echo(
            f"{absent} records anchored with {cfg.org_id} as custodian are not in it: "
            "re-import them from the source system (medchain records import) so this "
            "node can release them again"
        )
