"""``medchain node verify``, ``node resync`` and ``node vault-restored``: an operator's
tools for a node's data, run while the node is stopped (RELIABILITY.md has the
procedures)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from medchain.cli.common import node_config_option

if TYPE_CHECKING:
    from medchain.node.config import NodeConfig
    from medchain.storage.datadir import NodeData


def _refuse_if_running(data_dir: Path) -> None:
    from medchain.storage.datadir import held_store

    busy = held_store(data_dir)
    if busy is not None:
        raise click.ClickException(
            f"a node is running on {data_dir} (it holds {busy}/LOCK): stop it first"
        )


def _open_stopped(config: Path, writable: tuple[str, ...] = ()) -> tuple[NodeConfig, NodeData]:
    """The node's config, and its stores (a stopped node's: refused if one is running),
    read-only but for ``writable`` (storage.datadir)."""
    from medchain.node.config import NodeConfig
    from medchain.storage.datadir import open_node_data
    from medchain.storage.genesis import Genesis
    from medchain.storage.keyfile import load_key
    from medchain.storage.vault import master_key_from_seed

    cfg = NodeConfig.load(config)
    genesis = Genesis.load(cfg.genesis_file)
    master = master_key_from_seed(load_key(cfg.key_file).seed)
    _refuse_if_running(cfg.data_dir)
    return cfg, open_node_data(cfg.data_dir, genesis, master, writable)


@click.command("verify")
@node_config_option
def verify(config: Path) -> None:
    """Check every byte of a stopped node's data: every block and certificate, the
    indexes, every store's checksums, every vault record against its anchor."""
    from medchain.node.startup import next_step
    from medchain.storage import integrity
    from medchain.storage.kv import StoreUnwritable

    cfg, stores = _open_stopped(config)  # all read-only
    t = time.monotonic()
    ledger, local, vault = stores.ledger, stores.node_state, stores.vault
    findings = [integrity.Finding(store, str(exc)) for store, exc in stores.failures]
    unwritable = any(isinstance(exc, StoreUnwritable) for _, exc in stores.failures)
    anchored = 0
    try:
        if ledger is not None:
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
        stores.close()
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
    from medchain.storage import integrity
    from medchain.storage.kv import StoreError
    from medchain.storage.vault import K_MIRROR

    # the vault is only read; its count is written where the node keeps its mirrors
    cfg, stores = _open_stopped(config, writable=("ledger", "node-state"))
    try:
        ledger, local, vault = stores.all()
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
        stores.close()
    was = "unknown" if before is None else str(int.from_bytes(before, "big"))
    click.echo(f"accepted the restored vault: {held} records (this node had stored {was})")
    if absent:
        click.echo(
            f"{absent} records anchored with {cfg.org_id} as custodian are not in it: "
            "re-import them from the source system (medchain records import) so this "
            "node can release them again"
        )
