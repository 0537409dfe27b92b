"""Checks the driver runs on blocks before its replica may vote for them.

``block_digest`` is the replica's digest function: a block's digest is its
header hash. ``verify_block_txs`` runs in a worker thread (Ed25519 in
libsodium releases the GIL). ``check_proposal`` runs when the block's
predecessor is executed: the header must extend our ledger exactly.
"""

from __future__ import annotations

from collections.abc import Collection

import msgpack

from medchain.consensus.messages import PrePrepare
from medchain.storage.block import Block
from medchain.storage.codec import DecodeError, as_bytes, as_list, unpack
from medchain.storage.crypto import sha256
from medchain.storage.genesis import Genesis
from medchain.storage.ledger import Ledger
from medchain.storage.tx import Transaction


def block_digest(batch: bytes) -> bytes:
    """SHA-256 of the header bytes embedded in a block encoding (total: junk hashes to junk)."""
    try:
        unpacker = msgpack.Unpacker(max_buffer_size=len(batch) + 16)
        unpacker.feed(batch)
        if unpacker.read_array_header() == 2:
            header = unpacker.unpack()
            if type(header) is bytes:
                return sha256(header)
    except Exception:
        pass
    return sha256(b"not a block\x00" + batch)


MAX_TX_BATCH = 2000  # transactions in one frame on the txs channel


def encode_tx_batch(raws: list[bytes]) -> bytes:
    data: bytes = msgpack.packb(raws, use_bin_type=True)
    return data


def decode_tx_batch(payload: bytes, max_tx_bytes: int) -> list[bytes]:
    """A frame of forwarded transactions: a msgpack array of encodings (not yet checked)."""
    items = as_list(unpack(payload, len(payload), "tx batch"), "tx batch", MAX_TX_BATCH)
    return [as_bytes(r, f"tx batch[{i}]", max_len=max_tx_bytes) for i, r in enumerate(items)]


def decode_and_verify_block(
    batch: bytes, genesis: Genesis, known: Collection[bytes]
) -> tuple[Block, list[bytes]]:
    """Decode a proposed block and verify every transaction signature not already
    verified (``known``: ids of transactions in our pool). Returns the block and the
    ids of the transactions it checked (their decoded form is not kept: execution
    decodes them again, unchecked). Raises DecodeError."""
    params = genesis.consensus
    if len(batch) > params.batch_max_bytes + 64 * 1024:
        raise DecodeError(f"block of {len(batch)} bytes exceeds the batch limit")
    block = Block.decode(batch, max_tx_size=params.max_tx_bytes, check_txs=False)
    if len(block.txs) > params.batch_max_txs:
        raise DecodeError(f"block of {len(block.txs)} transactions exceeds {params.batch_max_txs}")
    fresh: list[bytes] = []
    for raw, tx_id in zip(block.txs, block.tx_ids(), strict=True):
        if tx_id in known:
            continue
        tx = Transaction.decode(raw, params.max_tx_bytes)
        if tx.chain_id != genesis.chain_id or not tx.verify_signature():
            raise DecodeError(f"transaction {tx_id.hex()[:16]} has a bad signature or chain id")
        fresh.append(tx_id)
    return block, fresh


def check_proposal(pp: PrePrepare, block: Block, ledger: Ledger, proposer_key: bytes) -> str | None:
    """None if ``block`` (proposed in ``pp``) extends ``ledger`` exactly, else why not."""
    h = block.header
    if block.hash != pp.digest:
        return "pre-prepare digest is not the block hash"
    if h.chain_id != ledger.chain_id:
        return "block for another chain"
    if h.height != ledger.height + 1:
        return f"block height {h.height}, expected {ledger.height + 1}"
    if h.prev_hash != ledger.last_hash:
        return "block does not extend our last block"
    if h.state_root != ledger.state_root:
        return "block carries a state root that differs from ours"
    if h.results_root != ledger.results_root:
        return "block carries a results root that differs from ours"
    if h.validator_set_hash != ledger.validators.hash():
        return "block names another validator set"
    if h.proposer != proposer_key:
        return "block names another proposer"
    if h.timestamp_ms != pp.timestamp_ms:
        return "block time differs from the pre-prepare's"
    if h.timestamp_ms <= ledger.last_timestamp_ms:
        return "block time does not advance"
    return None
