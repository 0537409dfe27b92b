"""Every decoder reachable from the network, the RPC socket or a file a user
hands us, as a fuzz target: a function of bytes, the exceptions that count as
its typed rejection, and valid samples to mutate.

A target passes an input if it returns, or raises one of its typed errors;
anything else (IndexError, RecursionError, a hang, an internal RPC error) is
a finding. Used by tests/unit/test_fuzz_network.py (short, CI) and
``python -m tests.fuzz.run`` (long: 100,000 inputs per target). The web
server's target (``http-request``) is tests/fuzz/http_target.py.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import trio
from nacl.exceptions import CryptoError
from trio.testing import MockClock

from medchain.client.custodian import Directory, ProviderMap
from medchain.client.importer import classify_line
from medchain.consensus.messages import (
    Checkpoint,
    Commit,
    CommittedEntry,
    NewView,
    Prepare,
    PreparedCert,
    PrePrepare,
    StateReply,
    StateRequest,
    ViewChange,
    decode_message,
)
from medchain.consensus.persist import (
    SlotRecord,
    StableRecord,
    ViewRecord,
    decode_record,
    encode_record,
)
from medchain.consensus.verify import Ed25519Verifier, verify_message
from medchain.node.consensus.chain import propose_block
from medchain.node.consensus.validation import block_digest, decode_tx_batch, encode_tx_batch
from medchain.node.net.framing import FrameReader, FrameTooLarge, encode_frame
from medchain.node.records.wire import (
    FetchItem,
    FetchReply,
    FetchRequest,
    decode_frame,
    open_payload,
)
from medchain.node.records.wire import sealed_payload as make_sealed
from medchain.node.rpc.connection import Connection
from medchain.node.rpc.server import RpcServer
from medchain.storage.block import Block, BlockHeader, CommitCertificate
from medchain.storage.codec import DecodeError
from medchain.storage.crypto import seal_to
from medchain.storage.evidence import Evidence, build_evidence, verify_evidence
from medchain.storage.fhirdoc import Disclosure, FhirError, canonical_json, disclose
from medchain.storage.genesis import Genesis, GenesisError
from medchain.storage.ledger import Ledger
from medchain.storage.signed_query import sign_query, verify_query
from medchain.storage.state import TxResult
from medchain.storage.tx import Transaction
from tests.fuzz import http_target
from tests.helpers import Consortium


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], Any]
    typed: tuple[type[BaseException], ...]
    samples: Callable[[], list[bytes]]
    text: bool = False  # inputs are lines of text (JSON)
    # A hypothesis strategy of inputs shaped for this target, beside the generic ones.
    strategy: Callable[[], Any] | None = None


@cache
def world() -> dict[str, Any]:
    """One small consortium with a block, a certificate and consensus messages."""
    c = Consortium.make()
    ledger = Ledger.in_memory(c.genesis)
    txs = [
        c.tx(c.admin_keys[i % 4], args={"key": "k", "value": "v" * i}).encode() for i in range(3)
    ]
    block = propose_block(ledger, txs, 10, c.node_keys[0].public_key)
    cert = c.certify(block)
    chain = c.chain_id
    d = block.hash

    def sign(m: Any, i: int) -> Any:
        return m.signed(chain, c.node_keys[i].sign)

    pp = sign(PrePrepare(0, 1, 10, d, block.encode(), 0), 0)
    prepares = tuple(sign(Prepare(0, 1, d, i), i) for i in (1, 2))
    commits = tuple(sign(Commit(0, 1, d, i), i) for i in (0, 1, 2))
    cps = tuple(sign(Checkpoint(10, bytes(32), i), i) for i in (0, 1, 2))
    vc = sign(ViewChange(1, 10, bytes(32), cps, 1, commits, (PreparedCert(pp, prepares),), 1), 1)
    nv = sign(NewView(1, (vc, vc, vc), (pp,), 1), 1)
    reply = sign(StateReply(1, (CommittedEntry(1, block.encode(), commits),), 2), 2)
    messages = [pp, *prepares, commits[0], cps[0], vc, nv, sign(StateRequest(1, 0, 3), 3), reply]
    return {
        "c": c,
        "txs": txs,
        "block": block,
        "cert": cert,
        "messages": [m.encode() for m in messages],
        "records": [
            encode_record(ViewRecord(3, False)),
            encode_record(SlotRecord(1, pp, prepares)),
            encode_record(StableRecord(10, bytes(32), cps)),
        ],
        "verifier": Ed25519Verifier(c.genesis.validators.keys),
    }


# -- p2p frames and consensus ------------------------------------------------------------


def _frames(data: bytes) -> None:
    reader = FrameReader(4096)
    for i in range(0, len(data), 7):  # arbitrary chunking
        reader.feed(data[i : i + 7])


def _consensus(data: bytes) -> None:
    m = decode_message(data)
    w = world()
    why = verify_message(m, w["c"].chain_id, w["verifier"])
    assert why is None or isinstance(why, str)
    assert m.encode() == data, "accepted a non-canonical encoding"
    block_digest(data)


def _digest(data: bytes) -> None:
    assert len(block_digest(data)) == 32


def _tx_batch(data: bytes) -> None:
    out = decode_tx_batch(data, 64 * 1024)
    assert encode_tx_batch(out) == data


def _roundtrip(decode: Callable[[bytes], Any]) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        obj = decode(data)
        assert obj.encode() == data, "accepted a non-canonical encoding"

    return run


# -- records, evidence, proofs -------------------------------------------------------------


def _records_frame(data: bytes) -> None:
    f = decode_frame(data)
    assert f.encode() == data


def _sealed(data: bytes) -> None:
    """A fetched record: a sealed box to this node, then the payload inside."""
    c = world()["c"]
    try:
        inner = c.node_keys[1].unseal(data)
    except CryptoError:
        inner = data
    open_payload(inner)


def _evidence(data: bytes) -> None:
    v = verify_evidence(data)
    assert isinstance(v.ok, bool)
    try:
        ev = Evidence.decode(data)
    except DecodeError:
        return
    assert ev.encode() == data


def _disclosure(data: bytes) -> None:
    try:
        doc = json.loads(data.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return  # the CLI reports unreadable JSON before this point
    d = Disclosure.from_json(doc)
    assert isinstance(d.verify(bytes(32)), bool)


def _persist(data: bytes) -> None:
    r = decode_record(data)
    assert encode_record(r) == data


def _genesis(data: bytes) -> None:
    g = Genesis.decode(data)
    assert g.encode() == data


# -- text: FHIR import lines, resources over RPC, JSON-RPC lines ----------------------------


FHIR_DIR = Directory(encounter_org={"e1": {"display": "A"}, "e2": {"display": "B"}})
FHIR_MAP = ProviderMap({"A": "org-0"})


def _fhir_line(data: bytes) -> None:
    out = classify_line(
        data.decode("utf-8", "replace"), {"p1": "pseudo-1"}, FHIR_DIR, FHIR_MAP, 365
    )
    if not isinstance(out, str):
        org, resource, pseudonym = out
        canonical_json(resource)  # it will be stored: it must be canonical JSON


def _fhir_resource(data: bytes) -> None:
    from medchain.node.records.store import describe_record

    try:
        resource = json.loads(data.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return  # the RPC layer answers "parse error" (see the rpc target)
    describe_record(resource, "org-0")
    describe_record(resource, "org-0", resource.get("id") if isinstance(resource, dict) else None)


def _signed_query(data: bytes) -> None:
    try:
        doc = json.loads(data.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return
    args = doc.get("args") if isinstance(doc, dict) else doc
    verify_query(doc, "test-chain", "records", "timeline", args, 1_700_000_000_000)


class _Sink:
    """Stands in for the socket: collects what the server answers."""

    def __init__(self) -> None:
        self.out = bytearray()

    async def send_all(self, data: bytes) -> None:
        self.out += data


@cache
def rpc_server() -> RpcServer:
    """The node's real RPC methods on a driver that is not running."""
    from medchain.node.records.service import RecordService
    from medchain.node.rpc.chain_api import register
    from medchain.node.rpc.records_api import register_records
    from medchain.storage.vault import Vault
    from tests.rpcnode import one_node_driver

    driver = one_node_driver(world()["c"])
    server = RpcServer(Path(tempfile.gettempdir()) / "medchain-fuzz-unused.sock")
    register(server, driver)
    register_records(server, RecordService(driver, Vault.in_memory(bytes(32)), 0.2))
    return server


