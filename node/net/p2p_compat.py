"""Work-around for a py-libp2p 0.8 defect: inbound connection slots never come back.

The defect (libp2p/network/swarm.py, 0.8.1):

- ``Swarm._init_connection_management`` makes ``swarm._inbound_limiter`` a
  ``trio.CapacityLimiter`` of ``max_connections - min_connections`` tokens
  (300 - 50 = 250 by default).
- ``Swarm._handle_inbound_connection`` takes a token (``acquire_nowait``) for
  every accepted TCP connection and gives it back in a ``finally`` once
  ``_do_handle_inbound_connection`` returns.
- But after a successful upgrade, ``_do_handle_inbound_connection`` parks in
  ``await self.manager.wait_finished()``, which waits for the *swarm* to stop,
  not for the connection to close. Every inbound connection that completes its
  handshake so keeps its token (and its handler task) for the life of the
  process. After 250 of them every new inbound connection is closed at once,
  logged at debug level only, and a link whose both ends are that old never
  comes back.

The work-around, applied to one swarm instance (the library is not patched):
``upgrade_inbound_raw_conn`` is wrapped so that, when it is called by a task
holding an inbound slot (the listener's handler), it waits after the upgrade
until the connection it produced closes and then raises
``InboundConnectionEnded``. The handler's own ``except Exception`` path then
closes the (already closed) raw connection and returns, and its ``finally``
gives the token back from the task that borrowed it, as ``CapacityLimiter``
requires; the handler task ends too. Other callers (the DCUtR hole-punch path,
which holds no slot) get the connection back at once, as unwrapped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

log = logging.getLogger("medchain.p2p")

# How often the wait re-checks that the connection is still registered with the
# swarm, in case it went away without its closed event being set.
_RECHECK_S = 5.0


class InboundConnectionEnded(Exception):
    """Raised into libp2p's inbound handler once its connection has closed, so that
    the handler returns and releases its inbound slot."""


def inbound_slots(swarm: Any) -> tuple[int, int]:
    """(slots in use, slots in all) of the swarm's inbound connection limiter."""
    limiter = getattr(swarm, "_inbound_limiter", None)
    if not isinstance(limiter, trio.CapacityLimiter):
        return (0, 0)
    return (int(limiter.borrowed_tokens), int(limiter.total_tokens))


def recycle_inbound_slots(swarm: Any) -> bool:
    """Make each inbound connection give its slot back when it closes (see the module
    docstring). Returns False, and says so, if this libp2p has not the expected shape."""
    limiter = getattr(swarm, "_inbound_limiter", None)
    upgrade = getattr(swarm, "upgrade_inbound_raw_conn", None)
    if not isinstance(limiter, trio.CapacityLimiter) or upgrade is None:
        log.warning(
            "libp2p swarm has no inbound limiter to recycle; inbound slots may leak",
            extra={"event": "p2p-compat"},
        )
        return False
    if getattr(upgrade, "_recycles_slots", False):
        return True
    swarm.upgrade_inbound_raw_conn = _holding_until_closed(swarm, limiter, upgrade)
    return True


def _holding_until_closed(
    swarm: Any, limiter: trio.CapacityLimiter, upgrade: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    async def upgrade_inbound_raw_conn(raw_conn: Any, maddr: Any) -> Any:
        muxed = await upgrade(raw_conn, maddr)
        if trio.lowlevel.current_task() not in limiter.statistics().borrowers:
            return muxed  # not the listener's handler: nothing to give back
        await _wait_closed(swarm, muxed)
        raise InboundConnectionEnded(f"inbound connection from {muxed.peer_id} closed")

    upgrade_inbound_raw_conn._recycles_slots = True  # type: ignore[attr-defined]
    return upgrade_inbound_raw_conn


async def _wait_closed(swarm: Any, muxed: Any) -> None:
    closed = getattr(muxed, "event_closed", None)
    while not muxed.is_closed and _registered(swarm, muxed):
        with trio.move_on_after(_RECHECK_S):
            if isinstance(closed, trio.Event):
                await closed.wait()
            else:
                await trio.sleep_forever()


def _registered(swarm: Any, muxed: Any) -> bool:
    conns = swarm.connections.get(muxed.peer_id, ())
    return any(c.muxed_conn is muxed and not c.is_closed for c in conns)
