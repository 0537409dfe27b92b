"""Hypothesis strategies for fuzzing a target: random bytes, random msgpack
values of every type (floats, ext, maps, deep nesting), valid samples with
bytes flipped/inserted/deleted/cut or fields replaced; for text targets also
random JSON documents and mutated JSON; and the settings every run uses."""

from __future__ import annotations

import json
from typing import Any

import msgpack
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.fuzz.targets import Target


def fuzz_settings(examples: int) -> settings:
    """How every fuzz run and property of the harness runs: ``examples`` inputs, no
    deadline, no health checks (the targets are slow on purpose), no example database
    (each run starts afresh)."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=40)
    | st.binary(max_size=80)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
    lambda children: (
        st.lists(children, max_size=9) | st.dictionaries(st.text(max_size=5), children, max_size=5)
    ),
    max_leaves=40,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["2020-01-02", "2020-02-30T00:00:00Z", "urn:uuid:p1", "Patient/p1", "e1"]),
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(
            st.sampled_from(
                [
                    "resourceType",
                    "id",
                    "subject",
                    "encounter",
                    "reference",
                    "jsonrpc",
                    "method",
                    "params",
                    "key",
                    "sig",
                    "ts",
                    "args",
                    "value",
                    "items",
                    "tx",
                    "height",
                ]
            )
            | st.text(max_size=6),
            children,
            max_size=6,
        )
    ),
    max_leaves=30,
)

EDITS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "cut", "dup"]),
        st.integers(0, 10**6),
        st.integers(0, 255),
    ),
    min_size=1,
    max_size=5,
)


def mutate(sample: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    data = bytearray(sample)
    for op, pos, byte in edits:
        if not data:
            break
        i = pos % len(data)
        if op == "flip":
            data[i] ^= byte or 1
        elif op == "insert":
            data.insert(i, byte)
        elif op == "delete":
            del data[i]
        elif op == "cut":
            del data[i:]
        else:
            data[i:i] = data[i : i + 1 + byte % 16]
    return bytes(data)


def _replace_field(sample: bytes, value: Any, index: int) -> bytes:
    try:
        fields = msgpack.unpackb(sample, raw=False, strict_map_key=False)
    except Exception:
        return sample
    if isinstance(fields, list) and fields:
        fields[index % len(fields)] = value
    return msgpack.packb(fields, use_bin_type=True)  # type: ignore[no-any-return]


def _replace_json(sample: bytes, key: str, value: Any) -> bytes:
    doc = json.loads(sample)
    if isinstance(doc, dict):
        doc[key] = value
    elif isinstance(doc, list) and doc and isinstance(doc[0], dict):
        doc[0][key] = value
    return json.dumps(doc).encode()


def deep(depth: int, text: bool) -> bytes:
    if text:
        return b"[" * depth + b"]" * depth
    return b"\x91" * depth + b"\xc0"  # nested one-element arrays


def inputs(target: Target) -> st.SearchStrategy[bytes]:
    samples = target.samples()
    base = [
        st.binary(max_size=600),
        st.builds(mutate, st.sampled_from(samples), EDITS),
        st.builds(lambda d: deep(d, target.text), st.integers(1, 100_000)),
    ]
    if target.strategy is not None:
        base.append(target.strategy())
    if target.text:
        base += [
            st.builds(lambda v: json.dumps(v).encode(), json_values),
            st.builds(
                _replace_json,
                st.sampled_from(samples),
                st.sampled_from(
                    [
                        "resourceType",
                        "id",
                        "subject",
                        "encounter",
                        "onsetDateTime",
                        "params",
                        "method",
                        "id",
                        "key",
                        "sig",
                        "ts",
                        "args",
                        "value",
                        "path",
                        "salt",
                        "index",
                        "size",
                        "field",
                        "version",
                        "medchain_disclosure",
                    ]
                ),
                json_values,
            ),
            st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
        ]
    else:
        base += [
            st.builds(lambda v: msgpack.packb(v, use_bin_type=True), msgpack_values),
            st.builds(_replace_field, st.sampled_from(samples), msgpack_values, st.integers(0, 12)),
        ]
    return st.one_of(base)
