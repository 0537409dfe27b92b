"""Records: import, timeline, show and fetch."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

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
from medchain.cli.import_cmd import records_import


@click.group()
def records() -> None:
    """Import, list and fetch records."""


records.add_command(records_import, "import")


@records.command("timeline")
@click.option("--patient", "pseudonym", required=True)
@click.option(
    "--key",
    type=click.Path(path_type=Path),
    required=True,
    help="The requester's key (a practitioner, or the patient).",
)
@click.option(
    "--purpose",
    default="treatment",
    show_default=True,
    type=click.Choice(["treatment", "payment", "research"]),
)
@click.option(
    "--fetch/--no-fetch",
    default=True,
    show_default=True,
    help="Fetch and decode what the requester may read.",
)
@socket_options
@json_option
@rpc_errors
def timeline(
    pseudonym: str,
    key: Path,
    purpose: str,
    fetch: bool,
    socket_path: Path | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """A patient's records across all institutions in clinical-date order; those the
    requester may read are fetched from their custodians and verified. The chain
    holds each record's year; exact dates come with the records fetched (and from
    this node's own vault), so records not readable sort last within their year."""
    from medchain.client.records import fetch_records
    from medchain.client.signing import TxBuilder
    from medchain.storage.fhirdoc import FhirError, clinical_date, summary

    my_key = load_signer(key)
    with connect(socket_path, config) as c:
        me = TxBuilder(my_key, c.status()["chain_id"])
        rows = c.call(
            "records.timeline",
            {"patient": pseudonym, "requester": me.public_key.hex(), "purpose": purpose},
        )
        permitted = [r["record_id"] for r in rows if r.get("decision") == "permit"]
        fetched = (
            {f.record_id: f for f in fetch_records(c, me, permitted, purpose)}
            if fetch and permitted
            else {}
        )
    out = []
    for r in rows:
        f = fetched.get(r["record_id"])
        row = dict(
            r,
            fetched=f.status if f else None,
            summary=summary(f.resource) if f and f.resource else None,
        )
        if f and f.status != "ok":
            row["reason"] = f.reason
        if f and f.resource:
            with contextlib.suppress(FhirError):
                row["clinical_date"] = clinical_date(f.resource)
        out.append(row)
    out.sort(
        key=lambda r: (
            r["clinical_year"],
            r.get("clinical_date") or f"{r['clinical_year']}-99",
            r["record_id"],
        )
    )
    if as_json:
        echo_json(out)
        return
    click.echo(
        f"timeline of patient {pseudonym}: {len(rows)} records, {len(permitted)} readable by this requester"
    )
    for row in out:
        mark = (
            "✓" if row.get("fetched") == "ok" else ("✗" if row.get("decision") == "deny" else "!")
        )
        what = row["summary"] or (
            row["reason"] if row.get("decision") != "permit" or row.get("fetched") != "ok" else ""
        )
        when = row.get("clinical_date") or f"{row['clinical_year']}      "
        click.echo(f"  {when:<10}  {row['custodian']:<12} {row['category']:<20} {mark} {what}")


@records.command("fetch")
@click.argument("record_ids", nargs=-1, required=True)
@click.option("--key", type=click.Path(path_type=Path), required=True, help="The requester's key.")
@click.option(
    "--purpose",
    default="treatment",
    show_default=True,
    type=click.Choice(["treatment", "payment", "research"]),
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the verified FHIR JSON here (a file for one record, else a directory; 0600).",
)
@socket_options
@json_option
@rpc_errors
def fetch(
    record_ids: tuple[str, ...],
    key: Path,
    purpose: str,
    out: Path | None,
    socket_path: Path | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """Fetch records from their custodians (each access is logged on chain first) and
    check each against its anchored SHA-256; print or save the verified contents."""
    import os

    from medchain.client.records import fetch_records
    from medchain.client.signing import TxBuilder
    from medchain.storage.fhirdoc import canonical_json, summary

    signer = load_signer(key)
    with connect(socket_path, config) as c:
        got = fetch_records(c, TxBuilder(signer, c.status()["chain_id"]), list(record_ids), purpose)
    written: dict[str, str] = {}
    for f in got:
        if f.status != "ok" or f.resource is None or out is None:
            continue
        target = (
            out
            if len(record_ids) == 1 and out.suffix == ".json"
            else out / f"{f.record_id.replace(':', '_')}.json"
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(canonical_json(f.resource))
        written[f.record_id] = str(target)
    if as_json:
        echo_json(
            [
                {
                    "record_id": f.record_id,
                    "status": f.status,
                    "reason": f.reason,
                    "file": written.get(f.record_id),
                    "resource": f.resource if out is None else None,
                }
                for f in got
            ]
        )
    else:
        for f in got:
            if f.status == "ok":
                where = f" -> {written[f.record_id]}" if f.record_id in written else ""
                click.echo(f"ok      {f.record_id}  {summary(f.resource or {})} (verified){where}")
                if out is None and len(got) == 1:
                    click.echo(json.dumps(f.resource, indent=2, sort_keys=True))
            else:
                click.echo(f"{f.status:<7} {f.record_id}  {f.reason}")
    if not any(f.status == "ok" for f in got):
        denied = any(f.status == "denied" for f in got)
        raise SystemExit(exits.REJECTED if denied else exits.FAILED)


@records.command("show")
@click.argument("record_id")
@socket_options
@json_option
@rpc_errors
def show(record_id: str, socket_path: Path | None, config: Path | None, as_json: bool) -> None:
    """A record's anchor: type, clinical year, custodian, fingerprints, versions (the
    contents stay at the custodian: `records fetch` asks for them)."""
    from medchain.client.records import anchor_of

    with connect(socket_path, config) as c:
        a = anchor_of(c, record_id)
    view = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in a.items()}
    if as_json:
        echo_json(view)
        return
    for k in sorted(view):
        click.echo(f"  {k:<14} {view[k]}")
