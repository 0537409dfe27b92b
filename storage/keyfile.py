"""Key files: an Ed25519 seed on disk, mode 0600, optionally passphrase-encrypted.

Format (JSON, one object)::

    {"medchain_key": 1, "public_key": "<hex>", "seed": "<hex>"}                 # plain
    {"medchain_key": 1, "public_key": "<hex>", "kdf": "argon2id",
     "opslimit": N, "memlimit": N, "salt": "<hex>", "box": "<hex>"}          # encrypted

The encrypted form seals the seed with SecretBox (XSalsa20-Poly1305) under a
key derived from the passphrase with Argon2id (nacl.pwhash).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import nacl.pwhash
import nacl.secret
import nacl.utils
from nacl.exceptions import CryptoError

from medchain.storage.crypto import Signer

FORMAT_VERSION = 1
PASSPHRASE_ENV = "MEDCHAIN_KEY_PASSPHRASE"
# The costliest Argon2id parameters a key file may ask for (libsodium's "sensitive"
# level): a damaged or hostile file cannot make loading it take hours or all memory.
MAX_OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE
MAX_MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE
MAX_KEY_FILE = 64 * 1024  # a key file is a few hundred bytes


class KeyFileError(Exception):
    """A key file that cannot be used, with a message saying why and what to do."""


def save_key(
    path: Path,
    signer: Signer,
    passphrase: str | None = None,
    *,
    overwrite: bool = False,
    opslimit: int = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
    memlimit: int = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE,
) -> None:
    """Write ``signer`` to ``path`` with mode 0600 (created that way, never widened)."""
    doc: dict[str, object] = {"medchain_key": FORMAT_VERSION, "public_key": signer.public_key.hex()}
    if passphrase:
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        key = nacl.pwhash.argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE,
            passphrase.encode(),
            salt,
            opslimit=opslimit,
            memlimit=memlimit,
        )
        box = nacl.secret.SecretBox(key).encrypt(signer.seed)
        doc.update(
            kdf="argon2id",
            opslimit=opslimit,
            memlimit=memlimit,
            salt=salt.hex(),
            box=bytes(box).hex(),
        )
    else:
        doc["seed"] = signer.seed.hex()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise KeyFileError(f"cannot write key file {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fd, 0o600)
        json.dump(doc, fh)
        fh.write("\n")


def load_key(
    path: Path, passphrase: str | None = None, ask: Callable[[], str] | None = None
) -> Signer:
    """Load a key file; checks permissions (0600 or stricter) and the passphrase.
    Every problem with the file is a :class:`KeyFileError` saying what to do.

    For encrypted keys without an explicit passphrase, the environment
    variable ``MEDCHAIN_KEY_PASSPHRASE`` is used, else ``ask()`` (a prompt),
    called only once the file is known to be a readable encrypted key.
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"key file {path} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"key file {path} has permissions {mode:04o}; it must be readable by its owner only "
            f"(run: chmod 600 {path})"
        )
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_KEY_FILE:
        raise KeyFileError(f"key file {path} is not a medchain key file (too large)")
    try:
        doc = _parse(raw, path)
        if not isinstance(doc, dict) or doc.get("medchain_key") != FORMAT_VERSION:
            raise ValueError("not a medchain key file")
        public_key = bytes.fromhex(doc["public_key"])
        if "seed" in doc:
            seed = bytes.fromhex(doc["seed"])
        elif "box" not in doc:
            raise ValueError("it holds no seed, plain or encrypted")
        else:
            if passphrase is None:
                passphrase = os.environ.get(PASSPHRASE_ENV)
            if not passphrase and ask is not None:
                passphrase = ask()
            if not passphrase:
                raise KeyFileError(
                    f"key file {path} is encrypted: give a passphrase (or set {PASSPHRASE_ENV})"
                )
            opslimit, memlimit = int(doc["opslimit"]), int(doc["memlimit"])
            if not (0 < opslimit <= MAX_OPSLIMIT and 0 < memlimit <= MAX_MEMLIMIT):
                raise ValueError("its key derivation parameters are out of range")
            key = nacl.pwhash.argon2id.kdf(
                nacl.secret.SecretBox.KEY_SIZE,
                passphrase.encode(),
                bytes.fromhex(doc["salt"]),
                opslimit=opslimit,
                memlimit=memlimit,
            )
            try:
                seed = nacl.secret.SecretBox(key).decrypt(bytes.fromhex(doc["box"]))
            except CryptoError:
                raise KeyFileError(f"wrong passphrase for key file {path}") from None
    except KeyFileError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        # nacl's errors are ValueErrors; a KeyError names the missing field.
        why = f"no {exc}" if isinstance(exc, KeyError) else str(exc) or type(exc).__name__
        raise KeyFileError(f"key file {path} is malformed: {why}") from None
    try:
        signer = Signer(seed)
    except ValueError as exc:
        raise KeyFileError(f"key file {path} is malformed: {exc}") from None
    if signer.public_key != public_key:
        raise KeyFileError(f"key file {path} is corrupt: its public key does not match its seed")
    return signer


def _parse(raw: bytes, path: Path) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, absurdly nested
        raise KeyFileError(f"key file {path} is not a medchain key file (not JSON)") from None


def is_encrypted(path: Path) -> bool:
    try:
        return "box" in json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