def _rpc_line(data: bytes) -> None:
    server = rpc_server()

    async def one() -> bytes:
        sink = _Sink()
        conn = Connection(server, sink)  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            conn.nursery = nursery
            # longer than any wait a request may ask for (tx.wait caps at 120 s)
            with trio.fail_after(300):
                await conn._process_line(data.replace(b"\n", b" "))
            nursery.cancel_scope.cancel()
        return bytes(sink.out)

    # virtual time: a request that waits (tx.wait on a tx that never commits)
    # times out at once instead of for real; real hangs still fail after 300 s
    out = trio.run(one, clock=MockClock(autojump_threshold=0.05))
    if not out:
        return  # a notification gets no answer
    for line in out.splitlines():
        reply = json.loads(line)
        for r in reply if isinstance(reply, list) else [reply]:
            assert r.get("jsonrpc") == "2.0", r
            assert ("result" in r) != ("error" in r), r
            if "error" in r:
                assert r["error"]["code"] != -32603, f"internal error: {r}"


# -- samples -------------------------------------------------------------------------------


def _s_tx() -> list[bytes]:
    return [world()["txs"][0]]


def _s_block() -> list[bytes]:
    return [world()["block"].encode()]


def _s_header() -> list[bytes]:
    return [world()["block"].header_bytes]


