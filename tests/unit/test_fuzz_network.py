"""Fuzz every decoder reachable from the network, the RPC socket or a user's
file (tests/fuzz/targets.py): nothing but the typed rejection comes out.

CI runs MEDCHAIN_FUZZ_EXAMPLES (default 300) inputs per target; the long
variant is ``python -m tests.fuzz.run --inputs 100000``."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz.strategies import inputs
from tests.fuzz.targets import TARGETS, check

EXAMPLES = int(os.environ.get("MEDCHAIN_FUZZ_EXAMPLES", "300"))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_rejects_with_typed_errors_only(name: str) -> None:
    target = TARGETS[name]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(inputs(target))
    def fuzz(data: bytes) -> None:
        finding = check(target, data)
        assert finding is None, finding

    fuzz()


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_samples_are_accepted(name: str) -> None:
    """The valid samples the fuzzer mutates really are valid (no typed error)."""
    target = TARGETS[name]
    for s in target.samples():
        target.run(s)


@pytest.mark.parametrize("name", ["records-frame", "consensus-record"])
def test_a_boolean_kind_is_not_taken_for_an_integer(name: str) -> None:
    """Found by CI's fuzz run: msgpack ``true`` compared equal to kind 1."""
    from medchain.storage.codec import pack

    assert check(TARGETS[name], pack([True, bytes(16), b"\x00" * 134])) is None
