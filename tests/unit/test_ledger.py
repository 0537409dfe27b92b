"""The ledger on both stores: commit, read back, refusals, verification."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from medchain.node.consensus.chain import propose_block, replay_ledger
from medchain.storage.ledger import GenesisMismatch, Ledger, LedgerError, verify_chain
from medchain.storage.state import FAILED
from tests.helpers import Consortium


@pytest.fixture(params=["memory", "leveldb"])
def ledger(
    request: pytest.FixtureRequest, tmp_path: Path, consortium: Consortium
) -> Iterator[Ledger]:
    led = (
        Ledger.in_memory(consortium.genesis)
        if request.param == "memory"
        else Ledger.open(tmp_path / "db", consortium.genesis)
    )
    yield led
    led.close()


def test_commit_and_read_back(ledger: Ledger, consortium: Consortium) -> None:
    c = consortium
    txs = [c.tx(c.admin_keys[i % 4]) for i in range(6)]
    ex = c.commit(ledger, [t.encode() for t in txs])
    assert ledger.height == 1
    block = ledger.block(1)
    assert block is not None and block.hash == ex.block.hash and ledger.last_hash == block.hash
    assert ledger.height_of(block.hash) == 1
    cert = ledger.certificate(1)
    assert cert is not None and cert.verify(c.chain_id, c.genesis.validators, block.header) is None
    for i, t in enumerate(txs):
        loc = ledger.tx(t.tx_id)
        assert loc is not None and (loc.height, loc.index) == (1, i) and loc.result.ok
    assert ledger.state_get(b"kv\x00k1") == b"v1"
    assert ledger.state_root_at(1) == ledger.state_root != ledger.state_root_at(0)
    c.commit(ledger, [])
    assert ledger.height == 2 and ledger.block(2) is not None
    assert ledger.block(2).header.state_root == ledger.state_root_at(1)  # type: ignore[union-attr]
    assert verify_chain(ledger) == []
    assert replay_ledger(ledger, c.executor()) == []


def test_a_tx_whose_block_is_written_but_not_yet_the_tip_is_not_committed_yet(
    ledger: Ledger, consortium: Consortium
) -> None:
    """A commit runs in a worker thread: its batch is on disk a moment before the tip
    advances. A reader in between (tx.get, tx.wait) must hear "not yet", never
    "storage damaged" (a consortium test saw -32010 there)."""
    c = consortium
    t = c.tx(c.admin_keys[0])
    c.commit(ledger, [t.encode()])
    ledger.height -= 1  # the moment between the write and the tip's advance
    assert ledger.tx(t.tx_id) is None
    ledger.height += 1
    assert ledger.tx(t.tx_id) is not None


def test_replay_and_failure_are_deterministic(ledger: Ledger, consortium: Consortium) -> None:
    c = consortium
    a = c.tx(c.admin_keys[0])
    bad = c.tx(c.admin_keys[1], method="delete", args={"key": "missing"})
    ex = c.commit(ledger, [a.encode(), bad.encode(), a.encode()])
    assert [r.code for r in ex.results] == [0, FAILED, FAILED]
    assert "no such key" in ex.results[1].data and "replayed" in ex.results[2].data
    loc = ledger.tx(a.tx_id)
    assert loc is not None and loc.index == 0 and loc.result.ok  # first location kept
    ex = c.commit(ledger, [a.encode()])
    assert "replayed" in ex.results[0].data
    # same nonce, different content: still a replay of the nonce
    again = c.tx(c.admin_keys[0], nonce=a.nonce, args={"key": "x", "value": "y"})
    assert "replayed" in c.commit(ledger, [again.encode()]).results[0].data
    # a failed transaction consumed its nonce too
    assert "replayed" in c.commit(ledger, [bad.encode()]).results[0].data


def test_refuses_blocks_that_do_not_extend_the_tip(ledger: Ledger, consortium: Consortium) -> None:
    c = consortium
    c.commit(ledger, [c.tx(c.admin_keys[0]).encode()])
    good = propose_block(ledger, [], 5000, c.node_keys[0].public_key)
    for bad_header, why in [
        (replace(good.header, height=3), "height"),
        (replace(good.header, prev_hash=b"\x00" * 32), "does not extend"),
        (replace(good.header, state_root=b"\x00" * 32), "state root"),
        (replace(good.header, chain_id="other"), "chain"),
        (replace(good.header, validator_set_hash=b"\x00" * 32), "validator set"),
    ]:
        bad = type(good).build(bad_header, good.txs)
        with pytest.raises(LedgerError, match=why):
            ledger.check_next(bad)
    executed = c.executor().execute(ledger, good)
    other = propose_block(ledger, [c.tx(c.admin_keys[1]).encode()], 5000, c.node_keys[0].public_key)
    with pytest.raises(LedgerError, match="certificate"):
        ledger.commit_block(executed, c.certify(other))
    assert ledger.height == 1


def test_genesis_mismatch_refused(tmp_path: Path, consortium: Consortium) -> None:
    Ledger.open(tmp_path / "db", consortium.genesis).close()
    other = Consortium.make(chain_id="test-chain", seed=2).genesis
    with pytest.raises(GenesisMismatch, match="refusing"):
        Ledger.open(tmp_path / "db", other)
    Ledger.open(tmp_path / "db", consortium.genesis).close()


def test_reopen_keeps_everything(tmp_path: Path, consortium: Consortium) -> None:
    c = consortium
    led = Ledger.open(tmp_path / "db", c.genesis)
    for _ in range(5):
        c.commit(led, [c.tx(c.admin_keys[i]).encode() for i in range(4)])
    tip = (led.height, led.last_hash, led.state_root)
    led.close()
    led = Ledger.open(tmp_path / "db", c.genesis)
    assert (led.height, led.last_hash, led.state_root) == tip
    assert verify_chain(led) == [] and replay_ledger(led, c.executor()) == []
    led.close()


def test_verify_chain_detects_tampering(tmp_path: Path, consortium: Consortium) -> None:
    from medchain.storage.ledger import K_BLOCK, K_CERT

    c = consortium
    led = Ledger.in_memory(c.genesis)
    for _ in range(3):
        c.commit(led, [c.tx(c.admin_keys[0]).encode()])
    cert = led.certificate(2)
    assert cert is not None
    cert_key, block_key = led._height_key(2, K_CERT), led._height_key(2, K_BLOCK)
    led.store.write({cert_key: replace(cert, votes=cert.votes[:1]).encode()})
    assert any("certificate invalid" in p for p in verify_chain(led))
    led.store.write({cert_key: cert.encode(), block_key: led.block_bytes(3)})
    assert verify_chain(led)
    led2 = Ledger.in_memory(c.genesis)
    c.commit(led2, [c.tx(c.admin_keys[0]).encode()])
    led2.store.write({b"Skv\x00k999": b"\x00forged"})
    assert any("differ" in p for p in replay_ledger(led2, c.executor()))
    led2.store.write({b"Skv\x00k999": b"garbage"})  # not a format-2 entry
    assert any("k999" in p and "corrupt" in p for p in replay_ledger(led2, c.executor()))


def test_consensus_seq_and_null_batches(ledger: Ledger, consortium: Consortium) -> None:
    c = consortium
    c.commit(ledger, [c.tx(c.admin_keys[0]).encode()])
    assert ledger.seq == 1 and ledger.seq_entry(1) is not None
    block1 = ledger.block(1)
    assert block1 is not None
    null_cert = c.certify(block1)  # any certificate object; the ledger records it as given
    ledger.commit_null(2, null_cert)
    assert (ledger.height, ledger.seq) == (1, 2)
    entry = ledger.seq_entry(2)
    assert entry is not None and entry[0] == 0
    block = propose_block(
        ledger, [c.tx(c.admin_keys[1]).encode()], 9_999_999_999_999, c.node_keys[0].public_key
    )
    ledger.commit_block(c.executor().execute(ledger, block), c.certify(block), seq=3)
    assert (ledger.height, ledger.seq, ledger.last_timestamp_ms) == (2, 3, 9_999_999_999_999)
    assert ledger.seq_entry(3)[0] == 2  # type: ignore[index]
    with pytest.raises(LedgerError, match="already delivered"):
        ledger.commit_null(3, null_cert)
    assert verify_chain(ledger) == []


def test_read_cache_is_bounded_and_never_stale() -> None:
    from medchain.storage.readcache import ReadCache

    store: dict[bytes, bytes | None] = {}
    cache = ReadCache(limit=8)
    for i in range(100):
        k = b"k%d" % i
        assert cache.get(k, store.get) is None
        assert k not in cache._d  # absent keys are not cached (one-off lookups)
        store[k] = b"v"
        assert cache.get(k, store.get) == b"v"
        assert len(cache) <= 8
    # A commit refreshes what is cached and adds nothing else.
    store[b"a"] = b"0"
    assert cache.get(b"a", store.get) == b"0"
    store[b"a"] = b"1"
    store[b"new"] = b"2"
    cache.committed({b"a": b"1", b"new": b"2"})
    assert cache.get(b"a", lambda k: b"never loaded") == b"1"
    assert b"new" not in cache._d
    # A read that raced a commit (the commit landed between its load and its insert)
    # is answered but not cached.

    def racing_load(key: bytes) -> bytes | None:
        old = store.get(key)
        store[key] = b"3"
        cache.committed({key: b"3"})
        return old

    assert cache.get(b"new", racing_load) == b"2"
    assert cache.get(b"new", store.get) == b"3"


def test_large_values_live_in_the_block_store(tmp_path: Path, consortium: Consortium) -> None:
    """The main store (random keys, rewritten at every compaction) holds tx ids and
    state keys with pointers or short values; bodies, results and large values are
    appended to the block store, whose keys only grow."""
    from medchain.storage.ledger import FORMAT, P_HEIGHT, P_STATE, P_TX, VALUE_LOG_MIN

    c = consortium
    led = Ledger.open(tmp_path / "db", c.genesis)
    assert led.format == FORMAT == 3
    big, small = b"v" * VALUE_LOG_MIN, b"s" * (VALUE_LOG_MIN - 1)
    exs = []
    for i in range(3):
        tx = c.tx(c.admin_keys[i], "kv", "put", {"key": f"big{i}", "value": big + bytes([i])})
        exs.append(
            c.commit(
                led,
                [
                    tx.encode(),
                    c.tx(c.admin_keys[3], "kv", "put", {"key": "s", "value": small}).encode(),
                ],
            )
        )
    keys = [k for k, _ in led.blocks.scan(b"")]
    assert keys == sorted(keys) and all(k.startswith(P_HEIGHT) for k in keys)
    for i in range(3):
        entry = led.store.get(P_STATE + b"kv\x00big" + str(i).encode())
        assert entry is not None and len(entry) == 13  # a pointer
        assert led.state_get(b"kv\x00big" + str(i).encode()) == big + bytes([i])
    assert led.store.get(P_STATE + b"kv\x00s") == b"\x00" + small  # short: inline
    assert dict(led.state_scan(b"kv\x00big"))[b"kv\x00big2"] == big + b"\x02"
    tx_id = exs[1].block.tx_ids()[0]
    assert len(led.store.get(P_TX + tx_id) or b"") < 16
    loc = led.tx(tx_id)
    assert loc is not None and (loc.height, loc.index) == (2, 0) and loc.result == exs[1].results[0]
    led.close()
    led = Ledger.open(tmp_path / "db", c.genesis)
    assert led.format == 3 and led.state_get(b"kv\x00big0") == big + b"\x00"
    assert verify_chain(led) == [] and replay_ledger(led, c.executor()) == []
    # A missing result is reported, not raised.
    led.blocks.write({P_HEIGHT + (2).to_bytes(8, "big") + b"E" + bytes(4): None})
    assert any("tx 0" in p and "unreadable" in p for p in verify_chain(led))
    led.close()


@pytest.mark.parametrize("stored_format", [None, b"\x02", b"\x09"])
def test_ledgers_of_another_format_are_refused_with_the_reason(
    consortium: Consortium, stored_format: bytes | None
) -> None:
    """Format 1 and 2 blocks carry no results root, so nothing proves their outcomes:
    such a ledger is refused at open, saying why and what to do; so is a newer one."""
    from medchain.storage.kv import MemoryKV
    from medchain.storage.ledger import K_FORMAT, K_GENESIS, LedgerError

    store = MemoryKV()
    store.write({K_GENESIS: consortium.genesis.hash()})
    if stored_format is not None:
        store.write({K_FORMAT: stored_format})
    with pytest.raises(LedgerError) as exc:
        Ledger(store, consortium.genesis)
    text = str(exc.value)
    assert "this release reads format 3 only" in text
    if stored_format == b"\x09":
        assert "newer release" in text
    else:
        assert "do not commit to their transactions' outcomes" in text and "new data dir" in text


def test_blocks_commit_to_their_predecessors_outcomes(consortium: Consortium) -> None:
    """Block h+1's header carries block h's results root; the ledger refuses a block
    whose results root is not its own, and verify_chain finds a tampered result."""
    import dataclasses

    from medchain.node.consensus.chain import propose_block
    from medchain.storage.block import Block
    from medchain.storage.ledger import K_RESULT, P_HEIGHT, LedgerError, be8
    from medchain.storage.receipts import EMPTY_RESULTS_ROOT, Receipt
    from medchain.storage.state import TxResult

    c = consortium
    led = Ledger.in_memory(c.genesis)
    ok_tx = c.tx(c.admin_keys[0], "kv", "put", {"key": "k", "value": b"v"}).encode()
    bad_tx = c.tx(c.admin_keys[1], "kv", "nope", {}).encode()
    ex = c.commit(led, [ok_tx, bad_tx])
    assert ex.block.header.results_root == EMPTY_RESULTS_ROOT
    receipts = [Receipt.decode(r) for r in ex.receipt_list()]
    assert [r.ok for r in receipts] == [True, False] and receipts[0].contract == "kv"
    nxt = propose_block(led, [], led.last_timestamp_ms + 1, c.node_keys[0].public_key)
    assert nxt.header.results_root == led.results_root == led.results_root_at(1)
    lie = Block.build(dataclasses.replace(nxt.header, results_root=b"\x00" * 32), [])
    with pytest.raises(LedgerError, match="results root"):
        led.check_next(lie)
    c.commit(led, [])
    assert verify_chain(led) == []
    forged = TxResult(0, {"key": "k"}, ())  # the failed tx of block 1 rewritten as a success
    led.blocks.write({P_HEIGHT + be8(1) + K_RESULT + (1).to_bytes(4, "big"): forged.encode()})
    assert any("results root" in p for p in verify_chain(led))


def test_block_store_is_separate_and_a_crash_between_the_writes_loses_nothing(
    tmp_path: Path, consortium: Consortium, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks go to their own LevelDB first, then the main store with the tip. A
    crash in between leaves a block above the tip: unread, and written again."""
    from medchain.storage.ledger import K_BLOCK

    c = consortium
    led = Ledger.open(tmp_path / "db", c.genesis)
    assert led.blocks is not led.store and (tmp_path / "db" / "blocks" / "CURRENT").exists()
    for _ in range(2):
        c.commit(led, [c.tx(c.admin_keys[i]).encode() for i in range(4)])
    tip = (led.height, led.last_hash, led.state_root, led.seq)
    txs = [c.tx(c.admin_keys[i]).encode() for i in range(4)]

    def crash(*_: object, **__: object) -> None:
        raise SystemExit("killed")  # the process dies before the main store's batch

    monkeypatch.setattr(led.store, "write", crash)
    with pytest.raises(SystemExit):
        c.commit(led, txs)
    monkeypatch.undo()
    led.close()

    led = Ledger.open(tmp_path / "db", c.genesis)
    assert (led.height, led.last_hash, led.state_root, led.seq) == tip
    assert led.blocks.get(led._height_key(3, K_BLOCK)) is not None  # written, above the tip
    assert led.block(3) is None and led.certificate(3) is None and led.state_root_at(3) is None
    assert led.seq_entry(tip[3] + 1) is None
    ex = c.commit(led, txs)  # committed again after the restart
    assert led.height == 3 and led.block(3) == ex.block
    for k, v in ex.writes.items():  # large values too (in the block store)
        assert led.state_get(k) == v
    assert verify_chain(led) == [] and replay_ledger(led, c.executor()) == []
    led.close()
