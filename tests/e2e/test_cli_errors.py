"""The real CLI, in a subprocess, on what an operator gets wrong: every key-file
problem in every command that takes a key is one line and a non-zero exit, and a
node that is not there reads differently from one that is busy."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from medchain.node.consortium import OrgSpec, init_consortium
from medchain.storage.crypto import Signer
from medchain.storage.keyfile import PASSPHRASE_ENV, save_key
from tests.e2e import scenario
from tests.unit.test_client_connect import full_listener

pytestmark = pytest.mark.e2e
FAST = {"opslimit": 1, "memlimit": 8192}  # argon2id minimums keep the test quick


def medchain(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI whatever its exit, with no passphrase in its environment but ``env``'s."""
    full = {k: v for k, v in os.environ.items() if k != PASSPHRASE_ENV} | (env or {})
    return scenario.medchain(*args, check=False, timeout=120, env=full)


def one_line_error(r: subprocess.CompletedProcess[str], *expect: str) -> None:
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0, r.stdout
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert all(e in lines[0] for e in expect), lines[0]


def bad_keys(d: Path) -> dict[str, tuple[Path, dict[str, str], str]]:
    """Key files with one problem each: (path, environment, what the error must say)."""
    d.mkdir()
    out: dict[str, tuple[Path, dict[str, str], str]] = {}
    loose = d / "loose.key"
    save_key(loose, Signer.generate())
    loose.chmod(0o644)
    out["mode"] = (loose, {}, "permissions 0644")
    out["missing"] = (d / "missing.key", {}, "does not exist")
    sealed = d / "sealed.key"
    save_key(sealed, Signer.generate(), "right horse battery", **FAST)
    out["encrypted"] = (sealed, {}, PASSPHRASE_ENV)
    out["wrong passphrase"] = (sealed, {PASSPHRASE_ENV: "wrong"}, "wrong passphrase")
    garbage = d / "garbage.key"
    garbage.write_bytes(b"\x00\xff not a key \xfe")
    garbage.chmod(0o600)
    out["garbage"] = (garbage, {}, "not a medchain key file")
    torn = d / "torn.key"
    torn.write_text('{"medchain_key": 1, "public_key": "00"}')
    torn.chmod(0o600)
    out["torn"] = (torn, {}, "malformed")
    out["directory"] = (d, {}, "not a regular file")
    return out


def test_every_key_file_problem_in_every_command_is_one_line(tmp_path: Path) -> None:
    keys = bad_keys(tmp_path / "keys")
    sock = str(tmp_path / "no-node.sock")  # keys are checked before a node is asked
    tx_send = ["tx", "send", "--socket", sock, "--contract", "kv", "--method", "put", "--key"]
    for problem, (key, env, says) in keys.items():
        r = medchain(*tx_send, str(key), env=env)
        one_line_error(r, str(key), says)
        assert r.stderr.startswith("Error: "), problem
    key, env, says = keys["mode"]
    new_key, proof_out = str(tmp_path / "new.key"), str(tmp_path / "proof.json")
    commands = [
        ["practitioner", "add", "--socket", sock, "--license", "L1", "--department", "ED",
         "--role", "nurse", "--out", new_key, "--admin-key", str(key)],
        ["records", "timeline", "--socket", sock, "--patient", "p-1", "--key", str(key)],
        ["proof", "disclose", "--socket", sock, "--record", "r", "--field", "code",
         "--out", proof_out, "--key", str(key)],
        ["portal", "sign", "--chain-id", "c", "--audience", "a", "--challenge", "00" * 32,
         "--key", str(key)],
    ]  # fmt: skip
    for args in commands:
        one_line_error(medchain(*args, env=env), str(key), says)
    assert not (tmp_path / "new.key").exists()
    # the node's own key, at start
    d = tmp_path / "c"
    init_consortium(d, [OrgSpec.parse("Hospital A:hospital")], ports=[1])
    (d / "hospital-a" / "node.key").chmod(0o644)
    r = medchain("node", "start", "--config", str(d / "hospital-a" / "node.toml"))
    one_line_error(r, "node.key", "permissions 0644")


def test_no_node_and_a_busy_node_read_differently(tmp_path: Path) -> None:
    missing = medchain("status", "--socket", str(tmp_path / "nope.sock"))
    one_line_error(missing, "cannot reach the node", "no node at this socket", "no such file")
    stale_path = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(stale_path))  # the socket file a crashed node leaves: nobody listens
    try:
        r = medchain("status", "--socket", str(stale_path))
        one_line_error(r, "no node at this socket", "nothing listens")
    finally:
        stale.close()
    with full_listener(tmp_path / "busy.sock"):
        r = medchain(
            "status", "--socket", str(tmp_path / "busy.sock"), env={"MEDCHAIN_CONNECT_WAIT": "0.5"}
        )
        one_line_error(r, "the node is busy", "try again")
        assert "no node" not in r.stderr
