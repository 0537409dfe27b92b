"""Loading chaincode modules from source, checked for determinism.

A chaincode module is plain Python that imports only ``medchain.contracts.sdk``. Before
it runs, its syntax tree is checked and rewritten (contracts/sandbox.py says
what is allowed and why): allow-listed names and attributes, constants only
at module level, no floats, sets, classes or reflection, guards on what C code
could do unboundedly. Every function and loop body counts steps, so a
runaway transaction fails with a clear reason instead of stalling the chain.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medchain.contracts import sdk
from medchain.contracts.guards import GUARDS, StepBudgetExceeded, with_budget
from medchain.contracts.sandbox import SAFE_BUILTINS, Checker, Instrument

DEFAULT_STEP_BUDGET = 200_000
__all__ = ["DEFAULT_STEP_BUDGET", "StepBudgetExceeded", "load_module", "with_budget"]


class ChaincodeLoadError(Exception):
    """A module that is not valid chaincode, with every reason found."""


@dataclass(frozen=True)
class LoadedModule:
    name: str
    source_hash: bytes
    transactions: dict[str, Callable[..., Any]]
    queries: dict[str, Callable[..., Any]]


def check_source(source: str, name: str = "chaincode") -> ast.Module:
    try:
        tree = ast.parse(source, filename=f"<chaincode {name}>")
    except SyntaxError as exc:
        raise ChaincodeLoadError(f"{name}: syntax error: {exc}") from None
    checker = Checker()
    checker.visit(tree)
    if checker.errors:
        raise ChaincodeLoadError(
            f"{name} is not valid chaincode:\n  " + "\n  ".join(checker.errors)
        )
    return tree


def source_hash(source: str) -> bytes:
    return hashlib.sha256(source.encode()).digest()


def load_module(source: str, name: str) -> LoadedModule:
    tree = check_source(source, name)
    tree = ast.fix_missing_locations(Instrument().visit(tree))
    code = compile(tree, f"<chaincode {name}>", "exec")
    safe = {k: getattr(builtins, k) for k in SAFE_BUILTINS if hasattr(builtins, k)}
    safe["__import__"] = _import_sdk_only
    namespace: dict[str, Any] = {
        "__builtins__": safe,
        "__name__": f"chaincode_{name}",
        **GUARDS,
    }
    with_budget(DEFAULT_STEP_BUDGET, lambda: exec(code, namespace))
    txs, queries = {}, {}
    for key, value in namespace.items():
        kind = getattr(value, "_medchain_kind", None)
        if kind == "transaction":
            txs[key] = value
        elif kind == "query":
            queries[key] = value
    if not txs and not queries:
        raise ChaincodeLoadError(f"{name} defines no @transaction or @query functions")
    return LoadedModule(name, source_hash(source), txs, queries)


def _import_sdk_only(
    name: str, globals_: Any = None, locals_: Any = None, fromlist: Any = (), level: int = 0
) -> Any:
    if name == "medchain.contracts.sdk":
        return sdk
    if name == "__future__":
        import __future__

        return __future__
    raise ImportError(f"chaincode may not import {name}")
