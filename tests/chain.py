"""An in-memory chain for chaincode tests: the real executor and chaincode, an
in-memory ledger, blocks with certificates, and a clock the test controls."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from medchain.contracts.bundle import bundled_hashes, make_executor
from medchain.contracts.sdk import DAY_MS, day_of, rotation_sign_bytes
from medchain.node.consensus.chain import apply_block, propose_block
from medchain.storage.block import make_certificate
from medchain.storage.crypto import Signer
from medchain.storage.genesis import ConsensusParams, Genesis, Organization
from medchain.storage.ledger import Ledger
from medchain.storage.state import TxResult
from medchain.storage.tx import make_tx
from tests.helpers import signed_anchor_args

ORGS = [
    ("hospital-a", "hospital"),
    ("hospital-b", "hospital"),
    ("insurer", "insurer"),
    ("regulator", "regulator"),
]
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


class TxFailed(AssertionError):
    pass


@dataclass
class Chain:
    orgs: list[tuple[str, str]] = field(default_factory=lambda: list(ORGS))

    def __post_init__(self) -> None:
        self.node_keys = [
            Signer(hashlib.sha256(b"node %d" % i).digest()) for i in range(len(self.orgs))
        ]
        self.admins = {
            o: Signer(hashlib.sha256(b"admin " + o.encode()).digest()) for o, _ in self.orgs
        }
        orgs = tuple(
            Organization(
                o,
                o.replace("-", " ").title(),
                role,
                self.node_keys[i].public_key,
                self.admins[o].public_key,
            )
            for i, (o, role) in enumerate(self.orgs)
        )
        self.genesis = Genesis("chain-test", T0 - DAY_MS, orgs, ConsensusParams(), bundled_hashes())
        self.executor = make_executor(self.genesis)
        self.ledger = Ledger.in_memory(self.genesis)
        self.now = T0
        self.nonce = 0
        self.seeds = 0

    # -- running ------------------------------------------------------------------

    def block(self, txs: list[tuple[Signer, str, str, Any]]) -> list[TxResult]:
        raws = []
        for signer, contract, method, args in txs:
            self.nonce += 1
            raws.append(
                make_tx(signer, self.genesis.chain_id, self.nonce, contract, method, args).encode()
            )
        self.now += 1000
        block = propose_block(self.ledger, raws, self.now, self.node_keys[0].public_key)
        v = self.genesis.validators
        cert = make_certificate(
            self.genesis.chain_id,
            0,
            block.header,
            [(i, self.node_keys[i]) for i in range(v.quorum)],
        )
        return list(apply_block(self.ledger, self.executor, block, cert).results)

    def tx(self, signer: Signer, contract: str, method: str, args: Any = None) -> TxResult:
        return self.block([(signer, contract, method, args if args is not None else {})])[0]

    def ok(self, signer: Signer, contract: str, method: str, args: Any = None) -> Any:
        r = self.tx(signer, contract, method, args)
        if not r.ok:
            raise TxFailed(f"{contract}.{method} failed: {r.data}")
        return r.data

    def fails(self, signer: Signer, contract: str, method: str, args: Any = None) -> str:
        r = self.tx(signer, contract, method, args)
        if r.ok:
            raise AssertionError(f"{contract}.{method} should have failed but returned {r.data}")
        return str(r.data)

    def q(self, contract: str, method: str, args: Any = None, caller: Signer | None = None) -> Any:
        return self.executor.query(
            self.ledger,
            contract,
            method,
            args if args is not None else {},
            self.ledger.height,
            self.now,
            caller=caller.public_key if caller else b"",
        )

    def advance(self, days: int = 0, ms: int = 0) -> None:
        self.now += days * DAY_MS + ms

    # -- people -------------------------------------------------------------------

    def key(self) -> Signer:
        self.seeds += 1
        return Signer(hashlib.sha256(b"person %d" % self.seeds).digest())

    def patient(self) -> tuple[Signer, str]:
        k = self.key()
        return k, self.ok(k, "registry", "register_patient")["pseudonym"]

    def practitioner(
        self, org: str, role: str = "physician", department: str = "general"
    ) -> tuple[Signer, str]:
        k = self.key()
        res = self.ok(
            self.admins[org],
            "registry",
            "register_practitioner",
            {
                "key": k.public_key,
                "license": f"LIC-{self.seeds}",
                "department": department,
                "role": role,
            },
        )
        return k, res["practitioner"]

    def anchor_args(
        self,
        author: Signer,
        custodian: str,
        record_id: str,
        patient: str,
        category: str = "Condition",
        date: str = "2025-12-01",
        content: bytes = b"{}",
        version: int = 1,
    ) -> dict[str, Any]:
        content_hash = hashlib.sha256(content).digest()
        fields_root = hashlib.sha256(b"fields" + content).digest()
        return signed_anchor_args(
            self.genesis.chain_id,
            author,
            record_id,
            patient,
            custodian,
            category,
            date,
            content_hash,
            fields_root,
            version,
        )

    def anchor(
        self, author: Signer, custodian: str, record_id: str, patient: str, **kw: Any
    ) -> Any:
        return self.ok(
            author,
            "records",
            "anchor",
            self.anchor_args(author, custodian, record_id, patient, **kw),
        )

    def rotation(self, old: Signer, new: Signer) -> dict[str, Any]:
        return {
            "new_key": new.public_key,
            "proof": new.sign(
                rotation_sign_bytes(self.genesis.chain_id, old.public_key, new.public_key)
            ),
        }

    @staticmethod
    def day(date: str) -> int:
        return day_of(date)
