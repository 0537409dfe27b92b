"""Damaged storage never passes silently, on real node processes and real LevelDB.

Each row of RELIABILITY.md's storage-fault matrix: the node is stopped, its data
damaged the way a disk, an operator or a restore would, and started again. It
must refuse with a message that names the store, what is wrong and the next
step — never start with less than it had. Then the way back: ``node resync``
rebuilds a damaged ledger from the other members, ``node verify`` finds every
byte sound, and every transaction committed before is there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import plyvel
import pytest

from medchain.client.rpc import RpcError
from medchain.node.rpc.errors import STORAGE_DAMAGED
from tests.e2e.harness import E2ECluster, cluster
from tests.e2e.scenario import medchain

pytestmark = pytest.mark.e2e

NODE = 0  # hospital-a: custodian of the records stored below


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return medchain(*args, check=False, timeout=timeout)


def start_refused(c: E2ECluster) -> str:
    """Start the node in the foreground; it must exit 2 at once, saying why on stderr
    and in node.log (where an operator of `net up` looks). Its message."""
    before = len(c.log_text(NODE))
    r = cli("node", "start", "--config", str(c.nodes[NODE].config_path), timeout=90)
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    assert '"event":"refused"' in c.log_text(NODE)[before:]
    return r.stderr


def delete_current(sub: str) -> Callable[[Path], None]:
    return lambda d: (d / sub / "CURRENT").unlink()


def delete_logs(sub: str) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        logs = list((d / sub).glob("*.log"))
        assert logs, f"{sub} has no write-ahead log"
        for p in logs:
            p.unlink()

    return damage


def scribble_log(sub: str) -> Callable[[Path], None]:
    """Overwrite bytes in the middle of the newest write-ahead log (a bad sector)."""

    def damage(d: Path) -> None:
        log = max((d / sub).glob("*.log"), key=lambda p: p.stat().st_size)
        size = log.stat().st_size
        assert size > 4096, f"{log} is only {size} bytes"
        with open(log, "r+b") as fh:
            fh.seek(size // 3)
            fh.write(b"\xa5" * 512)

    return damage


def scribble_table(sub: str) -> Callable[[Path], None]:
    """Flip bytes inside the largest table file (bit rot under a table)."""

    def damage(d: Path) -> None:
        table = max((d / sub).glob("*.ldb"), key=lambda p: p.stat().st_size)
        size = table.stat().st_size
        with open(table, "r+b") as fh:
            fh.seek(size // 4)
            flipped = bytes(b ^ 0xFF for b in fh.read(64))
            fh.seek(size // 4)
            fh.write(flipped)

    return damage


def drop_blocks(d: Path) -> None:
    """Lose block bodies just below the tip without a trace in LevelDB's own files."""
    db = plyvel.DB(str(d / "ledger" / "blocks"))
    try:
        keys = [k for k in db.iterator(include_value=False) if k.endswith(b"B")]
        for k in sorted(keys)[-6:-2]:
            db.delete(k, sync=True)
    finally:
        db.close()


def old_vault(d: Path) -> None:
    """A vault restored from a copy older than what the node stored since."""
    db = plyvel.DB(str(d / "vault"))
    try:
        keys = [k for k in db.iterator(include_value=False) if k.startswith(b"R")]
        for k in keys[:5]:
            db.delete(k)
        n = int.from_bytes(db.get(b"Mcount"), "big")
        db.put(b"Mcount", (n - 5).to_bytes(8, "big"), sync=True)
    finally:
        db.close()


def other_vault(d: Path) -> None:
    """Another member's vault (its records, under its key) put in this one's place."""
    shutil.rmtree(d / "vault")
    shutil.copytree(d.parent.parent / "hospital-b" / "data" / "vault", d / "vault")


def node_state_and_vault_logs(d: Path) -> None:
    delete_logs("node-state")(d)
    delete_logs("vault")(d)


DAMAGE: list[tuple[str, Callable[[Path], None], str, str]] = [
    # (what, damage, the message says ..., next step names ...)
    (
        "vault CURRENT deleted",
        delete_current("vault"),
        "vault store",
        "restore it from your backup",
    ),
    ("vault log deleted", delete_logs("vault"), "records were lost", "restore it from your backup"),
    ("vault directory deleted", lambda d: shutil.rmtree(d / "vault"), "vault store", "backup"),
    ("vault restored from an old copy", old_vault, "records were lost", "backup"),
    ("ledger CURRENT deleted", delete_current("ledger"), "ledger store", "node resync"),
    ("blocks CURRENT deleted", delete_current("ledger/blocks"), "ledger block", "node resync"),
    ("blocks log scribbled", scribble_log("ledger/blocks"), "damaged", "node resync"),
    ("blocks lost below the tip", drop_blocks, "is missing", "node resync"),
    ("node-state CURRENT deleted", delete_current("node-state"), "node-state", "--reset-state"),
    ("node-state log deleted", delete_logs("node-state"), "lost its contents", "--reset-state"),
    ("node-state and vault logs deleted", node_state_and_vault_logs, "node-state", "backup"),
    ("another member's vault", other_vault, "another node's vault", "backup"),
]


