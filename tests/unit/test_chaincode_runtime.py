"""The chaincode runtime: determinism checks, step budget, rollback, lifecycle
governance, and two executors agreeing on every state root."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.bundle import make_executor
from contracts.loader import ChaincodeLoadError, check_source, load_module
from node.chain import replay_ledger
from tests.chain import Chain

GOOD = """
from contracts.sdk import transaction, query, Reject

@transaction
def put(ctx, args):
    ctx.put_obj(b"v", args["v"])
    return args["v"]

@query
def get(ctx, args):
    return ctx.get_obj(b"v")
"""


@pytest.mark.parametrize(
    "body, why",
    [
        ("import os", "only 'from contracts.sdk import"),
        ("from time import time", "not allowed"),
        ("import random", "only 'from contracts.sdk import"),
        ("x = 0.5", "floats"),
        ("x = {1, 2}", "sets"),
        ("x = set()", "'set' is not available"),
        ("x = open('f')", "'open' is not available"),
        ("x = ().__class__", "private and special attributes"),
        ("x = getattr(1, 'real')", "'getattr' is not available"),
        ("class A:\n    pass", "classes"),
        ("x = 7 / 2", "'/'"),
        ("x = 2 ** 64", "'**'"),
        ("try:\n    pass\nexcept:\n    pass", "bare 'except:'"),
        ("try:\n    pass\nexcept BaseException:\n    pass", "'BaseException' is not available"),
        ("with x:\n    pass", "'with' statements"),
        ("global y", "'global' statements"),
        ("__import__('os')", "names may not start with an underscore"),
        ("x = eval('1')", "'eval' is not available"),
        ("def f(ctx, a):\n    ctx.contract = 'records'", "cannot assign or delete attributes"),
        ("def f(ctx, a):\n    ctx.namespace += b'x'", "cannot assign or delete attributes"),
    ],
)
def test_loader_refuses_nondeterministic_or_unsafe_code(body: str, why: str) -> None:
    with pytest.raises(ChaincodeLoadError) as info:
        check_source(GOOD + "\n" + body + "\n", "bad")
    assert why in str(info.value)


def test_loader_accepts_and_loads_plain_chaincode() -> None:
    mod = load_module(GOOD, "good")
    assert set(mod.transactions) == {"put"} and set(mod.queries) == {"get"}


LOOP = (
    GOOD
    + """

@transaction
def spin(ctx, args):
    n = 0
    while True:
        n += 1

@transaction
def listcomp(ctx, args):
    return len([i for i in range(100000000)])

@transaction
def boom(ctx, args):
    ctx.put_obj(b"partial", 1)
    raise Reject("refused after a write")
