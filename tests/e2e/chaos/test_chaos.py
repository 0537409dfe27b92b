"""The short chaos run CI does (the long ones: python -m tests.e2e.chaos.run)."""

from __future__ import annotations

import pytest

from tests.e2e.chaos.engine import run_chaos

pytestmark = pytest.mark.e2e


def test_short_chaos_run_loses_nothing() -> None:
    report = run_chaos(n=4, seconds=30, seed=7, rate=40)
    print(report.to_json())
    assert report.problems == []
    assert report.kills + report.pauses + report.cuts >= 5
    assert report.acknowledged > 300
    assert report.lost == 0 and report.duplicated == 0
    assert report.committed == report.acknowledged
    assert report.ledgers_verified == 4
