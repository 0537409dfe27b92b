"""The ``medchain`` command."""

from __future__ import annotations

import errno
import os
from typing import Any

import click

from medchain.cli.bench_cmd import bench
from medchain.cli.care_cmd import claim, dictionary, query
from medchain.cli.consent_cmd import access, consent
from medchain.cli.consortium import consortium
from medchain.cli.demo import demo
from medchain.cli.evidence_cmd import evidence, proof
from medchain.cli.keys import keygen
from medchain.cli.net_cmd import net
from medchain.cli.node_cmd import node
from medchain.cli.people_cmd import patient, practitioner, rotate_key
from medchain.cli.portal_cmd import portal
from medchain.cli.records_cmd import records
from medchain.cli.referral_cmd import referral
from medchain.cli.status_cmds import block, status, tx

DEBUG_ENV = "MEDCHAIN_DEBUG"  # set: an unexpected error shows its traceback


class MedchainGroup(click.Group):
    """The root group: errors that are the user's to fix (a key file, a node config,
    a genesis file) and any
    unexpected one end a command with one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        from medchain.node.config import ConfigError
        from medchain.storage.genesis import GenesisError
        from medchain.storage.keyfile import KeyFileError

        try:
            return super().invoke(ctx)
        except (KeyFileError, ConfigError, GenesisError) as exc:
            raise click.ClickException(str(exc)) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            # a closed pipe (medchain ... | head) is click's to handle, quietly
            broken_pipe = isinstance(exc, OSError) and exc.errno == errno.EPIPE
            if broken_pipe or os.environ.get(DEBUG_ENV):
                raise
            raise click.ClickException(
                f"unexpected error: {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 to see where)"
            ) from None


@click.group(cls=MedchainGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
cli.add_command(consent)
cli.add_command(access)
cli.add_command(referral)
cli.add_command(claim)
cli.add_command(dictionary)
cli.add_command(query)
cli.add_command(rotate_key, "key-rotate")
cli.add_command(evidence)
cli.add_command(proof)
cli.add_command(portal)


def main() -> None:
    cli()
