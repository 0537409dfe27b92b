"""Evidence certificates and selective-disclosure proofs."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import click

from medchain.cli.common import (
    connect,
    echo_json,
    json_option,
    load_signer,
    rpc_errors,
    socket_options,
)
from medchain.cli.exits import NOT_VERIFIED, UNPINNED


@click.group()
def evidence() -> None:
    """Export and verify offline evidence that a record was notarized."""


@evidence.command("export")
@click.option("--record", "record_id", required=True)
@click.option("--version", type=int, default=None, help="Record version (default: the latest).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@socket_options
@rpc_errors
def export(
    record_id: str, version: int | None, out: Path, socket_path: Path | None, config: Path | None
) -> None:
    """Write a self-contained evidence certificate for a record."""
    with connect(socket_path, config) as c:
        params: dict[str, object] = {"record_id": record_id}
        if version is not None:
            params["version"] = version
        res = c.call("evidence.get", params)
    out.write_bytes(base64.b64decode(res["evidence"]))
    click.echo(
        f"wrote {out} ({out.stat().st_size} bytes): record {record_id}, block {res['height']}, genesis {res['genesis_hash']}"
    )


def genesis_options(fn: Any) -> Any:
    fn = click.option(
        "--genesis-hash", default=None, help="The consortium's published genesis hash (hex) to pin."
    )(fn)
    return click.option(
        "--genesis",
        "genesis_file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="Or the consortium's genesis.toml to pin.",
    )(fn)


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner may read (0600), replacing any old one."""
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def pinned_hash(genesis_hash: str | None, genesis_file: Path | None) -> bytes | None:
    from medchain.storage.genesis import Genesis, GenesisError

    pinned: bytes | None = None
    if genesis_hash:
        try:
            pinned = bytes.fromhex(genesis_hash)
        except ValueError:
            raise click.BadParameter("--genesis-hash must be hex") from None
        if len(pinned) != 32:
            raise click.BadParameter("--genesis-hash must be 32 bytes (64 hex digits)")
    if genesis_file is not None:
        try:
            from_file = Genesis.load(genesis_file).hash()
        except (GenesisError, OSError, ValueError) as exc:
            raise click.ClickException(f"{genesis_file}: {exc}") from None
        if pinned is not None and pinned != from_file:
            # Both pins must agree: a supplied genesis file is not trusted over the hash.
            raise click.UsageError(
                f"--genesis {genesis_file} has hash {from_file.hex()}, not the "
                f"--genesis-hash {pinned.hex()}: which one is your consortium's?"
            )
        pinned = from_file
    return pinned


def unpinned_note(genesis_hex: str) -> None:
    click.secho(
        f"  the certificate holds for the chain whose genesis hash is {genesis_hex}, "
        "but nothing here says that is your consortium's (anyone can make a chain of their "
        "own): compare it with the published hash, or pass --genesis or --genesis-hash",
        fg="yellow",
    )


@evidence.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--content",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The record's FHIR JSON, to check it is exactly what was notarized.",
)
@genesis_options
@json_option
def verify(
    file: Path,
    content: Path | None,
    genesis_hash: str | None,
    genesis_file: Path | None,
    as_json: bool,
) -> None:
    """Verify a certificate fully offline: no node, no network. Exit 0 if it verifies
    against the pinned genesis, 7 if anything fails, 3 if it holds but no genesis was
    pinned (docs/evidence.md says what is checked)."""
    from medchain.storage.evidence import verify_evidence

    pinned = pinned_hash(genesis_hash, genesis_file)
    verdict = verify_evidence(file.read_bytes(), pinned, content.read_bytes() if content else None)
    status = NOT_VERIFIED if not verdict.ok else (0 if pinned is not None else UNPINNED)
    if as_json:
        echo_json(
            {
                "ok": verdict.ok and pinned is not None,
                "consistent": verdict.ok,
                "checks": [{"ok": ok, "check": t} for ok, t in verdict.checks],
                "facts": verdict.facts,
            }
        )
        raise SystemExit(status)
    click.echo(f"evidence {file}:")
    for line in verdict.lines():
        click.echo(line)
    if verdict.ok:
        f = verdict.facts
        import datetime

        when = datetime.datetime.fromtimestamp(f["timestamp_ms"] / 1000, tz=datetime.UTC).isoformat(
            timespec="seconds"
        )
        click.secho(
            f"{'VERIFIED' if pinned is not None else 'UNPINNED'}: record {f['record_id']} "
            f"v{f['version']} ({f['category']}, {f['clinical_year']}) held by {f['custodian']} "
            "was anchored by a transaction that succeeded, committed "
            + (
                "by the consortium"
                if pinned is not None
                else f"by the chain whose genesis is {f['genesis_hash'][:16]}…"
            )
            + f" at block {f['height']} on {when}",
            fg="green" if pinned is not None else "yellow",
        )
        if pinned is None:
            unpinned_note(f["genesis_hash"])
    else:
        click.secho("NOT VERIFIED", fg="red")
    raise SystemExit(status)


