"""Consent and the access log: what a patient grants, and who read what."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from medchain.cli.common import json_option, rpc_errors, socket_options
from medchain.cli.present import Names, key_option, output, own_patient_id, period, session, when

LOG_PAGE = 5000  # entries the access chaincode returns at most per query (MAX_LIST)
PURPOSES = click.Choice(["treatment", "payment", "research"])


def parsed(parse: Any, value: str, option: str) -> Any:
    try:
        return parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@click.group()
def consent() -> None:
    """Grant, revoke and read a patient's consents (signed with the patient's key)."""


@consent.command("grant")
@key_option("The patient's key file.")
@click.option("--to", "grantee", required=True, help="Organization id, or a practitioner id.")
@click.option("--practitioner", is_flag=True, help="--to names a practitioner, not an org.")
@click.option(
    "--categories",
    default="*",
    show_default=True,
    help="FHIR resource types, comma-separated (Condition,MedicationRequest), or *.",
)
@click.option("--purpose", type=PURPOSES, default="treatment", show_default=True)
@click.option(
    "--period",
    "period_text",
    default=None,
    help="Which records, by clinical date: 2024-01-01..2025-12-31 (an end may be left "
    "open), or a span back from today (P2Y, 730d). Default: any date.",
)
@click.option(
    "--for",
    "duration",
    default="P30D",
    show_default=True,
    help="How long the consent holds: 30, 30d, P30D, P6M, P1Y.",
)
@socket_options
@json_option
@rpc_errors
def grant(
    key: Path,
    grantee: str,
    practitioner: bool,
    categories: str,
    purpose: Any,
    period_text: str | None,
    duration: str,
    socket_path: Path | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """Grant an organization (or one practitioner) access to the patient's records."""
    from medchain.client.workflows import parse_days, parse_period

    days = parsed(parse_days, duration, "--for")
    scope = parsed(parse_period, period_text, "--period") if period_text else {}
    cats = [c.strip() for c in categories.split(",") if c.strip()]
    with session(key, socket_path, config) as mc:
        res = mc.consent_grant(
            grantee, cats, purpose, days, scope, "practitioner" if practitioner else "org"
        )
        names = Names(mc)
        output(
            res,
            as_json,
            lambda: click.echo(
                f"consent {res['consent_id']} granted to "
                f"{names.grantee('practitioner' if practitioner else 'org', grantee)}: "
                f"{', '.join(cats)} for {purpose}, until {when(res['expires_ms'])}"
            ),
        )


@consent.command("revoke")
@key_option("The patient's key file.")
@click.argument("consent_id")
@socket_options
@json_option
@rpc_errors
def revoke(
    key: Path, consent_id: str, socket_path: Path | None, config: Path | None, as_json: bool
) -> None:
    """Revoke a consent: every later request under it is denied, and logged."""
    with session(key, socket_path, config) as mc:
        res = mc.consent_revoke(consent_id)
    output(res, as_json, lambda: click.echo(f"consent {consent_id} revoked"))


def describe(c: dict[str, Any], names: Names) -> list[str]:
    cats = ", ".join(c.get("categories") or []) or "-"
    if c.get("records"):
        cats = f"{len(c['records'])} named records"
    status = c.get("status", "?")
    if status == "active" and c.get("_expired"):
        status = "expired"
    return [
        f"consent {c['id']}  {status}",
        f"  to        {names.grantee(c.get('grantee_kind'), c.get('grantee'))}",
        f"  records   {cats}, clinical dates {period(c.get('period'))}",
        f"  purpose   {c.get('purpose')}",
        f"  from      {when(c.get('created_ms'))}  until {when(c.get('expires_ms'))}"
        + (f"  revoked {when(c['revoked_ms'])}" if c.get("revoked_ms") else ""),
        f"  source    {c.get('source', 'patient')}",
    ]


@consent.command("list")
@key_option("The patient's key file (or a regulator admin's, with --patient).")
@click.option("--patient", default=None, help="Pseudonym (default: the key's own).")
@socket_options
@json_option
@rpc_errors
def list_(
    key: Path, patient: str | None, socket_path: Path | None, config: Path | None, as_json: bool
) -> None:
    """A patient's consents: to whom, which records, what for, until when."""

    with session(key, socket_path, config) as mc:
        who = patient or own_patient_id(mc)
        rows = mc.consent_list(who)
        names = Names(mc)
        if as_json:
            output(rows, True, lambda: None)
            return
        if not rows:
            click.echo(f"no consents for patient {who}")
        for c in rows:
            click.echo("\n".join(describe(c, names)))


@consent.command("show")
@key_option("The patient's, the grantee's or a regulator's key file.")
@click.argument("consent_id")
@socket_options
@json_option
@rpc_errors
def show(
    key: Path, consent_id: str, socket_path: Path | None, config: Path | None, as_json: bool
) -> None:
    """One consent."""
    with session(key, socket_path, config) as mc:
        c = mc.consent_show(consent_id)
        names = Names(mc)
        output(c, as_json, lambda: click.echo("\n".join(describe(c, names))))


@click.group()
def access() -> None:
    """The access log: every request for a record, permitted or denied, with its reason."""


@access.command("log")
@key_option("The patient's key file, or a regulator admin's.")
@click.option("--patient", default=None, help="Pseudonym (default: the key's own).")
@click.option("--all", "everyone", is_flag=True, help="Every patient's (regulators only).")
@click.option(
    "--before",
    "before_ms",
    type=int,
    default=None,
    help="Page back: entries before this time (ms).",
)
@socket_options
@json_option
@rpc_errors
def log(
    key: Path,
    patient: str | None,
    everyone: bool,
    before_ms: int | None,
    socket_path: Path | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """Who asked for which record, when, under which consent, and the decision."""

    with session(key, socket_path, config) as mc:
        who = None if everyone else patient or own_patient_id(mc)
        rows = mc.access_log(who, before_ms=before_ms)
        names = Names(mc)
        if as_json:
            output(rows, True, lambda: None)
            return
        if not rows:
            click.echo("no accesses logged")
        for e in rows:
            by = names.requester(
                e.get("requester_kind"), e.get("requester"), e.get("requester_org")
            )
            mark = "permit" if e.get("decision") == "permit" else e.get("decision", e.get("kind"))
            click.echo(
                f"{when(e.get('timestamp_ms'))}  {mark:<7} {e.get('record_id')}  by {by}"
                f"  for {e.get('purpose', '-')}: {e.get('reason')}"
            )
        if len(rows) >= LOG_PAGE:
            click.echo(f"(older entries: --before {rows[0].get('timestamp_ms')})", err=True)
