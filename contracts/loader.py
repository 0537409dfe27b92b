"""Loading chaincode modules from source, checked for determinism.

A chaincode module is plain Python that imports only ``contracts.sdk``. Before
it runs, its syntax tree is checked: no other imports, no I/O or reflection
builtins, no names or attributes starting with an underscore, no floats, no
sets (their iteration order varies between processes), no classes, no
``with``/``async``/``global``, no bare ``except`` or ``BaseException``. Then
every function and loop body is instrumented with a step counter, so a
runaway transaction fails with a clear reason instead of stalling the chain.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contracts import sdk

ALLOWED_IMPORTS = {"contracts.sdk", "__future__"}
SAFE_BUILTINS = (
    "abs",
    "all",
    "any",
    "bool",
    "bytes",
    "dict",
    "divmod",
    "enumerate",
    "int",
    "isinstance",
    "len",
    "list",
    "max",
    "min",
    "range",
    "reversed",
    "sorted",
    "str",
    "sum",
    "tuple",
    "zip",
    "Exception",
    "ValueError",
    "KeyError",
    "TypeError",
    "IndexError",
    "ZeroDivisionError",
    "True",
    "False",
    "None",
)
BANNED_NAMES = {
    "open",
    "exec",
    "eval",
    "compile",
    "__import__",
    "input",
    "print",
    "globals",
    "locals",
    "vars",
    "getattr",
    "setattr",
    "delattr",
    "hasattr",
    "type",
    "object",
    "super",
    "id",
    "hash",
    "set",
    "frozenset",
    "float",
    "complex",
    "memoryview",
    "dir",
    "help",
    "breakpoint",
    "exit",
    "quit",
    "BaseException",
    "SystemExit",
    "KeyboardInterrupt",
    "GeneratorExit",
    "iter",
    "next",
    "classmethod",
    "staticmethod",
    "property",
}
MAX_CONSTANT = 10**15
DEFAULT_STEP_BUDGET = 200_000
STEP = "__medchain_step__"


class ChaincodeLoadError(Exception):
    """A module that is not valid chaincode, with every reason found."""


class StepBudgetExceeded(BaseException):
    """The transaction used more steps than its budget."""


_budget = threading.local()


def _step() -> None:
    left = getattr(_budget, "left", 1) - 1
    _budget.left = left
    if left < 0:
        raise StepBudgetExceeded("step budget exhausted: the transaction runs too long")


def with_budget(steps: int, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with a fresh step budget for this thread."""
    prev = getattr(_budget, "left", None)
    _budget.left = steps
    try:
        return fn()
    finally:
        if prev is None:
            del _budget.left
        else:
            _budget.left = prev


class _Checker(ast.NodeVisitor):
    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, node: ast.AST, why: str) -> None:
        self.errors.append(f"line {getattr(node, 'lineno', '?')}: {why}")

    def visit_Import(self, node: ast.Import) -> None:
        self.fail(node, "only 'from contracts.sdk import ...' is allowed")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module not in ALLOWED_IMPORTS or node.level:
            self.fail(node, f"import from {node.module!r} is not allowed (only contracts.sdk)")

    def visit_Name(self, node: ast.Name) -> None:
        if node.id.startswith("_") and node.id != "_":
            self.fail(node, f"name {node.id!r}: names may not start with an underscore")
        elif node.id in BANNED_NAMES:
            self.fail(node, f"{node.id!r} is not available to chaincode")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr.startswith("_"):
            self.fail(
                node, f"attribute {node.attr!r}: private and special attributes are off limits"
            )
        elif not isinstance(node.ctx, ast.Load):
            self.fail(
                node, f"attribute {node.attr!r}: chaincode cannot assign or delete attributes"
            )
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, float | complex):
            self.fail(node, "floats are not allowed (use integer cents or basis points)")
        elif (
            isinstance(node.value, int)
            and not isinstance(node.value, bool)
            and abs(node.value) > MAX_CONSTANT
        ):
            self.fail(node, "integer constant too large")

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.Pow | ast.Div | ast.MatMult):
            self.fail(node, "'**', '/' and '@' are not allowed (use '//' and integer arithmetic)")
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.op, ast.Pow | ast.Div | ast.MatMult):
            self.fail(node, "'**=', '/=' and '@=' are not allowed")
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is None:
            self.fail(node, "bare 'except:' is not allowed")
        self.generic_visit(node)

    def _banned(self, what: str) -> Callable[[ast.AST], None]:
        def visit(node: ast.AST) -> None:
            self.fail(node, f"{what} are not allowed in chaincode")

        return visit

    def generic_visit(self, node: ast.AST) -> None:
        banned = {
            ast.Set: "sets",
            ast.SetComp: "set comprehensions",
            ast.ClassDef: "classes",
            ast.With: "'with' statements",
            ast.AsyncFunctionDef: "async functions",
            ast.AsyncFor: "async loops",
            ast.AsyncWith: "async with",
            ast.Await: "await",
            ast.Global: "'global' statements",
            ast.Nonlocal: "'nonlocal' statements",
            ast.Yield: "generators",
            ast.YieldFrom: "generators",
            ast.Delete: "'del' statements",
        }
        for child in ast.iter_child_nodes(node):
            kind = banned.get(type(child))
            if kind:
                self.fail(child, f"{kind} are not allowed in chaincode")
                continue
            self.visit(child)


class _Instrument(ast.NodeTransformer):
    """Insert a step count at the top of every function and loop body."""

    def _step(self, body: list[ast.stmt]) -> list[ast.stmt]:
        call = ast.Expr(ast.Call(ast.Name(STEP, ast.Load()), [], []))
        return [call, *body]

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        self.generic_visit(node)
        node.body = self._step(node.body)
        return node

    def visit_For(self, node: ast.For) -> ast.For:
        self.generic_visit(node)
        node.body = self._step(node.body)
        return node

    def visit_While(self, node: ast.While) -> ast.While:
        self.generic_visit(node)
        node.body = self._step(node.body)
        return node

    def visit_comprehension(self, node: ast.comprehension) -> ast.comprehension:
        self.generic_visit(node)
        # Count each element: the first condition of a comprehension always runs.
        step = ast.BoolOp(
            ast.Or(), [ast.Call(ast.Name(STEP, ast.Load()), [], []), ast.Constant(True)]
        )
        node.ifs = [step, *node.ifs]
        return node


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
    checker = _Checker()
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
    tree = ast.fix_missing_locations(_Instrument().visit(tree))
    code = compile(tree, f"<chaincode {name}>", "exec")
    safe = {k: getattr(builtins, k) for k in SAFE_BUILTINS if hasattr(builtins, k)}
    safe["__import__"] = _import_sdk_only
    namespace: dict[str, Any] = {"__builtins__": safe, "__name__": f"chaincode_{name}", STEP: _step}
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
    if name == "contracts.sdk":
        return sdk
    if name == "__future__":
        import __future__

        return __future__
    raise ImportError(f"chaincode may not import {name}")
