"""Making the libp2p host: libp2p's names (imported lazily), Noise with a
membership gate, and the check that the listen port is free.

What depends on py-libp2p 0.8's API for building a host stands here, apart
from the transport's logic in ``node.net.p2p`` and the modules it is made of.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import multiaddr
import nacl.signing

from medchain.node.net.p2p_compat import recycle_inbound_slots


def libp2p_imports() -> dict[str, Any]:
    """libp2p is slow to import; only the daemon pays for it."""
    import libp2p.network.swarm as swarm_mod
    from libp2p import new_host
    from libp2p.abc import INotifee
    from libp2p.crypto.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    from libp2p.crypto.keys import KeyPair
    from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
    from libp2p.custom_types import TProtocol
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import PeerInfo
    from libp2p.security.exceptions import HandshakeFailure
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
    from libp2p.security.noise.transport import Transport as NoiseTransport
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
    from libp2p.stream_muxer.yamux.yamux import Yamux

    return {
        "swarm_mod": swarm_mod,
        "new_host": new_host,
        "INotifee": INotifee,
        "Ed25519PrivateKey": Ed25519PrivateKey,
        "Ed25519PublicKey": Ed25519PublicKey,
        "KeyPair": KeyPair,
        "create_x25519_key_pair": create_x25519_key_pair,
        "TProtocol": TProtocol,
        "ID": ID,
        "PeerInfo": PeerInfo,
        "HandshakeFailure": HandshakeFailure,
        "NOISE_PROTOCOL_ID": NOISE_PROTOCOL_ID,
        "NoiseTransport": NoiseTransport,
        "YAMUX_PROTOCOL_ID": YAMUX_PROTOCOL_ID,
        "Yamux": Yamux,
    }


def peer_id_of(public_key: bytes) -> Any:
    L = libp2p_imports()
    return L["ID"].from_pubkey(L["Ed25519PublicKey"].from_bytes(public_key))


def make_host(L: dict[str, Any], seed: bytes, check_member: Callable[[Any, str], None]) -> Any:
    """A host with the Ed25519 identity of ``seed``: Noise only, Yamux, and each
    inbound connection giving its slot back when it closes (node.net.p2p_compat).
    ``check_member(secure_conn, direction)`` raises to refuse the peer."""
    priv = L["Ed25519PrivateKey"](nacl.signing.SigningKey(seed))
    kp = L["KeyPair"](priv, priv.get_public_key())

    base: Any = L["NoiseTransport"]

    async def secure_inbound(self: Any, conn: Any) -> Any:
        sc = await base.secure_inbound(self, conn)
        check_member(sc, "inbound")
        return sc

    async def secure_outbound(self: Any, conn: Any, peer_id: Any) -> Any:
        sc = await base.secure_outbound(self, conn, peer_id)
        check_member(sc, "outbound")
        return sc

    # Noise, refusing non-members right after the handshake authenticates them.
    allowlist_noise = type(
        "AllowlistNoise",
        (base,),
        {"secure_inbound": secure_inbound, "secure_outbound": secure_outbound},
    )
    noise = allowlist_noise(kp, noise_privkey=L["create_x25519_key_pair"]().private_key)
    host = L["new_host"](
        key_pair=kp,
        sec_opt={L["NOISE_PROTOCOL_ID"]: noise},
        muxer_opt={L["TProtocol"](L["YAMUX_PROTOCOL_ID"]): L["Yamux"]},
    )
    recycle_inbound_slots(host.get_network())
    return host


def probe_port(listen: str) -> None:
    """libp2p binds with SO_REUSEPORT and ignores bind errors: check the port ourselves."""
    ma = multiaddr.Multiaddr(listen)
    host = ma.value_for_protocol("ip4")
    port = int(ma.value_for_protocol("tcp"))
    if port == 0:
        return
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine, a listener is not
    try:
        s.bind((host, port))
        s.listen(1)
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot listen on {listen}: {exc.strerror} (is another node using it?)",
        ) from None
    finally:
        s.close()
