"""The operator's CLI against real node processes."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from medchain.cli import exits
from medchain.localnet.processes import free_ports
from medchain.node.ops import memory
from tests.e2e.scenario import medchain

pytestmark = pytest.mark.e2e


def test_net_up_status_tx_block_down() -> None:
    root = Path(tempfile.mkdtemp(prefix="mc-cli-"))
    d = root / "c"
    try:
        port = free_ports(1)[0]
        medchain(
            "consortium",
            "init",
            "--dir",
            str(d),
            "--base-port",
            str(port),
            "--org",
            "Hospital A:hospital",
            "--org",
            "Hospital B:hospital",
            "--org",
            "Insurer:insurer",
            "--org",
            "Regulator:regulator",
        )
        up = medchain("net", "up", "--dir", str(d))
        assert "4 nodes up" in up.stdout and "ready" in up.stdout
        rows = json.loads(medchain("net", "status", "--dir", str(d), "--json").stdout)
        assert [r["org"] for r in rows] == ["hospital-a", "hospital-b", "insurer", "regulator"]
        assert all(r["pid"] and len(r["peers"]) == 3 for r in rows)
        cfg = str(d / "insurer" / "node.toml")
        sent = json.loads(
            medchain(
                "tx",
                "send",
                "--config",
                cfg,
                "--key",
                str(d / "insurer" / "admin.key"),
                "--contract",
                "kv",
                "--method",
                "put",
                "--args",
                '{"key": "k", "value": "v"}',
                "--json",
            ).stdout
        )
        assert sent["status"] == "committed"
        human = medchain("tx", "get", sent["tx_id"], "--config", cfg).stdout
        assert f"tx {sent['tx_id']}: committed in block {sent['height']}" in human
        failed = medchain(
            "tx",
            "send",
            "--config",
            cfg,
            "--key",
            str(d / "insurer" / "admin.key"),
            "--contract",
            "kv",
            "--method",
            "delete",
            "--args",
            '{"key": "missing"}',
            check=False,
        )
        assert failed.returncode == exits.FAILED  # a failed transaction is not a success
        assert "failed" in failed.stdout and "no such key" in failed.stdout
        blk = json.loads(
            medchain("block", "show", str(sent["height"]), "--config", cfg, "--json").stdout
        )
        assert sent["tx_id"] in blk["tx_ids"] and len(blk["certificate"]["votes"]) >= 3
        assert "committed   seq" in medchain("block", "show", "--config", cfg).stdout
        st = medchain("status", "--socket", str(d / "hospital-a" / "data" / "node.sock")).stdout
        assert "hospital-a on chain" in st and "peers       hospital-b, insurer, regulator" in st
        bad = medchain("status", "--socket", str(root / "nope.sock"), check=False)
        assert bad.returncode != 0 and "cannot reach the node" in bad.stderr
        down = medchain("net", "down", "--dir", str(d))
        assert "stopped 4 node(s)" in down.stdout
        for org in ("hospital-a", "hospital-b", "insurer", "regulator"):
            log = (d / org / "node.log").read_text()
            assert "received SIGTERM; shutting down" in log and "stopped at height" in log
            # jemalloc when the machine has it (scripts/check-deps.sh installs it as root)
            assert f"allocator {'jemalloc' if memory.jemalloc_path() else 'glibc'}" in log
            assert not (d / org / "data" / "node.sock").exists()
        # and it all comes back with its data
        medchain("net", "up", "--dir", str(d))
        again = json.loads(medchain("tx", "get", sent["tx_id"], "--config", cfg, "--json").stdout)
        assert again["status"] == "committed"
        medchain("net", "down", "--dir", str(d))
    finally:
        medchain("net", "down", "--dir", str(d), check=False, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def test_node_refuses_a_foreign_genesis_and_a_busy_port() -> None:
    root = Path(tempfile.mkdtemp(prefix="mc-cli-"))
    try:
        a, b = root / "a", root / "b"
        ports = free_ports(2)
        for d, p in ((a, ports[0]), (b, ports[1])):
            medchain(
                "consortium",
                "init",
                "--dir",
                str(d),
                "--base-port",
                str(p),
                "--org",
                "Solo:hospital",
            )
        medchain("net", "up", "--dir", str(a))
        # a second copy of the same node: port and data dir are in use
        busy = medchain("node", "start", "--config", str(a / "solo" / "node.toml"), check=False)
        assert busy.returncode == 2 and ("in use" in busy.stderr or "another node" in busy.stderr)
        medchain("net", "down", "--dir", str(a))
        # b's node pointed at a's data dir: another genesis
        cfg = (
            (b / "solo" / "node.toml")
            .read_text()
            .replace('data_dir = "data"', f'data_dir = "{a / "solo" / "data"}"')
        )
        (b / "solo" / "node.toml").write_text(cfg)
        foreign = medchain("node", "start", "--config", str(b / "solo" / "node.toml"), check=False)
        assert (
            foreign.returncode == 2
            and "refusing to start with a different genesis" in foreign.stderr
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_bench_command_runs() -> None:
    r = medchain(
        "bench",
        "--nodes",
        "4",
        "--runs",
        "1",
        "--rate",
        "150",
        "--duration",
        "3",
        "--json",
        str(Path(tempfile.mkdtemp()) / "b.json"),
    )
    assert "median committed" in r.stdout
    line = next(x for x in r.stdout.splitlines() if x.startswith("n=4: median"))
    tps = float(line.split("committed ")[1].split(" tx/s")[0])
    assert tps > 50
