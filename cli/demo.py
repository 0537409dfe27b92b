"""``medchain demo``: the main job, end to end, with a readable narrative."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import click

from contracts.kv import KVChaincode
from contracts.runtime import Executor
from node.chain import apply_block, propose_block, replay_ledger
from node.consortium import ADMIN_KEY, GENESIS_FILE, NODE_KEY, OrgSpec, init_consortium
from storage.block import make_certificate
from storage.genesis import Genesis
from storage.keyfile import load_key
from storage.ledger import GenesisMismatch, Ledger, verify_chain
from storage.tx import make_tx

DEMO_ORGS = ["Hospital A:hospital", "Hospital B:hospital", "Insurer:insurer", "Regulator:regulator"]


class Narrator:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.step_t = self.t0

    def step(self, text: str) -> None:
        now = time.perf_counter()
        click.secho(f"\n[{now - self.t0:6.2f}s] {text}", bold=True)
        self.step_t = now

    def say(self, text: str) -> None:
        click.echo(f"          {text}")


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to create the consortium (default: a temporary directory, removed afterwards).",
)
@click.option("--blocks", default=3, show_default=True)
@click.option("--txs-per-block", default=5, show_default=True)
def demo(directory: Path | None, blocks: int, txs_per_block: int) -> None:
    """Create a 4-organization consortium and commit, reopen and verify a ledger."""
    keep = directory is not None
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="medchain-demo-"))
    try:
        run_ledger_demo(root / "consortium", blocks, txs_per_block)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def run_ledger_demo(cdir: Path, blocks: int, txs_per_block: int) -> None:
    n = Narrator()
    n.step(f"Creating a 4-organization consortium in {cdir}")
    genesis = init_consortium(cdir, [OrgSpec.parse(o) for o in DEMO_ORGS], base_port=7100)
    for o in genesis.organizations:
        n.say(
            f"{o.name:<12} ({o.role:<9}) node key {o.node_key.hex()[:16]}…  admin key {o.admin_key.hex()[:16]}…"
        )
    v = genesis.validators
    n.say(f"chain {genesis.chain_id}, genesis hash {genesis.hash().hex()[:32]}…")
    n.say(f"{v.n} validators tolerate f={v.f} faulty; a block needs {v.quorum} commit signatures")
    n.say(f"key files are mode {oct((cdir / 'hospital-a' / NODE_KEY).stat().st_mode & 0o777)}")

    genesis = Genesis.load(cdir / GENESIS_FILE)
    node_keys = [load_key(cdir / o.org_id / NODE_KEY) for o in genesis.organizations]
    admins = {o.org_id: load_key(cdir / o.org_id / ADMIN_KEY) for o in genesis.organizations}
    data_dir = cdir / "hospital-a" / "data"
    executor = Executor(genesis, {"kv": KVChaincode()})

    n.step(f"Committing {blocks} blocks of signed transactions to LevelDB at {data_dir}")
    ledger = Ledger.open(data_dir, genesis)
    nonce = 0
    replay = None
    for b in range(blocks):
        txs = []
        for i in range(txs_per_block):
            org = genesis.organizations[i % len(genesis.organizations)]
            nonce += 1
            fingerprint = hashlib.sha256(f"record {b}-{i}".encode()).hexdigest()
            tx = make_tx(
                admins[org.org_id],
                genesis.chain_id,
                nonce,
                "kv",
                "put",
                {"key": f"anchor/{b}-{i}", "value": fingerprint},
            )
            txs.append(tx.encode())
        if replay is not None:
            txs.append(replay)  # a captured transaction sent again
        replay = txs[0]
        proposer = b % v.n
        block = propose_block(
            ledger, txs, genesis.genesis_time_ms + 1000 * (b + 1), v.keys[proposer]
        )
        cert = make_certificate(
            genesis.chain_id, 0, block.header, [(i, node_keys[i]) for i in range(v.quorum)]
        )
        t = time.perf_counter()
        executed = apply_block(ledger, executor, block, cert)
        ms = (time.perf_counter() - t) * 1000
        ok = sum(r.ok for r in executed.results)
        failed = [r.data for r in executed.results if not r.ok]
        n.say(
            f"block {block.height}: {len(txs)} txs ({ok} ok{', ' + str(len(failed)) + ' rejected: ' + failed[0] if failed else ''}), "
            f"hash {block.hash.hex()[:16]}…, {len(cert.votes)} signatures, committed in {ms:.1f} ms (one synced batch)"
        )
    tip = (ledger.height, ledger.last_hash, ledger.state_root)
    ledger.close()

    n.step("Reopening the ledger and verifying it")
    ledger = Ledger.open(data_dir, genesis)
    assert (ledger.height, ledger.last_hash, ledger.state_root) == tip
    n.say(
        f"height {ledger.height}, tip {ledger.last_hash.hex()[:16]}…, state root {ledger.state_root.hex()[:16]}…"
    )
    problems = verify_chain(ledger)
    n.say(
        "hash chain, commit certificates, carried state roots, tx index: "
        + ("OK" if not problems else "; ".join(problems))
    )
    replayed = replay_ledger(ledger, executor)
    n.say(
        "state roots recomputed by re-executing every block: "
        + ("OK" if not replayed else "; ".join(replayed))
    )
    ledger.close()

    n.step("Trying to open the data dir with a different genesis")
    other = replace(genesis, chain_id=genesis.chain_id + "-fork")
    try:
        Ledger.open(data_dir, other).close()
        n.say("opened (this is a bug)")
        problems.append("genesis mismatch not detected")
    except GenesisMismatch as exc:
        n.say(f"refused: {exc}")

    n.step("Done" if not problems and not replayed else "FAILED")
    if problems or replayed:
        raise click.ClickException("ledger verification failed")
