"""Chaincode that a governance majority approves still cannot leave its sandbox,
on a real consortium: the retester's escapes (frames from a generator, a
traceback in a match pattern, a format string reaching the private context,
the executor or the overlay named through the context, a chaincode named
``_nonce``, a wall-clock import) are refused at proposal with the reason;
an approved chaincode that squares an integer 25 times or builds a 64 MB
string fails at once instead of freezing the chain, and a deputy call into
records fails."""

from __future__ import annotations

import time

import pytest

from tests.e2e.harness import cluster
from tests.e2e.scenario import submit

pytestmark = pytest.mark.e2e

HEAD = "from medchain.contracts.sdk import transaction, Reject\n\n"
ESCAPES = {
    "frames": HEAD
    + "@transaction\ndef f(ctx, args):\n    b = []\n"
    + "    g = (b[0].gi_frame.f_back for _ in [1])\n    b.append(g)\n    return list(g)\n",
    "traceback": HEAD
    + "@transaction\ndef f(ctx, args):\n    try:\n        raise Reject('x')\n"
    + "    except Exception as e:\n        match e:\n            case Exception(tb=t):\n"
    + "                return 1\n",
    "format": HEAD + "@transaction\ndef f(ctx, args):\n    return '{0._c}'.format(ctx)\n",
    "executor": HEAD + "@transaction\ndef f(ctx, args):\n    return ctx.executor.natives\n",
    "overlay": HEAD + "@transaction\ndef f(ctx, args):\n    ctx.state.writes.clear()\n",
    "clock": "from medchain.contracts.sdk import transaction, datetime\n\n"
    + "@transaction\ndef f(ctx, args):\n    return 1\n",
    "module-state": HEAD + "SEEN = []\n\n@transaction\ndef f(ctx, args):\n    return 1\n",
    "walrus-decorator": HEAD
    + "@(KEEP := [transaction])[0]\ndef f(ctx, args):\n    KEEP.append(1)\n    return 1\n",
}
HEAVY = (
    HEAD
    + "@transaction\ndef square(ctx, args):\n    x = 3\n    for _ in range(25):\n"
    + "        x = x * x\n    return 1\n\n"
    + "@transaction\ndef shout(ctx, args):\n    ctx.emit('e', {'s': 'x' * (64 << 20)})\n\n"
    + "@transaction\ndef deputy(ctx, args):\n    return ctx.call('records', 'anchor', args)\n\n"
    # the third retester's chain halts: an address in a refusal, a str index value
    + "@transaction\ndef addr(ctx, args):\n    raise Reject(ctx)\n\n"
    + "@transaction\ndef idx(ctx, args):\n    ctx.index_put(b'k', 'text')\n\n"
    + "@transaction\ndef fine(ctx, args):\n    return 7\n"
)


def test_approved_chaincode_cannot_escape_or_stall_the_chain() -> None:
    with cluster(4) as c, c.client(0) as cl:
        proposer = c.builders[2]
        for what, source in ESCAPES.items():
            r = submit(
                cl, proposer, "lifecycle", "propose", {"name": "x", "source": source, "version": 1}
            )
            assert r["status"] == "failed" and "not valid chaincode" in r["reason"], (what, r)
        r = submit(
            cl, proposer, "lifecycle", "propose", {"name": "_nonce", "source": HEAVY, "version": 1}
        )
        assert r["status"] == "failed" and "a chaincode name is" in r["reason"]
        r = submit(
            cl, proposer, "lifecycle", "propose", {"name": "heavy", "source": HEAVY, "version": 1}
        )
        assert r["status"] == "committed", r
        pid = r["result"]["id"]
        for i in (1, 3):
            r = submit(cl, c.builders[i], "lifecycle", "approve", {"id": pid})
            assert r["status"] == "committed", r
        assert r["result"]["status"] == "active"
        t = time.monotonic()
        for method, why in (
            ("square", "integers are limited"),
            ("shout", "sequences are limited"),
            ("deputy", "runs only when its signer sends it"),
            ("addr", "the reason given is not text"),
            ("idx", "index keys and values are bytes"),
        ):
            r = submit(cl, proposer, "heavy", method, {})
            assert r["status"] == "failed" and why in r["reason"], (method, r)
        assert time.monotonic() - t < 20  # (the unguarded squaring took ~100 s)
        r = submit(cl, proposer, "heavy", "fine", {})  # the chain goes on
        assert r["status"] == "committed" and r["result"] == 7, r
        c.assert_consistent()
