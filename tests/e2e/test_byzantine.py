"""A Byzantine member in a real consortium: node 0 runs with
MEDCHAIN_BYZANTINE=equivocate,forge,flood (a test-only mode): as primary it
sends different blocks to different peers, it forges signatures and sender
ids, and it floods every channel with junk. The three honest nodes must stay
safe (identical blocks and state) and live (everything submitted to them
commits), and must name the offender in their logs and metrics."""

from __future__ import annotations

import json

import pytest

from medchain.localnet.processes import wait_ready
from tests.e2e.harness import cluster

pytestmark = pytest.mark.e2e

HONEST = [1, 2, 3]


def test_byzantine_member_is_survived_and_named() -> None:
    with cluster(4, start=False) as c:
        bad = c.genesis.organizations[0].org_id
        c.start(0, wait=False, env={"MEDCHAIN_BYZANTINE": "equivocate,forge,flood"})
        for i in HONEST:
            c.start(i, wait=False)
        for i in range(4):
            wait_ready(c.nodes[i], 60, c.procs[i])

        # Node 0 is the primary of view 0: its first blocks are equivocations.
        ids = [c.submit(HONEST[k % 3], HONEST[k % 3], f"b{k}", "x") for k in range(60)]
        c.wait_committed(ids, HONEST, timeout=90)
        more = [c.submit(HONEST[k % 3], HONEST[k % 3], f"c{k}", "y") for k in range(60)]
        c.wait_committed(more, HONEST, timeout=90)
        c.sync(HONEST)
        top = c.assert_consistent(HONEST)
        assert top >= 2

        for i in HONEST:
            st = c.status(i)
            assert st["view"] >= 1, "the honest nodes moved away from the equivocating primary"
            with c.client(i) as cl:
                m = cl.call("node.metrics", {})
            assert m["offenses"].get(bad, 0) > 0, m["offenses"]
            assert set(m["offenses"]) == {bad}, f"only the offender is blamed: {m['offenses']}"
            events = [json.loads(x) for x in c.log_text(i).splitlines() if x.startswith("{")]
            named = [e for e in events if e.get("offender") == bad]
            assert named, f"{c.nodes[i].org_id} does not name {bad} in its log"
            kinds = {e.get("event") for e in named}
            assert "consensus" in kinds or "bad-message" in kinds, kinds
        # Whoever saw conflicting prepares says so (the others followed them to view 1).
        assert any("primary 0 equivocated" in c.log_text(i) for i in HONEST)
        assert "BYZANTINE TEST MODE" in c.log_text(0)
