"""Steps the end-to-end scenarios share: run the CLI, commit a transaction,
register a doctor, anchor a record, grant an organization a consent."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medchain.client.rpc import RpcClient
from medchain.client.signing import TxBuilder
from medchain.storage.crypto import Signer
from tests.helpers import org_consent as org_consent  # a step of the scenarios too
from tests.helpers import signed_anchor_args

ROOT = Path(__file__).resolve().parents[2]
LOCAL = "urn:medchain:items"
ICD10 = "http://hl7.org/fhir/sid/icd-10"


def medchain(
    *args: str,
    check: bool = True,
    timeout: float = 300,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`medchain ARGS` in a subprocess (in ``env``: by default this one's); with check,
    a non-zero exit fails the test."""
    r = subprocess.run(
        [sys.executable, "-m", "medchain.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else dict(env),
    )
    if check and r.returncode != 0:
        raise AssertionError(
            f"medchain {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        )
    return r


def builder(chain: str, seed: bytes) -> TxBuilder:
    """A transaction builder whose key is derived from seed (the same on every run)."""
    return TxBuilder(Signer(hashlib.sha256(seed).digest()), chain)


def submit(cl: RpcClient, who: TxBuilder, contract: str, method: str, args: Any) -> dict[str, Any]:
    """Submit and wait: the whole answer (status, tx_id, result or reason), committed or not."""
    res: dict[str, Any] = cl.submit(who.build(contract, method, args), wait=True, timeout_ms=30_000)
    return res


def commit(cl: RpcClient, who: TxBuilder, contract: str, method: str, args: Any) -> dict[str, Any]:
    """Submit and wait: the whole answer (tx_id, result) of a transaction that committed."""
    res = submit(cl, who, contract, method, args)
    assert res["status"] == "committed", f"{contract}.{method}: {res}"
    return res


def send(cl: RpcClient, who: TxBuilder, contract: str, method: str, args: Any) -> Any:
    """The result of a transaction that committed."""
    return commit(cl, who, contract, method, args)["result"]


def register_doctor(
    cl: RpcClient,
    admin: TxBuilder,
    doctor: TxBuilder | Signer,
    license: str,
    department: str = "cardiology",
    role: str = "physician",
) -> dict[str, Any]:
    """An organization's admin registers a practitioner."""
    args = {"key": doctor.public_key, "license": license, "department": department, "role": role}
    return commit(cl, admin, "registry", "register_practitioner", args)


def add_importers(consortium: Path, orgs: tuple[str, ...] = ("hospital-a", "hospital-b")) -> None:
    """`medchain practitioner add`: each org's importer key (ORG/importer.key), as an operator would."""
    for org in orgs:
        medchain(
            "practitioner",
            "add",
            "--config",
            str(consortium / org / "node.toml"),
            "--admin-key",
            str(consortium / org / "admin.key"),
            "--license",
            f"IMP-{org}",
            "--department",
            "records",
            "--role",
            "system",
            "--out",
            str(consortium / org / "importer.key"),
        )


def anchor_args(
    doctor: TxBuilder,
    record_id: str,
    patient: str,
    custodian: str,
    category: str = "Condition",
    date: str = "2025-11-20",
) -> dict[str, Any]:
    """`records.anchor` arguments, signed by the doctor, of a record whose content is
    `record RECORD_ID`."""
    content = f"record {record_id}".encode()
    ch, fr = hashlib.sha256(content).digest(), hashlib.sha256(b"f" + content).digest()
    return signed_anchor_args(
        doctor.chain_id, doctor.signer, record_id, patient, custodian, category, date, ch, fr
    )


def anchor_record(
    cl: RpcClient,
    doctor: TxBuilder,
    record_id: str,
    patient: str,
    custodian: str,
    category: str = "Condition",
    date: str = "2025-11-20",
) -> dict[str, Any]:
    """The doctor anchors a record whose content is `record RECORD_ID`."""
    args = anchor_args(doctor, record_id, patient, custodian, category, date)
    return commit(cl, doctor, "records", "anchor", args)


def add_code_systems(cl: RpcClient, admin: TxBuilder) -> dict[str, str]:
    """The regulator's admin adds the local items and ICD-10 code systems: name -> tx id."""
    txs = {}
    for system, name in ((LOCAL, "Items"), (ICD10, "ICD-10")):
        args = {"system": system, "name": name, "version": "1"}
        txs[name] = commit(cl, admin, "dictionary", "add_system", args)["tx_id"]
    return txs


def care_product(product_id: str) -> dict[str, Any]:
    """`settlement.register_product` arguments: a consultation covered at 75%."""
    return {
        "product_id": product_id,
        "name": "Care",
        "deductible_cents": 1_000,
        "annual_limit_cents": 1_000_000,
        "catalog": [
            {
                "system": LOCAL,
                "code": "CONSULT",
                "unit_price_cents": 12_000,
                "coverage_bp": 7_500,
                "per_item_cap_cents": 12_000,
                "per_year_cap_cents": 100_000,
            }
        ],
    }