@pytest.fixture(scope="module")
def net() -> Iterator[E2ECluster]:
    with cluster(4) as c:
        items = [
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": f"damage-{i}",
                    "status": "final",
                    "code": {"text": "weight"},
                    "effectiveDateTime": f"2024-05-0{1 + i % 9}",
                },
                "patient": "p" + "0" * 15,
            }
            for i in range(20)
        ]
        with c.client(NODE) as cl:
            stored = cl.call("records.put", {"items": items})
        assert all(s["status"] == "stored" for s in stored), stored
        with c.client(1) as cl:
            assert all(s["status"] == "stored" for s in cl.call("records.put", {"items": items}))
        c.committed = [c.submit(NODE, 1, f"k{i}") for i in range(60)]  # type: ignore[attr-defined]
        c.wait_committed(c.committed, list(range(4)))  # type: ignore[attr-defined]
        c.signal(NODE, 15)
        yield c


@pytest.mark.parametrize("what, damage, says, step", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damaged_data_is_refused_with_the_store_and_the_next_step(
    net: E2ECluster, what: str, damage: Callable[[Path], None], says: str, step: str
) -> None:
    data = net.nodes[NODE].config.data_dir
    pristine = data.parent / "pristine"
    if not pristine.exists():
        shutil.copytree(data, pristine)
    try:
        damage(data)
        message = start_refused(net)
        assert says in message and step in message, (what, message)
    finally:
        shutil.rmtree(data)
        shutil.copytree(pristine, data)


def test_an_old_vault_copy_is_accepted_only_on_purpose(net: E2ECluster) -> None:
    data = net.nodes[NODE].config.data_dir
    config = str(net.nodes[NODE].config_path)
    old_vault(data)
    assert "records were lost" in start_refused(net)
    r = cli("node", "vault-restored", "--config", config)
    assert r.returncode == 0 and "accepted the restored vault: 15 records" in r.stdout, r
    net.start(NODE)
    net.signal(NODE, 15)
    shutil.rmtree(data)
    shutil.copytree(data.parent / "pristine", data)


def test_resync_rebuilds_the_ledger_and_verify_finds_it_sound(net: E2ECluster) -> None:
    c = net
    config = str(c.nodes[NODE].config_path)
    r = cli("node", "verify", "--config", config)
    assert r.returncode == 0 and "OK:" in r.stdout, (r.stdout, r.stderr)
    scribble_table("ledger/blocks")(c.nodes[NODE].config.data_dir)  # (verify made tables)
    r = cli("node", "verify", "--config", config)
    assert r.returncode == 1 and "node resync" in r.stderr, (r.stdout, r.stderr)
    r = cli("node", "resync", "--config", config)
    assert r.returncode == 0 and "set aside" in r.stdout, (r.stdout, r.stderr)
    c.start(NODE)
    more = [c.submit(1, 2, f"after{i}") for i in range(5)]  # the others went on meanwhile
    c.wait_committed([*c.committed, *more], [NODE], timeout=90)  # type: ignore[attr-defined]
    c.sync()
    c.assert_consistent()
    c.signal(NODE, 15)
    r = cli("node", "verify", "--config", config)
    assert r.returncode == 0 and "OK:" in r.stdout, (r.stdout, r.stderr)
    c.start(NODE)


def test_a_damaged_read_is_a_clear_rpc_error_and_logged(net: E2ECluster) -> None:
    c, other = net, 2
    c.signal(other, 15)
    c.start(other)  # reopening turned its write-ahead logs into tables
    scribble_table("ledger/blocks")(c.nodes[other].config.data_dir)  # under the running node
    codes = set()
    with c.client(other) as cl:
        for h in range(1, c.status(other)["height"] + 1):
            try:
                cl.call("block.get", {"height": h})
            except RpcError as exc:
                codes.add(exc.code)
                assert "storage damaged" in exc.message and "node verify" in exc.message
    assert codes == {STORAGE_DAMAGED}, codes
    log = c.log_text(other)
    assert '"event":"storage-damaged"' in log and "Traceback" not in log
    assert c.status(other)["height"] > 0  # still up, answering what it can


@pytest.mark.skipif(os.geteuid() != 0, reason="a read-only bind mount needs root")
def test_a_read_only_store_is_not_called_damaged(net: E2ECluster) -> None:
    """The tester's read-only mount was diagnosed as damage, with 'restore the vault
    from backup' as the next step: for a healthy vault."""
    data = net.nodes[NODE].config.data_dir
    if net.procs[NODE].poll() is None:
        net.signal(NODE, 15)
    for sub in ("ledger", "vault"):
        target = str(data / sub)
        subprocess.run(["mount", "--bind", target, target], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,ro,bind", target], check=True)
            message = start_refused(net)
            assert "Read-only file system" in message and "not damaged" in message, message
            assert "backup" not in message and "resync" not in message, message
        finally:
            subprocess.run(["umount", target], check=False)
