"""Forged evidence, as an attacker with a node's whole ledger would make it, on a
real consortium: certificates assembled around transactions the chain REJECTED
(hospital B "anchoring" hospital A's record id; a patient anchoring a record of
their own), with the honest receipt or with one rewritten to claim success, and
the old inclusion-only format — `medchain evidence verify` refuses each with the
reason. The honest certificate of the real anchor verifies."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from medchain.client.signing import TxBuilder
from medchain.storage.codec import pack, unpack
from medchain.storage.crypto import Signer
from medchain.storage.evidence import OLD_MAGIC, Evidence
from medchain.storage.genesis import Genesis
from medchain.storage.ledger import Ledger
from medchain.storage.merkle import inclusion_proof, merkle_root
from medchain.storage.receipts import Receipt, block_receipts, event_leaf
from medchain.storage.state import Event
from tests.e2e.harness import cluster
from tests.e2e.scenario import anchor_args, anchor_record, medchain, register_doctor, send, submit
from tests.independent import verifier as independent

pytestmark = pytest.mark.e2e


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return medchain(*args, check=False, timeout=120)


def forged_event(args: dict[str, Any]) -> Event:
    attrs = {k: args[k] for k in ("record_id", "patient", "custodian", "category")}
    attrs.update(
        version=1,
        supersedes=0,
        clinical_year=args["clinical_year"],
        content_hash=args["content_hash"],
        fields_root=args["fields_root"],
        author=args["author"],
        author_id="forged",
        author_sig=args["author_sig"],
    )
    return Event("records", "anchored", attrs)


def assemble(led: Ledger, tx_id: bytes, event: Event, claim_success: bool) -> Evidence:
    """A certificate around ``tx_id`` carrying ``event``; with ``claim_success`` its
    receipt is rewritten to say the transaction succeeded and emitted that event."""
    loc = led.tx(tx_id)
    assert loc is not None and not loc.result.ok
    h, i = loc.height, loc.index
    block, nxt = led.block(h), led.block(h + 1)
    cert, next_cert = led.certificate(h), led.certificate(h + 1)
    assert block and nxt and cert and next_cert
    receipts = block_receipts(block.tx_ids(), block.txs, led.results(h, len(block.txs)))
    receipt = receipts[i]
    if claim_success:
        lie = replace(
            Receipt.decode(receipt),
            code=0,
            events_root=merkle_root([event_leaf(event)]),
            event_count=1,
        )
        receipts[i] = receipt = lie.encode()
    return Evidence(
        led.genesis.encode(),
        block.header_bytes,
        cert.encode(),
        nxt.header_bytes,
        next_cert.encode(),
        receipt,
        i,
        len(block.txs),
        tuple(block.inclusion_proof(i)),
        tuple(inclusion_proof(receipts, i)),
        event_leaf(event),
        0,
        (),
        block.txs[i],
    )


def test_certificates_of_rejected_transactions_are_refused(tmp_path: Path) -> None:
    with cluster(4) as c, c.client(0) as cl:
        chain = c.genesis.chain_id
        pat = TxBuilder(Signer.generate(), chain)
        me = send(cl, pat, "registry", "register_patient", {})["pseudonym"]
        docs = {org: TxBuilder(Signer.generate(), chain) for org in ("hospital-a", "hospital-b")}
        for i, (org, doc) in enumerate(docs.items()):
            register_doctor(cl, c.builders[i], doc, f"L-{org}", department="records")
        anchor_record(cl, docs["hospital-a"], "rec-1", me, "hospital-a", date="2025-06-01")
        hijack = anchor_args(docs["hospital-b"], "rec-1", me, "hospital-b", date="2025-06-01")
        r1 = submit(cl, docs["hospital-b"], "records", "anchor", hijack)
        assert r1["status"] == "failed" and "already anchored" in r1["reason"]
        own = anchor_args(pat, "rec-mine", me, "hospital-a", date="2025-06-01")
        r2 = submit(cl, pat, "records", "anchor", own)
        assert r2["status"] == "failed"
        # the honest certificate of the real anchor verifies
        genesis_file = str(c.dir / "genesis.toml")
        honest = tmp_path / "honest.mcev"
        cfg = str(c.dir / "insurer" / "node.toml")
        exp = cli("evidence", "export", "--record", "rec-1", "--out", str(honest), "--config", cfg)
        assert exp.returncode == 0, exp.stderr
        ok = cli("evidence", "verify", str(honest), "--genesis", genesis_file)
        assert ok.returncode == 0 and "VERIFIED" in ok.stdout, ok.stdout + ok.stderr
        unpinned = cli("evidence", "verify", str(honest))
        assert unpinned.returncode == 3 and "UNPINNED" in unpinned.stdout
        assert "VERIFIED" not in unpinned.stdout
        # finding 2: the version (or any other field) of the anchor changed in the file
        ev = Evidence.decode(honest.read_bytes())
        contract, name, attrs = unpack(ev.event, 1 << 16)
        for field, value in (("version", 2), ("version", 255), ("clinical_year", 2024)):
            edited = tmp_path / f"edited-{field}-{value}.mcev"
            event = pack([contract, name, dict(attrs, **{field: value})])
            edited.write_bytes(replace(ev, event=event).encode())
            r = cli("evidence", "verify", str(edited), "--genesis", genesis_file)
            assert r.returncode == 7 and "NOT VERIFIED" in r.stdout, r.stdout
        c.sync()
        c.signal(3, 15)  # the attacker holds the regulator's whole ledger
        led = Ledger.open(
            c.nodes[3].directory / "data" / "ledger", Genesis.load(c.dir / "genesis.toml")
        )
        forgeries: dict[str, tuple[bytes, str]] = {}
        for name, res, args in (("hijack", r1, hijack), ("patient", r2, own)):
            tx_id = bytes.fromhex(res["tx_id"])
            ev = forged_event(args)
            forgeries[f"{name}-honest-receipt"] = (
                assemble(led, tx_id, ev, False).encode(),
                "FAILED on chain",
            )
            forgeries[f"{name}-claimed-success"] = (
                assemble(led, tx_id, ev, True).encode(),
                "results root",
            )
            loc = led.tx(tx_id)
            assert loc is not None
            block = led.block(loc.height)
            cert = led.certificate(loc.height)
            assert block and cert
            old = pack(
                [
                    OLD_MAGIC,
                    led.genesis.encode(),
                    block.header_bytes,
                    cert.encode(),
                    block.txs[loc.index],
                    loc.index,
                    len(block.txs),
                    block.inclusion_proof(loc.index),
                    args["record_id"],
                    1,
                ]
            )
            forgeries[f"{name}-format-1"] = (old, "proves only that a transaction is in a block")
        led.close()
        for name, (data, why) in forgeries.items():
            path = tmp_path / f"{name}.mcev"
            path.write_bytes(data)
            r = cli("evidence", "verify", str(path), "--genesis", genesis_file)
            assert r.returncode == 7, f"{name} verified:\n{r.stdout}"
            assert why in r.stdout and "NOT VERIFIED" in r.stdout, f"{name}:\n{r.stdout}"
            assert "Traceback" not in r.stdout + r.stderr
            ok_, lines, _ = independent.verify(data, Genesis.load(c.dir / "genesis.toml").hash())
            assert not ok_, f"{name}: the independent verifier accepts it: {lines}"
