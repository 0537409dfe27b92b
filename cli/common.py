"""Helpers shared by the CLI commands: finding the node's socket, output."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from medchain.cli.exits import Failed, Pending, Rejected, Unreachable

F = TypeVar("F", bound=Callable[..., Any])


def socket_options(fn: F) -> F:
    """--socket PATH, or --config node.toml (its rpc_socket), or $MEDCHAIN_SOCKET."""
    fn = click.option(
        "--config",
        "config",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Node config whose RPC socket to use.",
    )(fn)
    fn = click.option(
        "--socket",
        "socket_path",
        type=click.Path(path_type=Path),
        default=None,
        envvar="MEDCHAIN_SOCKET",
        help="Node RPC socket.",
    )(fn)
    return fn


def node_config_option(fn: F) -> F:
    """--config node.toml (required): the node a command runs or works on."""
    return click.option(
        "--config",
        "config",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        required=True,
        help="The node's config file (node.toml).",
    )(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")(fn)


def resolve_socket(socket_path: Path | None, config: Path | None) -> Path:
    if socket_path is not None:
        return socket_path
    if config is not None:
        from medchain.node.config import NodeConfig

        return NodeConfig.load(config).rpc_socket
    raise click.UsageError(
        "say which node: --socket PATH, --config node.toml, or set MEDCHAIN_SOCKET"
    )


CONNECT_WAIT_ENV = "MEDCHAIN_CONNECT_WAIT"  # seconds to wait for a busy node to accept


def connect(socket_path: Path | None, config: Path | None) -> Any:
    """An RPC client of the node; says whether no node is there or it is busy."""
    from medchain.client.connect import BUSY_WAIT_S, NodeUnreachable
    from medchain.client.rpc import RpcClient

    path = resolve_socket(socket_path, config)
    try:
        wait = float(os.environ.get(CONNECT_WAIT_ENV) or BUSY_WAIT_S)
    except ValueError:
        raise click.UsageError(f"{CONNECT_WAIT_ENV} must be a number of seconds") from None
    try:
        return RpcClient(path, busy_wait_s=wait)
    except NodeUnreachable as exc:
        raise Unreachable(f"cannot reach the node at {path}: {exc.why}") from None
    except OSError as exc:
        raise Unreachable(f"cannot reach the node at {path}: {exc.strerror or exc}") from None


def load_signer(path: Path) -> Any:
    """The key in ``path``. An encrypted one takes MEDCHAIN_KEY_PASSPHRASE, else the
    passphrase is asked for (hidden) on a terminal. Commands load keys before they
    contact a node; a KeyFileError is reported by the ``medchain`` group
    (cli/main.py) as one line."""
    import sys

    from medchain.storage.keyfile import PASSPHRASE_ENV, KeyFileError, load_key

    def ask() -> str:
        if not sys.stdin.isatty():
            raise KeyFileError(
                f"key file {path} is encrypted: set {PASSPHRASE_ENV}, or run in a terminal "
                "to be asked for the passphrase"
            )
        return str(click.prompt(f"passphrase for {path}", hide_input=True, err=True))

    return load_key(path, ask=ask)


BAD_INPUT_CODES = (-32700, -32600, -32602)  # JSON-RPC: parse error, invalid request/params


def rpc_errors(fn: F) -> F:
    """Errors from talking to a node as one line and their exit status (cli/exits.py)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from medchain.client.rpc import RpcError
        from medchain.client.workflows import TxFailed, TxPending, TxRejected

        try:
            return fn(*args, **kwargs)
        except RpcError as exc:
            if exc.code in BAD_INPUT_CODES:
                raise click.ClickException(f"node refused the request: {exc.message}") from None
            raise Rejected(f"node refused: {exc.message}") from None
        except TxFailed as exc:
            raise Failed(f"failed: {exc}") from None
        except TxRejected as exc:
            raise Rejected(f"rejected: {exc}") from None
        except TxPending as exc:
            raise Pending(f"{exc} (tx {exc.tx_id}; look it up with medchain tx get)") from None
        except (ConnectionError, TimeoutError) as exc:
            raise Unreachable(f"lost the connection to the node: {exc}") from None

    return wrapper  # type: ignore[return-value]


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


def org_dirs(directory: Path) -> list[Path]:
    """The organization directories of a consortium made by ``consortium init``, in genesis order."""
    from medchain.storage.genesis import Genesis

    g = Genesis.load(directory / "genesis.toml")
    return [directory / o.org_id for o in g.organizations]


def create_key(out: Path) -> Any:
    """A new key in a new 0600 file ``out`` (a clear error if it cannot be made)."""
    from medchain.storage.crypto import Signer
    from medchain.storage.keyfile import KeyFileError, save_key

    signer = Signer.generate()
    try:
        save_key(out, signer)
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    return signer
