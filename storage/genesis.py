"""Consortium genesis: the chain's identity.

The genesis file (TOML, for people to read) lists the chain id, the member
organizations with their roles and their node and admin public keys, and the
consensus parameters. Its *hash* is computed over the canonical encoding of
that content, not over the file text, so comments and formatting do not matter
but every value does.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

import tomli_w

from medchain.storage.block import MAX_VALIDATORS, ValidatorSet
from medchain.storage.codec import (
    DecodeError,
    as_bytes,
    as_int,
    as_list,
    as_str,
    fields,
    pack,
    unpack,
)
from medchain.storage.crypto import DOMAIN_GENESIS_STATE, PUBLIC_KEY_BYTES, sha256
from medchain.storage.tx import MAX_TX_BYTES

ROLES = ("hospital", "clinic", "exam-centre", "insurer", "regulator")
ORG_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")


class GenesisError(ValueError):
    """A genesis file that is invalid, with the reason."""


@dataclass(frozen=True)
class ConsensusParams:
    checkpoint_interval: int = 100  # K: sequence numbers between checkpoints
    log_window: int = 200  # high watermark = low watermark + log_window
    batch_max_txs: int = 2000
    batch_max_bytes: int = 4 * 1024 * 1024
    batch_timeout_ms: int = 20
    view_change_timeout_ms: int = 3000
    max_clock_drift_ms: int = 10_000
    max_tx_bytes: int = MAX_TX_BYTES

    def validate(self) -> None:
        for f in dataclass_fields(self):
            v = getattr(self, f.name)
            if type(v) is not int or v <= 0:
                raise GenesisError(f"consensus.{f.name} must be a positive integer, got {v!r}")
        if self.log_window < 2 * self.checkpoint_interval:
            raise GenesisError("consensus.log_window must be at least 2 x checkpoint_interval")


@dataclass(frozen=True)
class Organization:
    org_id: str
    name: str
    role: str
    node_key: bytes
    admin_key: bytes


@dataclass(frozen=True)
class Genesis:
    chain_id: str
    genesis_time_ms: int
    organizations: tuple[Organization, ...]
    consensus: ConsensusParams = field(default_factory=ConsensusParams)
    # Chaincode installed at genesis: (name, SHA-256 of its source), sorted by name.
    chaincodes: tuple[tuple[str, bytes], ...] = ()

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", self.chain_id):
            raise GenesisError(f"chain_id {self.chain_id!r} must be 1-64 of [A-Za-z0-9._-]")
        if not self.organizations:
            raise GenesisError("genesis needs at least one organization")
        seen_ids: set[str] = set()
        seen_keys: set[bytes] = set()
        for org in self.organizations:
            if not ORG_ID_RE.match(org.org_id):
                raise GenesisError(f"organization id {org.org_id!r} must match {ORG_ID_RE.pattern}")
            if org.org_id in seen_ids:
                raise GenesisError(f"duplicate organization id {org.org_id!r}")
            seen_ids.add(org.org_id)
            if org.role not in ROLES:
                raise GenesisError(
                    f"organization {org.org_id}: role {org.role!r} not one of {', '.join(ROLES)}"
                )
            for k in (org.node_key, org.admin_key):
                if len(k) != PUBLIC_KEY_BYTES:
                    raise GenesisError(
                        f"organization {org.org_id}: keys are 32-byte Ed25519 public keys"
                    )
                if k in seen_keys:
                    raise GenesisError(f"organization {org.org_id}: key {k.hex()[:12]} used twice")
                seen_keys.add(k)
        self.consensus.validate()
        names = [n for n, _ in self.chaincodes]
        if names != sorted(set(names)):
            raise GenesisError("chaincodes must be sorted by name, each once")
        for name, h in self.chaincodes:
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", name) or len(h) != 32:
                raise GenesisError(
                    f"chaincode {name!r}: a name of [a-z0-9_-] and a 32-byte source hash"
                )

    def encode(self) -> bytes:
        return pack(
            [
                "medchain/genesis/v1",
                self.chain_id,
                self.genesis_time_ms,
                [[o.org_id, o.name, o.role, o.node_key, o.admin_key] for o in self.organizations],
                [getattr(self.consensus, f.name) for f in dataclass_fields(self.consensus)],
                [[n, h] for n, h in self.chaincodes],
            ]
        )

    def hash(self) -> bytes:
        return sha256(self.encode())

    @classmethod
    def decode(cls, data: bytes) -> Genesis:
        f = fields(unpack(data, 1024 * 1024, "genesis"), 6, "genesis")
        if f[0] != "medchain/genesis/v1":
            raise DecodeError("genesis: unknown format tag")
        orgs = []
        for i, o in enumerate(as_list(f[3], "genesis.organizations", MAX_VALIDATORS)):
            of = fields(o, 5, f"genesis.organizations[{i}]")
            orgs.append(
                Organization(
                    as_str(of[0], "org.id", 48, 1),
                    as_str(of[1], "org.name", 200, 1),
                    as_str(of[2], "org.role", 32, 1),
                    as_bytes(of[3], "org.node_key", PUBLIC_KEY_BYTES),
                    as_bytes(of[4], "org.admin_key", PUBLIC_KEY_BYTES),
                )
            )
        names = [x.name for x in dataclass_fields(ConsensusParams)]
        pf = fields(f[4], len(names), "genesis.consensus")
        params = ConsensusParams(
            **{n: as_int(v, f"consensus.{n}") for n, v in zip(names, pf, strict=True)}
        )
        ccs = []
        for i, cc in enumerate(as_list(f[5], "genesis.chaincodes", 256)):
            cf = fields(cc, 2, f"genesis.chaincodes[{i}]")
            ccs.append(
                (as_str(cf[0], "chaincode.name", 32, 1), as_bytes(cf[1], "chaincode.hash", 32))
            )
        try:
            return cls(
                as_str(f[1], "genesis.chain_id", 64, 1),
                as_int(f[2], "genesis.time"),
                tuple(orgs),
                params,
                tuple(ccs),
            )
        except GenesisError as exc:
            raise DecodeError(f"genesis: {exc}") from None

    @property
    def validators(self) -> ValidatorSet:
        return ValidatorSet(tuple(o.node_key for o in self.organizations))

    def initial_state_root(self) -> bytes:
        """State root "after block 0": a commitment to the genesis itself."""
        return sha256(pack([DOMAIN_GENESIS_STATE, self.hash()]))

    def org(self, org_id: str) -> Organization:
        for o in self.organizations:
            if o.org_id == org_id:
                return o
        raise KeyError(org_id)

    def org_by_node_key(self, key: bytes) -> Organization | None:
        return next((o for o in self.organizations if o.node_key == key), None)

    def org_by_admin_key(self, key: bytes) -> Organization | None:
        return next((o for o in self.organizations if o.admin_key == key), None)

    # -- file form -----------------------------------------------------------

    def to_toml(self) -> str:
        doc: dict[str, Any] = {
            "chain_id": self.chain_id,
            "genesis_time_ms": self.genesis_time_ms,
            "consensus": asdict(self.consensus),
            "chaincodes": {n: h.hex() for n, h in self.chaincodes},
            "organizations": [
                {
                    "id": o.org_id,
                    "name": o.name,
                    "role": o.role,
                    "node_key": o.node_key.hex(),
                    "admin_key": o.admin_key.hex(),
                }
                for o in self.organizations
            ],
        }
        header = (
            "# medchain consortium genesis. Identical on every node; its hash is the chain's identity.\n"
            f"# genesis hash: {self.hash().hex()}\n\n"
        )
        return header + tomli_w.dumps(doc)

    @classmethod
    def from_toml(cls, text: str) -> Genesis:
        try:
            doc = tomllib.loads(text)
            params = ConsensusParams(**doc.get("consensus", {}))
            orgs = tuple(
                Organization(
                    org_id=str(o["id"]),
                    name=str(o["name"]),
                    role=str(o["role"]),
                    node_key=bytes.fromhex(o["node_key"]),
                    admin_key=bytes.fromhex(o["admin_key"]),
                )
                for o in doc["organizations"]
            )
            ccs = tuple(
                sorted((str(n), bytes.fromhex(h)) for n, h in doc.get("chaincodes", {}).items())
            )
            chain_id = doc["chain_id"]
            genesis_time_ms = doc["genesis_time_ms"]
        except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
            raise GenesisError(f"invalid genesis file: {exc}") from None
        if type(chain_id) is not str or type(genesis_time_ms) is not int:
            raise GenesisError(
                "invalid genesis file: chain_id must be a string, genesis_time_ms an integer"
            )
        return cls(chain_id, genesis_time_ms, orgs, params, ccs)

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_toml())

    @classmethod
    def load(cls, path: Path) -> Genesis:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise GenesisError(f"cannot read genesis file {path}: {exc.strerror}") from None
        return cls.from_toml(text)
