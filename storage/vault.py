"""The off-chain record vault: the FHIR resources this node is custodian of.

Each record is encrypted at rest with its own random key (XChaCha20-Poly1305,
the record id as associated data so entries cannot be swapped), and that key
is wrapped with the node's master key (also XChaCha20-Poly1305). The master
key is derived from the node's Ed25519 seed (BLAKE2b, personalised), so no
second secret has to be kept. Plaintext never touches disk: it exists only
in memory while the node serves a request.

Stored per record: the canonical JSON, the salt seed of its field
commitments, the content hash and the anchor metadata.

Record ids the vault names (``opaque_id``) are an HMAC of the source system's
resource id under a key derived from the master key: stable, so a re-import
finds the same record, but they say nothing of the source id (which in a
hospital's system may embed a medical record number) to anyone else.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.encoding
import nacl.hash
import nacl.utils
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

from medchain.storage.codec import (
    DecodeError,
    as_bytes,
    as_int,
    as_value,
    canonical,
    fields,
    pack,
    unpack,
)
from medchain.storage.crypto import sha256
from medchain.storage.kv import FailureHook, KVStore, LevelDBKV, MemoryKV

NONCE = 24
KEY = 32
P_RECORD = b"R"
K_COUNT = b"Mcount"  # how many records the vault holds, written with each new record
FORMAT = 1


class VaultIntegrityError(Exception):
    """A vault entry that does not decrypt or does not match its hash: named, never silent."""

    def __init__(self, record_id: str, why: str) -> None:
        super().__init__(f"integrity error in vault record {record_id}: {why}")
        self.record_id = record_id


@dataclass(frozen=True)
class VaultPut:
    """A record to store: what :meth:`Vault.put_many` encrypts."""

    record_id: str
    content: bytes  # canonical JSON
    salt_seed: bytes
    meta: dict[str, Any]


@dataclass(frozen=True)
class VaultRecord:
    record_id: str
    content: bytes  # canonical JSON
    salt_seed: bytes
    content_hash: bytes
    meta: dict[str, Any]  # patient, category, clinical_date, fields_root


def master_key_from_seed(seed: bytes) -> bytes:
    key: bytes = nacl.hash.blake2b(
        seed, digest_size=KEY, person=b"medchain-vault", encoder=nacl.encoding.RawEncoder
    )
    return key


K_MIRROR = b"Mvault-count"  # the same count, in another store (see Vault.__init__)


class Vault:
    def __init__(
        self, store: KVStore, master_key: bytes, mirror: KVStore | Sequence[KVStore] = ()
    ) -> None:
        """``mirror``: other stores (the node's node-state and its ledger's main store)
        that keep the record count too, so that a vault that lost entries — its log
        deleted, a backup of last week restored — is found at start (storage.integrity),
        not by a patient; with two, it is found even when one of them is lost with it."""
        if len(master_key) != KEY:
            raise ValueError("the vault master key is 32 bytes")
        self.store = store
        self.mirrors: tuple[KVStore, ...] = (
            tuple(mirror) if isinstance(mirror, Sequence) else (mirror,)
        )
        self._master = master_key
        self._id_key: bytes = nacl.hash.blake2b(
            master_key, digest_size=KEY, person=b"medchain-rid", encoder=nacl.encoding.RawEncoder
        )

    def opaque_id(self, org: str, rtype: str, source_id: str) -> str:
        """The record id of a resource ``rtype``/``source_id`` held by ``org``."""
        mac = hmac.new(self._id_key, f"{rtype}/{source_id}".encode(), hashlib.sha256)
        return f"{org}:{rtype}:{mac.hexdigest()[:24]}"

    @classmethod
    def open(
        cls,
        path: Path,
        master_key: bytes,
        create: bool = True,
        on_failure: FailureHook | None = None,
        mirror: KVStore | Sequence[KVStore] = (),
        read_only: bool = False,
    ) -> Vault:
        """The vault at ``path`` (``create``: or a new one); ``read_only`` for a tool that
        only reads it (see LevelDBKV)."""
        store = LevelDBKV(
            path, create=create, name="vault", on_failure=on_failure, read_only=read_only
        )
        return cls(store, master_key, mirror)

    def mirrored_count(self) -> int | None:
        """The highest count a mirror keeps (None: none keeps one)."""
        counts = []
        for m in self.mirrors:
            raw = m.get(K_MIRROR)
            if raw is not None and len(raw) == 8:
                counts.append(int.from_bytes(raw, "big"))
        return max(counts) if counts else None

    def stored_count(self) -> int | None:
        """The count of records written with them (None: a vault from before it was kept)."""
        raw = self.store.get(K_COUNT)
        return None if raw is None or len(raw) != 8 else int.from_bytes(raw, "big")

    @classmethod
    def in_memory(cls, master_key: bytes) -> Vault:
        return cls(MemoryKV(), master_key)

    def close(self) -> None:
        self.store.close()

    def put(self, record_id: str, content: bytes, salt_seed: bytes, meta: dict[str, Any]) -> bytes:
        """Encrypt and store; returns the content hash. Synced to disk."""
        return self.put_many([VaultPut(record_id, content, salt_seed, meta)])[0]

    def put_many(self, records: Sequence[VaultPut]) -> list[bytes]:
        """Encrypt and store all ``records`` in one write batch with one sync: on
        disk, all of them, when this returns; none of them if it raises (or the
        process dies first). Returns their content hashes, in order."""
        batch: dict[bytes, bytes | None] = {}
        hashes = []
        new = 0
        for r in records:
            key, value, h = self._seal(r)
            if key not in batch and self.store.get(key) is None:
                new += 1
            batch[key] = value
            hashes.append(h)
        if not batch:
            return hashes
        count = self.count_hint() + new if new else None
        if count is not None:  # the count is written with the records it counts
            batch[K_COUNT] = count.to_bytes(8, "big")
        self.store.write(batch, sync=True)
        if count is not None:  # after: the vault may hold more than they say
            for m in self.mirrors:
                m.write({K_MIRROR: count.to_bytes(8, "big")}, sync=False)
        return hashes

    def _seal(self, r: VaultPut) -> tuple[bytes, bytes, bytes]:
        """The store key, the sealed entry and the content hash of ``r``."""
        rid = r.record_id.encode()
        record_key = nacl.utils.random(KEY)
        wrap_nonce, nonce = nacl.utils.random(NONCE), nacl.utils.random(NONCE)
        wrapped = crypto_aead_xchacha20poly1305_ietf_encrypt(
            record_key, rid, wrap_nonce, self._master
        )
        h = sha256(r.content)
        plaintext = pack([r.content, r.salt_seed, h, canonical(r.meta, "meta")])
        sealed = crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, rid, nonce, record_key)
        return P_RECORD + rid, pack([FORMAT, wrap_nonce, wrapped, nonce, sealed]), h

    def count_hint(self) -> int:
        """The stored count, or (for a vault from before it was kept) a full count."""
        n = self.stored_count()
        return self.count() if n is None else n

    def has(self, record_id: str) -> bool:
        return self.store.get(P_RECORD + record_id.encode()) is not None

    def get(self, record_id: str) -> VaultRecord | None:
        rid = record_id.encode()
        raw = self.store.get(P_RECORD + rid)
        if raw is None:
            return None
        try:
            f = fields(unpack(raw, 64 * 1024 * 1024, "vault entry"), 5, "vault entry")
            if as_int(f[0], "format") != FORMAT:
                raise DecodeError("vault entry: unknown format")
            record_key = crypto_aead_xchacha20poly1305_ietf_decrypt(
                as_bytes(f[2], "wrapped key"), rid, as_bytes(f[1], "nonce", NONCE), self._master
            )
            plaintext = crypto_aead_xchacha20poly1305_ietf_decrypt(
                as_bytes(f[4], "ciphertext"), rid, as_bytes(f[3], "nonce", NONCE), record_key
            )
            p = fields(unpack(plaintext, 64 * 1024 * 1024, "vault record"), 4, "vault record")
        except (DecodeError, CryptoError, ValueError) as exc:
            raise VaultIntegrityError(
                record_id, f"does not decrypt ({type(exc).__name__})"
            ) from None
        content, salt_seed, h = (
            as_bytes(p[0], "content"),
            as_bytes(p[1], "salt"),
            as_bytes(p[2], "hash", 32),
        )
        if sha256(content) != h:
            raise VaultIntegrityError(record_id, "content does not match its hash")
        meta = as_value(p[3], "meta")
        return VaultRecord(record_id, content, salt_seed, h, meta if isinstance(meta, dict) else {})

    def record_ids(self) -> Iterator[str]:
        for k, _ in self.store.scan(P_RECORD):
            yield k[len(P_RECORD) :].decode()

    def count(self) -> int:
        return sum(1 for _ in self.store.scan(P_RECORD))
