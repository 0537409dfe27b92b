"""People: practitioners (an organization admin registers, suspends and reinstates
them) and patients (a key and a pseudonym, never a name); any member rotates
its own key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from medchain.cli.common import (
    connect,
    create_key,
    echo_json,
    json_option,
    load_signer,
    rpc_errors,
    socket_options,
)
from medchain.cli.present import Names, key_option, output, session, when


@click.group()
def practitioner() -> None:
    """Register practitioners (an organization admin's job)."""


@practitioner.command("add")
@click.option("--admin-key", type=click.Path(path_type=Path), required=True)
@click.option("--license", "license_no", required=True)
@click.option("--department", required=True)
@click.option(
    "--role",
    type=click.Choice(["physician", "nurse", "pharmacist", "technician", "clerk", "system"]),
    required=True,
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Key file to create for the practitioner (0600).",
)
@socket_options
@json_option
@rpc_errors
def practitioner_add(
    admin_key: Path,
    license_no: str,
    department: str,
    role: str,
    out: Path,
    socket_path: Path | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """Create a key for a practitioner and register it for the admin's organization."""
    from medchain.client.signing import TxBuilder

    admin_signer = load_signer(admin_key)
    with connect(socket_path, config) as c:
        admin = TxBuilder(admin_signer, c.status()["chain_id"])
        signer = create_key(out)
        res = c.submit(
            admin.build(
                "registry",
                "register_practitioner",
                {
                    "key": signer.public_key,
                    "license": license_no,
                    "department": department,
                    "role": role,
                },
            ),
            wait=True,
        )
    if res["status"] != "committed":
        out.unlink()
        raise click.ClickException(f"registration failed: {res.get('reason')}")
    if as_json:
        echo_json({"practitioner": res["result"]["practitioner"], "key_file": str(out)})
    else:
        click.echo(
            f"practitioner {res['result']['practitioner']} registered ({role}, {department}); key in {out}"
        )


@click.group()
def patient() -> None:
    """Patients: a key and a pseudonym, never a name."""


@patient.command("register")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Key file to create (0600).",
)
@socket_options
@json_option
@rpc_errors
def patient_register(
    out: Path, socket_path: Path | None, config: Path | None, as_json: bool
) -> None:
    """Create a patient key and register its pseudonym on chain."""
    from medchain.client.signing import TxBuilder

    with connect(socket_path, config) as c:
        signer = create_key(out)
        res = c.submit(
            TxBuilder(signer, c.status()["chain_id"]).build("registry", "register_patient", {}),
            wait=True,
        )
    if res["status"] != "committed":
        raise click.ClickException(f"registration failed: {res.get('reason')}")
    pseudonym = res["result"]["pseudonym"]
    if as_json:
        echo_json({"pseudonym": pseudonym, "key_file": str(out)})
    else:
        click.echo(f"patient pseudonym {pseudonym}; key in {out}")


def _practitioner_line(p: dict[str, Any], names: Names) -> str:
    return (
        f"{p['id']}  {p['status']:<9} {p['role']:<11} {p['license']:<12} "
        f"{p['department']} ({names.org(p['org'])}), since {when(p.get('registered'))}"
    )


@practitioner.command("list")
@key_option("Any member's key file (the query is signed).")
@click.option("--org", required=True, help="Organization id.")
@socket_options
@json_option
@rpc_errors
def practitioner_list(
    key: Path, org: str, socket_path: Path | None, config: Path | None, as_json: bool
) -> None:
    """An organization's practitioners: role, license, department, status."""
    with session(key, socket_path, config) as mc:
        rows = mc.practitioner_list(org)
        names = Names(mc)
        if as_json:
            output(rows, True, lambda: None)
            return
        if not rows:
            click.echo(f"no practitioners registered at {names.org(org)}")
        for p in rows:
            click.echo(_practitioner_line(p, names))


def _status_change(action: str) -> Any:
    @practitioner.command(
        action,
        help="Suspend a practitioner: their requests are denied (and logged) until reinstated."
        if action == "suspend"
        else "Reinstate a suspended practitioner.",
    )
    @click.option("--admin-key", type=click.Path(path_type=Path), required=True)
    @click.argument("practitioner_id")
    @socket_options
    @json_option
    @rpc_errors
    def command(
        admin_key: Path,
        practitioner_id: str,
        socket_path: Path | None,
        config: Path | None,
        as_json: bool,
    ) -> None:
        with session(admin_key, socket_path, config) as mc:
            run = mc.practitioner_suspend if action == "suspend" else mc.practitioner_reinstate
            res = run(practitioner_id)
        output(res, as_json, lambda: click.echo(f"practitioner {practitioner_id}: {action}ed"))

    return command


practitioner_suspend = _status_change("suspend")
practitioner_reinstate = _status_change("reinstate")


@click.command("rotate-key")
@key_option("The member's current key file.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="New key file to create (0600).",
)
@socket_options
@json_option
@rpc_errors
def rotate_key(
    key: Path, out: Path, socket_path: Path | None, config: Path | None, as_json: bool
) -> None:
    """Replace your own key (patient, practitioner or admin): the old one is revoked."""
    from medchain.client.signing import TxBuilder
    from medchain.contracts.sdk import rotation_sign_bytes

    old = load_signer(key)
    with connect(socket_path, config) as c:
        chain = c.status()["chain_id"]
        new = create_key(out)
        proof = new.sign(rotation_sign_bytes(chain, old.public_key, new.public_key))
        res = c.submit(
            TxBuilder(old, chain).build(
                "registry", "rotate_key", {"new_key": new.public_key, "proof": proof}
            ),
            wait=True,
        )
    if res["status"] != "committed":
        out.unlink()
        from medchain.client.workflows import Call, outcome

        outcome(Call("registry", "rotate_key", {}), res)
    output(res, as_json, lambda: click.echo(f"key rotated: {key} is revoked, {out} is active"))


practitioner.add_command(rotate_key)


@patient.command("list")
@click.option(
    "--dir",
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Consortium directory an import registered patients in (DIR/patients.json).",
)
@click.option("--keystore", type=click.Path(file_okay=False, path_type=Path), default=None)
@json_option
def patient_list(directory: Path, keystore: Path | None, as_json: bool) -> None:
    """The patients `records import` registered: pseudonym and key file, one per line
    (the source system's ids stay in DIR/patients.json, at the institution)."""
    from medchain.client.patients import key_path, load_map

    try:
        mapping = load_map(directory / "patients.json")
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    store = keystore or directory / "patients"
    rows = [
        {"pseudonym": p, "key_file": str(key_path(store, sid))}
        for sid, p in sorted(mapping.items(), key=lambda x: x[1])
    ]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        raise click.ClickException(f"no patients registered in {directory / 'patients.json'}")
    for r in rows:
        click.echo(f"{r['pseudonym']} {r['key_file']}")
