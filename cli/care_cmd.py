"""Claims and the shared dictionary; `query` for any chaincode read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from medchain.cli.common import json_option, rpc_errors, socket_options
from medchain.cli.present import Names, key_option, output, own_patient_id, session, when


def json_file(path: Path, what: str) -> Any:
    """A JSON document from a file, or a one-line error naming the file."""
    from medchain.storage.fhirdoc import FhirError, load_json

    try:
        return load_json(path.read_bytes())
    except OSError as exc:
        raise click.ClickException(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except (FhirError, RecursionError, ValueError) as exc:
        raise click.ClickException(f"{what} {path} is not valid JSON: {str(exc)[:120]}") from None


def json_arg(text: str, option: str) -> Any:
    from medchain.node.rpc.jsonval import JsonValueError, from_json

    try:
        return from_json(json.loads(text))
    except (ValueError, TypeError, RecursionError, JsonValueError) as exc:
        raise click.BadParameter(f"not valid JSON: {str(exc)[:120]}", param_hint=option) from None


JSON_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


# -- claims ---------------------------------------------------------------------------


@click.group()
def claim() -> None:
    """Insurance: products, enrolment, claims adjudicated by the contract, payment."""


@claim.command("product-add")
@key_option("The insurer admin's key file.")
@click.option("--id", "product_id", required=True)
@click.option("--name", required=True)
@click.option("--catalog", type=JSON_FILE, required=True, help="JSON list of covered items.")
@click.option("--deductible-cents", type=click.IntRange(0), default=0, show_default=True)
@click.option(
    "--annual-limit-cents",
    type=click.IntRange(0),
    required=True,
    help="What the product pays at most per patient and year.",
)
@socket_options
@json_option
@rpc_errors
def product_add(
    key: Path,
    product_id: str,
    name: str,
    catalog: Path,
    deductible_cents: int,
    annual_limit_cents: int,
    socket_path: Path | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """Register (or version) an insurance product and its catalog."""
    items = json_file(catalog, "catalog")
    if not isinstance(items, list):
        raise click.ClickException(f"catalog {catalog}: a JSON list of items")
    with session(key, socket_path, config) as mc:
        res = mc.product_add(product_id, name, items, deductible_cents, annual_limit_cents)
    output(res, as_json, lambda: click.echo(f"product {product_id} v{res['version']} registered"))


@claim.command("enroll")
@key_option("The insurer admin's key file.")
@click.option("--product", "product_id", required=True)
@click.option("--patient", required=True, help="The patient's pseudonym.")
@click.option("--from", "start", required=True, help="First month covered (YYYY-MM).")
@click.option("--to", "end", required=True, help="Last month covered (YYYY-MM).")
@socket_options
@json_option
@rpc_errors
def enroll(
    key: Path,
    product_id: str,
    patient: str,
    start: str,
    end: str,
    socket_path: Path | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """Enrol a patient in a product for a span of months."""
    from medchain.client.workflows import parse_month

    try:
        start, end = parse_month(start), parse_month(end)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    with session(key, socket_path, config) as mc:
        res = mc.enroll(product_id, patient, start, end)
    output(
        res,
        as_json,
        lambda: click.echo(f"patient {patient} enrolled in {product_id}, {start} .. {end}"),
    )


@claim.command("submit")
@key_option("The care provider's key file (practitioner or admin).")
@click.option(
    "--claim",
    "claim_file",
    type=JSON_FILE,
    required=True,
    help="JSON: claim_id, product_id, patient, encounter_id, encounter_month, items, diagnoses, records.",
)
@socket_options
@json_option
@rpc_errors
def submit(
    key: Path, claim_file: Path, socket_path: Path | None, config: Path | None, as_json: bool
) -> None:
    """Submit a claim; the contract adjudicates it against the product at once."""
    doc = json_file(claim_file, "claim")
    if not isinstance(doc, dict):
        raise click.ClickException(f"claim {claim_file}: a JSON object")
    with session(key, socket_path, config) as mc:
        res = mc.send("settlement", "submit_claim", doc)
    output(
        res,
        as_json,
        lambda: click.echo(
            f"claim {res.get('claim_id')}: {res.get('outcome')}, benefit "
            f"{_money(res.get('total_benefit_cents'))} of {_money(res.get('total_submitted_cents'))}"
        ),
    )


@claim.command("pay")
@key_option("The insurer admin's key file.")
@click.argument("claim_id")
@click.option("--amount-cents", type=click.IntRange(1), required=True)
@click.option("--reference", required=True, help="The payment's reference (bank transfer id).")
@socket_options
@json_option
@rpc_errors
def pay(
    key: Path,
    claim_id: str,
    amount_cents: int,
    reference: str,
    socket_path: Path | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """Record a payment of a claim."""
    with session(key, socket_path, config) as mc:
        res = mc.claim_pay(claim_id, amount_cents, reference)
    output(
        res, as_json, lambda: click.echo(f"claim {claim_id}: paid {_money(res.get('paid_cents'))}")
    )


@claim.command("show")
@key_option("The claimant's, the insurer's or a regulator's key file.")
@click.argument("claim_id")
@socket_options
@json_option
@rpc_errors
def claim_show(
    key: Path, claim_id: str, socket_path: Path | None, config: Path | None, as_json: bool
) -> None:
    """One claim: items, adjudication, payments."""
    with session(key, socket_path, config) as mc:
        c = mc.claim_show(claim_id)
        names = Names(mc)
        output(c, as_json, lambda: click.echo("\n".join(_claim_lines(c, names))))


def _money(cents: object) -> str:
    return f"{cents / 100:,.2f}" if isinstance(cents, int) else "-"


def _claim_lines(c: dict[str, Any], names: Names) -> list[str]:
    return [
        f"claim {c.get('claim_id')}  {c.get('status')}, {c.get('outcome', '-')}"
        + (f" ({c['disposition']})" if c.get("disposition") else ""),
        f"  {names.org(c.get('hospital'))} -> {names.org(c.get('insurer'))}, product "
        f"{c.get('product_id')}, encounter month {c.get('encounter_month')}",
        f"  submitted {_money(c.get('total_submitted_cents'))}, benefit "
        f"{_money(c.get('total_benefit_cents'))}, co-pay {_money(c.get('total_copay_cents'))}, "
        f"paid {_money(c.get('paid_cents'))}; on {when(c.get('submitted_ms'))}",
    ]


@claim.command("list")
@key_option("The patient's, the hospital's, the insurer's or a regulator's key file.")
@click.option("--patient", default=None, help="Pseudonym (default: the key's own).")
@socket_options
@json_option
@rpc_errors
def claim_list(
    key: Path, patient: str | None, socket_path: Path | None, config: Path | None, as_json: bool
) -> None:
    """A patient's claims (those the key may read)."""

    with session(key, socket_path, config) as mc:
        rows = mc.claim_list(patient or own_patient_id(mc))
        names = Names(mc)
        if as_json:
            output(rows, True, lambda: None)
            return
        for c in rows:
            click.echo("\n".join(_claim_lines(c, names)))
        if not rows:
            click.echo("no claims")