@click.group()
def proof() -> None:
    """Selective disclosure: reveal one field of a notarized record, nothing else."""


@proof.command("disclose")
@click.option("--record", "record_id", required=True)
@click.option("--field", "field_name", required=True, help="Top-level FHIR field, e.g. code.")
@click.option(
    "--key",
    type=click.Path(path_type=Path),
    default=None,
    help="The patient's key (fetches the record with its salts); without it, ask the custodian's own node.",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@socket_options
@rpc_errors
def disclose(
    record_id: str,
    field_name: str,
    key: Path | None,
    out: Path,
    socket_path: Path | None,
    config: Path | None,
) -> None:
    """Produce a proof revealing one field of a record."""
    from medchain.client.records import fetch_records
    from medchain.client.signing import TxBuilder
    from medchain.storage.fhirdoc import FhirError
    from medchain.storage.fhirdoc import disclose as make_proof

    my_key = load_signer(key) if key is not None else None
    with connect(socket_path, config) as c:
        if my_key is None:
            doc = c.call("records.disclose", {"record_id": record_id, "field": field_name})
        else:
            me = TxBuilder(my_key, c.status()["chain_id"])
            got = fetch_records(c, me, [record_id])[0]
            if got.status != "ok" or got.resource is None:
                raise click.ClickException(f"cannot fetch {record_id}: {got.reason}")
            if not got.salt_seed:
                raise click.ClickException(
                    "only the patient's own fetch carries the field salts; ask the custodian"
                )
            try:
                doc = make_proof(
                    record_id, got.anchor["version"], got.resource, got.salt_seed, field_name
                ).to_json()
            except FhirError as exc:
                raise click.ClickException(str(exc)) from None
    write_private(out, json.dumps(doc, indent=2).encode())  # it holds a clinical value
    click.echo(
        f"wrote {out}: field {field_name!r} of {record_id}, {len(doc['path'])} Merkle steps, other fields hidden"
    )


@proof.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--evidence",
    "evidence_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Verify offline against an evidence certificate of the record.",
)
@genesis_options
@socket_options
@json_option
@rpc_errors
def verify_proof(
    file: Path,
    evidence_file: Path | None,
    genesis_hash: str | None,
    genesis_file: Path | None,
    socket_path: Path | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """Check a disclosure proof against the record's on-chain anchor (from a node, or offline
    from an evidence certificate, pinned to the consortium's genesis). Exit 1 if it does not
    hold, 3 if it holds against an evidence certificate whose genesis was not pinned."""
    from medchain.node.rpc.jsonval import from_json
    from medchain.storage.evidence import verify_evidence
    from medchain.storage.fhirdoc import Disclosure, FhirError, load_json

    try:
        d = Disclosure.from_json(load_json(file.read_bytes()))
    except (FhirError, ValueError) as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    pinned: bytes | None = b""  # a node's own ledger needs no pin
    if evidence_file is not None:
        pinned = pinned_hash(genesis_hash, genesis_file)
        verdict = verify_evidence(evidence_file.read_bytes(), pinned)
        if not verdict.ok:
            raise click.ClickException(
                "the evidence certificate does not verify: run `medchain evidence verify` for details"
            )
        f = verdict.facts
        if (f["record_id"], f["version"]) != (d.record_id, d.version):
            raise click.ClickException("the evidence certificate is for another record or version")
        root = bytes.fromhex(f["fields_root"])
        genesis_hex = f["genesis_hash"]
    else:
        with connect(socket_path, config) as c:
            anchor = from_json(
                c.query("records", "get", {"record_id": d.record_id, "version": d.version})
            )
        root = anchor["fields_root"]
    ok = d.verify(root)
    status = NOT_VERIFIED if not ok else (0 if pinned is not None else UNPINNED)
    if as_json:
        echo_json(
            {
                "ok": ok and pinned is not None,
                "consistent": ok,
                "record_id": d.record_id,
                "version": d.version,
                "field": d.field,
                "value": d.value,
            }
        )
    elif ok:
        click.secho(
            f"{'VERIFIED' if pinned is not None else 'UNPINNED'}: {d.record_id} v{d.version} "
            f"has {d.field} = {json.dumps(d.value)}",
            fg="green" if pinned is not None else "yellow",
        )
        click.echo(
            f"  (proven against the anchored fields root {root.hex()[:16]}…; the record's other fields stay hidden)"
        )
        if pinned is None:
            unpinned_note(genesis_hex)
    else:
        click.secho(
            f"NOT VERIFIED: the disclosed {d.field} does not match the anchored record", fg="red"
        )
    raise SystemExit(status)
