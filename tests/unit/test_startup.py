"""node.startup: a store that does not open and damaged data stop the start with
the store, what is wrong and the next step; what is not damage is only logged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from medchain.node.startup import NodeError, check_stores, next_step, open_store
from medchain.storage.kv import StoreError, StoreLocked, StoreUnwritable
from medchain.storage.vault import Vault
from tests.chain import Chain

CONFIG = Path("/etc/medchain/node.toml")


class Refusals:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def fail(exc: StoreError) -> None:
    raise exc


@pytest.mark.parametrize(
    "store, exc, step",
    [
        ("vault", StoreError("the vault store at v is missing"), "restore it from your backup"),
        ("ledger", StoreError("the ledger store at l is missing"), f"resync --config {CONFIG}"),
        ("node-state", StoreError("x"), "--reset-state"),
        ("vault", StoreUnwritable("Read-only file system"), "the data is not damaged"),
        ("ledger", StoreLocked("lock held"), "stop the node that runs on this data dir"),
    ],
)
def test_a_store_that_does_not_open_is_refused_with_the_next_step(
    store: str, exc: StoreError, step: str
) -> None:
    refused = Refusals()
    with pytest.raises(NodeError) as info:
        open_store(store, lambda: fail(exc), CONFIG, refused)
    assert refused.calls == 1
    assert str(info.value).startswith(str(exc)) and step in str(info.value)


def test_a_store_that_opens_is_returned() -> None:
    refused = Refusals()
    assert open_store("vault", lambda: 7, CONFIG, refused) == 7 and refused.calls == 0


def anchored_chain() -> Chain:
    c = Chain()
    _, patient = c.patient()
    doc, _ = c.practitioner("hospital-a")
    c.anchor(doc, "hospital-a", "hospital-a:rec-1", patient)
    return c


def test_sound_data_starts_and_a_notice_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    c = anchored_chain()
    refused = Refusals()
    with caplog.at_level(logging.INFO, "medchain.node"):
        # hospital-a:rec-1 is anchored with hospital-a as custodian but not in this (empty) vault
        check_stores(c.ledger, Vault.in_memory(bytes(32)), "hospital-a", CONFIG, refused)
    assert refused.calls == 0
    notices = [r for r in caplog.records if getattr(r, "event", "") == "storage-notice"]
    assert len(notices) == 1 and "are not in this vault" in notices[0].getMessage()
    assert notices[0].levelno == logging.WARNING
    assert any(getattr(r, "event", "") == "storage-checked" for r in caplog.records)


def test_another_nodes_vault_is_refused_with_the_next_step() -> None:
    c = anchored_chain()
    theirs = Vault.in_memory(bytes(32))
    theirs.put("hospital-a:rec-1", b"{}", bytes(32), {})
    ours = Vault(theirs.store, bytes([1]) * 32)  # the same entries, this node's key
    refused = Refusals()
    with pytest.raises(NodeError) as info:
        check_stores(c.ledger, ours, "hospital-a", CONFIG, refused)
    assert refused.calls == 1
    message = str(info.value)
    assert message.startswith("this node's data is damaged; refusing to start:")
    assert "another node's vault" in message
    assert f"next step: {next_step('vault', CONFIG)}" in message
