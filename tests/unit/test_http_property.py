"""Properties of the web server's request reader and router, driven by
hypothesis with arbitrary request targets, headers and bodies against the
real app (tests/fuzz/http_target.py): every answer is well-formed, none is
a 500, nothing is reported as an incident. Also, on the same app: block
pages are paged and capped, and a patient's live streams are capped.

MEDCHAIN_HTTP_EXAMPLES (default 200) sets the number of examples; the long
run is ``python -m tests.fuzz.run --target http-request``."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from trio.testing import MockClock

from medchain.node.web.protocol import HttpError, split_target
from tests.fuzz import http_target
from tests.fuzz.http_target import FakeStream, parse_responses, request_bytes, world
from tests.fuzz.strategies import fuzz_settings

EXAMPLES = int(os.environ.get("MEDCHAIN_HTTP_EXAMPLES", "200"))
PROPS = fuzz_settings(EXAMPLES)


@PROPS
@given(http_target.inputs())
def test_any_connection_bytes_get_well_formed_answers_and_no_500(data: bytes) -> None:
    http_target.fuzz_input(data)


@PROPS
@given(st.one_of(http_target.targets(), st.text()))
def test_a_request_target_splits_into_a_path_or_is_refused_with_400(target: str) -> None:
    try:
        path, query = split_target(target)
    except HttpError as exc:
        assert exc.status == 400
        return
    assert path.startswith("/") and "?" not in path and "#" not in path + query


@pytest.mark.parametrize("target", http_target.KILLERS)
def test_each_known_killer_is_answered(target: str) -> None:
    statuses = http_target.run(request_bytes("GET", target, [("host", "x")], b""))
    assert len(statuses) == 1 and statuses[0] < 500


def get_json(target: str, token: bool = False) -> tuple[int, Any]:
    hs = [("host", "x")] + ([("authorization", f"Bearer {http_target.SESSION}")] if token else [])
    w = world()
    data = request_bytes("GET", target, hs, b"").replace(
        http_target.SESSION.encode(), w.token().encode()
    )
    out = bytearray()

    async def one() -> None:
        stream = FakeStream(data, 4096)
        await w.server.serve_stream(stream, "test")
        out.extend(stream.out)

    trio.run(one, clock=MockClock(autojump_threshold=0))
    [(status, _, body)] = parse_responses(bytes(out))
    return status, json.loads(body)


def test_block_pages_are_paged_and_capped() -> None:
    w = world()
    top = w.chain.ledger.height
    status, whole = get_json(f"/api/blocks/{top}?limit=3")
    assert status == 200 and whole["tx_count"] == 5 and len(whole["txs"]) == 3
    status, page = get_json(f"/api/blocks/{top}?offset=1&limit=99")
    assert page["offset"] == 1 and page["limit"] == 3  # capped at tx_page_max
    assert page["tx_ids"][:2] == whole["tx_ids"][1:] and len(page["tx_ids"]) == 3
    assert page["hash"] == whole["hash"] and page["header"] == whole["header"]
    assert page["certificate"] == whole["certificate"]
    status, default = get_json(f"/api/blocks/{top}")
    assert len(default["txs"]) == 2
    status, last = get_json(f"/api/blocks/{top}?offset=4")
    assert [t["tx_id"] for t in last["txs"]] == last["tx_ids"] and len(last["txs"]) == 1
    status, past = get_json(f"/api/blocks/{top}?offset=50")
    assert status == 200 and past["txs"] == [] and past["offset"] == 5
    assert get_json(f"/api/blocks/{top}?offset=x")[0] == 400


def test_a_patient_gets_a_few_live_streams_and_no_more() -> None:
    w = world()
    cap = w.server.limits.max_streams_per_patient
    raw = request_bytes(
        "GET", "/api/portal/events", [("host", "x"), ("authorization", f"Bearer {w.token()}")], b""
    )

    async def main() -> None:
        streams = [FakeStream(raw, 4096, hold=True) for _ in range(cap + 3)]
        async with trio.open_nursery() as n:
            for s in streams:
                n.start_soon(w.server.serve_stream, s, "test")
            await trio.sleep(1)
            statuses = [parse_responses(bytes(s.out))[0][0] for s in streams if s.out]
            assert sorted(statuses) == [200] * cap + [429] * 3
            n.cancel_scope.cancel()
        # the streams have ended: their places are free again
        late = FakeStream(raw, 4096, hold=True)
        with trio.move_on_after(1):
            await w.server.serve_stream(late, "test")
        assert parse_responses(bytes(late.out))[0][0] == 200

    trio.run(main, clock=MockClock(autojump_threshold=0))
