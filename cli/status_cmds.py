"""Talking to a running node: status, tx send/get, block show."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Any

import click

from medchain.cli import exits
from medchain.cli.common import (
    connect,
    echo_json,
    json_option,
    load_signer,
    rpc_errors,
    socket_options,
)


@click.command()
@socket_options
@json_option
@rpc_errors
def status(socket_path: Path | None, config: Path | None, as_json: bool) -> None:
    """Show a node's chain, height, view, primary and peers."""
    with connect(socket_path, config) as c:
        st = c.status()
    if as_json:
        echo_json(st)
        return
    click.echo(f"{st['org']} on chain {st['chain_id']}")
    click.echo(f"  height      {st['height']}  (consensus seq {st['seq']})")
    click.echo(
        f"  view        {st['view']}{' (changing)' if st['view_changing'] else ''}; primary {st['primary']}"
    )
    click.echo(f"  state root  {st['state_root']}")
    click.echo(f"  peers       {', '.join(st['peers']) or '(none)'}")
    click.echo(f"  pool        {st['pool']} pending")
    if st.get("halted"):
        click.secho(f"  HALTED: {st['halted']}", fg="red")


@click.group()
def tx() -> None:
    """Send and look up transactions."""


@tx.command("send")
@click.option(
    "--key",
    "key",
    type=click.Path(path_type=Path),
    required=True,
    help="Key file to sign with.",
)
@click.option("--contract", required=True)
@click.option("--method", required=True)
@click.option(
    "--args", "args_json", default="null", help='Arguments as JSON (bytes as {"$bytes": hex}).'
)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until committed.")
@socket_options
@json_option
@rpc_errors
def send(
    key: Path,
    contract: str,
    method: str,
    args_json: str,
    wait: bool,
    socket_path: Path | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """Sign a transaction with KEY and submit it."""
    from medchain.client.signing import TxBuilder
    from medchain.node.rpc.jsonval import JsonValueError, from_json

    try:
        args = from_json(json.loads(args_json))
    except (ValueError, TypeError, RecursionError, JsonValueError) as exc:
        raise click.BadParameter(f"--args is not valid JSON: {str(exc)[:120]}") from None
    signer = load_signer(key)
    with connect(socket_path, config) as c:
        builder = TxBuilder(signer, c.status()["chain_id"])
        res = c.submit(builder.build(contract, method, args), wait=wait)
    if as_json:
        echo_json(res)
    else:
        click.echo(f"tx {res['tx_id']}: {res.get('status', 'pending')}")
        if res.get("height"):
            click.echo(f"  block {res['height']}, index {res['index']}")
        if res.get("reason"):
            click.echo(f"  reason: {res['reason']}")
        if res.get("result") is not None:
            click.echo(f"  result: {json.dumps(res['result'])}")
    status = res.get("status", "pending")
    if status == "failed":
        sys.exit(exits.FAILED)
    if status in ("rejected", "unknown"):
        sys.exit(exits.REJECTED)
    if status == "pending" and wait:
        sys.exit(exits.PENDING)


@tx.command("get")
@click.argument("tx_id")
@socket_options
@json_option
@rpc_errors
def get(tx_id: str, socket_path: Path | None, config: Path | None, as_json: bool) -> None:
    """Look up a transaction: pending, committed, failed (with reason), rejected or unknown."""
    with connect(socket_path, config) as c:
        res = c.call("tx.get", {"tx_id": tx_id})
    if as_json:
        echo_json(res)
        return
    line = f"tx {res['tx_id']}: {res['status']}"
    if "height" in res:
        line += f" in block {res['height']} at index {res['index']}"
    click.echo(line)
    if res.get("reason"):
        click.echo(f"  reason: {res['reason']}")


@click.group()
def block() -> None:
    """Inspect blocks."""


@block.command("show")
@click.argument("height", type=int, required=False)
@socket_options
@json_option
@rpc_errors
def show(height: int | None, socket_path: Path | None, config: Path | None, as_json: bool) -> None:
    """Show a block (default: the latest) with its header and commit certificate."""
    with connect(socket_path, config) as c:
        params: dict[str, Any] = {} if height is None else {"height": height}
        b = c.call("block.get", params)
    if as_json:
        echo_json(b)
        return
    h = b["header"]
    when = datetime.datetime.fromtimestamp(h["timestamp_ms"] / 1000, tz=datetime.UTC).isoformat(
        timespec="milliseconds"
    )
    click.echo(f"block {b['height']}  {b['hash']}")
    click.echo(f"  time        {when}")
    click.echo(f"  proposer    {h['proposer_org']}")
    click.echo(f"  prev hash   {h['prev_hash']}")
    click.echo(f"  tx root     {h['tx_root']}  ({len(b['tx_ids'])} transactions)")
    click.echo(f"  state root  {h['state_root']} (before this block)")
    cert = b["certificate"]
    if cert:
        click.echo(
            f"  committed   seq {cert['seq']} view {cert['view']} by {', '.join(v['org'] for v in cert['votes'])}"
        )
    for t in b["tx_ids"][:20]:
        click.echo(f"    {t}")
    if len(b["tx_ids"]) > 20:
        click.echo(f"    … and {len(b['tx_ids']) - 20} more")
