"""medchain: a permissioned PBFT blockchain node for sharing health records.

The repository keeps one top-level folder per subsystem (node/, consensus/,
contracts/, storage/, cli/, client/, localnet/, testing/); they install as
``medchain.<folder>`` (pyproject.toml maps them with package-dir). The links
in this folder give the source tree the same names, so that mypy,
import-linter and ``PYTHONPATH=<checkout>`` see what an install sees.
"""
