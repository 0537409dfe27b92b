"""The chaincode runtime: determinism checks, step budget, rollback, lifecycle
governance, and two executors agreeing on every state root."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medchain.contracts import sdk
from medchain.contracts.bundle import make_executor
from medchain.contracts.identity import Identity
from medchain.contracts.loader import ChaincodeLoadError, check_source, load_module
from medchain.contracts.runtime import ChaincodeContext
from medchain.contracts.sandbox import ALLOWED_ATTRIBUTES
from medchain.node.consensus.chain import replay_ledger
from tests.chain import Chain
from tests.helpers import org_consent

GOOD = """
from medchain.contracts.sdk import transaction, query, Reject

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
        ("import os", "only 'from medchain.contracts.sdk import"),
        ("from time import time", "not allowed"),
        ("import random", "only 'from medchain.contracts.sdk import"),
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
        ("def f(ctx, a):\n    ctx.contract = 'records'", "'contract' is not available"),
        ("def f(ctx, a):\n    ctx.put.x = 1", "'x' is not available"),
        ("def f(ctx, a):\n    ctx.caller.org = 'x'", "cannot assign or delete attributes"),
        # the retester's escapes: frames from a generator, a traceback, a format string
        ("def f(ctx, a):\n    b = []\n    g = (b[0].gi_frame.f_back for _ in [1])", "'gi_frame'"),
        (
            "def f(ctx, a):\n    match a:\n        case Exception(tb=t):\n            pass",
            "'match' statements",
        ),
        ("def f(ctx, a):\n    return '{0._c}'.format(ctx)", "'format' is not available"),
        (
            "from medchain.contracts.sdk import datetime",
            "medchain.contracts.sdk.datetime is not part",
        ),
        ("from medchain.contracts.sdk import transaction as t", "not part of the chaincode API"),
        # state that would outlive a call, and values that differ between processes
        ("SEEN = []", "module-level names are constants"),
        ("CODES = {'a': 1}", "module-level names are constants"),
        ("def f(ctx, a, seen=[]):\n    pass", "default values are constants"),
        ("def f(ctx, a):\n    s = str\n    return s(ctx)", "'str' may only be called"),
        ("def f(ctx, a):\n    return repr(ctx)", "'repr' is not available"),
        ("f = lambda ctx: 0", "lambdas"),
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
    return len([i for i in range(1000) for j in range(1000)])

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
    from medchain.storage.tx import make_tx

    c = Chain()
    k = c.key()
    raw = make_tx(k, c.genesis.chain_id, 42, "registry", "register_patient", {}).encode()
    from medchain.node.consensus.chain import apply_block, propose_block
    from medchain.storage.block import make_certificate

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
            grant = org_consent(period={"last_days": 30 + 100 * b}, days=1 + a)
            r = c.tx(pk, "consent", "grant", grant)  # type: ignore[arg-type]
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


GUARDED = """
from medchain.contracts.sdk import transaction, Reject

@transaction
def square(ctx, args):
    x = 3
    for _ in range(args["n"]):
        x = x * x
    return x.bit_length()

@transaction
def shout(ctx, args):
    s = "x" * args["n"]
    return len(s)

@transaction
def double(ctx, args):
    s = "xx"
    for _ in range(args["n"]):
        s += s
    return len(s)

@transaction
def count(ctx, args):
    return len(range(args["n"]))

@transaction
def text(ctx, args):
    if args["how"] == "str":
        return str(ctx)
    if args["how"] == "f":
        return f"{ctx.put}"
    return "%s" % (ctx.caller,)

@transaction
def both(ctx, args):
    d = {"b": 1, "a": 2, "c": 3}
    return [d.keys() & d.keys(), d.keys() - ("a",), d.keys() | ("z",)]

@transaction
def loud(ctx, args):
    s = "x" * 600000
    ctx.emit("a", {"s": s})
    ctx.emit("b", {"s": s})

@transaction
def hoard(ctx, args):
    v = b"v" * 1000000
    for i in range(5):
        ctx.put(b"k" + i.to_bytes(1, "big"), v)

@transaction
def keyerr(ctx, args):
    return {}[keyerr]

@transaction
def deputy(ctx, args):
    return ctx.call("records", "anchor", args)

@transaction
def builtin(ctx, args):
    return ctx.call("lifecycle", "approve", {"id": "x"})
"""