def _s_cert() -> list[bytes]:
    return [world()["cert"].encode()]


def _s_messages() -> list[bytes]:
    return list(world()["messages"])


def _s_frames() -> list[bytes]:
    return [b"".join(encode_frame(m) for m in world()["messages"][:3])]


def _s_tx_batch() -> list[bytes]:
    return [encode_tx_batch(world()["txs"])]


def _s_records_frame() -> list[bytes]:
    w = world()
    return [
        FetchRequest(bytes(16), w["txs"][0]).encode(),
        FetchReply(
            bytes(16), bytes(32), (FetchItem("rec-1", "released", "", b"sealed"),), ""
        ).encode(),
    ]


def _s_sealed() -> list[bytes]:
    c = world()["c"]
    payload = make_sealed(b'{"resourceType":"Condition"}', bytes(32))
    return [seal_to(c.node_keys[1].public_key, payload), payload]


RESOURCE = {
    "resourceType": "Condition",
    "id": "c1",
    "subject": {"reference": "urn:uuid:p1"},
    "encounter": {"reference": "urn:uuid:e1"},
    "onsetDateTime": "2020-01-02T03:04:05+00:00",
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
}


def _s_evidence() -> list[bytes]:
    from tests.chain import Chain

    c = Chain()
    _, patient = c.patient()
    doc, _ = c.practitioner("hospital-a")
    c.anchor(doc, "hospital-a", "rec-1", patient)
    c.tx(c.admins["hospital-a"], "kv", "put", {"key": "k", "value": b"v"})
    a = c.q("records", "get", {"record_id": "rec-1"})
    return [build_evidence(c.ledger, a["height"], a["tx_id"], "rec-1", 1).encode()]


def _s_disclosure() -> list[bytes]:
    d = disclose("rec-1", 1, RESOURCE, bytes(32), "code")
    return [json.dumps(d.to_json()).encode()]


def _s_fhir() -> list[bytes]:
    return [
        json.dumps(RESOURCE).encode(),
        json.dumps({**RESOURCE, "resourceType": "Encounter", "id": "e1"}).encode(),
    ]


def _s_query() -> list[bytes]:
    c = world()["c"]
    args = {"patient": "pseudo-1"}
    auth = sign_query(c.admin_keys[0], "test-chain", "records", "timeline", args, 1_700_000_000_000)
    return [json.dumps({**auth, "args": args}).encode()]


