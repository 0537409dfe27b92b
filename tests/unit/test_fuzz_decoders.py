"""Hypothesis fuzz across the storage decoders: every input goes to every one of
them (a transaction's bytes to the block decoder, and so on); each raises its
typed error and nothing else, and whatever decodes re-encodes to the same bytes.

Four kinds of input: random bytes, random msgpack values of every type (floats,
ext, maps, nesting), valid encodings with bytes flipped, inserted, deleted or
cut, and valid arrays with fields replaced or appended. The decoders, samples
and strategies are the shared fuzz harness's (tests/fuzz/); there
tests/unit/test_fuzz_network.py fuzzes each target on its own.
"""

from __future__ import annotations

import os
from typing import Any

import msgpack
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.fuzz.strategies import EDITS, msgpack_values, mutate
from tests.fuzz.targets import TARGETS, Target, check

EXAMPLES = int(os.environ.get("MEDCHAIN_FUZZ_EXAMPLES", "400"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DECODERS = [
    TARGETS[name]
    for name in ("transaction", "block-header", "block", "certificate", "tx-result", "genesis")
]
VALID = [s for t in DECODERS for s in t.samples()]


def _check_all(data: bytes) -> None:
    findings = [f for t in DECODERS if (f := check(t, data)) is not None]
    assert not findings, findings


def test_the_valid_samples_decode_and_a_finding_is_reported() -> None:
    """The harness can fail: each sample decodes with its own decoder, and a decoder
    that raises an untyped error is a finding."""
    for t in DECODERS:
        for s in t.samples():
            t.run(s)
    assert check(TARGETS["transaction"], VALID[0]) is None
    bad = Target("index-error", lambda d: d[10**6], (ValueError,), list)
    assert check(bad, b"") is not None


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    _check_all(data)


@FUZZ
@given(msgpack_values)
def test_random_msgpack_values(value: Any) -> None:
    _check_all(msgpack.packb(value, use_bin_type=True))


@FUZZ
@given(st.sampled_from(VALID), EDITS)
def test_mutated_valid_encodings(sample: bytes, edits: list[tuple[str, int, int]]) -> None:
    _check_all(mutate(sample, edits))


@FUZZ
@given(st.sampled_from(VALID), st.lists(msgpack_values, max_size=3), st.integers(0, 8))
def test_wrongly_typed_fields(sample: bytes, extra: list[Any], index: int) -> None:
    """Valid arrays with one field replaced or extra fields appended."""
    fields = msgpack.unpackb(sample, raw=False, strict_map_key=False)
    assume(isinstance(fields, list) and fields)
    if extra:
        fields[index % len(fields)] = extra[0]
    fields.extend(extra[1:])
    _check_all(msgpack.packb(fields, use_bin_type=True))
