"""Fuzz every decoder reachable from the network, the RPC socket or a user's
file (tests/fuzz/targets.py): nothing but the typed rejection comes out.

CI runs MEDCHAIN_FUZZ_EXAMPLES (default 300) inputs per target; the long
variant is ``python -m tests.fuzz.run --inputs 100000``."""

from __future__ import annotations

import os

import pytest
from hypothesis import given

from tests.fuzz.strategies import fuzz_settings, inputs
from tests.fuzz.targets import TARGETS, Finding, Target, accepts, check

EXAMPLES = int(os.environ.get("MEDCHAIN_FUZZ_EXAMPLES", "300"))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_rejects_with_typed_errors_only(name: str) -> None:
    target = TARGETS[name]

    @fuzz_settings(EXAMPLES)
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


def test_the_harness_tells_taken_rejected_and_findings_apart() -> None:
    """What the long runs count: taken, rejected with the typed error, or a finding."""
    t = Target("int", lambda d: int(d) if d else d[0], (ValueError,), list)
    assert accepts(t, b"12") is True
    assert accepts(t, b"x") is False
    with pytest.raises(Finding, match="int: IndexError"):
        accepts(t, b"")
    assert check(t, b"x") is None and "IndexError" in str(check(t, b""))