def test_guards_bound_work_and_keep_values_the_same_on_every_node() -> None:
    c = Chain()
    install(c, "guarded", GUARDED)
    admin = c.admins["insurer"]
    assert c.ok(admin, "guarded", "square", {"n": 10}) == (3**1024).bit_length()
    assert "integers are limited to 4096 bits" in c.fails(admin, "guarded", "square", {"n": 25})
    assert "sequences are limited" in c.fails(admin, "guarded", "shout", {"n": 64 << 20})
    assert "sequences are limited" in c.fails(admin, "guarded", "double", {"n": 30})
    assert "sequences are limited" in c.fails(admin, "guarded", "count", {"n": 10**12})
    for how in ("str", "f"):
        assert "only plain values" in c.fails(admin, "guarded", "text", {"how": how})
    assert "'%' formatting is not available" in c.fails(admin, "guarded", "text", {"how": "%"})
    assert "more than 1048576" in c.fails(admin, "guarded", "loud", {})
    why = c.fails(admin, "guarded", "keyerr", {})  # the repr of a function has its address
    assert "KeyError" in why and "0x…" in why and not re.search("0x[0-9a-f]", why)
    assert "writes at most 4194304 bytes" in c.fails(admin, "guarded", "hoard", {})
    assert c.ledger.state_get(b"guarded\x00k\x00") is None
    assert c.ok(admin, "guarded", "both", {}) == [["a", "b", "c"], ["b", "c"], ["a", "b", "c", "z"]]


def test_a_chaincode_cannot_act_in_its_signers_name_elsewhere() -> None:
    """The retester's confused deputy: a doctor signs guarded.deputy, which would
    anchor in the doctor's name. Transactions run only when their signer sends them
    (or a chaincode they name with @called_by); built-ins never run from chaincode."""
    c = Chain()
    install(c, "guarded", GUARDED)
    _, patient = c.patient()
    doc, _ = c.practitioner("hospital-a")
    args = c.anchor_args(doc, "hospital-a", "r", patient)
    assert "records.anchor runs only when its signer sends it, not from guarded" in c.fails(
        doc, "guarded", "deputy", args
    )
    assert "built-in 'lifecycle' cannot be called" in c.fails(
        c.admins["insurer"], "guarded", "builtin", {}
    )


@pytest.mark.parametrize("name", ["_nonce", "records\x00x", "Records", "a/b", "", "x" * 40])
def test_a_chaincode_name_cannot_overlap_another_namespace(name: str) -> None:
    """The retester installed a chaincode named _nonce and rewrote the nonce table."""
    c = Chain()
    why = c.fails(
        c.admins["hospital-a"], "lifecycle", "propose", {"name": name, "source": GOOD, "version": 1}
    )
    assert "a chaincode name is" in why, why


ROUND3 = """
from medchain.contracts.sdk import transaction, Reject

@transaction
def addr(ctx, args):
    raise Reject(ctx)

@transaction
def idx(ctx, args):
    ctx.index_put(b"k", "not bytes")

@transaction
def idxbig(ctx, args):
    v = b"v" * 1000000
    for i in range(5):
        ctx.index_put(b"k" + bytes([i]), v)

def dive(n):
    try:
        return dive(n + 1)
    except Exception:
        return n

@transaction
def deep(ctx, args):
    ctx.put_obj(b"d", dive(0))

@transaction
def nested(ctx, args):
    x = []
    y = []
    for _ in range(args["n"]):
        x = [x]
        y = [y]
    try:
        same = x == y
    except Exception:
        same = None
    ctx.put_obj(b"n", same)
    return same

@transaction
def bomb(ctx, args):
    how = args["how"]
    if how == "shift":
        return (1 << 1000000000) > 0
    if how == "mulconst":
        return len(b"a" * 1000000000000000)
    if how == "tobytes":
        return len((0).to_bytes(1000000000, "big"))
    if how == "pct":
        return "%1000000000d" % 1
    if how == "join":
        s = "x" * 4000
        return len("".join([s] * 100000))
    if how == "extend":
        x = [1]
        for _ in range(28):
            x.extend(x)
        return len(x)
    if how == "frombytes":
        return int.from_bytes(b"\\xff" * 100000000, "big") > 0
    if how == "star":
        x = [1]
        for _ in range(30):
            x = [*x, *x]
        return len(x)
    keep = []
    big = [0] * 200000
    for _ in range(100000):
        keep.append(big[:])
    return len(keep)
"""


