"""Create a local consortium: keys, node configs and one shared genesis."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from medchain.contracts.bundle import bundled_hashes
from medchain.node.config import NodeConfig, PeerConfig
from medchain.storage.crypto import Signer
from medchain.storage.genesis import ROLES, ConsensusParams, Genesis, GenesisError, Organization
from medchain.storage.keyfile import save_key

GENESIS_FILE = "genesis.toml"
NODE_CONFIG = "node.toml"
NODE_KEY = "node.key"
ADMIN_KEY = "admin.key"


@dataclass(frozen=True)
class OrgSpec:
    name: str
    role: str

    @classmethod
    def parse(cls, text: str) -> OrgSpec:
        """Parse ``"Hospital A:hospital"``."""
        name, sep, role = text.rpartition(":")
        if not sep or not name.strip():
            raise GenesisError(f"--org {text!r}: expected NAME:ROLE, e.g. 'Hospital A:hospital'")
        role = role.strip()
        if role not in ROLES:
            raise GenesisError(f"--org {text!r}: role must be one of {', '.join(ROLES)}")
        return cls(name.strip(), role)

    @property
    def org_id(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")[:48] or "org"


def init_consortium(
    directory: Path,
    orgs: list[OrgSpec],
    chain_id: str | None = None,
    base_port: int = 7100,
    host: str = "127.0.0.1",
    consensus: ConsensusParams | None = None,
    passphrase: str | None = None,
    ports: list[int] | None = None,
    http_ports: list[int] | None = None,
) -> Genesis:
    """Write genesis.toml and, per organization, node.key, admin.key and node.toml.

    ``http_ports`` (one per organization) turns on each node's web UI."""
    directory = Path(directory).resolve()
    if (directory / GENESIS_FILE).exists():
        raise GenesisError(f"{directory / GENESIS_FILE} already exists; choose an empty directory")
    ids = [o.org_id for o in orgs]
    if len(set(ids)) != len(ids):
        raise GenesisError("two organizations would get the same id; give them distinct names")
    directory.mkdir(parents=True, exist_ok=True)
    node_keys = {}
    members = []
    for spec in orgs:
        org_dir = directory / spec.org_id
        org_dir.mkdir(mode=0o700, exist_ok=True)
        node_key, admin_key = Signer.generate(), Signer.generate()
        # The node key must load unattended at daemon start; the admin key may be encrypted.
        save_key(org_dir / NODE_KEY, node_key)
        save_key(org_dir / ADMIN_KEY, admin_key, passphrase)
        node_keys[spec.org_id] = node_key
        members.append(
            Organization(
                spec.org_id, spec.name, spec.role, node_key.public_key, admin_key.public_key
            )
        )
    genesis = Genesis(
        chain_id=chain_id or f"medchain-{secrets.token_hex(3)}",
        genesis_time_ms=int(time.time() * 1000),
        organizations=tuple(members),
        consensus=consensus or ConsensusParams(),
        chaincodes=bundled_hashes(),
    )
    genesis.save(directory / GENESIS_FILE)
    if ports is not None and len(ports) != len(orgs):
        raise GenesisError("give one port per organization")
    port_of = ports or [base_port + i for i in range(len(orgs))]
    addresses = {o.org_id: f"/ip4/{host}/tcp/{port_of[i]}" for i, o in enumerate(orgs)}
    if http_ports is not None and len(http_ports) != len(orgs):
        raise GenesisError("give one web UI port per organization")
    for i, spec in enumerate(orgs):
        org_dir = directory / spec.org_id
        config = NodeConfig(
            org_id=spec.org_id,
            data_dir=org_dir / "data",
            key_file=org_dir / NODE_KEY,
            genesis_file=directory / GENESIS_FILE,
            listen=addresses[spec.org_id],
            rpc_socket=org_dir / "data" / "node.sock",
            peers=tuple(
                PeerConfig(o.org_id, node_keys[o.org_id].public_key, addresses[o.org_id])
                for o in orgs
                if o.org_id != spec.org_id
            ),
            log_file=org_dir / "node.log",
            http_port=http_ports[i] if http_ports else 0,
        )
        config.save(org_dir / NODE_CONFIG)
    return genesis
