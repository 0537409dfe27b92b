"""Node configuration: one TOML file per node, passed down explicitly.

Relative paths in the file are relative to the file's own directory, so a
consortium directory can be moved as a whole.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from medchain.node.web.limits import WebLimits

DEFAULT_RELEASE_WINDOW_S = 60
DEFAULT_REFUSAL_LOGS_PER_MINUTE = 20


class ConfigError(ValueError):
    """An invalid node configuration, with the reason."""


@dataclass(frozen=True)
class PeerConfig:
    org_id: str
    node_key: bytes
    address: str  # multiaddr, e.g. /ip4/127.0.0.1/tcp/7102


@dataclass(frozen=True)
class NodeConfig:
    org_id: str
    data_dir: Path
    key_file: Path
    genesis_file: Path
    listen: str
    rpc_socket: Path
    peers: tuple[PeerConfig, ...] = ()
    log_level: str = "info"
    log_file: Path | None = None
    http_port: int = 0  # 0 = web UI (explorer, patient portal) off
    http_host: str = "127.0.0.1"
    # The web UI's caps and timeouts (``[http_limits]``; node/web/limits.py).
    http_limits: WebLimits = field(default_factory=WebLimits)
    # Records leave this custodian only for an access decision committed within the
    # last ``release_window_s`` seconds (block time against this node's clock), once.
    release_window_s: int = DEFAULT_RELEASE_WINDOW_S
    # At most this many refused-release log transactions per requester a minute.
    refusal_logs_per_minute: int = DEFAULT_REFUSAL_LOGS_PER_MINUTE
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> NodeConfig:
        path = Path(path).resolve()
        try:
            doc = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read node config {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"node config {path} is not valid TOML: {exc}") from None
        base = path.parent

        def p(v: str) -> Path:
            q = Path(v)
            return q if q.is_absolute() else base / q

        try:
            data_dir = p(doc["data_dir"])
            cfg = cls(
                org_id=str(doc["org_id"]),
                data_dir=data_dir,
                key_file=p(doc["key_file"]),
                genesis_file=p(doc["genesis"]),
                listen=str(doc["listen"]),
                rpc_socket=p(doc["rpc_socket"]) if "rpc_socket" in doc else data_dir / "node.sock",
                peers=tuple(
                    PeerConfig(str(x["org_id"]), bytes.fromhex(x["node_key"]), str(x["address"]))
                    for x in doc.get("peers", [])
                ),
                log_level=str(doc.get("log_level", "info")),
                log_file=p(doc["log_file"]) if doc.get("log_file") else None,
                http_port=int(doc.get("http_port", 0)),
                http_host=str(doc.get("http_host", "127.0.0.1")),
                http_limits=WebLimits.from_doc(_table(doc, "http_limits")),
                release_window_s=_bounded(
                    doc, "release_window_s", DEFAULT_RELEASE_WINDOW_S, 1, 24 * 3600
                ),
                refusal_logs_per_minute=_bounded(
                    doc, "refusal_logs_per_minute", DEFAULT_REFUSAL_LOGS_PER_MINUTE, 0, 10_000
                ),
                extra={k: v for k, v in doc.items() if k not in _KNOWN},
            )
        except KeyError as exc:
            raise ConfigError(f"node config {path} lacks the setting {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"node config {path} has an invalid value: {exc}") from None
        return cfg

    def to_toml(self, base: Path) -> str:
        def rel(q: Path) -> str:
            return os.path.relpath(q, base)

        doc: dict[str, Any] = {
            "org_id": self.org_id,
            "data_dir": rel(self.data_dir),
            "key_file": rel(self.key_file),
            "genesis": rel(self.genesis_file),
            "listen": self.listen,
            "rpc_socket": rel(self.rpc_socket),
            "log_level": self.log_level,
            "http_port": self.http_port,
            "http_host": self.http_host,
            "peers": [
                {"org_id": x.org_id, "node_key": x.node_key.hex(), "address": x.address}
                for x in self.peers
            ],
        }
        if self.log_file is not None:
            doc["log_file"] = rel(self.log_file)
        if self.http_limits.to_doc():
            doc["http_limits"] = self.http_limits.to_doc()
        if self.release_window_s != DEFAULT_RELEASE_WINDOW_S:
            doc["release_window_s"] = self.release_window_s
        if self.refusal_logs_per_minute != DEFAULT_REFUSAL_LOGS_PER_MINUTE:
            doc["refusal_logs_per_minute"] = self.refusal_logs_per_minute
        return "# medchain node configuration (paths relative to this file)\n" + tomli_w.dumps(doc)

    def save(self, path: Path) -> None:
        path = Path(path).resolve()
        path.write_text(self.to_toml(path.parent))


_KNOWN = {
    "org_id",
    "data_dir",
    "key_file",
    "genesis",
    "listen",
    "rpc_socket",
    "peers",
    "log_level",
    "log_file",
    "http_port",
    "http_host",
    "http_limits",
    "release_window_s",
    "refusal_logs_per_minute",
}


def _table(doc: dict[str, Any], name: str) -> dict[str, Any]:
    v = doc.get(name, {})
    if not isinstance(v, dict):
        raise ValueError(f"{name} must be a table")
    return v


def _bounded(doc: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    v = doc.get(name, default)
    if type(v) is not int or not lo <= v <= hi:
        raise ValueError(f"{name} must be an integer from {lo} to {hi}, not {v!r}")
    return v
