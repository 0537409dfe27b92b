"""Referrals between organizations: the patient asks, a practitioner issues, the
patient agrees, the target accepts (a permission for the referred records
opens) and completes; any party may cancel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from medchain.cli.common import json_option, rpc_errors, socket_options
from medchain.cli.present import Names, key_option, output, own_patient_id, session, when


@click.group()
def referral() -> None:
    """Referrals between organizations: request, issue, agree, accept, complete, cancel."""


def _referral_lines(r: dict[str, Any], names: Names) -> list[str]:
    return [
        f"referral {r.get('id')}  {r.get('status')}",
        f"  from {names.org(r.get('source'))} to {names.org(r.get('target')) if r.get('target') else 'any'}",
        f"  records {len(r.get('records') or [])}, valid until {when(r.get('expires_ms'))}",
        f"  reason  {(r.get('reason') or {}).get('display', '-') if isinstance(r.get('reason'), dict) else '-'}",
    ] + ([f"  cancelled: {r['cancel_reason']}"] if r.get("cancel_reason") else [])


def _referral_step(name: str, doc: str) -> None:
    @referral.command(name, help=doc)
    @key_option("The signer's key file.")
    @click.argument("referral_id")
    @socket_options
    @json_option
    @rpc_errors
    def command(
        key: Path, referral_id: str, socket_path: Path | None, config: Path | None, as_json: bool
    ) -> None:
        with session(key, socket_path, config) as mc:
            res = getattr(mc, f"referral_{name}")(referral_id)
        output(
            res, as_json, lambda: click.echo(f"referral {referral_id}: {res.get('status', name)}")
        )


_referral_step("agree", "The referred patient agrees.")
_referral_step("accept", "The target organization accepts: a permission for the records opens.")
_referral_step("complete", "The target organization completes the referral.")


@referral.command("request")
@key_option("The patient's key file.")
@click.option("--from", "source", required=True, help="The organization asked for a referral.")
@click.option("--to", "target", default=None, help="The organization wanted (default: any).")
@socket_options
@json_option
@rpc_errors
def request(
    key: Path,
    source: str,
    target: str | None,
    socket_path: Path | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """The patient asks an organization for a referral."""
    with session(key, socket_path, config) as mc:
        res = mc.referral_request(source, target)
    output(
        res, as_json, lambda: click.echo(f"referral request {res['referral_id']}: {res['status']}")
    )


@referral.command("issue")
@key_option("The issuing practitioner's key file.")
@click.option("--patient", required=True, help="The patient's pseudonym.")
@click.option("--to", "target", required=True, help="Target organization id.")
@click.option("--record", "records", multiple=True, required=True, help="A record id (repeat).")
@click.option("--valid-days", type=click.IntRange(1, 365), default=14, show_default=True)
@click.option("--reason-code", default=None, help="SNOMED CT code of the reason.")
@click.option("--reason-text", default=None, help="Its display text.")
@click.option("--request", "request_id", default=None, help="The patient's request it answers.")
@socket_options
@json_option
@rpc_errors
def issue(
    key: Path,
    patient: str,
    target: str,
    records: tuple[str, ...],
    valid_days: int,
    reason_code: str | None,
    reason_text: str | None,
    request_id: str | None,
    socket_path: Path | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """Refer a patient, with the records the target may read once it accepts."""
    reason = None
    if reason_code:
        reason = {"system": "http://snomed.info/sct", "code": reason_code}
        reason |= {"display": reason_text} if reason_text else {}
    with session(key, socket_path, config) as mc:
        res = mc.referral_issue(patient, target, records, valid_days, reason, request_id)
    output(res, as_json, lambda: click.echo(f"referral {res['referral_id']}: {res['status']}"))


@referral.command("cancel")
@key_option("The patient's or an involved organization's key file.")
@click.argument("referral_id")
@click.option("--reason", default="", help="Why (stored on chain: no clinical detail).")
@socket_options
@json_option
@rpc_errors
def cancel(
    key: Path,
    referral_id: str,
    reason: str,
    socket_path: Path | None,
    config: Path | None,
    as_json: bool,
) -> None:
    """Cancel a referral not yet completed."""
    with session(key, socket_path, config) as mc:
        res = mc.referral_cancel(referral_id, reason)
    output(res, as_json, lambda: click.echo(f"referral {referral_id}: {res.get('status')}"))


@referral.command("show")
@key_option("The patient's or an involved organization's key file.")
@click.argument("referral_id")
@socket_options
@json_option
@rpc_errors
def show(
    key: Path, referral_id: str, socket_path: Path | None, config: Path | None, as_json: bool
) -> None:
    """One referral and its state."""
    with session(key, socket_path, config) as mc:
        r = mc.referral_show(referral_id)
        names = Names(mc)
        output(r, as_json, lambda: click.echo("\n".join(_referral_lines(r, names))))


@referral.command("list")
@key_option("The patient's key file, or a regulator admin's.")
@click.option("--patient", default=None, help="Pseudonym (default: the key's own).")
@socket_options
@json_option
@rpc_errors
def list_(
    key: Path, patient: str | None, socket_path: Path | None, config: Path | None, as_json: bool
) -> None:
    """A patient's referrals."""

    with session(key, socket_path, config) as mc:
        rows = mc.referral_list(patient or own_patient_id(mc))
        names = Names(mc)
        if as_json:
            output(rows, True, lambda: None)
            return
        for r in rows:
            click.echo("\n".join(_referral_lines(r, names)))
        if not rows:
            click.echo("no referrals")
