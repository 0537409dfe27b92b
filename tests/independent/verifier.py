"""Independent verifier of medchain evidence certificates (`medchain-evidence/v2`).

Written from docs/evidence.md alone plus public standards (MessagePack, RFC 9162,
RFC 8032, RFC 8785); standard library and PyNaCl only. Command line:
    python -m tests.independent.verifier FILE [--genesis-hash HEX] [--content FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey


class Fail(Exception):
    """A check failed; the message says what."""


def H(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


# ------------------------------------------------------------ MessagePack subset (§1.1)

MAX_DEPTH = 64  # garbage like 91 91 91 ... must not exhaust the stack


def unpack(data: bytes, what: str = "value", canonical: bool = True) -> Any:
    """Decode exactly one value, by default insisting on the canonical bytes (medchain
    writes only those). Map keys must be unique strings, so that two readers can never
    read different facts out of the same signed bytes."""
    try:
        value, pos = _dec(data, 0, 0)
        if pos != len(data):
            raise Fail(f"{len(data) - pos} trailing bytes")
    except Fail as e:
        raise Fail(f"{what} is not valid MessagePack ({e})") from None
    if canonical and pack(value) != data:
        raise Fail(f"{what} is not canonically encoded")
    return value


def _take(d: bytes, pos: int, n: int) -> tuple[bytes, int]:
    if pos + n > len(d):
        raise Fail("truncated")
    return d[pos : pos + n], pos + n


def _num(d: bytes, pos: int, size: int, signed: bool = False) -> tuple[int, int]:
    return int.from_bytes(_take(d, pos, size)[0], "big", signed=signed), pos + size


def _dec(d: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise Fail("nested too deeply")
    t, pos = _num(d, pos, 1)
    if t <= 0x7F or t >= 0xE0:  # positive / negative fixint
        return (t if t <= 0x7F else t - 0x100), pos
    if t <= 0x9F:  # fixmap 0x80-0x8f, fixarray 0x90-0x9f
        return _items(d, pos, t & 0x0F, depth, is_map=t <= 0x8F)
    if t <= 0xBF or 0xD9 <= t <= 0xDB:  # fixstr, str 8/16/32
        n, pos = (t & 0x1F, pos) if t <= 0xBF else _num(d, pos, 1 << (t - 0xD9))
        raw, pos = _take(d, pos, n)
        try:
            return raw.decode("utf-8"), pos
        except UnicodeDecodeError:
            raise Fail("string is not UTF-8") from None
    if t in (0xC0, 0xC2, 0xC3):
        return {0xC0: None, 0xC2: False, 0xC3: True}[t], pos
    if 0xC4 <= t <= 0xC6:  # bin 8/16/32
        n, pos = _num(d, pos, 1 << (t - 0xC4))
        return _take(d, pos, n)
    if 0xCC <= t <= 0xD3:  # uint 8..64, int 8..64
        return _num(d, pos, 1 << ((t - 0xCC) % 4), signed=t >= 0xD0)
    if 0xDC <= t <= 0xDF:  # array 16/32, map 16/32
        n, pos = _num(d, pos, 2 if t % 2 == 0 else 4)
        return _items(d, pos, n, depth, is_map=t >= 0xDE)
    raise Fail(f"type byte 0x{t:02x} is not allowed (float, ext or unused)")


def _items(d: bytes, pos: int, n: int, depth: int, is_map: bool) -> tuple[Any, int]:
    items: list[Any] = []  # a huge claimed n stops at the first missing byte ("truncated")
    for _ in range(2 * n if is_map else n):
        item, pos = _dec(d, pos, depth + 1)
        items.append(item)
    if not is_map:
        return items, pos
    keys = items[0::2]
    if not all(isinstance(k, str) for k in keys) or len(set(keys)) != n:
        raise Fail("map keys are not unique strings")
    return dict(zip(keys, items[1::2], strict=False)), pos


def _head(n: int, fix: int | None, fix_limit: int, first: int, sizes: tuple[int, ...]) -> bytes:
    """Length header: the fix form when allowed, else the shortest sized form."""
    if fix is not None and n < fix_limit:
        return bytes([fix + n])
    for i, size in enumerate(sizes):
        if n < 1 << (8 * size):
            return bytes([first + i]) + n.to_bytes(size, "big")
    raise ValueError("too long")


def pack(x: Any) -> bytes:
    """The canonical encoding of §1.1's table."""
    if x is None or isinstance(x, bool):  # bool before int: bool is an int subclass
        return {None: b"\xc0", False: b"\xc2", True: b"\xc3"}[x]
    if isinstance(x, int):
        if -32 <= x <= 0x7F:
            return bytes([x & 0xFF])
        for i in range(4):  # shortest of uint8..64 (x > 0) or int8..64 (x < 0)
            size = 1 << i
            if (x < 1 << (8 * size)) if x > 0 else (x >= -(1 << (8 * size - 1))):
                return bytes([(0xCC if x > 0 else 0xD0) + i]) + x.to_bytes(
                    size, "big", signed=x < 0
                )
        raise ValueError("integer out of range")
    if isinstance(x, str):
        raw = x.encode("utf-8")
        return _head(len(raw), 0xA0, 32, 0xD9, (1, 2, 4)) + raw
    if isinstance(x, bytes):
        return _head(len(x), None, 0, 0xC4, (1, 2, 4)) + x
    if isinstance(x, list):
        return _head(len(x), 0x90, 16, 0xDC, (2, 4)) + b"".join(map(pack, x))
    if isinstance(x, dict):  # keys in ascending order of their UTF-8 bytes
        keys = sorted(x, key=lambda k: k.encode("utf-8"))
        return _head(len(x), 0x80, 16, 0xDE, (2, 4)) + b"".join(pack(k) + pack(x[k]) for k in keys)
    raise ValueError(f"cannot encode {type(x).__name__}")


