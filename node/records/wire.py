"""Wire format of the record fetch protocol (``/medchain/records/1``) and of a
sealed record. Canonical msgpack arrays; decoding raises DecodeError only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medchain.storage.codec import DecodeError, as_bytes, as_list, as_str, fields, pack, unpack
from medchain.storage.tx import Transaction

MAX_FRAME = 64 * 1024 * 1024
OK, DENIED, ERROR = "ok", "denied", "error"
FETCH_METHODS = ("request", "request_many")


@dataclass(frozen=True)
class FetchRequest:
    request_id: bytes
    tx: bytes

    def encode(self) -> bytes:
        return pack([1, self.request_id, self.tx])


@dataclass(frozen=True)
class FetchItem:
    record_id: str
    status: str
    reason: str
    sealed: bytes = b""

    def to_wire(self) -> list[Any]:
        return [self.record_id, self.status, self.reason, self.sealed]


@dataclass(frozen=True)
class FetchReply:
    request_id: bytes
    tx_id: bytes
    items: tuple[FetchItem, ...]
    error: str = ""

    def encode(self) -> bytes:
        return pack([2, self.request_id, self.tx_id, [i.to_wire() for i in self.items], self.error])


def decode_frame(data: bytes) -> FetchRequest | FetchReply:
    obj = unpack(data, MAX_FRAME, "records frame")
    if type(obj) is not list or not obj:
        raise DecodeError("records frame: expected an array")
    if type(obj[0]) is not int:  # True == 1 in Python; the wire says int
        raise DecodeError(f"records frame: kind must be an integer, not {obj[0]!r}")
    if obj[0] == 1:
        f = fields(obj, 3, "fetch request")
        return FetchRequest(
            as_bytes(f[1], "request_id", 16), as_bytes(f[2], "tx", max_len=64 * 1024)
        )
    if obj[0] == 2:
        f = fields(obj, 5, "fetch reply")
        items = []
        for i, it in enumerate(as_list(f[3], "items", 1000)):
            g = fields(it, 4, f"items[{i}]")
            items.append(
                FetchItem(
                    as_str(g[0], "record_id", 128),
                    as_str(g[1], "status", 16),
                    as_str(g[2], "reason", 2000),
                    as_bytes(g[3], "sealed"),
                )
            )
        return FetchReply(
            as_bytes(f[1], "request_id", 16),
            as_bytes(f[2], "tx_id", max_len=32),
            tuple(items),
            as_str(f[4], "error", 2000),
        )
    raise DecodeError(f"records frame: unknown kind {obj[0]!r}")


def sealed_payload(content: bytes, salt_seed: bytes) -> bytes:
    """What a sealed record holds: canonical JSON, and the field salts for the patient."""
    return pack([1, content, salt_seed])


def open_payload(data: bytes) -> tuple[bytes, bytes]:
    f = fields(unpack(data, MAX_FRAME, "sealed record"), 3, "sealed record")
    return as_bytes(f[1], "content"), as_bytes(f[2], "salt_seed")


def parse_request(
    raw: bytes, chain_id: str, max_tx_bytes: int
) -> tuple[Transaction, list[str], str | None] | str:
    """(transaction, records named, custodian addressed or None) of a fetch's
    access transaction, or why it is not one."""
    try:
        tx = Transaction.decode(raw, max_tx_bytes)
    except DecodeError as exc:
        return f"malformed access transaction: {exc}"
    if tx.chain_id != chain_id or tx.contract != "access" or tx.method not in FETCH_METHODS:
        return "a fetch must carry an access.request_many transaction for this chain"
    if not isinstance(tx.args, dict):
        return "bad access transaction arguments"
    named = tx.args.get("records") if tx.method == "request_many" else tx.args.get("record_id")
    # The chaincode judges (and logs) odd requests; here only the records named by an
    # id decide where the request goes.
    names = [named] if isinstance(named, str) else named if isinstance(named, list) else []
    record_ids = list(dict.fromkeys(r for r in names if isinstance(r, str)))
    if not record_ids:
        return "the access transaction names no records"
    addressed = tx.args.get("custodian")
    return tx, record_ids, addressed if isinstance(addressed, str) else None
