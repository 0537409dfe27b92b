"""The requester's side of a fetch: routing a signed access request to the
custodians of its records and merging their replies.

``fetch`` sends the request over libp2p (``/medchain/records/1``) to the
custodian it is addressed to, or to each custodian of a record it names (this
node's own custodian answers in-process), resending until answered; the
replies stay sealed, so only the requester's own application can open and
verify them.
"""

from __future__ import annotations

import secrets

import trio

from medchain.node.net.transport import CHANNEL_RECORDS
from medchain.node.records.custodian import Custodian, anchor
from medchain.node.records.wire import (
    ERROR,
    FetchItem,
    FetchReply,
    FetchRequest,
    parse_request,
)


class Requester:
    """Fetches records for requesters on this node, from whichever node holds them."""

    def __init__(self, custodian: Custodian) -> None:
        self.custodian = custodian  # answers for this node's own records
        self.driver = custodian.driver
        self.org = custodian.org
        self.fetch_timeout_s = custodian.fetch_timeout_s
        self.resend_s = 3.0
        self._waiting: dict[bytes, tuple[trio.Event, list[FetchReply]]] = {}

    def on_reply(self, frame: FetchReply) -> None:
        """A custodian's reply on the records channel, for the fetch waiting on it."""
        waiting = self._waiting.get(frame.request_id)
        if waiting is not None:
            waiting[1].append(frame)
            waiting[0].set()

    async def fetch(self, tx_raw: bytes) -> FetchReply:
        """Send a signed access transaction to the custodians of its records (the
        one it is addressed to, or each custodian of a record it names) and merge
        their replies: each custodian answers for its own records."""
        d = self.driver
        request_id = secrets.token_bytes(16)
        parsed = parse_request(tx_raw, d.genesis.chain_id, d.genesis.consensus.max_tx_bytes)
        if isinstance(parsed, str):
            return FetchReply(request_id, b"", (), parsed)
        tx, record_ids, addressed = parsed
        holders: dict[str, str] = {}
        for rid in record_ids:
            found = anchor(self.driver, rid)
            if found is None:
                return FetchReply(request_id, b"", (), f"record {rid} is not anchored")
            holders[rid] = addressed or found["custodian"]
        custodians = sorted(set(holders.values()))
        if len(custodians) == 1:
            return await self._ask(custodians[0], FetchRequest(request_id, tx_raw))
        replies: dict[str, FetchReply] = {}

        async def ask(custodian: str) -> None:
            replies[custodian] = await self._ask(
                custodian, FetchRequest(secrets.token_bytes(16), tx_raw)
            )

        async with trio.open_nursery() as nursery:
            for custodian in custodians:
                nursery.start_soon(ask, custodian)
        items = []
        for rid in record_ids:
            reply = replies[holders[rid]]
            mine = [i for i in reply.items if i.record_id == rid]
            items.append(mine[0] if mine else FetchItem(rid, ERROR, reply.error or "no answer"))
        return FetchReply(request_id, tx.tx_id, tuple(items))

    async def _ask(self, custodian: str, req: FetchRequest) -> FetchReply:
        """One custodian's reply to ``req`` (this node's own, or over libp2p)."""
        d = self.driver
        if custodian == self.org:
            return await self.custodian.serve(req)
        peer = next(
            (i for i, o in enumerate(d.genesis.organizations) if o.org_id == custodian), None
        )
        if peer is None:
            return FetchReply(req.request_id, b"", (), f"unknown custodian {custodian}")
        event = trio.Event()
        slot: list[FetchReply] = []
        self._waiting[req.request_id] = (event, slot)
        try:
            # Resend until answered: a frame can be lost while a connection is being
            # replaced; the custodian answers a repeat of a request it served with the
            # same reply (ReplyCache), not a second release.
            with trio.move_on_after(self.fetch_timeout_s + 5):
                while not event.is_set():
                    d.transport.send(peer, CHANNEL_RECORDS, req.encode())
                    with trio.move_on_after(self.resend_s):
                        await event.wait()
        finally:
            self._waiting.pop(req.request_id, None)
        if not slot:
            return FetchReply(req.request_id, b"", (), f"no answer from {custodian} in time")
        return slot[0]