# ------------------------------------------------------------ Merkle trees (§1.2)


def leaf_hash(x: bytes) -> bytes:
    return H(b"\x00" + x)


def node_hash(left: bytes, right: bytes) -> bytes:
    return H(b"\x01" + left + right)


def verify_inclusion(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2 inclusion proof of leaf data `leaf` at `index` of `size` leaves."""
    if index >= size or any(len(p) != 32 for p in path):
        return False
    fn, sn, r = index, size - 1, leaf_hash(leaf)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn != 0 and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


# ------------------------------------------------------------ RFC 8785 canonical JSON (§1.9)


def _es_number(x: float) -> str:
    """ECMAScript Number-to-String, which RFC 8785 §3.2.2.3 prescribes."""
    if not math.isfinite(x):
        raise ValueError("NaN/Infinity")
    if x <= 0:
        return "0" if x == 0 else "-" + _es_number(-x)
    mant, _, exp = repr(x).partition("e")  # repr: shortest digits that round-trip
    ip, _, fp = mant.partition(".")
    s = ip + fp
    zeros = len(s) - len(s.lstrip("0"))
    digits = s[zeros:].rstrip("0")
    k, n = len(digits), len(ip) - zeros + int(exp or 0)  # x = 0.digits * 10**n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    e = n - 1
    return (
        digits[0]
        + ("." + digits[1:] if k > 1 else "")
        + "e"
        + ("+" if e >= 0 else "-")
        + str(abs(e))
    )


def _jcs(v: Any) -> str:
    if v is None or isinstance(v, bool):
        return json.dumps(v)
    if isinstance(v, (int, float)):  # RFC 8785 numbers are IEEE doubles
        return _es_number(float(v))
    if isinstance(v, str):  # Python's minimal escaping equals RFC 8785 §3.2.2.2
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ",".join(map(_jcs, v)) + "]"
    keys = sorted(v, key=lambda k: k.encode("utf-16-be"))  # sorted by UTF-16 code units
    return "{" + ",".join(_jcs(k) + ":" + _jcs(v[k]) for k in keys) + "}"


def _unique(items: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({k for k, _ in items}) != len(items):  # RFC 8785 requires I-JSON
        raise ValueError("duplicate key")
    return dict(items)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def canonical_json(content: bytes) -> bytes:
    value = json.loads(
        content.decode("utf-8"), object_pairs_hook=_unique, parse_constant=_no_constant
    )
    return _jcs(value).encode("utf-8")  # a lone surrogate fails here, as it must


# ------------------------------------------------------------ typed structures

KINDS: dict[
    str, Callable[[Any], bool]
] = {  # the types of §1.5-§2; a kind "32" or "0|64" is binary of one of those sizes
    "uint": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "str": lambda v: isinstance(v, str),
    "bin": lambda v: isinstance(v, bytes),
    "array": lambda v: isinstance(v, list),
    "map": lambda v: isinstance(v, dict),
    "any": lambda v: True,
    "path": lambda v: isinstance(v, list) and all(isinstance(p, bytes) and len(p) == 32 for p in v),
}


def _typed(v: Any, kind: str, what: str) -> Any:
    ok = (
        KINDS[kind](v) if kind in KINDS else isinstance(v, bytes) and str(len(v)) in kind.split("|")
    )
    if not ok:
        raise Fail(f"{what} is not {kind if kind in KINDS else 'bin ' + kind}")
    return v


def _fields(v: Any, what: str, schema: str, domain: str | None = None) -> dict[str, Any]:
    """Decode (if bytes) an array whose items `schema` ("name:kind ...") names and types."""
    spec = [item.split(":") for item in schema.split()]
    if isinstance(v, bytes):
        v = unpack(v, what)
    if domain is not None:
        if not isinstance(v, list) or v[:1] != [domain]:
            raise Fail(f"{what} does not start with {domain!r}")
        v = v[1:]
    if not isinstance(v, list) or len(v) != len(spec):
        raise Fail(f"{what} is not an array of {len(spec) + (domain is not None)}")
    return {
        name: _typed(x, kind, f"{what} {name}") for (name, kind), x in zip(spec, v, strict=False)
    }


FILE = (
    "genesis:bin header:bin certificate:bin next_header:bin next_certificate:bin "
    "receipt:bin tx_index:uint tx_count:uint tx_path:path receipt_path:path event:bin "
    "event_index:uint event_path:path tx:bin"
)
GENESIS = (
    "chain_id:str genesis_time_ms:uint organizations:array consensus_params:any chaincodes:any"
)
ORG = "org_id:str name:str role:str node_key:32 admin_key:32"
HEADER = (
    "chain_id:str height:uint prev_hash:32 timestamp_ms:uint tx_root:32 state_root:32 "
    "results_root:32 validator_set_hash:32 proposer:32"
)
CERT = "seq:uint view:uint block_hash:32 votes:array"
VOTE = "validator_index:uint signature:64"
RECEIPT = (
    "tx_id:32 sender:0|32 contract:str method:str code:uint data_hash:32 events_root:32 "
    "event_count:uint"
)
EVENT = "contract:str name:str attrs:map"
TX = "chain_id:str sender:32 nonce:uint contract:str method:str args:any signature:64"
ANCHOR = (
    "record_id:str version:uint supersedes:uint patient:str custodian:str category:str "
    "clinical_year:uint content_hash:32 fields_root:32 author:32 author_id:str author_sig:0|64"
)
ANCHOR_SIGNED = (
    "record_id",
    "version",
    "patient",
    "custodian",
    "category",
    "clinical_year",
    "content_hash",
    "fields_root",
)  # what the author signs (§1.9)


def _sig_ok(key: bytes, message: bytes, sig: bytes) -> bool:
    try:
        VerifyKey(key).verify(message, sig)
        return True
    except (CryptoError, ValueError, TypeError):  # bad signature or malformed key
        return False


# ------------------------------------------------------------ verification, §3 step by step


def _commit(
    cert: bytes, header: bytes, what: str, chain_id: str, keys: list[bytes], quorum: int
) -> str:
    """§1.6: does the certificate prove this header?"""
    c = _fields(cert, f"{what} certificate", CERT)
    if c["block_hash"] != H(header):
        raise Fail(f"{what} certificate: block_hash is not H({what})")
    message = pack(["medchain/commit/v1", chain_id, c["view"], c["seq"], c["block_hash"]])
    seen: set[int] = set()
    for vote in c["votes"]:
        i, sig = _fields(vote, f"{what} certificate vote", VOTE).values()
        if i >= len(keys) or i in seen:
            raise Fail(f"{what} certificate: validator index {i} out of range or repeated")
        if not _sig_ok(keys[i], message, sig):
            raise Fail(f"{what} certificate: signature of validator {i} does not verify")
        seen.add(i)
    if len(seen) < quorum:
        raise Fail(f"{what} certificate: {len(seen)} signatures, below the quorum of {quorum}")
    return (
        f"{len(seen)} of {len(keys)} validators (quorum {quorum}), seq {c['seq']}, view {c['view']}"
    )


def _verify(
    data: bytes, expected: bytes | None, content: bytes | None, log: list[str], at: list[int]
) -> dict[str, Any]:
    at[0] = 1  # the file
    top = unpack(data, "file")
    if isinstance(top, list) and top[:1] == ["medchain-evidence/v1"]:
        raise Fail("medchain-evidence/v1 proves inclusion only, not success: refused")
    f = _fields(top, "file", FILE, domain="medchain-evidence/v2")
    log.append("1. file: medchain-evidence/v2")
    at[0] = 2  # the genesis hash
    G = H(f["genesis"])
    if expected is not None and expected != G:
        raise Fail(f"genesis hash {G.hex()} is not the expected {expected.hex()}")
    log.append(
        f"2. genesis hash {G.hex()} "
        + (
            "matches the expected one"
            if expected is not None
            else "NOT PINNED: compare it with the consortium's published hash"
        )
    )
    at[0] = 3  # chain id, validator set (every organization, in genesis order), quorum
    g = _fields(f["genesis"], "genesis", GENESIS, domain="medchain/genesis/v1")
    keys = [_fields(o, "genesis organization", ORG)["node_key"] for o in g["organizations"]]
    if not keys or len(set(keys)) != len(keys):  # beyond §3: one key, two seats, two votes
        raise Fail("genesis: no validators, or a node key appears twice")
    chain_id, n = g["chain_id"], len(keys)
    vs_hash = H(pack(["medchain/validators/v1", keys]))
    quorum = (n + (n - 1) // 3) // 2 + 1
    log.append(f"3. genesis: chain {chain_id!r}, {n} validators, quorum {quorum}")
    at[0] = 4  # both headers, each proven by its commit certificate
    hdr, nxt = (
        _fields(f["header"], "header", HEADER),
        _fields(f["next_header"], "next_header", HEADER),
    )
    for what, h, cert in (("header", hdr, "certificate"), ("next_header", nxt, "next_certificate")):
        if h["chain_id"] != chain_id or h["validator_set_hash"] != vs_hash:
            raise Fail(f"{what}: chain_id or validator_set_hash is not the genesis one")
        if h["height"] < 1 or h["proposer"] not in keys:  # beyond §3, from §1.5's table
            raise Fail(f"{what}: height is 0 or the proposer is not a validator")
        summary = _commit(f[cert], f[what], what, chain_id, keys, quorum)
        log.append(f"4. {what} (block {h['height']}) committed by {summary}")
    at[0] = 5  # block h+1 follows block h
    if nxt["height"] != hdr["height"] + 1 or nxt["prev_hash"] != H(f["header"]):
        raise Fail("next_header is not the child of header")
    if hdr["height"] == 1 and hdr["prev_hash"] != G:  # beyond §3, from §1.5: block 1 -> genesis
        raise Fail("header is block 1 but its prev_hash is not the genesis hash")
    log.append(f"5. next_header (block {nxt['height']}) is the child of header")
    at[0] = 6  # the receipt
    r = _fields(f["receipt"], "receipt", RECEIPT, domain="medchain/receipt/v1")
    log.append(f"6. receipt of tx {r['tx_id'].hex()} ({r['contract']}.{r['method']})")
    at[0] = 7  # the transaction id is in block h
    if not verify_inclusion(r["tx_id"], f["tx_index"], f["tx_count"], f["tx_path"], hdr["tx_root"]):
        raise Fail("tx_path does not prove receipt.tx_id under header.tx_root")
    # tx_index / tx_count are covered by nothing signed (other (index, count) pairs can fit
    # the same path), so they are reported as claimed, never as proven facts
    log.append(
        f"7. tx_id is in block {hdr['height']} (claimed position {f['tx_index']} of {f['tx_count']})"
    )
    at[0] = 8  # its receipt, at the same position, is committed by block h+1
    if not verify_inclusion(
        f["receipt"], f["tx_index"], f["tx_count"], f["receipt_path"], nxt["results_root"]
    ):
        raise Fail("receipt_path does not prove the receipt under next_header.results_root")
    log.append("8. receipt is under next_header.results_root at the same position")
    at[0] = 9  # success
    if r["code"] != 0:
        raise Fail(f"receipt code {r['code']}: the transaction failed, which proves nothing")
    log.append("9. receipt code 0: the transaction succeeded")
    at[0] = 10  # the event is one the transaction emitted
    if f["event_index"] >= r["event_count"] or not verify_inclusion(
        f["event"], f["event_index"], r["event_count"], f["event_path"], r["events_root"]
    ):
        raise Fail("event_path does not prove the event under receipt.events_root")
    log.append(f"10. event is event {f['event_index']} of {r['event_count']} of the transaction")
    at[0] = 11  # the anchor event, its attrs exactly those of §1.9
    ev = _fields(f["event"], "event", EVENT)
    if ev["contract"] != "records" or ev["name"] not in ("anchored", "amended"):
        raise Fail("event is not records.anchored or records.amended")
    names = [item.split(":")[0] for item in ANCHOR.split()]
    if sorted(ev["attrs"]) != sorted(names):
        raise Fail("event attrs do not hold exactly the keys of §1.9")
    a = _fields([ev["attrs"][k] for k in names], "event attrs", ANCHOR)
    v, sup = a["version"], a["supersedes"]
    # beyond §3, from §1.9: "anchored" is version 1 superseding 0, "amended" a later version
    if not ((v == 1 and sup == 0) if ev["name"] == "anchored" else (v >= 2 and 1 <= sup < v)):
        raise Fail(f"event {ev['name']} with version {v} superseding {sup}")
    log.append(f"11. event records.{ev['name']}: {a['record_id']!r} version {v}")
    at[0] = 12  # the author
    if a["author_sig"]:
        anchor = pack(["medchain/anchor/v2", chain_id] + [a[k] for k in ANCHOR_SIGNED])
        if not _sig_ok(a["author"], anchor, a["author_sig"]):
            raise Fail("author_sig does not verify under author")
        log.append("12. author_sig verifies under author")
    elif a["author"] != r["sender"]:
        raise Fail("author_sig is empty but author is not receipt.sender")
    else:
        log.append("12. no author_sig: the author is the transaction's sender")
    at[0] = 13  # the transaction itself, when the file carries it
    if f["tx"]:  # not required canonical: §1.7 re-encodes args, so the bytes may not be
        t = _fields(unpack(f["tx"], "tx", canonical=False), "tx", TX)
        if H(f["tx"]) != r["tx_id"] or t["chain_id"] != chain_id:
            raise Fail("tx: its hash is not receipt.tx_id or its chain_id is not the genesis one")
        # beyond §3: the transaction must be the one its receipt describes
        if [t["sender"], t["contract"], t["method"]] != [r["sender"], r["contract"], r["method"]]:
            raise Fail("tx: sender, contract or method differ from its receipt's")
        signed = pack(
            ["medchain/tx/v1"]
            + [t[k] for k in ("chain_id", "sender", "nonce", "contract", "method", "args")]
        )
        if not _sig_ok(t["sender"], signed, t["signature"]):
            raise Fail("tx: the sender's signature does not verify")
        log.append("13. tx hashes to tx_id and its sender's signature verifies")
    else:
        log.append("13. tx not included (bulk import): nothing to check")
    at[0] = 14  # the content
    if content is not None:
        try:
            digest = H(canonical_json(content))
        except (ValueError, UnicodeError, RecursionError, OverflowError) as e:
            raise Fail(f"content is not valid JSON ({e})") from None
        if digest != a["content_hash"]:
            raise Fail("H(canonical JSON of the content) is not content_hash")
    log.append(
        "14. content matches content_hash"
        if content is not None
        else "14. no content given: content_hash not compared"
    )
    facts = {k: a[k] for k in ANCHOR_SIGNED}
    facts.update(
        height=hdr["height"],
        timestamp_ms=hdr["timestamp_ms"],
        tx_id=r["tx_id"],
        author=a["author"],
        sender=r["sender"],
    )
    return {k: x.hex() if isinstance(x, bytes) else x for k, x in facts.items()}


def verify(
    data: bytes, expected_genesis_hash: bytes | None = None, content: bytes | None = None
) -> tuple[bool, list[str], dict[str, Any]]:
    """Verify a certificate (§3): (ok, check lines, proven facts). Never raises."""
    log: list[str] = []
    at = [1]  # the step being checked, to name it on failure
    try:
        if not isinstance(data, (bytes, bytearray, memoryview)) or not isinstance(
            content, (bytes, bytearray, memoryview, type(None))
        ):
            raise Fail("the file and the content must be bytes")
        data, content = bytes(data), None if content is None else bytes(content)
        if expected_genesis_hash is not None and (
            not isinstance(expected_genesis_hash, bytes) or len(expected_genesis_hash) != 32
        ):
            at[0] = 2
            raise Fail("the expected genesis hash must be 32 bytes")
        return True, log, _verify(data, expected_genesis_hash, content, log, at)
    except Fail as e:
        log.append(f"FAIL step {at[0]}: {e}")
    except Exception as e:
        log.append(f"FAIL step {at[0]}: internal error {type(e).__name__}: {e}")
    return False, log, {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Verify a medchain evidence certificate (.mcev).")
    ap.add_argument("file")
    ap.add_argument("--genesis-hash", help="the consortium's published genesis hash, hex")
    ap.add_argument("--content", help="the record's FHIR JSON, compared with content_hash")
    args = ap.parse_args(argv)
    try:
        data = Path(args.file).read_bytes()
        content = Path(args.content).read_bytes() if args.content else None
        expected = bytes.fromhex(args.genesis_hash.strip()) if args.genesis_hash else None
    except (OSError, ValueError) as e:
        print(f"FAIL cannot read the input: {e}")
        return 1
    ok, lines, facts = verify(data, expected, content)
    print("\n".join(lines + [f"  {k}: {x}" for k, x in facts.items()]))
    print("VERIFIED" if ok else "NOT VERIFIED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
