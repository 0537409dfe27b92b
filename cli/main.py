"""The ``medchain`` command."""

from __future__ import annotations

import click

from cli.bench_cmd import bench
from cli.consortium import consortium
from cli.demo import demo
from cli.evidence_cmd import evidence, proof
from cli.keys import keygen
from cli.net_cmd import net
from cli.node_cmd import node
from cli.portal_cmd import portal
from cli.records_cmd import patient, practitioner, records
from cli.status_cmds import block, status, tx


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="medchain")
def cli() -> None:
    """medchain: a permissioned blockchain for sharing health records you can trust."""


cli.add_command(keygen)
cli.add_command(consortium)
cli.add_command(demo)
cli.add_command(node)
cli.add_command(net)
cli.add_command(status)
cli.add_command(tx)
cli.add_command(block)
cli.add_command(bench)
cli.add_command(practitioner)
cli.add_command(patient)
cli.add_command(records)
cli.add_command(evidence)
cli.add_command(proof)
cli.add_command(portal)


def main() -> None:
    cli()
