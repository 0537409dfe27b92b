"""The node's web UI: consortium explorer and patient portal (HTTP, off by default)."""