# -- dictionary -----------------------------------------------------------------------


@click.group()
def dictionary() -> None:
    """The shared terminology: code systems, codes and mappings (e.g. SNOMED CT -> ICD-10)."""


@dictionary.command("add-system")
@key_option("The regulator admin's key file (the dictionary is the regulator's).")
@click.option("--system", required=True, help="The system URI (http://hl7.org/fhir/sid/icd-10).")
@click.option("--name", required=True)
@click.option("--version", "version", required=True, help="The release (e.g. 2026).")
@socket_options
@json_option
@rpc_errors
def add_system(
    key: Path,
    system: str,
    name: str,
    version: str,
    socket_path: Path | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """Register a code system."""
    with session(key, socket_path, config) as mc:
        res = mc.dictionary_add_system(system, name, version)
    output(res, as_json, lambda: click.echo(f"code system {system} registered"))


@dictionary.command("add-codes")
@key_option("The regulator admin's key file (the dictionary is the regulator's).")
@click.option("--system", required=True)
@click.option(
    "--codes",
    "codes_file",
    type=JSON_FILE,
    required=True,
    help='JSON list: [{"code": ..., "display": ...}].',
)
@socket_options
@json_option
@rpc_errors
def add_codes(
    key: Path,
    system: str,
    codes_file: Path,
    socket_path: Path | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """Add codes to a system."""
    codes = json_file(codes_file, "codes")
    if not isinstance(codes, list):
        raise click.ClickException(f"codes {codes_file}: a JSON list")
    with session(key, socket_path, config) as mc:
        res = mc.dictionary_add_codes(system, codes)
    output(res, as_json, lambda: click.echo(f"{len(codes)} codes added to {system}"))


@dictionary.command("map")
@key_option("The regulator admin's key file (the dictionary is the regulator's).")
@click.option("--from", "source", required=True, help="Source system URI.")
@click.option("--to", "target", required=True, help="Target system URI.")
@click.option(
    "--mappings",
    "mappings_file",
    type=JSON_FILE,
    required=True,
    help='JSON list: [{"source": code, "target": code, ...}].',
)
@socket_options
@json_option
@rpc_errors
def map_(
    key: Path,
    source: str,
    target: str,
    mappings_file: Path,
    socket_path: Path | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """Add mappings between two systems."""
    mappings = json_file(mappings_file, "mappings")
    if not isinstance(mappings, list):
        raise click.ClickException(f"mappings {mappings_file}: a JSON list")
    with session(key, socket_path, config) as mc:
        res = mc.dictionary_map(source, target, mappings)
    output(res, as_json, lambda: click.echo(f"{len(mappings)} mappings {source} -> {target} added"))


@dictionary.command("translate")
@key_option("Any member's key file.")
@click.option("--system", required=True)
@click.option("--code", required=True)
@click.option("--to", "target", required=True, help="Target system URI.")
@socket_options
@json_option
@rpc_errors
def translate(
    key: Path,
    system: str,
    code: str,
    target: str,
    socket_path: Path | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """Translate a code into another system."""
    with session(key, socket_path, config) as mc:
        res = mc.dictionary_translate(system, code, target)

    def human() -> None:
        rows = res if isinstance(res, list) else [res]
        for m in rows:
            click.echo(
                f"{system}|{code} -> {m.get('system')}|{m.get('code')} ({m.get('equivalence')})"
            )
        if not rows:
            click.echo(f"no mapping of {system}|{code} to {target}")

    output(res, as_json, human)


# -- any read -------------------------------------------------------------------------


@click.command("query")
@key_option("The key that signs the query (chaincode sees who asks).")
@click.argument("contract")
@click.argument("method")
@click.option("--args", "args_json", default="{}", show_default=True, help="Arguments as JSON.")
@socket_options
@rpc_errors
def query(
    key: Path,
    contract: str,
    method: str,
    args_json: str,
    socket_path: Path | None,
    config: Path | None,
) -> None:
    """A signed read-only chaincode call; prints its JSON result (always JSON)."""
    args = json_arg(args_json, "--args")
    if not isinstance(args, dict):
        raise click.BadParameter("a JSON object", param_hint="--args")
    with session(key, socket_path, config) as mc:
        click.echo(json.dumps(mc.query(contract, method, args), indent=2, sort_keys=True))
