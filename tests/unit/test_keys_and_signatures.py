"""Identities: key files (0600, passphrase) and domain-separated signatures."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from medchain.cli.main import cli
from medchain.storage.block import commit_sign_bytes
from medchain.storage.crypto import Signer, sign_bytes, verify
from medchain.storage.keyfile import KeyFileError, load_key, save_key
from medchain.storage.tx import Transaction, make_tx

FAST = {"opslimit": 1, "memlimit": 8192}  # argon2id minimums keep tests quick


def test_key_file_is_0600_and_round_trips(tmp_path: Path) -> None:
    s = Signer.generate()
    save_key(tmp_path / "k", s)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    assert load_key(tmp_path / "k").public_key == s.public_key


def test_key_file_never_overwritten(tmp_path: Path) -> None:
    save_key(tmp_path / "k", Signer.generate())
    with pytest.raises(KeyFileError, match="already exists"):
        save_key(tmp_path / "k", Signer.generate())


def test_wrong_permissions_refused(tmp_path: Path) -> None:
    save_key(tmp_path / "k", Signer.generate())
    os.chmod(tmp_path / "k", 0o644)
    with pytest.raises(KeyFileError, match=r"permissions 0644.*chmod 600"):
        load_key(tmp_path / "k")


def test_encrypted_key(tmp_path: Path) -> None:
    s = Signer.generate()
    save_key(tmp_path / "k", s, "correct horse", **FAST)
    doc = json.loads((tmp_path / "k").read_text())
    assert "seed" not in doc and s.seed.hex() not in (tmp_path / "k").read_text()
    assert load_key(tmp_path / "k", "correct horse").seed == s.seed
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_key(tmp_path / "k", "battery staple")
    with pytest.raises(KeyFileError, match="encrypted"):
        load_key(tmp_path / "k")


def test_malformed_and_missing_key_files(tmp_path: Path) -> None:
    p = tmp_path / "k"
    p.write_text("not json")
    p.chmod(0o600)
    with pytest.raises(KeyFileError, match="malformed"):
        load_key(p)
    with pytest.raises(KeyFileError, match="does not exist"):
        load_key(tmp_path / "nope")
    s = Signer.generate()
    p.write_text(json.dumps({"medchain_key": 1, "public_key": "00" * 32, "seed": s.seed.hex()}))
    with pytest.raises(KeyFileError, match="does not match"):
        load_key(p)


def test_signer_repr_hides_secret() -> None:
    s = Signer.generate()
    assert s.seed.hex() not in repr(s) and s.seed.hex()[:8] not in repr(s)


def test_cli_keygen(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "alice.key"
    res = runner.invoke(cli, ["keygen", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert load_key(out).public_key.hex() == info["public_key"]
    res = runner.invoke(cli, ["keygen", "--out", str(out)])
    assert res.exit_code != 0 and "already exists" in res.output


def test_cli_keygen_encrypted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDCHAIN_KEY_PASSPHRASE", "s3cret")
    out = tmp_path / "bob.key"
    res = CliRunner().invoke(cli, ["keygen", "--out", str(out), "--encrypt"])
    assert res.exit_code == 0, res.output
    assert "encrypted" in res.output and "s3cret" not in res.output
    assert load_key(out, "s3cret")
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_key(out, "nope")


def test_tx_signature_bound_to_chain_and_domain() -> None:
    s = Signer.generate()
    tx = make_tx(s, "chain-a", 1, "kv", "put", {"key": "k", "value": "v"})
    assert tx.verify_signature()
    # the same signature on another chain id does not verify
    assert not replace(tx, chain_id="chain-b").verify_signature()
    # nor with any field changed
    assert not replace(tx, nonce=2).verify_signature()
    assert not replace(tx, args={"key": "k", "value": "w"}).verify_signature()
    # a signature over a commit vote with the same payload is not a tx signature
    vote = commit_sign_bytes("chain-a", 0, 1, b"\x00" * 32)
    assert not verify(s.public_key, tx.sign_bytes(), s.sign(vote))
    assert sign_bytes("medchain/tx/v1", "chain-a", 1) != sign_bytes(
        "medchain/commit/v1", "chain-a", 1
    )


def test_tx_id_is_hash_of_encoding() -> None:
    import hashlib

    s = Signer.generate()
    tx = make_tx(s, "c", 5, "kv", "put", {"key": "k", "value": "v"})
    assert tx.tx_id == hashlib.sha256(tx.encode()).digest()
    assert Transaction.decode(tx.encode()).tx_id == tx.tx_id


def test_forged_signature_rejected() -> None:
    from medchain.storage.codec import DecodeError
    from medchain.storage.tx import decode_verified

    s, mallory = Signer.generate(), Signer.generate()
    tx = make_tx(s, "c", 1, "kv", "put", {"key": "k", "value": "v"})
    forged = replace(tx, signature=mallory.sign(tx.sign_bytes()))
    with pytest.raises(DecodeError, match="bad signature"):
        decode_verified(forged.encode(), "c")
    with pytest.raises(DecodeError, match="chain id"):
        decode_verified(tx.encode(), "other")
    assert decode_verified(tx.encode(), "c") == tx