def _s_rpc() -> list[bytes]:
    reqs: list[Any] = [
        {"jsonrpc": "2.0", "id": 1, "method": "node.status"},
        {"jsonrpc": "2.0", "id": 2, "method": "block.get", "params": {"height": 0}},
        {"jsonrpc": "2.0", "id": 3, "method": "tx.get", "params": {"tx_id": "00" * 32}},
        {
            "jsonrpc": "2.0",
            "id": 4,
            "method": "state.query",
            "params": {"contract": "registry", "method": "orgs", "args": {}},
        },
        {"jsonrpc": "2.0", "id": 5, "method": "tx.submit", "params": {"tx": "AAAA"}},
        {
            "jsonrpc": "2.0",
            "id": 6,
            "method": "records.put",
            "params": {"items": [{"resource": RESOURCE, "patient": "pseudo-1"}]},
        },
        {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "records.timeline",
            "params": {"patient": "pseudo-1"},
        },
        {
            "jsonrpc": "2.0",
            "id": 8,
            "method": "events.subscribe",
            "params": {"filter": {"contract": "records"}},
        },
        {"jsonrpc": "2.0", "id": 9, "method": "evidence.get", "params": {"record_id": "rec-1"}},
        {
            "jsonrpc": "2.0",
            "id": 10,
            "method": "tx.wait",
            "params": {"tx_id": "00" * 32, "timeout_ms": 1},
        },
    ]
    return [json.dumps(r).encode() for r in reqs] + [json.dumps(reqs[:3]).encode()]


TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        Target("p2p-frames", _frames, (FrameTooLarge,), _s_frames),
        Target("consensus-message", _consensus, (DecodeError,), _s_messages),
        Target("block-digest", _digest, (), _s_block),
        Target("tx-batch", _tx_batch, (DecodeError,), _s_tx_batch),
        Target("transaction", _roundtrip(Transaction.decode), (DecodeError,), _s_tx),
        Target("block", _roundtrip(Block.decode), (DecodeError,), _s_block),
        Target("block-header", _roundtrip(BlockHeader.decode), (DecodeError,), _s_header),
        Target("certificate", _roundtrip(CommitCertificate.decode), (DecodeError,), _s_cert),
        Target(
            "tx-result",
            _roundtrip(TxResult.decode),
            (DecodeError,),
            lambda: [TxResult(0, {"a": [1, b"x"]}).encode()],
        ),
        Target(
            "genesis",
            _genesis,
            (DecodeError, GenesisError),
            lambda: [world()["c"].genesis.encode()],
        ),
        Target("records-frame", _records_frame, (DecodeError,), _s_records_frame),
        Target("sealed-record", _sealed, (DecodeError,), _s_sealed),
        Target("consensus-record", _persist, (DecodeError,), lambda: list(world()["records"])),
        Target("evidence-file", _evidence, (), _s_evidence),
        Target("disclosure-proof", _disclosure, (FhirError,), _s_disclosure, text=True),
        Target("fhir-import-line", _fhir_line, (), _s_fhir, text=True),
        Target("fhir-resource-rpc", _fhir_resource, (FhirError,), _s_fhir, text=True),
        Target("signed-query", _signed_query, (ValueError,), _s_query, text=True),
        Target("json-rpc-line", _rpc_line, (), _s_rpc, text=True),
        Target(
            "http-request",
            http_target.fuzz_input,
            (),
            http_target.samples,
            strategy=http_target.inputs,
        ),
    ]
}


class Finding(AssertionError):
    """An input a target did not handle: anything but a return or its typed rejection."""


def accepts(target: Target, data: bytes) -> bool:
    """True if the target took ``data``, False if it raised its typed rejection;
    anything else raises a Finding that describes it (the error chained)."""
    try:
        target.run(data)
    except target.typed:
        return False
    except Exception as exc:
        raise Finding(
            f"{target.name}: {type(exc).__name__}: {str(exc)[:300]} on {data[:200]!r}"
        ) from exc
    return True


def check(target: Target, data: bytes) -> str | None:
    """None if the target handled ``data`` (returned or raised its typed error),
    else a description of the finding."""
    try:
        accepts(target, data)
    except Finding as finding:
        return str(finding)
    return None
