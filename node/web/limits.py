"""The web UI's limits: how much of the node one client, one patient or all of
them together may hold, and how the server's work is kept from starving
consensus.

One value of ``WebLimits`` is built from the node config (``[http_limits]``,
node/config.py) and handed to the server, the sessions table and the app.
The defaults suit a node whose web UI a few dozen people use at once.

Why the work budget looks as it does: the daemon is one trio event loop, and
consensus runs on it. Rendering a page is pure Python, so a worker thread
would still hold the GIL (and would read driver state that the loop
mutates). Instead the web's share of the loop is bounded: at most
``max_handlers`` requests are being worked on at once (the rest queue in
order of arrival, a fair FIFO), their work together may take at most ``work_share``
of the loop's time (node/web/budget.py), each request's work is bounded
(pages are capped in size) and long renders pause every ``render_batch``
items. Between two turns of a consensus task the loop then runs at most
``max_handlers`` short slices of web work, and it is free for consensus at
least ``1 - work_share`` of the time. Requests that wait on consensus or the
network give their slot back while they wait.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class WebLimits:
    # Connections: over either cap a new connection gets 503 and is closed.
    max_connections: int = 256
    # Per client IP address: behind a reverse proxy every client is the proxy's
    # address, so raise this to max_connections there.
    max_connections_per_client: int = 32
    # A response (or a 64 KiB part of one) the client does not take within this
    # long ends the connection: a client that sends without reading holds nothing.
    send_timeout_s: float = 10.0
    request_timeout_s: float = 10.0  # to send one whole request
    idle_timeout_s: float = 30.0  # keep-alive between requests
    max_requests_per_connection: int = 1000
    # Work: requests handled at once, and the share of the event loop's time
    # their work may take (node/web/budget.py; see the module docstring).
    max_handlers: int = 4
    work_share: float = 0.5
    render_batch: int = 25
    # Block pages: transactions per page.
    tx_page_default: int = 100
    tx_page_max: int = 200
    # The portal's access log: entries per page.
    access_page_default: int = 20
    access_page_max: int = 100
    # Patients: live event streams and sessions per patient (or per organization
    # or regulator signing in); a patient's new session evicts only that same
    # patient's oldest one.
    max_streams_per_patient: int = 4
    max_sessions_per_patient: int = 16
    max_sessions: int = 50_000  # all together; beyond it new logins are refused
    max_challenges_per_client: int = 64

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> WebLimits:
        """From a config table; unknown names and out-of-range values raise ValueError."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, v in doc.items():
            if name not in known:
                raise ValueError(f"http_limits has no setting {name!r}")
            default = getattr(cls, name)
            if name == "work_share":
                if type(v) not in (int, float) or not 0.05 <= v <= 1:
                    raise ValueError(f"http_limits.work_share must be 0.05 to 1, not {v!r}")
                values[name] = float(v)
            elif isinstance(default, float):
                if type(v) not in (int, float) or not 0.1 <= v <= 3600:
                    raise ValueError(f"http_limits.{name} must be 0.1 to 3600 seconds, not {v!r}")
                values[name] = float(v)
            else:
                if type(v) is not int or not 1 <= v <= 1_000_000:
                    raise ValueError(f"http_limits.{name} must be an integer from 1, not {v!r}")
                values[name] = v
        out = cls(**values)
        if out.tx_page_default > out.tx_page_max:
            raise ValueError("http_limits.tx_page_default must not exceed tx_page_max")
        if out.access_page_default > out.access_page_max:
            raise ValueError("http_limits.access_page_default must not exceed access_page_max")
        return out

    def to_doc(self) -> dict[str, Any]:
        """The settings that differ from the defaults."""
        base = WebLimits()
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != getattr(base, f.name)
        }
