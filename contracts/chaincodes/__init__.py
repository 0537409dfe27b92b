"""The healthcare chaincodes shipped with this release, as source text.

They are not imported as Python modules: the executor loads them through
contracts.loader (checked for determinism, instrumented with a step budget),
and only if their SHA-256 matches the one in the consortium's genesis.
"""

from __future__ import annotations

from importlib import resources

NAMES = ("registry", "records", "consent", "access", "referral", "dictionary", "settlement")


def bundled_sources() -> dict[str, str]:
    pkg = resources.files(__name__)
    return {name: (pkg / f"{name}.py").read_text(encoding="utf-8") for name in NAMES}


def bundled_hashes() -> tuple[tuple[str, bytes], ...]:
    from medchain.contracts.loader import source_hash

    return tuple(sorted((n, source_hash(s)) for n, s in bundled_sources().items()))