def test_round3_refusals_are_the_same_on_every_node_and_nothing_escapes() -> None:
    """The third retester's findings: an address in a refusal, a non-bytes index
    value (it crashed the commit after consensus), recursion caught at whatever
    depth the stack allowed, and memory made by C code at no step cost."""
    c = Chain()
    install(c, "round3", ROUND3)
    admin = c.admins["insurer"]
    assert c.fails(admin, "round3", "addr", {}) == "refused (the reason given is not text)"
    assert "index keys and values are bytes" in c.fails(admin, "round3", "idx", {})
    assert "writes at most 4194304 bytes" in c.fails(admin, "round3", "idxbig", {})
    assert "nest deeper than 100" in c.fails(admin, "round3", "deep", {})
    # C code recursing (comparing lists nested 5,000 deep) fails the same way everywhere:
    # the executor runs chaincode at one fixed stack depth.
    assert c.ok(admin, "round3", "nested", {"n": 5000}) is None
    for how, why in (
        ("shift", "integers are limited"),
        ("mulconst", "sequences are limited"),
        ("tobytes", "integers are limited"),
        ("pct", "'%' formatting is not available"),
        ("join", "text and bytes are limited"),
        ("extend", "sequences are limited"),
        ("frombytes", "sequences are limited"),  # b"\xff" * 10**8 already
        ("star", "sequences are limited"),
        ("copies", "step budget exhausted"),
    ):
        assert why in c.fails(admin, "round3", "bomb", {"how": how}), how
    # Re-executed by a fresh executor, called from much deeper in the stack.

    def deeper(n: int) -> list[str]:
        return deeper(n - 1) if n else replay_ledger(c.ledger, make_executor(c.genesis))

    assert deeper(300) == []


@pytest.mark.parametrize(
    "source, why",
    [
        ("@(KEEP := [transaction])[0]\ndef f(ctx, a):\n    return 1\n", "decorators are"),
        ("@transaction\ndef f(ctx, a):\n    return (k := 1)\n", "assignment expressions"),
        ("@transaction\ndef f(ctx, a):\n    return f'{1:>1000000000}'\n", "format specs"),
        ("@transaction\ndef f(ctx, a):\n    n = 9\n    return f'{1:>{n}}'\n", "format specs"),
        ("@transaction\ndef f(ctx, *a):\n    return 1\n", "'*args'"),
        ("@transaction\ndef f(ctx, a):\n    return len(*a)\n", "'*' unpacking"),
        ("@transaction\ndef f(ctx, a):\n    j = ''.join\n    return j(a)\n", "may only be called"),
    ],
)
def test_round3_sources_refused_at_load(source: str, why: str) -> None:
    with pytest.raises(ChaincodeLoadError, match=re.escape(why)):
        check_source("from medchain.contracts.sdk import transaction\n\n" + source)


# -- the context chaincode holds ---------------------------------------------------

# What sits behind the context: the executor (every chaincode, the genesis, the
# natives), the transaction's overlay (every namespace's writes), the ledger, the
# event list (events in any contract's name), the namespace and call bookkeeping.
RUNTIME_INTERNALS = (
    "executor",
    "state",
    "ledger",
    "events",
    "namespace",
    "contract",
    "read_only",
    "depth",
    "natives",
    "writes",
    "base",
)


@pytest.mark.parametrize("attr", RUNTIME_INTERNALS)
def test_chaincode_naming_the_runtime_behind_its_context_is_refused(attr: str) -> None:
    source = GOOD + f"\n@transaction\ndef peek(ctx, args):\n    return ctx.{attr}\n"
    with pytest.raises(ChaincodeLoadError, match=f"attribute '{attr}' is not available"):
        check_source(source, "peek")


def test_chaincode_naming_the_context_behind_its_facade_is_refused() -> None:
    source = GOOD + "\n@transaction\ndef peek(ctx, args):\n    return ctx._c.executor\n"
    with pytest.raises(ChaincodeLoadError, match="'_c': private and special attributes"):
        check_source(source, "peek")


