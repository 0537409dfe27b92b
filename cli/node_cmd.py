"""``medchain node start``: run one node in the foreground (and, from cli/node_ops.py,
``verify`` and ``resync``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from medchain.cli.common import node_config_option
from medchain.cli.node_ops import resync, vault_restored, verify


@click.group("node")
def node() -> None:
    """Run a node, check its data, rebuild its ledger."""


@node.command("start")
@node_config_option
def start(config: Path) -> None:
    """Run the node daemon in the foreground (SIGTERM or Ctrl-C stops it cleanly)."""
    from medchain.node.ops import memory

    env = memory.allocator_env(dict(os.environ), memory.jemalloc_path())
    if env is not None:  # same process id, now on jemalloc (node/ops/memory.py says why)
        os.execve(sys.executable, sys.orig_argv, env)
    from medchain.node.config import ConfigError
    from medchain.node.daemon import run_node
    from medchain.node.startup import NodeError
    from medchain.storage.genesis import GenesisError
    from medchain.storage.keyfile import KeyFileError
    from medchain.storage.kv import StoreError
    from medchain.storage.ledger import GenesisMismatch

    try:
        code = run_node(config)
    except (
        ConfigError,
        NodeError,
        GenesisError,
        KeyFileError,
        StoreError,
        GenesisMismatch,
        OSError,
    ) as exc:
        click.echo(f"medchain node: {exc}", err=True)
        sys.exit(2)
    sys.exit(code)


node.add_command(verify)
node.add_command(resync)
node.add_command(vault_restored)
