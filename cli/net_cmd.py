"""``medchain net up|down|status``: a local consortium as background processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from medchain.cli.common import echo_json, json_option


def _dir_option(fn: Any) -> Any:
    return click.option(
        "--dir",
        "directory",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        required=True,
        help="Directory made by `medchain consortium init`.",
    )(fn)


@click.group()
def net() -> None:
    """Start, stop and inspect all nodes of a local consortium."""


@net.command("up")
@_dir_option
@json_option
def up(directory: Path, as_json: bool) -> None:
    """Start every node in the background (logs: DIR/<org>/node.log) and wait until all answer."""
    from medchain.localnet.processes import net_up

    try:
        statuses = net_up(
            directory, progress=(lambda s: None) if as_json else (lambda s: click.echo(f"  {s}"))
        )
    except (RuntimeError, TimeoutError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        echo_json(statuses)
    else:
        click.echo(
            f"{len(statuses)} nodes up on chain {statuses[0]['chain_id']}; primary {statuses[0]['primary']}"
        )


@net.command("down")
@_dir_option
def down(directory: Path) -> None:
    """Stop every node (SIGTERM, then SIGKILL after 10 s)."""
    from medchain.localnet.processes import net_down

    n = net_down(directory, progress=lambda s: click.echo(f"  {s}"))
    click.echo(f"stopped {n} node(s)")


@net.command("status")
@_dir_option
@json_option
def status(directory: Path, as_json: bool) -> None:
    """Show each node's process, height, view and peers."""
    from medchain.client.connect import NodeBusy
    from medchain.client.rpc import RpcClient
    from medchain.localnet.processes import local_nodes

    rows = []
    for n in local_nodes(directory):
        row: dict[str, Any] = {"org": n.org_id, "pid": n.pid()}
        try:
            with RpcClient(n.config.rpc_socket, timeout=3) as c:
                row.update(c.status())
        except NodeBusy:
            row["status"] = "busy"
        except OSError:
            row["status"] = "down"
        rows.append(row)
    if as_json:
        echo_json(rows)
        return
    click.echo(f"{'org':<16} {'pid':>7} {'height':>7} {'view':>5} {'primary':<14} peers")
    for r in rows:
        if "height" not in r:
            click.echo(f"{r['org']:<16} {r['pid'] or '-':>7} {r['status']:>7}")
            continue
        click.echo(
            f"{r['org']:<16} {r['pid'] or '-':>7} {r['height']:>7} {r['view']:>5} {r['primary']:<14} {len(r['peers'])}"
        )