def test_no_attribute_chaincode_may_name_leads_from_its_context_to_the_runtime() -> None:
    """At run time, through whatever the checker lets through: from the object a
    loaded chaincode receives, every chain of allowed attribute names (values taken,
    nothing called) stays clear of the executor, the overlay, the ledger and the
    event list, and the object itself carries only the context's API."""
    from medchain.contracts.identity import ANONYMOUS_IDENTITY
    from medchain.contracts.runtime import Context, Executor, LoadedChaincode, Overlay
    from medchain.contracts.sdk import CONTEXT_API
    from medchain.storage.ledger import Ledger

    c = Chain()
    events: list[object] = []
    runtime_ctx = Context(
        c.executor, "probe", Overlay(c.ledger), ANONYMOUS_IDENTITY, b"t" * 32, 1, 0, events
    )
    held: list[object] = []
    module = load_module(GOOD, "probe")
    module.transactions["put"] = lambda ctx, args: held.append(ctx)
    LoadedChaincode(module).invoke(runtime_ctx, "put", {})
    (ctx,) = held
    assert {n for n in dir(ctx) if not n.startswith("_")} == set(CONTEXT_API)
    internal = (Context, Executor, Overlay, Ledger)
    seen: set[int] = set()
    kept: list[object] = []  # every value reached stays alive: its id is not reused
    paths: set[str] = set()
    frontier: list[tuple[str, object]] = [("ctx", ctx)]
    for _ in range(4):
        reached: list[tuple[str, object]] = []
        for path, obj in frontier:
            for name in sorted(ALLOWED_ATTRIBUTES):
                try:
                    value = getattr(obj, name)
                except Exception:
                    continue
                where = f"{path}.{name}"
                paths.add(where)
                if id(value) in seen:
                    continue
                seen.add(id(value))
                kept.append(value)
                assert not isinstance(value, internal), where
                assert value is not events and value is not runtime_ctx.state.writes, where
                reached.append((where, value))
        frontier = reached
    assert {"ctx.caller.key", "ctx.genesis.organizations"} <= paths  # the walk went somewhere


def public(cls: type) -> set[str]:
    return {n for n in vars(cls) if not n.startswith("_")}


def test_the_context_api_is_one_list() -> None:
    """sdk.Context (what chaincode is typed against), runtime.ChaincodeContext (what
    it receives) and the sandbox's allowed attributes name the same members."""
    assert public(sdk.Context) == public(ChaincodeContext) == set(sdk.CONTEXT_API)
    assert set(sdk.CONTEXT_API) <= ALLOWED_ATTRIBUTES
    views = public(Identity) | public(sdk.GenesisView) | public(sdk.OrganizationView)
    assert views <= ALLOWED_ATTRIBUTES
    assert set(sdk.TYPES) <= set(sdk.CHAINCODE_API)


TYPED = """
from medchain.contracts.sdk import Args, Context, Identity, Record, Result, Value
from medchain.contracts.sdk import arg_int, args_dict, query, transaction


def who(ctx: Context) -> Identity:
    return ctx.caller


@transaction
def put(ctx: Context, args: Args) -> Result:
    a = args_dict(args)
    rec: Record = {"v": arg_int(a, "v"), "by": who(ctx).kind}
    ctx.put_obj(b"v", rec)
    return rec


@query
def get(ctx: Context, args: Args) -> Result:
    rec: Value = ctx.get_obj(b"v")
    return rec
"""


@pytest.mark.parametrize("future", ["", "from __future__ import annotations\n"])
def test_typed_chaincode_loads_and_runs(future: str) -> None:
    c = Chain()
    install(c, "typed", future + TYPED)
    assert c.ok(c.admins["insurer"], "typed", "put", {"v": 3}) == {"v": 3, "by": "org-admin"}
    assert c.q("typed", "get") == {"v": 3, "by": "org-admin"}
    assert "v must be an integer" in c.fails(c.admins["insurer"], "typed", "put", {"v": "3"})


@pytest.mark.parametrize(
    "body",
    [
        "def f(ctx, a):\n    return Record(a)\n",
        "def f(ctx, a):\n    return Args()\n",
        "def f(ctx: Context, a: Args) -> Result:\n    return Context.get(ctx, b'k')\n",
        "KIND = Identity\n",
        "def f(ctx, a=Value):\n    return 1\n",
        "def f(ctx, a: Record(zip(range(9), range(9)))):\n    return 1\n",
        "def f(ctx, a):\n    return isinstance(a, Record)\n",
    ],
)
def test_types_are_named_in_annotations_only(body: str) -> None:
    head = "from medchain.contracts.sdk import Args, Context, Identity, Record, Result, Value\n"
    with pytest.raises(ChaincodeLoadError, match="is a type: chaincode names it in annotations"):
        check_source(head + "\n" + body)
