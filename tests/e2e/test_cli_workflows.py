"""Every workflow from the CLI on a real consortium, as a new user runs it from
their own working directory: import, practitioners, consent, fetch, access
log, referral, dictionary, evidence; and the exit status of each outcome
(cli/exits.py)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from medchain.cli import exits
from medchain.client.patients import key_path
from tests.population import write_population

pytestmark = pytest.mark.e2e
ORGS = ["Hospital A:hospital", "Hospital B:hospital", "Insurer:insurer", "Regulator:regulator"]


class Cli:
    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def __call__(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [sys.executable, "-m", "medchain.cli", *args],
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        assert r.returncode == code, (
            f"medchain {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
        )
        assert "Traceback" not in r.stderr, r.stderr
        return r

    def json(self, *args: str) -> object:
        return json.loads(self(*args, "--json").stdout)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    cwd = tmp_path_factory.mktemp("user")
    cli = Cli(cwd)
    pop = write_population(cwd / "export", patients=3, institutions=2, per_patient=12)
    cli("consortium", "init", "--dir", "net", *[a for o in ORGS for a in ("--org", o)])
    (cwd / "map.toml").write_text(
        f'[providers]\n"{pop["institutions"][0]}" = "hospital-a"\n'
        f'"{pop["institutions"][1]}" = "hospital-b"\n'
    )
    cli("net", "up", "--dir", "net")
    try:
        cli("records", "import", "--source", "export", "--dir", "net", "--map", "map.toml")
        yield cli
    finally:
        subprocess.run(
            [sys.executable, "-m", "medchain.cli", "net", "down", "--dir", "net"],
            cwd=cwd,
            capture_output=True,
            timeout=120,
        )


A = ("--config", "net/hospital-a/node.toml")
B = ("--config", "net/hospital-b/node.toml")


def patient_key(cli: Cli) -> tuple[str, str]:
    mapping = json.loads((cli.cwd / "net" / "patients.json").read_text())
    key = key_path(cli.cwd / "net" / "patients", "pat-000")
    return str(key.relative_to(cli.cwd)), mapping["pat-000"]


def test_consent_fetch_log_revoke(net: Cli) -> None:
    cli = net
    cli(
        "practitioner",
        "add",
        "--admin-key",
        "net/hospital-b/admin.key",
        "--license",
        "B-77",
        "--department",
        "cardiology",
        "--role",
        "physician",
        "--out",
        "doctor.key",
        *B,
    )
    listed = cli("practitioner", "list", "--org", "hospital-b", "--key", "doctor.key", *B).stdout
    assert "B-77" in listed and "cardiology" in listed and "Hospital B" in listed

    key, me = patient_key(cli)
    granted = cli(
        "consent",
        "grant",
        "--key",
        key,
        "--to",
        "hospital-b",
        "--categories",
        "Observation,Immunization",
        "--period",
        "2000-01-01..",
        "--for",
        "P30D",
        *A,
    )
    assert "Hospital B" in granted.stdout
    consent_id = granted.stdout.split()[1]
    shown = cli("consent", "list", "--key", key, *A).stdout
    assert "Hospital B" in shown and "2000-01-01 .. any date" in shown and "from_day" not in shown

    rows = cli.json("records", "timeline", "--patient", me, "--key", "doctor.key", "--no-fetch", *B)
    assert isinstance(rows, list)
    at_a = [r for r in rows if r["custodian"] == "hospital-a"]
    ok = next(r["record_id"] for r in at_a if r["decision"] == "permit")
    no = next(r["record_id"] for r in at_a if r["decision"] != "permit")

    cli("records", "fetch", ok, "--key", "doctor.key", "--out", "rec.json", *B)
    assert stat.S_IMODE((cli.cwd / "rec.json").stat().st_mode) == 0o600
    denied = cli("records", "fetch", no, "--key", "doctor.key", *B, code=exits.REJECTED)
    assert "denied" in denied.stdout

    cli("evidence", "export", "--record", ok, "--out", "rec.mcev", *B)
    cli("evidence", "verify", "rec.mcev", "--genesis", "net/genesis.toml", "--content", "rec.json")
    unpinned = cli("evidence", "verify", "rec.mcev", code=exits.UNPINNED)
    assert "UNPINNED" in unpinned.stdout

    log = cli("access", "log", "--key", key, *A).stdout
    assert "B-77" in log and "permit" in log and "deny" in log

    cli("consent", "revoke", consent_id, "--key", key, *A)
    again = cli("consent", "revoke", consent_id, "--key", key, *A, code=exits.FAILED)
    assert "already revoked" in again.stderr
    cli("records", "fetch", ok, "--key", "doctor.key", *B, code=exits.REJECTED)

    practitioner_id = listed.split()[0]
    cli("practitioner", "suspend", practitioner_id, "--admin-key", "net/hospital-b/admin.key", *B)
    assert (
        "suspended"
        in cli("practitioner", "list", "--org", "hospital-b", "--key", "doctor.key", *B).stdout
    )
    cli("practitioner", "reinstate", practitioner_id, "--admin-key", "net/hospital-b/admin.key", *B)


def test_referral_and_dictionary(net: Cli) -> None:
    cli = net
    cli(
        "practitioner",
        "add",
        "--admin-key",
        "net/hospital-a/admin.key",
        "--license",
        "A-9",
        "--department",
        "internal medicine",
        "--role",
        "physician",
        "--out",
        "dr-a.key",
        *A,
    )
    key, me = patient_key(cli)
    rows = cli.json("records", "timeline", "--patient", me, "--key", "dr-a.key", "--no-fetch", *A)
    assert isinstance(rows, list)
    mine = next(r["record_id"] for r in rows if r["custodian"] == "hospital-a")
    out = cli.json(
        "referral",
        "issue",
        "--key",
        "dr-a.key",
        "--patient",
        me,
        "--to",
        "hospital-b",
        "--record",
        mine,
        "--reason-code",
        "183519002",
        "--reason-text",
        "cardiology",
        *A,
    )
    assert isinstance(out, dict)
    rid = out["referral_id"]
    cli("referral", "agree", rid, "--key", key, *A)
    cli("referral", "accept", rid, "--key", "net/hospital-b/admin.key", *B)
    cli("referral", "complete", rid, "--key", "net/hospital-b/admin.key", *B)
    shown = cli("referral", "show", rid, "--key", key, *A).stdout
    assert "completed" in shown and "Hospital A" in shown and "revoked" not in shown

    system = "urn:example:local"
    reg = ("--key", "net/regulator/admin.key", "--config", "net/regulator/node.toml")
    cli(
        "dictionary",
        "add-system",
        "--system",
        system,
        "--name",
        "Local codes",
        "--version",
        "1",
        *reg,
    )
    bad = cli(
        "tx",
        "send",
        "--contract",
        "dictionary",
        "--method",
        "add_system",
        "--args",
        json.dumps({"system": "a|b", "name": "x", "version": "1"}),
        *reg,
        code=exits.FAILED,
    )
    assert "failed" in bad.stdout


def test_a_stopped_node_and_bad_input_are_one_line(net: Cli, tmp_path: Path) -> None:
    cli = net
    key, _ = patient_key(cli)
    nowhere = ("--socket", str(tmp_path / "no.sock"))
    r = cli("consent", "list", "--key", key, *nowhere, code=exits.UNREACHABLE)
    assert len(r.stderr.strip().splitlines()) == 1
    r = cli(
        "consent", "grant", "--key", key, "--to", "hospital-b", "--for", "P0D", *A, code=exits.USAGE
    )
    assert "duration" in r.stderr
    r = cli(
        "consent",
        "grant",
        "--key",
        key,
        "--to",
        "hospital-b",
        "--period",
        "2024-02-30..",
        *A,
        code=exits.USAGE,
    )
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    r = cli(
        "claim",
        "submit",
        "--key",
        key,
        "--claim",
        str(tmp_path / "deep.json"),
        *A,
        code=exits.ERROR,
    )
    assert "not valid JSON" in r.stderr


def test_sdk_sync_and_asyncio_give_the_same_answers(net: Cli) -> None:
    import asyncio

    from medchain.client.rpc import AsyncRpcClient, RpcClient
    from medchain.client.signing import TxBuilder
    from medchain.client.workflows import AsyncMedchain, Medchain, TxFailed
    from medchain.storage.keyfile import load_key

    key, me = patient_key(net)
    sock = net.cwd / "net" / "hospital-a" / "data" / "node.sock"
    signer = load_key(net.cwd / key)
    with RpcClient(sock) as rpc:
        mc = Medchain(rpc, TxBuilder(signer, rpc.status()["chain_id"]))
        granted = mc.consent_grant("insurer", ["Claim"], "payment", 7)
        with pytest.raises(TxFailed, match="no organization"):
            mc.consent_grant("nowhere", ["*"], "treatment", 7)
        chain = rpc.status()["chain_id"]

    async def via_asyncio() -> list[str]:
        async with AsyncRpcClient(sock) as arpc:
            amc = AsyncMedchain(arpc, TxBuilder(signer, chain))
            await amc.consent_revoke(granted["consent_id"])
            return [
                c["status"] for c in await amc.consent_list(me) if c["id"] == granted["consent_id"]
            ]

    assert asyncio.run(via_asyncio()) == ["revoked"]


def test_claim_from_product_to_payment(net: Cli) -> None:
    cli = net
    key, me = patient_key(net)
    ins = ("--key", "net/insurer/admin.key", "--config", "net/insurer/node.toml")
    item = {"system": "urn:example:items", "code": "VISIT"}
    (cli.cwd / "catalog.json").write_text(
        json.dumps(
            [
                {
                    **item,
                    "unit_price_cents": 8_000,
                    "coverage_bp": 8_000,
                    "per_item_cap_cents": 8_000,
                    "per_year_cap_cents": 20_000,
                }
            ]
        )
    )
    cli(
        "claim",
        "product-add",
        "--id",
        "basic",
        "--name",
        "Basic care",
        "--catalog",
        "catalog.json",
        "--annual-limit-cents",
        "500000",
        *ins,
    )
    cli(
        "claim",
        "enroll",
        "--product",
        "basic",
        "--patient",
        me,
        "--from",
        "2025-01",
        "--to",
        "2027-12",
        *ins,
    )
    rows = cli.json(
        "records",
        "timeline",
        "--patient",
        me,
        "--key",
        "net/hospital-a/admin.key",
        "--no-fetch",
        *A,
    )
    assert isinstance(rows, list)
    record = next(r["record_id"] for r in rows if r["custodian"] == "hospital-a")
    (cli.cwd / "claim.json").write_text(
        json.dumps(
            {
                "claim_id": "cl-1",
                "product_id": "basic",
                "patient": me,
                "encounter_id": "e-1",
                "encounter_month": "2026-11",
                "records": [record],
                "diagnoses": [],
                "items": [{**item, "quantity": 1}],
            }
        )
    )
    out = cli("claim", "submit", "--claim", "claim.json", "--key", "net/hospital-a/admin.key", *A)
    assert "benefit 64.00 of 80.00" in out.stdout, out.stdout
    cli("claim", "pay", "cl-1", "--amount-cents", "6400", "--reference", "SEPA-1", *ins)
    shown = cli("claim", "show", "cl-1", "--key", key, *A).stdout
    assert "Hospital A -> Insurer" in shown and "paid 64.00" in shown
    assert [c["claim_id"] for c in cli.json("claim", "list", "--key", key, *A)] == ["cl-1"]  # type: ignore[union-attr]
    assert cli.json("claim", "list", "--patient", me, "--key", "net/hospital-b/admin.key", *B) == []


def test_a_rotated_patient_key_reads_nothing_and_the_new_one_everything(net: Cli) -> None:
    cli = net
    old = str(key_path(cli.cwd / "net" / "patients", "pat-002").relative_to(cli.cwd))
    cli("consent", "grant", "--key", old, "--to", "hospital-b", "--for", "P7D", *A)
    cli("key-rotate", "--key", old, "--out", "pat-002-new.key", *A)
    for command in (
        ["consent", "list"],
        ["access", "log"],
        ["referral", "list"],
        ["claim", "list"],
    ):
        r = cli(*command, "--key", old, *A, code=exits.ERROR)
        assert "revoked" in r.stderr
        assert cli(*command, "--key", "pat-002-new.key", *A).returncode == 0
    # signed by the revoked key, naming the patient outright: the chaincode refuses too
    me = json.loads((cli.cwd / "net" / "patients.json").read_text())["pat-002"]
    r = cli("consent", "list", "--key", old, "--patient", me, *A, code=exits.REJECTED)
    assert "only the patient" in r.stderr
    assert "Hospital B" in cli("consent", "list", "--key", "pat-002-new.key", *A).stdout
