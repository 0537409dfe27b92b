"""What the workflow commands print for people: dates instead of day numbers and
milliseconds, organizations and practitioners by name instead of ids. The
``--json`` output is the chain's own values, unchanged."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from medchain.cli.common import connect, echo_json, load_signer


@contextlib.contextmanager
def session(key: Path, socket_path: Path | None, config: Path | None) -> Iterator[Any]:
    """The workflows (client.workflows.Medchain) signed by ``key``, at a node."""
    from medchain.client.signing import TxBuilder
    from medchain.client.workflows import Medchain

    signer = load_signer(key)
    with connect(socket_path, config) as c:
        yield Medchain(c, TxBuilder(signer, c.status()["chain_id"]))


def own_patient_id(mc: Any) -> str:
    """The signing patient's pseudonym, as the registry knows it (it stays the same
    when the patient rotates their key)."""
    who = mc.whoami()
    if who.get("kind") != "patient":
        raise click.UsageError("this key is not a patient's: say which patient with --patient")
    if who.get("status") != "active":
        raise click.ClickException("this key is revoked (rotated): sign with the current one")
    return str(who["id"])


def key_option(help: str) -> Callable[[Any], Any]:
    return click.option("--key", type=click.Path(path_type=Path), required=True, help=help)


def when(ms: Any) -> str:
    if not isinstance(ms, int) or ms <= 0:
        return "-"
    t = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return t.strftime("%Y-%m-%d %H:%M UTC")


def day(n: Any) -> str:
    if not isinstance(n, int):
        return "?"
    try:
        return datetime.date.fromordinal(n + 719_163).isoformat()
    except (ValueError, OverflowError):
        return "open"


def period(p: Any) -> str:
    """A consent's data period: ``last 730 days``, ``2024-01-01 .. 2026-06-30``."""
    if not isinstance(p, dict) or not p:
        return "any date"
    if "last_days" in p:
        return f"the last {p['last_days']} days"
    start, end = day(p.get("from_day")), day(p.get("to_day"))
    start = "" if start <= "1900-01-01" else start
    end = "" if end in ("open", "9999-12-31") else end
    return f"{start or 'any date'} .. {end or 'any date'}" if start or end else "any date"


class Names:
    """Organization and practitioner names from the registry, looked up once each."""

    def __init__(self, mc: Any) -> None:
        self.mc = mc
        self._orgs: dict[str, str] | None = None
        self._pracs: dict[str, str] = {}

    def org(self, org_id: Any) -> str:
        if not isinstance(org_id, str) or not org_id:
            return "-"
        if self._orgs is None:
            try:
                self._orgs = {o["id"]: o["name"] for o in self.mc.organizations()}
            except Exception:
                self._orgs = {}
        return self._orgs.get(org_id, org_id)

    def practitioner(self, pid: Any) -> str:
        if not isinstance(pid, str) or not pid:
            return "-"
        if pid not in self._pracs:
            try:
                p = self.mc.practitioner_show(pid)
                self._pracs[pid] = (
                    f"{p['role']} {p['license']} ({p['department']}, {self.org(p['org'])})"
                )
            except Exception:
                self._pracs[pid] = pid[:12] + "…"
        return self._pracs[pid]

    def requester(self, kind: Any, rid: Any, org: Any) -> str:
        if kind == "practitioner":
            return self.practitioner(rid)
        if kind == "patient":
            return "the patient"
        if kind == "org-admin":
            return f"the admin of {self.org(org)}"
        return f"{kind} {str(rid)[:12]}…"

    def grantee(self, kind: Any, gid: Any) -> str:
        return self.practitioner(gid) if kind == "practitioner" else self.org(gid)


def output(obj: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        echo_json(obj)
    else:
        human()
