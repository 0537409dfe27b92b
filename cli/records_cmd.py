"""Records: import, timeline, show and fetch."""

from __future__ import annotations

import contextlib
import json
import time
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


def _new_key(out: Path) -> Any:
    from medchain.storage.crypto import Signer
    from medchain.storage.keyfile import KeyFileError, save_key

    signer = Signer.generate()
    try:
        save_key(out, signer)
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    return signer


def _builder(key: Path, chain_id: str) -> Any:
    from medchain.client.signing import TxBuilder

    return TxBuilder(load_signer(key), chain_id)


def _import_system(c: Any, org_dir: Path, name: str, quiet: bool) -> Any:
    """The organization's import system: its key file, or (for a consortium whose
    admin keys are at hand, as `consortium init` leaves them) one registered now."""
    from medchain.client.signing import TxBuilder

    chain_id = c.status()["chain_id"]
    key = org_dir / name
    if key.exists():
        return _builder(key, chain_id)
    admin_key = org_dir / "admin.key"
    if not admin_key.exists():
        raise click.ClickException(
            f"no import system key {key}: create one with `medchain practitioner add "
            f"--role system --out {key} ...` signed by the organization's admin"
        )
    admin = TxBuilder(load_signer(admin_key), chain_id)
    signer = _new_key(key)
    res = c.submit(
        admin.build(
            "registry",
            "register_practitioner",
            {
                "key": signer.public_key,
                "license": f"{org_dir.name}-import",
                "department": "health information",
                "role": "system",
            },
        ),
        wait=True,
    )
    if res["status"] != "committed":
        key.unlink()
        raise click.ClickException(f"registering the import system failed: {res.get('reason')}")
    if not quiet:
        click.echo(f"  registered an import system for {org_dir.name}; key in {key}")
    return TxBuilder(signer, chain_id)


@click.group()
def records() -> None:
    """Import, list and fetch records."""


@records.command("import")
@click.option(
    "--source",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Directory of FHIR NDJSON files.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Consortium directory (nodes' sockets, importer keys).",
)
@click.option(
    "--map",
    "map_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="TOML [providers] table: institution name or identifier -> organization id.",
)
@click.option(
    "--default-custodian",
    default=None,
    help="Organization id for records whose institution the map does not name.",
)
@click.option(
    "--patients",
    "patients_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="JSON: source patient id -> pseudonym. Without it the import registers the "
    "patients it meets (keys in --keystore, the map in DIR/patients.json).",
)
@click.option(
    "--keystore",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where new patients' key files go (0600; default DIR/patients).",
)
@click.option(
    "--importer-key",
    default="importer.key",
    show_default=True,
    help="Key file name, in each organization's directory, of its import system.",
)
@click.option(
    "--shift-days",
    type=int,
    default=0,
    help="Move every date by this many days (synthetic data only).",
)
@click.option(
    "--shift-to-today",
    is_flag=True,
    help="Shift synthetic dates so the newest record is a week old.",
)
@json_option
@rpc_errors
def records_import(
    source: Path,
    directory: Path,
    map_file: Path | None,
    default_custodian: str | None,
    patients_file: Path | None,
    keystore: Path | None,
    importer_key: str,
    shift_days: int,
    shift_to_today: bool,
    as_json: bool,
) -> None:
    """Import FHIR NDJSON: each record to the custodian its references name (encounter,
    performer, location, organization), stored encrypted in that node's vault and
    anchored on chain in bulk. Patients not in --patients are registered first."""
    import datetime

    from medchain.client.custodian import ProviderMap
    from medchain.client.importer import latest_date, plan_import, run_import
    from medchain.client.patients import (
        RegistrationError,
        load_map,
        patient_ids,
        register_patients,
    )
    from medchain.client.rpc import RpcClient
    from medchain.localnet.processes import local_nodes

    if shift_to_today:
        newest = latest_date(source)
        if newest is not None:
            shift_days = (datetime.date.today() - datetime.timedelta(days=7) - newest).days
    t0 = time.perf_counter()
    nodes = {n.org_id: n for n in local_nodes(directory)}
    if default_custodian is not None and default_custodian not in nodes:
        raise click.ClickException(
            f"--default-custodian {default_custodian!r} is not an organization in {directory}"
        )
    registered = 0
    try:
        if patients_file is not None:
            patients = load_map(patients_file)
        else:
            with RpcClient(nodes[sorted(nodes)[0]].config.rpc_socket, timeout=120) as cl:
                patients, registered = register_patients(
                    patient_ids(source),
                    cl,
                    keystore or directory / "patients",
                    directory / "patients.json",
                )
            if not as_json:
                click.echo(
                    f"{len(patients)} patients ({registered} registered now); "
                    f"map in {directory / 'patients.json'}"
                )
        providers = ProviderMap.load(map_file, default_custodian)
    except (RegistrationError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    plan = plan_import(source, providers, patients, shift_days)
    if plan.total == 0:
        why = "; ".join(
            f"{n} {reason} (e.g. {plan.examples[reason]})"
            for reason, n in plan.skipped.most_common()
        )
        raise click.ClickException(f"nothing to import from {source}: {why or 'no records'}")
    if not as_json:
        click.echo(
            f"planned {plan.total} records for {', '.join(f'{o} ({len(v)})' for o, v in sorted(plan.by_org.items()))}"
        )
        if shift_days:
            click.echo(f"  synthetic dates shifted by {shift_days} days")
    clients, importers = {}, {}
    for org in plan.by_org:
        if org not in nodes:
            raise click.ClickException(
                f"the map names organization {org!r}, which is not in {directory}"
            )
        clients[org] = RpcClient(nodes[org].config.rpc_socket, timeout=120)
        importers[org] = _import_system(
            clients[org], nodes[org].directory, importer_key, quiet=as_json
        )
    with click.progressbar(
        length=plan.total, label="importing", file=None if not as_json else open("/dev/null", "w")
    ) as bar:
        last = [0]

        def progress(done: int, total: int) -> None:
            bar.update(done - last[0])
            last[0] = done

        report = run_import(plan, clients, importers, progress=progress)
    dt = time.perf_counter() - t0
    result = {
        "records": plan.total,
        "patients_registered": registered,
        "stored": report.stored,
        "anchored": report.anchored,
        "already_anchored": report.existing,
        "invalid": report.invalid,
        "conflicts": report.conflicts,
        "per_org": dict(report.per_org),
        "skipped": dict(plan.skipped),
        "seconds": round(dt, 2),
        "records_per_s": round(plan.total / dt, 1) if dt else None,
    }
    if as_json:
        echo_json(result)
        return
    click.echo(
        f"{report.anchored} anchored, {report.existing} already anchored, {report.invalid} invalid, in {dt:.1f}s ({result['records_per_s']} records/s)"
    )
    for reason, n in sorted(plan.skipped.items(), key=lambda x: -x[1]):
        click.echo(f"  skipped {n:>5}: {reason} (e.g. {plan.examples[reason]})")
    if report.conflicts:
        click.echo(
            f"  conflict {len(report.conflicts):>4}: already held for another patient, kept as "
            f"it was (e.g. {report.conflicts[0]})"
        )


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
        raise SystemExit(exits.REJECTED if any(f.status == "denied" for f in got) else exits.ERROR)


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
