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
expire after two minutes; sessions after 30 minutes. Both tables are bounded
(node/web/limits.py): outstanding challenges per client address (a client
asking for more pushes out only its own oldest), sessions per subject (a
patient's new login ends only that same patient's oldest session, never
another's) and sessions in all (when full, new logins are refused until
sessions expire or end).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from medchain.node.web.limits import WebLimits
from medchain.storage.crypto import sign_bytes, verify

DOMAIN_LOGIN = "medchain/portal-login/v1"
CHALLENGE_TTL_S = 120.0
SESSION_TTL_S = 1800.0
MAX_ENTRIES = 10_000  # outstanding challenges in all


def login_sign_bytes(chain_id: str, audience: str, challenge: bytes) -> bytes:
    return sign_bytes(DOMAIN_LOGIN, chain_id, audience, challenge)


class PortalError(Exception):
    """A refused sign-in, with the reason."""


class SessionsFull(PortalError):
    """The node holds as many sessions as it may; try again later."""


@dataclass(frozen=True)
class Session:
    key: bytes
    subject: str  # who the key was at login (a pseudonym or an organization id)
    expires: float


class Sessions:
    def __init__(
        self,
        chain_id: str,
        audience: str,
        clock: Callable[[], float],
        limits: WebLimits | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.audience = audience
        self.clock = clock
        self.limits = limits or WebLimits()
        self._challenges: OrderedDict[bytes, tuple[float, str | None]] = OrderedDict()
        self._client_challenges: dict[str, OrderedDict[bytes, None]] = {}
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._subject_sessions: dict[str, OrderedDict[str, None]] = {}

    def challenge(self, client: str | None = None) -> bytes:
        """A fresh challenge; ``client`` (the asker's address) bounds how many
        of them one client may hold."""
        self._expire()
        c = secrets.token_bytes(32)
        self._challenges[c] = (self.clock() + CHALLENGE_TTL_S, client)
        if client is not None:
            mine = self._client_challenges.setdefault(client, OrderedDict())
            mine[c] = None
            while len(mine) > self.limits.max_challenges_per_client:
                self._drop_challenge(next(iter(mine)))
        while len(self._challenges) > MAX_ENTRIES:
            self._drop_challenge(next(iter(self._challenges)))
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
        if challenge not in self._challenges:
            raise PortalError("unknown or expired challenge; ask for a new one")
        if not verify(key, login_sign_bytes(self.chain_id, self.audience, challenge), signature):
            raise PortalError("the signature does not verify for this key and challenge")
        self._drop_challenge(challenge)  # single use

    def open(self, key: bytes, subject: str) -> str:
        """A new session for a key whose signature was just verified. Over the
        subject's cap its own oldest session ends; raises SessionsFull when the
        node holds all the sessions it may."""
        self._expire()
        mine = self._subject_sessions.get(subject)
        while mine and len(mine) >= self.limits.max_sessions_per_patient:
            self.logout(next(iter(mine)))
        if len(self._sessions) >= self.limits.max_sessions:
            raise SessionsFull("this node holds as many sessions as it may; try again later")
        token = secrets.token_urlsafe(32)
        self._sessions[token] = Session(key, subject, self.clock() + SESSION_TTL_S)
        self._subject_sessions.setdefault(subject, OrderedDict())[token] = None
        return token

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        s = self._sessions.get(token)
        if s is None or s.expires < self.clock():
            return None
        return s

    def logout(self, token: str | None) -> None:
        if not token:
            return
        s = self._sessions.pop(token, None)
        if s is None:
            return
        mine = self._subject_sessions.get(s.subject)
        if mine is not None:
            mine.pop(token, None)
            if not mine:
                del self._subject_sessions[s.subject]

    def sessions_of(self, subject: str) -> int:
        return len(self._subject_sessions.get(subject, ()))

    def _drop_challenge(self, c: bytes) -> None:
        entry = self._challenges.pop(c, None)
        if entry is None or entry[1] is None:
            return
        mine = self._client_challenges.get(entry[1])
        if mine is not None:
            mine.pop(c, None)
            if not mine:
                del self._client_challenges[entry[1]]

    def _expire(self) -> None:
        # Both tables are in order of expiry (one lifetime each).
        now = self.clock()
        while self._challenges and next(iter(self._challenges.values()))[0] < now:
            self._drop_challenge(next(iter(self._challenges)))
        while self._sessions and next(iter(self._sessions.values())).expires < now:
            self.logout(next(iter(self._sessions)))
