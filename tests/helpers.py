"""Shared builders for tests: a consortium of in-memory keys, signed txs, blocks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medchain.contracts.kv import KVChaincode
from medchain.contracts.runtime import Executor
from medchain.contracts.sdk import anchor_sign_bytes
from medchain.node.consensus.chain import apply_block, propose_block
from medchain.storage.block import Block, CommitCertificate, make_certificate
from medchain.storage.crypto import Signer
from medchain.storage.executed import ExecutedBlock
from medchain.storage.genesis import ConsensusParams, Genesis, Organization
from medchain.storage.ledger import Ledger
from medchain.storage.tx import Transaction, make_tx

ROLES = ["hospital", "hospital", "insurer", "regulator", "clinic", "exam-centre", "hospital"]


@dataclass
class Consortium:
    genesis: Genesis
    node_keys: list[Signer]
    admin_keys: list[Signer]
    nonces: dict[bytes, int] = field(default_factory=dict)

    @classmethod
    def make(
        cls, n: int = 4, chain_id: str = "test-chain", seed: int = 1, **params: int
    ) -> Consortium:
        node_keys = [Signer(bytes([seed, 1, i]) + bytes(29)) for i in range(n)]
        admin_keys = [Signer(bytes([seed, 2, i]) + bytes(29)) for i in range(n)]
        orgs = tuple(
            Organization(
                f"org-{i}",
                f"Org {i}",
                ROLES[i % len(ROLES)],
                node_keys[i].public_key,
                admin_keys[i].public_key,
            )
            for i in range(n)
        )
        genesis = Genesis(chain_id, 1_700_000_000_000, orgs, ConsensusParams(**params))
        return cls(genesis, node_keys, admin_keys)

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id

    def tx(
        self,
        signer: Signer,
        contract: str = "kv",
        method: str = "put",
        args: object = None,
        nonce: int | None = None,
    ) -> Transaction:
        if nonce is None:
            nonce = self.nonces.get(signer.public_key, 0) + 1
            self.nonces[signer.public_key] = nonce
        if args is None:
            args = {"key": f"k{nonce}", "value": f"v{nonce}"}
        return make_tx(signer, self.chain_id, nonce, contract, method, args)

    def executor(self) -> Executor:
        return Executor(self.genesis, {"kv": KVChaincode()})

    def certify(
        self, block: Block, view: int = 0, signers: list[int] | None = None
    ) -> CommitCertificate:
        v = self.genesis.validators
        idx = signers if signers is not None else list(range(v.quorum))
        return make_certificate(
            self.chain_id, view, block.header, [(i, self.node_keys[i]) for i in idx]
        )

    def commit(
        self, ledger: Ledger, txs: list[bytes], timestamp_ms: int | None = None
    ) -> ExecutedBlock:
        ts = (
            timestamp_ms
            if timestamp_ms is not None
            else self.genesis.genesis_time_ms + 1000 * (ledger.height + 1)
        )
        block = propose_block(ledger, txs, ts, self.node_keys[0].public_key)
        return apply_block(ledger, self.executor(), block, self.certify(block))


def signed_anchor_args(
    chain_id: str,
    author: Signer,
    record_id: str,
    patient: str,
    custodian: str,
    category: str,
    date: str,
    content_hash: bytes,
    fields_root: bytes,
    version: int = 1,
) -> dict[str, Any]:
    """`records.anchor` arguments, signed by the authoring practitioner."""
    sig = author.sign(
        anchor_sign_bytes(
            chain_id,
            record_id,
            version,
            patient,
            custodian,
            category,
            int(date[:4]),
            content_hash,
            fields_root,
        )
    )
    return {
        "record_id": record_id,
        "patient": patient,
        "custodian": custodian,
        "category": category,
        "clinical_year": int(date[:4]),
        "content_hash": content_hash,
        "fields_root": fields_root,
        "author": author.public_key,
        "author_sig": sig,
    }


def org_consent(
    grantee: str = "hospital-b",
    categories: tuple[str, ...] = ("Condition",),
    period: dict[str, Any] | None = None,
    days: int = 30,
) -> dict[str, Any]:
    """`consent.grant` arguments: an organization may read, for treatment, for `days` days,
    the records of these categories in the period (by default the last two years)."""
    return {
        "grantee_kind": "org",
        "grantee": grantee,
        "categories": list(categories),
        "purpose": "treatment",
        "period": period if period is not None else {"last_days": 730},
        "days": days,
    }
