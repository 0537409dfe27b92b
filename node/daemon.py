"""The node daemon: one process per member institution.

Wires the ledger (LevelDB), the executor (chaincode), the consensus driver,
the libp2p transport and the RPC server, and shuts them down cleanly on
SIGTERM or SIGINT. A divergence halt stops the process with exit code 3.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from medchain.contracts.bundle import make_executor
from medchain.contracts.runtime import Executor
from medchain.node.config import NodeConfig
from medchain.node.consensus.driver import Driver, DriverConfig
from medchain.node.net.p2p import Libp2pTransport
from medchain.node.net.p2p_state import P2PConfig, PeerAddress
from medchain.node.net.transport import Transport
from medchain.node.ops import memory
from medchain.node.records.release import ReleasePolicy, StoredRedemptions
from medchain.node.records.service import RecordService
from medchain.node.rpc.chain_api import register
from medchain.node.rpc.errors import STORAGE_DAMAGED, STORAGE_FAILED, RpcError
from medchain.node.rpc.records_api import register_records
from medchain.node.rpc.server import RpcServer
from medchain.node.startup import NodeError, check_stores, open_store
from medchain.node.web.app import History, build_app
from medchain.node.web.http import HttpServer
from medchain.node.web.portal import Sessions
from medchain.storage.genesis import Genesis
from medchain.storage.keyfile import load_key
from medchain.storage.kv import LevelDBKV, StorageDamaged, StoreError
from medchain.storage.ledger import Ledger
from medchain.storage.vault import Vault, master_key_from_seed

log = logging.getLogger("medchain.node")
# Test switches: only with these set does the daemon load testing/ (never in production).
BYZANTINE_ENV = "MEDCHAIN_BYZANTINE"
FAULTS_ENV = "MEDCHAIN_TEST_FAULTS"
T = TypeVar("T")

EXIT_HALTED = 3


def build_executor(genesis: Genesis) -> Executor:
    executor = make_executor(genesis)
    if executor.missing:
        raise NodeError(
            f"this node's chaincode differs from the consortium's genesis for: {', '.join(executor.missing)} "
            "(run the same medchain release as the other members)"
        )
    return executor


class Node:
    def __init__(self, config: NodeConfig, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path or Path("node.toml")  # named in next steps
        self.genesis = Genesis.load(config.genesis_file)
        self.signer = load_key(config.key_file)
        org = self.genesis.org_by_node_key(self.signer.public_key)
        if org is None:
            raise NodeError(
                f"the key in {config.key_file} is not a node key of this consortium's genesis"
            )
        if org.org_id != config.org_id:
            raise NodeError(
                f"the key in {config.key_file} belongs to {org.org_id}, but the config says {config.org_id}"
            )
        self.org = org
        config.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(config.data_dir, 0o700)
        self.executor = build_executor(self.genesis)
        self.halt_reason: str | None = None  # a failed write (see _storage_failed)
        self._damage_logged: set[str] = set()
        # A data dir that has a ledger has been run: from then on a missing store is
        # damage, never a reason to start an empty one in its place.
        fresh = not (config.data_dir / "ledger").exists()
        hook = self._storage_failed
        self.ledger = self._open(
            "ledger", lambda: Ledger.open(config.data_dir / "ledger", self.genesis, fresh, hook)
        )
        nothing_yet = self.ledger.height == 0  # nothing committed: no store can have lost data
        # The pool's write-ahead log and consensus Persist records (see Driver.local),
        # written from the event loop. LevelDB runs the flushes and compactions of all
        # a process's stores on one background thread, so while it compacts the main
        # store, this store's memtable must hold what arrives meanwhile: when it is
        # full, the write — and with it the event loop — waits. Hence a memtable of
        # several seconds of writes at the target load (BENCHMARKS.md, compaction).
        self.local_store = self._open(
            "node-state",
            lambda: LevelDBKV(
                config.data_dir / "node-state",
                create=fresh or nothing_yet,
                bloom_filter_bits=0,
                cache_bytes=0,
                write_buffer_bytes=4 << 20,
                name="node-state",
                on_failure=hook,
            ),
        )
        self.ledger.mirror = self.local_store  # told every commit's seq (storage.integrity)
        validators = self.genesis.validators
        index = validators.index_of(self.signer.public_key)
        assert index is not None
        by_key = {p.node_key: p for p in config.peers}
        peers = []
        for i, o in enumerate(self.genesis.organizations):
            if i == index:
                continue
            pc = by_key.get(o.node_key)
            if pc is None:
                raise NodeError(f"node config lists no address for member {o.org_id}")
            peers.append(PeerAddress(i, o.org_id, o.node_key, pc.address))
        self.p2p = Libp2pTransport(
            self.signer, index, config.listen, peers, validators.keys, P2PConfig()
        )
        self.transport: Transport = self.p2p
        if os.environ.get(BYZANTINE_ENV):  # test-only: a member that misbehaves on purpose
            byzantine = importlib.import_module(
                "medchain.testing.byzantine"
            )  # by name: see pyproject
            self.transport = byzantine.ByzantineTransport(
                self.p2p,
                byzantine.modes_from_env(),
                self.signer,
                self.genesis.chain_id,
                index,
                validators.n,
            )
        self.driver = Driver(
            self.genesis,
            self.ledger,
            self.executor,
            self.signer,
            self.transport,
            DriverConfig(),
            local=self.local_store,
        )
        master = master_key_from_seed(self.signer.seed)
        self.vault = self._open(
            "vault",
            lambda: Vault.open(
                config.data_dir / "vault",
                master,
                fresh or nothing_yet,
                hook,
                (self.local_store, self.ledger.store),
            ),
        )
        check_stores(self.ledger, self.vault, org.org_id, self.config_path, self._close_opened)
        self.records = RecordService(
            self.driver,
            self.vault,
            policy=ReleasePolicy(config.release_window_s, config.refusal_logs_per_minute),
            redemptions=StoredRedemptions(self.local_store),  # survives restarts
        )
        self.rpc = RpcServer(config.rpc_socket, translate=self._storage_error)
        register(self.rpc, self.driver)
        register_records(self.rpc, self.records)
        if os.environ.get(FAULTS_ENV) == "1":  # test-only: the fault switch (testing/)
            faults = importlib.import_module("medchain.testing.faults")
            log.warning(
                "TEST FAULTS ENABLED: debug.cut can cut this node's links",
                extra={"event": "test-faults"},
            )
            faults.register_faults(self.rpc, self.p2p.fault, validators.n, index)
        self.http: HttpServer | None = None
        self.history = History(self.driver)
        if config.http_port:
            limits = config.http_limits
            sessions = Sessions(self.genesis.chain_id, org.org_id, time.monotonic, limits)
            self.http = HttpServer(
                config.http_host,
                config.http_port,
                build_app(self.driver, sessions, self.history, self.records, limits),
                limits,
            )

    def _open(self, store: str, fn: Callable[[], T]) -> T:
        return open_store(store, fn, self.config_path, self._close_opened)

    def _close_opened(self) -> None:
        for name in ("vault", "local_store", "ledger"):
            opened = getattr(self, name, None)
            if opened is not None:
                opened.close()

    def _storage_error(self, exc: Exception) -> RpcError | None:
        """What a client is told when a store failed under its request."""
        if isinstance(exc, StorageDamaged):
            return RpcError(
                STORAGE_DAMAGED,
                f"storage damaged: {exc} (this node's operator runs medchain node verify)",
            )
        if isinstance(exc, StoreError):
            return RpcError(STORAGE_FAILED, f"this node cannot write to its disk: {exc}")
        return None

    def _storage_failed(self, exc: StoreError) -> None:
        """A store could not write: halt now — carrying on would break a promise already
        made (an acknowledged transaction, a vote, a block). A read that found damaged
        data is logged once per store; the request gets a "storage damaged" error, and
        the driver halts if consensus itself needed the data."""
        if isinstance(exc, StorageDamaged):
            store = str(exc).split(" store at ")[0]
            if store not in self._damage_logged:
                self._damage_logged.add(store)
                log.critical(
                    "storage damaged: %s; next step: medchain node verify --config %s",
                    exc,
                    self.config_path,
                    extra={"event": "storage-damaged"},
                )
            return
        if self.halt_reason is not None:
            return
        self.halt_reason = f"write failed: {exc}"
        driver = getattr(self, "driver", None)
        if driver is not None:
            driver.halted = self.halt_reason

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> int:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._signals, nursery.cancel_scope)
                await nursery.start(self.transport.run)
                await nursery.start(self.driver.run)
                await nursery.start(self.rpc.serve)
                if self.http is not None:
                    await nursery.start(self.http.serve)
                    nursery.start_soon(self.history.run)
                nursery.start_soon(self._watch_halt, nursery.cancel_scope)
                nursery.start_soon(self._trim_heap)
                log.info(
                    "node %s ready: height %d, view %d",
                    self.org.org_id,
                    self.ledger.height,
                    self.driver.replica.view,
                    extra={"event": "ready", "height": self.ledger.height},
                )
                task_status.started()
        finally:
            self.ledger.close()
            self.local_store.close()
            self.vault.close()
            log.info(
                "node %s stopped at height %d",
                self.org.org_id,
                self.ledger.height,
                extra={"event": "stopped"},
            )
        return EXIT_HALTED if self.driver.halted else 0

    async def _signals(self, scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for sig in signals:
                log.info(
                    "received %s; shutting down",
                    signal.Signals(sig).name,
                    extra={"event": "shutdown"},
                )
                scope.cancel()
                return

    async def _trim_heap(self) -> None:
        tracing = memory.start_tracing()  # MEDCHAIN_TRACEMALLOC=1: find what grows
        # MEDCHAIN_MALLOCSTATS=1: Python's allocator statistics (arenas, pools, blocks in
        # use) on stderr every minute.
        pystats = os.environ.get("MEDCHAIN_MALLOCSTATS") == "1"
        for tick in itertools.count(1):
            await trio.sleep(10)
            memory.trim()
            if tracing and tick >= 12 and tick % 6 == 0:  # baseline after 2 minutes
                memory.log_growth()
            if pystats and tick % 6 == 0:
                sys._debugmallocstats()

    async def _watch_halt(self, scope: trio.CancelScope) -> None:
        while not self.driver.halted:
            await trio.sleep(0.2)
        log.critical("node halted: %s", self.driver.halted, extra={"event": "halt"})
        scope.cancel()


def run_node(config_path: Path) -> int:
    from medchain.node.ops.logs import setup_logging

    config = NodeConfig.load(config_path)
    setup_logging(config.org_id, config.log_level, config.log_file)
    memory.limit_arenas()
    log.info("allocator %s", memory.allocator(), extra={"event": "allocator"})
    try:
        node = Node(config, config_path)
    except NodeError as exc:  # in node.log too, where an operator of `net up` looks
        log.critical("cannot start: %s", exc, extra={"event": "refused"})
        raise
    return trio.run(node.run)
