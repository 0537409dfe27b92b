"""Hostile peers and clients against a real consortium: an outsider's key, a
member sending garbage and forged messages, garbage on the RPC socket."""

from __future__ import annotations

import json
import signal
import socket
import time

import pytest
import trio

from medchain.consensus.messages import Commit, Prepare
from medchain.node.net.p2p import Libp2pTransport
from medchain.node.net.p2p_state import P2PConfig
from medchain.node.net.transport import CHANNEL_CONSENSUS, CHANNEL_SYNC, CHANNEL_TXS
from medchain.storage.crypto import Signer
from medchain.storage.keyfile import load_key
from tests.e2e.harness import cluster, free_ports

pytestmark = pytest.mark.e2e


def test_outsider_cannot_connect_or_inject() -> None:
    with cluster(4) as c:
        outsider = Signer.generate()
        members = list(c.genesis.validators.keys)

        async def attack() -> set[int]:
            # It pretends to be validator 3 but holds another key: Noise proves who it is.
            t = Libp2pTransport(
                outsider,
                3,
                f"/ip4/127.0.0.1/tcp/{free_ports(1)[0]}",
                c.peer_addresses(3),
                members,
                P2PConfig(connect_timeout_s=2),
            )
            t.member_ids[
                t._L["ID"].from_pubkey(t._L["Ed25519PublicKey"].from_bytes(outsider.public_key))
            ] = 3
            async with trio.open_nursery() as n:
                await n.start(t.run)
                for _ in range(20):
                    for p in (0, 1, 2):
                        t.send(
                            p, CHANNEL_CONSENSUS, Prepare(0, 1, bytes(32), 3, bytes(64)).encode()
                        )
                    await trio.sleep(0.2)
                connected = t.connected()
                n.cancel_scope.cancel()
            return connected

        assert trio.run(attack) == set()
        ids = [c.submit(k % 4, k % 4, f"after-outsider-{k}") for k in range(12)]
        c.wait_committed(ids, [0, 1, 2, 3])
        logs = c.log_text(0) + c.log_text(1)
        assert "not a member of this consortium" in logs
        assert all(c.status(i)["peers"].__len__() == 3 for i in range(4))


def test_member_sending_garbage_and_forgeries_is_ignored_and_logged() -> None:
    with cluster(4) as c:
        c.signal(3, signal.SIGKILL)  # the regulator's node goes rogue: its key, our frames
        key = load_key(c.dir / "regulator" / "node.key")
        members = list(c.genesis.validators.keys)
        chain = c.genesis.chain_id

        async def attack() -> None:
            t = Libp2pTransport(
                key,
                3,
                c.nodes[3].config.listen,
                c.peer_addresses(3),
                members,
                P2PConfig(connect_timeout_s=2),
            )
            other = Signer.generate()
            async with trio.open_nursery() as n:
                await n.start(t.run)
                with trio.fail_after(20):
                    while len(t.connected()) < 3:
                        await trio.sleep(0.05)
                for _ in range(30):
                    for p in (0, 1, 2):
                        t.send(p, CHANNEL_CONSENSUS, b"\x93garbage that is not msgpack")
                        t.send(
                            p,
                            CHANNEL_CONSENSUS,
                            Prepare(0, 5, bytes(32), 3).signed(chain, other.sign).encode(),
                        )  # forged signature
                        t.send(
                            p,
                            CHANNEL_CONSENSUS,
                            Commit(0, 5, bytes(32), 1).signed(chain, key.sign).encode(),
                        )  # claims to be replica 1
                        t.send(p, CHANNEL_TXS, b"\x91\xa3not-a-tx")
                        t.send(p, CHANNEL_SYNC, b"\xc1")
                    await trio.sleep(0.05)
                # A frame header announcing 3 GB: refused before anything is buffered.
                L = t._L
                stream = await t.host.new_stream(
                    t.peer_ids[0], [L["TProtocol"]("/medchain/consensus/1")]
                )
                await stream.write(b"\xc0\x00\x00\x00" + b"x" * 100)
                await trio.sleep(1)
                n.cancel_scope.cancel()

        t0 = time.monotonic()
        with c.client(0) as cl:
            before = cl.status()["height"]
        trio.run(attack)
        # The honest three kept committing throughout, and still do.
        ids = [c.submit(k % 3, k % 3, f"after-garbage-{k}") for k in range(12)]
        c.wait_committed(ids, [0, 1, 2])
        assert min(c.heights([0, 1, 2])) > before
        assert time.monotonic() - t0 < 120
        logs = c.log_text(0)
        assert '"offender":"regulator"' in logs
        assert "undecodable consensus message" in logs
        assert "bad signature on Prepare" in logs
        assert "claims to be from replica 1" in logs
        assert "oversized frame" in logs
        with c.client(0) as cl:
            assert cl.call("node.metrics")["offenses"].get("regulator", 0) > 0
        c.start(3)  # the real regulator comes back and catches up
        c.wait_height(max(c.heights([0, 1, 2])), [3], timeout=60)
        c.assert_consistent()


def _raw(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    return s


def _read_json(s: socket.socket) -> object:
    buf = b""
    while b"\n" not in buf:
        data = s.recv(65536)
        if not data:
            return None
        buf += data
    return json.loads(buf.split(b"\n", 1)[0])


def test_rpc_garbage_never_disturbs_a_running_node() -> None:
    with cluster(4) as c:
        path = str(c.nodes[1].config.rpc_socket)
        s = _raw(path)
        for line, code in [
            (b"\x00\x01\x02 binary junk\n", -32700),
            (b'{"jsonrpc": "2.0", "id": 1, "method": "nope"}\n', -32601),
            (b'{"jsonrpc": "2.0", "id": 2, "method": "tx.submit", "params": {"tx": 17}}\n', -32602),
            (b"[]\n", -32600),
            (b"42\n", -32600),
        ]:
            s.sendall(line)
            r = _read_json(s)
            assert isinstance(r, dict) and r["error"]["code"] == code, (line, r)
        big = _raw(path)
        big.sendall(b'{"x":"' + b"a" * (1024 * 1024 + 100))
        r = _read_json(big)
        assert isinstance(r, dict) and r["error"]["code"] == -32600
        half = _raw(path)
        half.sendall(b'{"jsonrpc":"2.0","id":1,"me')
        half.close()
        for _ in range(50):
            abrupt = _raw(path)
            abrupt.sendall(b'{"jsonrpc":"2.0","id":1,"method":"node.status"}\n')
            abrupt.close()  # gone before the answer
        ids = [c.submit(1, 1, f"rpc-after-{k}") for k in range(5)]
        c.wait_committed(ids, [0, 1, 2, 3])
        s.sendall(b'{"jsonrpc":"2.0","id":9,"method":"node.status"}\n')
        r = _read_json(s)
        assert isinstance(r, dict) and r["result"]["org"] == "hospital-b"
        import os
        import stat

        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
