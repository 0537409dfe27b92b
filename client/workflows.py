"""The consortium's workflows as typed calls, for member systems and the CLI:
consent, access log, referral, claims, dictionary, practitioners.

One definition serves both clients: ``Medchain`` (over ``RpcClient``) returns
results, ``AsyncMedchain`` (over ``AsyncRpcClient``) returns awaitables of
them. A transaction that commits gives its result; one the chaincode refuses
raises ``TxFailed`` with the chaincode's reason, one the node refuses before
ordering raises ``TxRejected``, one not committed in time raises ``TxPending``.

Dates are ISO (``2026-01-01``), data periods ``FROM..TO`` with either end
open, or ``last_days``; months ``YYYY-MM``; money in cents.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from medchain.client.rpc import AsyncRpcClient, RpcClient
from medchain.client.signing import TxBuilder

Purpose = Literal["treatment", "payment", "research"]
Role = Literal["physician", "nurse", "pharmacist", "technician", "clerk", "system"]
Result = dict[str, Any]
R = TypeVar("R")


class TxError(Exception):
    """A transaction that did not commit successfully."""

    def __init__(self, what: str, status: str, reason: str, tx_id: str | None) -> None:
        super().__init__(f"{what}: {reason}")
        self.status, self.reason, self.tx_id = status, reason, tx_id


class TxFailed(TxError):
    """Ordered and executed, and the chaincode said no (the reason is its own)."""


class TxRejected(TxError):
    """Refused by the node before ordering (signature, nonce, size, mempool)."""


class TxPending(TxError):
    """Not committed within the wait: it may still commit (``tx get`` tells)."""


@dataclass(frozen=True)
class Call:
    """One chaincode call: a signed transaction or a (signed) query."""

    contract: str
    method: str
    args: Mapping[str, Any]
    query: bool = False


def outcome(call: Call, res: Mapping[str, Any]) -> Result:
    """The result of a transaction the node reported on, or the TxError it is."""
    what = f"{call.contract}.{call.method}"
    status = str(res.get("status", "unknown"))
    reason = str(res.get("reason") or status)
    tx_id = res.get("tx_id")
    if status == "committed":
        out = res.get("result")
        return dict(out) if isinstance(out, Mapping) else {"result": out}
    if status == "failed":
        raise TxFailed(what, status, reason, tx_id)
    if status == "pending":
        raise TxPending(what, status, "not committed yet (still pending)", tx_id)
    raise TxRejected(what, status, reason, tx_id)


DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DURATION = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")


def parse_day(text: str) -> str:
    """An ISO date, checked (``2026-02-30`` is not one)."""
    if not DAY.match(text):
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD)")
    datetime.date.fromisoformat(text)
    return text


def parse_days(text: str) -> int:
    """A number of days: ``30``, ``30d``, or an ISO 8601 duration (``P30D``, ``P6M``,
    ``P2Y``; a month counts 30 days, a year 365)."""
    t = text.strip().upper()
    if t.rstrip("D").isdigit():
        n = int(t.rstrip("D"))
    else:
        m = DURATION.match(t)
        if not m or not any(m.groups()):
            raise ValueError(f"{text!r} is not a duration (30, 30d, P30D, P6M, P2Y)")
        y, mo, w, d = (int(g or 0) for g in m.groups())
        n = 365 * y + 30 * mo + 7 * w + d
    if n <= 0:
        raise ValueError(f"{text!r}: a duration is at least one day")
    return n


def parse_period(text: str) -> dict[str, Any]:
    """A data period: ``2026-01-01..2026-06-30`` (either end may be left open), or a
    duration back from today (``P2Y``, ``730d``)."""
    if ".." in text:
        start, _, end = text.partition("..")
        out: dict[str, Any] = {}
        if start:
            out["from"] = parse_day(start)
        if end:
            out["to"] = parse_day(end)
        return out
    return {"last_days": parse_days(text)}


def parse_month(text: str) -> str:
    if not re.match(r"^\d{4}-(0[1-9]|1[0-2])$", text):
        raise ValueError(f"{text!r} is not a month (YYYY-MM)")
    return text


class _Operations(Generic[R]):
    """The workflows; ``_run`` decides whether they are sync or async. Transactions
    give their result (a map), queries what the chaincode returns."""

    def _run(self, call: Call) -> R:
        raise NotImplementedError

    # -- consent ---------------------------------------------------------------------
    def consent_grant(
        self,
        grantee: str,
        categories: Sequence[str],
        purpose: Purpose,
        days: int,
        period: Mapping[str, Any] | None = None,
        grantee_kind: Literal["org", "practitioner"] = "org",
    ) -> R:
        """The signing patient grants ``grantee`` their records of ``categories``
        (FHIR types, or ``*``) in ``period`` for ``purpose``, for ``days``."""
        return self._run(
            Call(
                "consent",
                "grant",
                {
                    "grantee_kind": grantee_kind,
                    "grantee": grantee,
                    "categories": list(categories),
                    "purpose": purpose,
                    "period": dict(period or {}),
                    "days": days,
                },
            )
        )

    def consent_revoke(self, consent_id: str) -> R:
        return self._run(Call("consent", "revoke", {"consent_id": consent_id}))

    def consent_list(self, patient: str) -> R:
        """A patient's consents (the patient's signed query, or a regulator's)."""
        return self._run(Call("consent", "list_for_patient", {"patient": patient}, query=True))

    def consent_show(self, consent_id: str) -> R:
        return self._run(Call("consent", "get", {"consent_id": consent_id}, query=True))

    # -- access log ------------------------------------------------------------------
    def access_log(
        self, patient: str | None = None, since_ms: int = 0, before_ms: int | None = None
    ) -> R:
        """A patient's access log (the patient's own, or any for a regulator); without
        ``patient``, every access (regulators only)."""
        window: dict[str, Any] = {"since_ms": since_ms}
        if before_ms is not None:
            window["before_ms"] = before_ms
        if patient is None:
            return self._run(Call("access", "all_accesses", window, query=True))
        return self._run(Call("access", "by_patient", {"patient": patient, **window}, query=True))

    # -- referral --------------------------------------------------------------------
    def referral_request(self, source: str, target: str | None = None) -> R:
        args = {"source": source} | ({"target": target} if target else {})
        return self._run(Call("referral", "request_referral", args))

    def referral_issue(
        self,
        patient: str,
        target: str,
        records: Sequence[str],
        valid_days: int,
        reason: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> R:
        args: dict[str, Any] = {
            "patient": patient,
            "target": target,
            "records": list(records),
            "valid_days": valid_days,
        }
        if reason:
            args["reason"] = dict(reason)
        if request_id:
            args["request_id"] = request_id
        return self._run(Call("referral", "issue", args))

    def referral_agree(self, referral_id: str) -> R:
        return self._run(Call("referral", "agree", {"referral_id": referral_id}))

    def referral_accept(self, referral_id: str) -> R:
        return self._run(Call("referral", "accept", {"referral_id": referral_id}))

    def referral_complete(self, referral_id: str) -> R:
        return self._run(Call("referral", "complete", {"referral_id": referral_id}))

    def referral_cancel(self, referral_id: str, reason: str = "") -> R:
        args = {"referral_id": referral_id} | ({"reason": reason} if reason else {})
        return self._run(Call("referral", "cancel", args))

    def referral_show(self, referral_id: str) -> R:
        return self._run(Call("referral", "get", {"referral_id": referral_id}, query=True))

    def referral_list(self, patient: str) -> R:
        return self._run(Call("referral", "by_patient", {"patient": patient}, query=True))

    # -- claims ----------------------------------------------------------------------
    def product_add(
        self,
        product_id: str,
        name: str,
        catalog: Sequence[Mapping[str, Any]],
        deductible_cents: int = 0,
        annual_limit_cents: int = 0,
    ) -> R:
        return self._run(
            Call(
                "settlement",
                "register_product",
                {
                    "product_id": product_id,
                    "name": name,
                    "catalog": [dict(c) for c in catalog],
                    "deductible_cents": deductible_cents,
                    "annual_limit_cents": annual_limit_cents,
                },
            )
        )

    def enroll(self, product_id: str, patient: str, start: str, end: str) -> R:
        return self._run(
            Call(
                "settlement",
                "enroll",
                {"product_id": product_id, "patient": patient, "start": start, "end": end},
            )
        )

    def claim_submit(
        self,
        claim_id: str,
        product_id: str,
        patient: str,
        encounter_id: str,
        encounter_month: str,
        items: Sequence[Mapping[str, Any]],
        diagnoses: Sequence[Mapping[str, str]] = (),
        records: Sequence[str] = (),
    ) -> R:
        return self._run(
            Call(
                "settlement",
                "submit_claim",
                {
                    "claim_id": claim_id,
                    "product_id": product_id,
                    "patient": patient,
                    "encounter_id": encounter_id,
                    "encounter_month": encounter_month,
                    "items": [dict(i) for i in items],
                    "diagnoses": [dict(d) for d in diagnoses],
                    "records": list(records),
                },
            )
        )

    def claim_pay(self, claim_id: str, amount_cents: int, reference: str) -> R:
        return self._run(
            Call(
                "settlement",
                "record_payment",
                {"claim_id": claim_id, "amount_cents": amount_cents, "reference": reference},
            )
        )

    def claim_show(self, claim_id: str) -> R:
        return self._run(Call("settlement", "claim", {"claim_id": claim_id}, query=True))

    def claim_list(self, patient: str) -> R:
        """A patient's claims that the signer may read."""
        return self._run(Call("settlement", "claims", {"patient": patient}, query=True))

    def product_show(self, product_id: str) -> R:
        return self._run(Call("settlement", "product", {"product_id": product_id}, query=True))

    # -- dictionary ------------------------------------------------------------------
    def dictionary_add_system(self, system: str, name: str, version: str) -> R:
        return self._run(
            Call("dictionary", "add_system", {"system": system, "name": name, "version": version})
        )

    def dictionary_add_codes(self, system: str, codes: Sequence[Mapping[str, str]]) -> R:
        return self._run(
            Call("dictionary", "add_codes", {"system": system, "codes": [dict(c) for c in codes]})
        )

    def dictionary_map(self, source: str, target: str, mappings: Sequence[Mapping[str, Any]]) -> R:
        return self._run(
            Call(
                "dictionary",
                "add_mappings",
                {"source": source, "target": target, "mappings": [dict(m) for m in mappings]},
            )
        )

    def dictionary_translate(self, system: str, code: str, target: str) -> R:
        return self._run(
            Call(
                "dictionary",
                "translate",
                {"system": system, "code": code, "target": target},
                query=True,
            )
        )

    def dictionary_lookup(self, system: str, code: str) -> R:
        return self._run(Call("dictionary", "lookup", {"system": system, "code": code}, query=True))

    # -- practitioners ---------------------------------------------------------------
    def practitioner_add(self, key: bytes, license: str, department: str, role: Role) -> R:
        return self._run(
            Call(
                "registry",
                "register_practitioner",
                {"key": key, "license": license, "department": department, "role": role},
            )
        )

    def practitioner_suspend(self, practitioner: str) -> R:
        return self._run(Call("registry", "suspend_practitioner", {"practitioner": practitioner}))

    def practitioner_reinstate(self, practitioner: str) -> R:
        return self._run(Call("registry", "reinstate_practitioner", {"practitioner": practitioner}))

    def practitioner_list(self, org: str | None = None) -> R:
        return self._run(Call("registry", "practitioners", {"org": org} if org else {}, query=True))

    def practitioner_show(self, practitioner: str) -> R:
        return self._run(
            Call("registry", "practitioner", {"practitioner": practitioner}, query=True)
        )

    def whoami(self) -> R:
        """The signer's identity: kind, id (a patient's pseudonym), org, role, status."""
        return self._run(Call("registry", "whoami", {}, query=True))

    def organizations(self) -> R:
        return self._run(Call("registry", "organizations", {}, query=True))

    # -- anything else ---------------------------------------------------------------
    def query(self, contract: str, method: str, args: Mapping[str, Any] | None = None) -> R:
        return self._run(Call(contract, method, dict(args or {}), query=True))

    def send(self, contract: str, method: str, args: Mapping[str, Any] | None = None) -> R:
        return self._run(Call(contract, method, dict(args or {})))


class Medchain(_Operations[Any]):
    """The workflows over a node's RPC socket, signed by one key."""

    def __init__(self, rpc: RpcClient, signer: TxBuilder, timeout_ms: int = 30_000) -> None:
        self.rpc, self.signer, self.timeout_ms = rpc, signer, timeout_ms

    def _run(self, call: Call) -> Any:
        if call.query:
            return self.rpc.query(call.contract, call.method, dict(call.args), self.signer)
        tx = self.signer.build(call.contract, call.method, dict(call.args))
        return outcome(call, self.rpc.submit(tx, wait=True, timeout_ms=self.timeout_ms))


class AsyncMedchain(_Operations[Awaitable[Any]]):
    """The same workflows for asyncio member systems."""

    def __init__(self, rpc: AsyncRpcClient, signer: TxBuilder) -> None:
        self.rpc, self.signer = rpc, signer

    def _run(self, call: Call) -> Awaitable[Any]:
        return self._arun(call)

    async def _arun(self, call: Call) -> Any:
        if call.query:
            return await self.rpc.query(call.contract, call.method, dict(call.args), self.signer)
        tx = self.signer.build(call.contract, call.method, dict(call.args))
        return outcome(call, await self.rpc.submit(tx, wait=True))
