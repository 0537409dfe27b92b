"""Consortium commands."""

from __future__ import annotations

import json
from pathlib import Path

import click

from medchain.cli.common import create_key
from medchain.node.consortium import GENESIS_FILE, OrgSpec, init_consortium
from medchain.storage.genesis import GenesisError

CARE_PROVIDERS = ("hospital", "clinic", "exam-centre")  # the roles that hold records


@click.group()
def consortium() -> None:
    """Create and inspect a consortium."""


@consortium.command("init")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option(
    "--org",
    "orgs",
    multiple=True,
    required=True,
    help='"NAME:ROLE", e.g. "Hospital A:hospital". Repeat per member.',
)
@click.option("--chain-id", default=None, help="Chain id (default: medchain-<random>).")
@click.option(
    "--base-port", default=7100, show_default=True, help="First node's TCP port; the others follow."
)
@click.option(
    "--http-base-port",
    default=0,
    show_default=True,
    help="Turn on each node's web UI (explorer, patient portal) on 127.0.0.1 from this port; 0 = off.",
)
@click.option(
    "--import-keys",
    is_flag=True,
    help="Also create each care provider's import-system key (DIR/<org>/importer.key, "
    "0600); `records import` registers it with the org's admin key on first use.",
)
@click.option("--json", "as_json", is_flag=True)
def init(
    directory: Path,
    orgs: tuple[str, ...],
    chain_id: str | None,
    base_port: int,
    http_base_port: int,
    import_keys: bool,
    as_json: bool,
) -> None:
    """Create keys, node configs and the genesis for a new consortium."""
    try:
        specs = [OrgSpec.parse(o) for o in orgs]
        http_ports = [http_base_port + i for i in range(len(specs))] if http_base_port else None
        genesis = init_consortium(
            directory, specs, chain_id=chain_id, base_port=base_port, http_ports=http_ports
        )
    except GenesisError as exc:
        raise click.ClickException(str(exc)) from None
    if import_keys:
        for o in genesis.organizations:
            if o.role in CARE_PROVIDERS:
                create_key(directory / o.org_id / "importer.key")
    if as_json:
        click.echo(
            json.dumps(
                {
                    "dir": str(directory),
                    "chain_id": genesis.chain_id,
                    "genesis_hash": genesis.hash().hex(),
                    "organizations": [
                        {
                            "id": o.org_id,
                            "name": o.name,
                            "role": o.role,
                            "node_key": o.node_key.hex(),
                        }
                        for o in genesis.organizations
                    ],
                }
            )
        )
        return
    click.echo(f"consortium {genesis.chain_id} in {directory}")
    click.echo(f"  genesis   {directory / GENESIS_FILE}  hash {genesis.hash().hex()}")
    for o in genesis.organizations:
        click.echo(
            f"  {o.org_id:<20} {o.role:<12} node key {o.node_key.hex()[:16]}…  {directory / o.org_id}/node.toml"
        )
    v = genesis.validators
    click.echo(f"  {v.n} validators, tolerating f={v.f} faulty; quorum {v.quorum}")
