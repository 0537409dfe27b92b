"""The chaincode set a node runs: built-ins plus the healthcare chaincodes."""

from __future__ import annotations

from medchain.contracts.chaincodes import bundled_hashes, bundled_sources
from medchain.contracts.kv import KVChaincode
from medchain.contracts.lifecycle import LifecycleChaincode
from medchain.contracts.runtime import Chaincode, Executor
from medchain.storage.genesis import Genesis


def make_executor(genesis: Genesis) -> Executor:
    natives: dict[str, Chaincode] = {"kv": KVChaincode(), "lifecycle": LifecycleChaincode()}
    return Executor(genesis, natives, bundled_sources())


__all__ = ["bundled_hashes", "make_executor"]
