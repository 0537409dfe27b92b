"""Registering the patients a bulk import meets.

Each patient gets a key of their own (a 0600 file in a keystore directory,
named by a hash of the source id, never by the id itself) and registers its
pseudonym on chain with it; the map source id -> pseudonym is written beside
the keystore (0600) and read back on the next run, so importing again
registers nobody twice. The map and the keys stay with the importing
institution: on chain there is only the pseudonym.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from medchain.client.rpc import RpcClient
from medchain.client.signing import TxBuilder
from medchain.contracts.sdk import pseudonym_of
from medchain.storage.crypto import Signer
from medchain.storage.keyfile import load_key, save_key

BATCH = 200  # registrations submitted before their commits are awaited


class RegistrationError(Exception):
    """A patient could not be registered (the node's reason is in the message)."""


def patient_ids(source: Path) -> Iterator[str]:
    """The ids of the Patient resources in a directory of NDJSON files."""
    for path in sorted(Path(source).glob("Patient*.ndjson")):
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if isinstance(r, dict) and isinstance(r.get("id"), str):
                    yield r["id"]


def key_path(keystore: Path, source_id: str) -> Path:
    return keystore / f"patient-{hashlib.sha256(source_id.encode()).hexdigest()[:16]}.key"


def load_map(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    doc = json.loads(path.read_text())
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise ValueError(f"{path}: not a JSON object of source id -> pseudonym")
    return {str(k): v for k, v in doc.items()}


def save_map(path: Path, mapping: dict[str, str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(mapping, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def register_patients(
    ids: Iterable[str], client: RpcClient, keystore: Path, map_file: Path
) -> tuple[dict[str, str], int]:
    """Register every id not yet in ``map_file``; return the whole map and how many
    were registered now."""
    keystore.mkdir(mode=0o700, parents=True, exist_ok=True)
    mapping = load_map(map_file)
    chain_id = str(client.status()["chain_id"])
    todo = [i for i in dict.fromkeys(ids) if i not in mapping]
    new = 0
    for start in range(0, len(todo), BATCH):
        pending: list[tuple[str, str, str]] = []  # source id, pseudonym, tx id
        for sid in todo[start : start + BATCH]:
            path = key_path(keystore, sid)
            # A key left by an interrupted run is reused: its pseudonym is the same.
            signer = load_key(path) if path.exists() else Signer.generate()
            if not path.exists():
                save_key(path, signer)
            tx = TxBuilder(signer, chain_id).build("registry", "register_patient", {})
            res = client.submit(tx)
            pending.append((sid, pseudonym_of(signer.public_key, "patient"), res["tx_id"]))
        for sid, pseudonym, tx_id in pending:
            res = client.wait(tx_id, timeout_ms=60_000)
            already = "already registered" in str(res.get("reason", ""))
            if res.get("status") != "committed" and not already:
                save_map(map_file, mapping)
                raise RegistrationError(
                    f"patient {key_path(keystore, sid).name}: {res.get('reason') or res.get('status')}"
                )
            mapping[sid] = pseudonym
            new += not already
        save_map(map_file, mapping)
    return mapping, new