"""
)


def install(c: Chain, name: str, source: str, version: int = 1) -> str:
    """Propose and approve with a majority (3 of 4 organizations)."""
    res = c.ok(
        c.admins["hospital-a"],
        "lifecycle",
        "propose",
        {"name": name, "source": source, "version": version},
    )
    assert res["status"] == "open" and res["needed"] == 3
    c.ok(c.admins["hospital-b"], "lifecycle", "approve", {"id": res["id"]})
    done = c.ok(c.admins["insurer"], "lifecycle", "approve", {"id": res["id"]})
    assert done["status"] == "active"
    return str(res["id"])


def test_step_budget_and_rollback() -> None:
    c = Chain()
    install(c, "looper", LOOP)
    why = c.fails(c.admins["regulator"], "looper", "spin")
    assert "step budget exhausted" in why
    assert "step budget exhausted" in c.fails(c.admins["regulator"], "looper", "listcomp")
    assert "refused after a write" in c.fails(c.admins["regulator"], "looper", "boom")
    assert c.q("looper", "get") is None
    assert c.ok(c.admins["regulator"], "looper", "put", {"v": 7}) == 7
    assert c.q("looper", "get") == 7


def test_chaincode_upgrade_needs_a_majority_of_admins() -> None:
    c = Chain()
    v1 = GOOD
    v2 = GOOD.replace('return args["v"]', 'return args["v"] + 1000')
    install(c, "counter", v1)
    assert c.ok(c.admins["hospital-a"], "counter", "put", {"v": 1}) == 1
    # An upgrade proposed and approved by only two of four organizations: not in force.
    pid = c.ok(
        c.admins["hospital-b"],
        "lifecycle",
        "propose",
        {"name": "counter", "source": v2, "version": 2},
    )["id"]
    assert c.ok(c.admins["regulator"], "lifecycle", "approve", {"id": pid})["status"] == "open"
    assert c.ok(c.admins["hospital-a"], "counter", "put", {"v": 2}) == 2  # old code still runs
    assert "already approved" in c.fails(c.admins["regulator"], "lifecycle", "approve", {"id": pid})
    patient, _ = c.patient()
    assert "only an organization's admin" in c.fails(patient, "lifecycle", "approve", {"id": pid})
    # The third organization's approval makes it a majority: the new code runs.
    assert c.ok(c.admins["insurer"], "lifecycle", "approve", {"id": pid})["status"] == "active"
    assert c.ok(c.admins["hospital-a"], "counter", "put", {"v": 3}) == 1003
    assert c.q("lifecycle", "active", {"name": "counter"})["version"] == 2
    # Versions only go up; invalid code is refused at proposal; built-ins cannot be replaced.
    assert "version must increase" in c.fails(
        c.admins["hospital-a"],
        "lifecycle",
        "propose",
        {"name": "counter", "source": v1, "version": 2},
    )
    assert "not valid chaincode" in c.fails(
        c.admins["hospital-a"],
        "lifecycle",
        "propose",
        {"name": "evil", "source": "import os\n", "version": 1},
    )
    assert "built in" in c.fails(
        c.admins["hospital-a"],
        "lifecycle",
        "propose",
        {"name": "lifecycle", "source": GOOD, "version": 9},
    )
    # Nodes replaying the chain run exactly the approved code.
    assert replay_ledger(c.ledger, make_executor(c.genesis)) == []


def test_replayed_transaction_fails_once_committed() -> None:
    from storage.tx import make_tx

    c = Chain()
    k = c.key()
    raw = make_tx(k, c.genesis.chain_id, 42, "registry", "register_patient", {}).encode()
    from node.chain import apply_block, propose_block
    from storage.block import make_certificate

    for expect_ok in (True, False):
        c.now += 1000
        block = propose_block(c.ledger, [raw], c.now, c.node_keys[0].public_key)
        cert = make_certificate(
            c.genesis.chain_id, 0, block.header, [(i, c.node_keys[i]) for i in range(3)]
        )
        res = apply_block(c.ledger, c.executor, block, cert).results[0]
        assert res.ok is expect_ok
    assert "replayed" in res.data


ops = st.lists(
    st.tuples(
        st.sampled_from(["patient", "anchor", "consent", "access", "revoke", "advance"]),
        st.integers(0, 5),
        st.integers(0, 3),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_two_executors_fed_the_same_blocks_reach_the_same_root(
    script: list[tuple[str, int, int]],
) -> None:
    c = Chain()
    doc, _ = c.practitioner("hospital-a")
    other, _ = c.practitioner("hospital-b")
    patients: list[tuple[object, str]] = []
    records: list[str] = []
    consents: list[tuple[object, str]] = []
    for op, a, b in script:
        if op == "patient" or not patients:
            patients.append(c.patient())
            continue
        pk, pseud = patients[a % len(patients)]
        if op == "anchor":
            rid = f"r{len(records)}"
            c.tx(
                doc,
                "records",
                "anchor",
                c.anchor_args(
                    doc,
                    "hospital-a",
                    rid,
                    pseud,
                    category=["Condition", "Observation"][b % 2],
                    date=f"2025-0{1 + b}-15",
                ),
            )
            records.append(rid)
        elif op == "consent":
            r = c.tx(
                pk,
                "consent",
                "grant",
                {
                    "grantee_kind": "org",
                    "grantee": "hospital-b",
                    "categories": ["Condition"],
                    "purpose": "treatment",
                    "days": 1 + a,
                    "period": {"last_days": 30 + 100 * b},
                },
            )  # type: ignore[arg-type]
            if r.ok:
                consents.append((pk, r.data["consent_id"]))
        elif op == "access" and records:
            c.tx(
                other,
                "access",
                "request",
                {
                    "record_id": records[a % len(records)],
                    "purpose": ["treatment", "research"][b % 2],
                },
            )
        elif op == "revoke" and consents:
            owner, cid = consents[a % len(consents)]
            c.tx(owner, "consent", "revoke", {"consent_id": cid})  # type: ignore[arg-type]
        elif op == "advance":
            c.advance(days=a)
    assert replay_ledger(c.ledger, make_executor(c.genesis)) == []


IMPERSONATOR = """
from contracts.sdk import transaction

@transaction
def via_state(ctx, args):
    ctx.state.writes[b"records" + bytes([0]) + b"rec/forged"] = b"x"

@transaction
def via_events(ctx, args):
    ctx.events.append(args)

@transaction
def via_executor(ctx, args):
    return ctx.executor.genesis.chain_id

@transaction
def own(ctx, args):
    ctx.put(b"k", b"v")
    ctx.emit("ok", {"n": 1})
    return ctx.origin
"""


def test_an_approved_chaincode_cannot_write_or_emit_in_another_contracts_name() -> None:
    """An attacker with a governance majority installs a chaincode that reaches past its
    context (the tester's notary2): every way into another namespace fails the tx."""
    c = Chain()
    install(c, "notary", IMPERSONATOR)
    admin = c.admins["insurer"]
    for method in ("via_state", "via_events", "via_executor"):
        why = c.fails(admin, "notary", method, {})
        assert "AttributeError" in why, why
    assert c.ledger.state_get(b"records\x00rec/forged") is None
    r = c.tx(admin, "notary", "own", {})
    assert r.ok and [(e.contract, e.name) for e in r.events] == [("notary", "ok")]
    assert c.ledger.state_get(b"notary\x00k") == b"v"
