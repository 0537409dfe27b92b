"""Structured logs: one JSON object per line (time, level, logger, message, fields).

Fields come from ``extra={...}``. Nothing secret is ever passed to a logger:
keys are logged as short public-key prefixes or organization ids only.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, org: str) -> None:
        super().__init__()
        self.org = org

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "org": self.org,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STANDARD and not k.startswith("_"):
                doc[k] = v if isinstance(v, str | int | float | bool | type(None)) else str(v)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"))


class RateLimit(logging.Filter):
    """At most ``per_second`` records per (logger, message template) per second."""

    def __init__(self, per_second: int = 20) -> None:
        super().__init__()
        self.per_second = per_second
        self.window: dict[tuple[str, str], tuple[int, int]] = {}
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = int(time.monotonic())
        second, count = self.window.get(key, (now, 0))
        if second != now:
            second, count = now, 0
        count += 1
        self.window[key] = (second, count)
        if len(self.window) > 10_000:
            self.window.clear()
        if count > self.per_second:
            self.suppressed += 1
            return False
        return True


def setup_logging(org: str, level: str = "info", file: Path | None = None) -> None:
    handler: logging.Handler = (
        logging.FileHandler(file) if file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(JsonFormatter(org))
    handler.addFilter(RateLimit())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("medchain").setLevel(getattr(logging, level.upper(), logging.INFO))
    # py-libp2p logs routine connection churn as ERROR straight to stderr; keep it in our
    # log, and only its serious messages (everything when debugging).
    lp = logging.getLogger("libp2p")
    lp.handlers[:] = [handler]
    lp.setLevel(logging.WARNING if level.lower() == "debug" else logging.CRITICAL)
