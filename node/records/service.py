"""The record service: the vault's front door and the fetch protocol.

``RecordService`` is what the daemon builds and the RPC and web front ends
use. It is made of three parts, one module each:

Custodian side
  ``store`` (node.records.store): store FHIR resources encrypted in the vault
  and return what must be anchored.
  ``custodian`` (node.records.custodian): answer a fetch — commit the access
  decision on chain first, then release each permitted record of this node's
  once, while fresh and still permitted, sealed to the requester; log what it
  refuses on chain.

Requester side
  ``fetch`` (node.records.requester): route the signed request to the
  custodians of its records over libp2p and merge their sealed replies.

This module wires them to the driver's records channel.
"""

from __future__ import annotations

from medchain.node.consensus.driver import Driver
from medchain.node.net.transport import CHANNEL_RECORDS, Incoming
from medchain.node.records.custodian import Custodian
from medchain.node.records.release import Redemptions, ReleasePolicy, StoredRedemptions
from medchain.node.records.requester import Requester
from medchain.node.records.store import RecordStore
from medchain.node.records.wire import FetchReply, FetchRequest, decode_frame
from medchain.storage.codec import DecodeError
from medchain.storage.vault import Vault


class RecordService:
    """The record service of one node: ``store``, ``custodian`` and ``requester``."""

    def __init__(
        self,
        driver: Driver,
        vault: Vault,
        fetch_timeout_s: float = 30.0,
        policy: ReleasePolicy | None = None,
        redemptions: Redemptions | None = None,
    ) -> None:
        self.driver = driver
        self.vault = vault
        self.store = RecordStore(vault, driver.genesis.organizations[driver.index].org_id)
        self.custodian = Custodian(
            driver,
            self.store,
            fetch_timeout_s,
            policy or ReleasePolicy(),
            redemptions if redemptions is not None else StoredRedemptions(driver.local),
        )
        self.requester = Requester(self.custodian)
        driver.channel_handlers[CHANNEL_RECORDS] = self.on_frame

    async def fetch(self, tx_raw: bytes) -> FetchReply:
        """The records a signed access transaction asks for, from their custodians."""
        return await self.requester.fetch(tx_raw)

    async def on_frame(self, msg: Incoming) -> None:
        try:
            frame = decode_frame(msg.payload)
        except DecodeError as exc:
            self.driver._garbage(msg.peer, f"undecodable records frame: {exc}")
            return
        if isinstance(frame, FetchRequest):
            await self.custodian.on_request(msg.peer, frame)
        else:
            self.requester.on_reply(frame)
