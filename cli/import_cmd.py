"""`medchain records import`: FHIR NDJSON into the custodians' vaults, anchored
on chain; patients and import systems registered on the way."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from medchain.cli.common import (
    create_key,
    echo_json,
    json_option,
    load_signer,
    rpc_errors,
)


def _builder(key: Path, chain_id: str) -> Any:
    from medchain.client.signing import TxBuilder

    return TxBuilder(load_signer(key), chain_id)


def _import_system(c: Any, org_dir: Path, name: str, quiet: bool) -> Any:
    """The organization's import system: its key file (registered now if it is not
    yet and the org's admin key is at hand, as `consortium init` leaves it), or a
    new key registered now."""
    from medchain.client.signing import TxBuilder

    chain_id = c.status()["chain_id"]
    key = org_dir / name
    admin_key = org_dir / "admin.key"
    if key.exists():
        builder = _builder(key, chain_id)
        known = c.query("registry", "whoami", {}, builder)
        if known.get("kind") != "unknown" or not admin_key.exists():
            return builder  # registered (or for its admin to register: anchoring says so)
        signer, created = builder.signer, False
    elif not admin_key.exists():
        raise click.ClickException(
            f"no import system key {key}: create one with `medchain practitioner add "
            f"--role system --out {key} ...` signed by the organization's admin"
        )
    else:
        signer, created = create_key(key), True
    admin = TxBuilder(load_signer(admin_key), chain_id)
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
        if created:
            key.unlink()
        raise click.ClickException(f"registering the import system failed: {res.get('reason')}")
    if not quiet:
        click.echo(f"  registered an import system for {org_dir.name}; key in {key}")
    return TxBuilder(signer, chain_id)


@click.command("import")
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
