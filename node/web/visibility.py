"""Who may see what in the web explorer: a pure rule over a viewer and what a
transaction (or a record anchor) carries on chain.

Viewers, each proven by a signed login (node/web/auth.py) and re-resolved
against committed state on every request:

- **anonymous** (a stranger): heights, hashes, times, counts, members and, of a
  transaction, only its contract, method, size and outcome.
- **patient** (their pseudonym): in full, the transactions they signed and
  those naming only them; of a transaction that also names another patient
  (a bulk anchor, say), only the events naming only them. Another patient's
  signature on a transaction counts as naming that patient, so a patient never
  learns another's pseudonym from a sender field.
- **org** (a member organization's admin): in full, the transactions signed by
  its organization's keys (admin, node, practitioners, whatever their status
  now: they acted for it when they signed); of any other transaction, the
  events in which the organization is a party (custodian, hospital, insurer,
  requester organization, grantee).
- **regulator** (the admin of the organization whose role is regulator):
  everything.

Practitioners, node keys and unknown keys get no elevated view. An
organization's explorer view is all of its traffic — every department's
access decisions and claims — which is its admin's to oversee; a practitioner
reads what care needs through consented, logged access decisions
(``records.timeline``), not by browsing the organization's ledger traffic.

Parties are found by field name anywhere inside arguments, results and event
attributes (``patient`` for pseudonyms; ``custodian``, ``hospital``,
``insurer``, ``requester_org``, ``grantee`` for organizations), so the rule
follows chaincodes that add fields without knowing their shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medchain.contracts.identity import ADMIN, NODE, PATIENT, PRACTITIONER, Identity

ANONYMOUS_KIND = "anonymous"
PATIENT_KIND = "patient"
ORG_KIND = "org"
REGULATOR_KIND = "regulator"

PATIENT_FIELDS = frozenset({"patient"})
ORG_FIELDS = frozenset({"custodian", "hospital", "insurer", "requester_org", "grantee"})
ORG_KEY_KINDS = frozenset({ADMIN, NODE, PRACTITIONER})

# How much of a transaction a viewer sees.
FULL = "full"  # arguments, result or failure reason, every event, sender, nonce
EVENTS = "events"  # only the events in which the viewer is a party
PUBLIC = "public"  # contract, method, size, outcome

# What every viewer sees of a transaction (the rest is detail).
PUBLIC_TX_FIELDS = (
    "tx_id",
    "status",
    "height",
    "index",
    "contract",
    "method",
    "size",
    "block_hash",
    "tx_root",
)
DETAIL_TX_FIELDS = ("args", "result", "reason", "events", "sender", "nonce")


@dataclass(frozen=True, slots=True)
class Viewer:
    kind: str  # anonymous, patient, org, regulator
    id: str = ""  # the patient's pseudonym, or the organization's id

    @property
    def signed_in(self) -> bool:
        return self.kind != ANONYMOUS_KIND


ANONYMOUS = Viewer(ANONYMOUS_KIND)


def viewer_of(who: Identity) -> Viewer | None:
    """The explorer view a key's current identity earns; None: no elevated view."""
    if not who.active:
        return None
    if who.kind == PATIENT and who.id:
        return Viewer(PATIENT_KIND, who.id)
    if who.kind == ADMIN and who.org:
        return Viewer(REGULATOR_KIND if who.org_role == "regulator" else ORG_KIND, who.org)
    return None


@dataclass(frozen=True, slots=True)
class Parties:
    patients: frozenset[str]
    orgs: frozenset[str]


def parties(*values: Any) -> Parties:
    """Every patient pseudonym and organization named in JSON-shaped values."""
    patients: set[str] = set()
    orgs: set[str] = set()
    stack = list(values)
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            for k, x in v.items():
                if isinstance(x, str):
                    if k in PATIENT_FIELDS:
                        patients.add(x)
                    elif k in ORG_FIELDS:
                        orgs.add(x)
                else:
                    stack.append(x)
        elif isinstance(v, list | tuple):
            stack.extend(v)
    return Parties(frozenset(patients), frozenset(orgs))


@dataclass(frozen=True, slots=True)
class TxView:
    level: str  # FULL, EVENTS or PUBLIC
    events: tuple[int, ...] = ()  # indexes of the events shown (all of them at FULL)


def tx_view(
    viewer: Viewer,
    sender: Identity | None,
    args: Any,
    result: Any,
    events: Sequence[Any],
) -> TxView:
    """How much of one transaction ``viewer`` sees. ``sender`` is the signer's
    identity (None if unknown); ``events`` are the event values in order."""
    everything = TxView(FULL, tuple(range(len(events))))
    if viewer.kind == REGULATOR_KIND:
        return everything
    if viewer.kind == PATIENT_KIND:
        if sender is not None and sender.kind == PATIENT:
            if sender.id == viewer.id:
                return everything
            signer = {sender.id}
        else:
            signer = set()
        named = parties(args, result, *events).patients | signer
        if named == {viewer.id}:
            return everything
        shown = tuple(i for i, e in enumerate(events) if parties(e).patients == {viewer.id})
        return TxView(EVENTS, shown) if shown else TxView(PUBLIC)
    if viewer.kind == ORG_KIND:
        if sender is not None and sender.kind in ORG_KEY_KINDS and sender.org == viewer.id:
            return everything
        shown = tuple(i for i, e in enumerate(events) if viewer.id in parties(e).orgs)
        return TxView(EVENTS, shown) if shown else TxView(PUBLIC)
    return TxView(PUBLIC)


def record_visible(viewer: Viewer, anchor: Any) -> bool:
    """Whether ``viewer`` may see one version of a record's anchor: its patient
    (named alone), an organization that is a party (its custodian), a regulator."""
    if viewer.kind == REGULATOR_KIND:
        return True
    p = parties(anchor)
    if viewer.kind == PATIENT_KIND:
        return p.patients == {viewer.id}
    if viewer.kind == ORG_KIND:
        return viewer.id in p.orgs
    return False


def shape_tx(full: dict[str, Any], view: TxView) -> dict[str, Any]:
    """The transaction JSON a viewer gets: the public fields, then as much detail
    as ``view`` allows, and ``detail`` saying which (so pages can say what is hidden)."""
    out = {k: full[k] for k in PUBLIC_TX_FIELDS if k in full}
    if view.level == FULL:
        out.update({k: full[k] for k in DETAIL_TX_FIELDS if k in full})
    elif view.level == EVENTS:
        events = full.get("events") or []
        out["events"] = [events[i] for i in view.events if i < len(events)]
    out["detail"] = view.level
    return out
