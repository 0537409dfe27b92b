"""The custodian's release bookkeeping: redemptions (kept across restarts,
pruned by age), the refusal-log gate, the reply cache, and the node.toml
settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from medchain.node.config import ConfigError, NodeConfig
from medchain.node.records.release import (
    MemoryRedemptions,
    Redemptions,
    RefusalGate,
    ReplyCache,
    StoredRedemptions,
)
from medchain.node.records.wire import parse_request
from medchain.storage.crypto import Signer
from medchain.storage.kv import LevelDBKV, MemoryKV
from medchain.storage.tx import make_tx


def exercise(r: Redemptions) -> None:
    a, b, c = b"a" * 32, b"b" * 32, b"c" * 32
    assert not r.redeemed(a)
    r.redeem(a, 1_000)
    r.redeem(b, 2_000)
    r.redeem(c, 3_000)
    assert r.redeemed(a) and r.redeemed(b) and r.redeemed(c)
    assert r.prune(2_500) == 2
    assert not r.redeemed(a) and not r.redeemed(b) and r.redeemed(c)
    assert r.prune(2_500) == 0


def test_memory_and_stored_redemptions_behave_alike() -> None:
    exercise(MemoryRedemptions())
    kv = MemoryKV()
    exercise(StoredRedemptions(kv))
    assert [k[:2] for k, _ in kv.scan(b"")] == [b"Ur", b"Ut"]  # only its own prefixes


def test_stored_redemptions_survive_a_restart(tmp_path: Path) -> None:
    kv = LevelDBKV(tmp_path / "node-state")
    StoredRedemptions(kv).redeem(b"d" * 32, 5_000)
    kv.close()
    kv = LevelDBKV(tmp_path / "node-state")
    try:
        r = StoredRedemptions(kv)
        assert r.redeemed(b"d" * 32) and not r.redeemed(b"e" * 32)
    finally:
        kv.close()


def test_refusal_gate_logs_once_and_limits_each_requester() -> None:
    gate = RefusalGate(per_minute=2)
    items = [("r1", "stale", "why"), ("r2", "stale", "why")]
    assert gate.fresh(b"t1", items) == items
    gate.logged(b"t1", items[:1])
    assert gate.fresh(b"t1", items) == items[1:]
    assert gate.fresh(b"t2", items) == items  # another decision
    assert gate.admit(b"alice", 100.0) and gate.admit(b"alice", 101.0)
    assert not gate.admit(b"alice", 102.0)
    assert gate.admit(b"bob", 102.0)  # per requester
    assert gate.admit(b"alice", 161.0)  # a minute later


def test_reply_cache_answers_the_same_request_only() -> None:
    cache = ReplyCache(max_entries=2, max_bytes=1000)
    cache.put((1, b"q1"), b"tx1", b"reply1", until=1e12)
    assert cache.get((1, b"q1"), b"tx1") == b"reply1"
    assert cache.get((2, b"q1"), b"tx1") is None  # another peer
    assert cache.get((1, b"q1"), b"tx2") is None  # another transaction
    cache.put((1, b"q2"), b"tx", b"x", until=0)
    assert cache.get((1, b"q2"), b"tx") is None  # expired
    cache.put((1, b"q3"), b"tx", b"y", until=1e12)
    cache.put((1, b"q4"), b"tx", b"z", until=1e12)
    assert cache.get((1, b"q1"), b"tx1") is None and cache.bytes == 2  # bounded


def test_parse_request_says_what_is_wrong() -> None:
    s = Signer(bytes(32))
    ok = make_tx(s, "c", 1, "access", "request_many", {"records": ["r"], "purpose": "treatment"})
    parsed = parse_request(ok.encode(), "c", 1 << 20)
    assert not isinstance(parsed, str) and parsed[1:] == (["r"], None)
    assert "malformed" in str(parse_request(b"junk", "c", 1 << 20))
    assert "for this chain" in str(parse_request(ok.encode(), "other", 1 << 20))
    bad = make_tx(s, "c", 2, "access", "request_many", {"records": [], "purpose": "treatment"})
    assert "names no records" in str(parse_request(bad.encode(), "c", 1 << 20))
    # odd requests that still name records go on, for the chaincode to judge and log
    odd = make_tx(s, "c", 3, "access", "request_many", {"records": ["r", 7, "r"], "custodian": 7})
    parsed = parse_request(odd.encode(), "c", 1 << 20)
    assert not isinstance(parsed, str) and parsed[1:] == (["r"], None)
    one = make_tx(s, "c", 4, "access", "request_many", {"records": "r", "purpose": "x"})
    parsed = parse_request(one.encode(), "c", 1 << 20)
    assert not isinstance(parsed, str) and parsed[1] == ["r"]


BASE = """org_id = "hospital-a"
data_dir = "data"
key_file = "node.key"
genesis = "genesis.toml"
listen = "/ip4/127.0.0.1/tcp/7100"
"""


def test_release_settings_in_node_toml(tmp_path: Path) -> None:
    p = tmp_path / "node.toml"
    p.write_text(BASE)
    cfg = NodeConfig.load(p)
    assert (cfg.release_window_s, cfg.refusal_logs_per_minute) == (60, 20)
    assert "release_window_s" not in cfg.to_toml(tmp_path)  # defaults stay implicit
    p.write_text(BASE + "release_window_s = 5\nrefusal_logs_per_minute = 0\n")
    cfg = NodeConfig.load(p)
    assert (cfg.release_window_s, cfg.refusal_logs_per_minute) == (5, 0)
    cfg.save(p)
    assert NodeConfig.load(p).release_window_s == 5  # round trip
    for bad in ("release_window_s = 0", 'release_window_s = "60"', "refusal_logs_per_minute = -1"):
        p.write_text(BASE + bad + "\n")
        with pytest.raises(ConfigError, match="must be an integer"):
            NodeConfig.load(p)
