"""Sign-in for the web UI (patients, member admins, the regulator): challenge,
signature, session.

The viewer proves who they are by signing a fresh server challenge with
their own key (in the browser with WebCrypto, or with ``medchain portal
sign``); the key never reaches the node. A session remembers only the key:
what it may see is decided from the key's identity on committed state at
each request (node/web/auth.py), so a key revoked or suspended after the
login loses its view at once. What is signed is
``sign_bytes("medchain/portal-login/v1", chain_id, audience, challenge)`` —
its own domain, so a login signature can never be a transaction or a signed
query, and ``audience`` (the node's organization) stops a login captured at
one node's portal being replayed at another's. Challenges are single-use and
expire after two minutes; sessions after 30 minutes. Both tables are bounded.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from storage.crypto import sign_bytes, verify

DOMAIN_LOGIN = "medchain/portal-login/v1"
CHALLENGE_TTL_S = 120.0
SESSION_TTL_S = 1800.0
MAX_ENTRIES = 10_000


def login_sign_bytes(chain_id: str, audience: str, challenge: bytes) -> bytes:
    return sign_bytes(DOMAIN_LOGIN, chain_id, audience, challenge)


class PortalError(Exception):
    """A refused sign-in, with the reason."""


@dataclass(frozen=True)
class Session:
    key: bytes
    subject: str  # who the key was at login (a pseudonym or an organization id)
    expires: float


class Sessions:
    def __init__(self, chain_id: str, audience: str, clock: Callable[[], float]) -> None:
        self.chain_id = chain_id
        self.audience = audience
        self.clock = clock
        self._challenges: OrderedDict[bytes, float] = OrderedDict()
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def challenge(self) -> bytes:
        self._expire()
        c = secrets.token_bytes(32)
        self._challenges[c] = self.clock() + CHALLENGE_TTL_S
        while len(self._challenges) > MAX_ENTRIES:
            self._challenges.popitem(last=False)
        return c

    def login(self, key: bytes, challenge: bytes, signature: bytes, subject: str) -> str:
        """A session token for ``key`` if it signed a live challenge of ours."""
        self.verify(key, challenge, signature)
        return self.open(key, subject)

    def verify(self, key: bytes, challenge: bytes, signature: bytes) -> None:
        """Check (and use up) a signed challenge; raises PortalError."""
        self._expire()
        if len(key) != 32 or len(signature) != 64:
            raise PortalError("a public key is 32 bytes and a signature 64")
        expires = self._challenges.get(challenge)
        if expires is None:
            raise PortalError("unknown or expired challenge; ask for a new one")
        if not verify(key, login_sign_bytes(self.chain_id, self.audience, challenge), signature):
            raise PortalError("the signature does not verify for this key and challenge")
        del self._challenges[challenge]  # single use

    def open(self, key: bytes, subject: str) -> str:
        """A new session for a key whose signature was just verified."""
        token = secrets.token_urlsafe(32)
        self._sessions[token] = Session(key, subject, self.clock() + SESSION_TTL_S)
        while len(self._sessions) > MAX_ENTRIES:
            self._sessions.popitem(last=False)
        return token

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        s = self._sessions.get(token)
        if s is None or s.expires < self.clock():
            return None
        return s

    def logout(self, token: str | None) -> None:
        if token:
            self._sessions.pop(token, None)

    def _expire(self) -> None:
        now = self.clock()
        for table in (self._challenges,):
            while table and next(iter(table.values())) < now:
                table.popitem(last=False)
        while self._sessions and next(iter(self._sessions.values())).expires < now:
            self._sessions.popitem(last=False)
