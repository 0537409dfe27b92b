"""What loaded chaincode may be: the checks on its syntax tree, the rewrites
that guard what the tree cannot show, and the guards themselves.

Chaincode must compute the same thing on every node, touch only its own
namespace, and finish in bounded time and memory. Python gives none of that
by itself, so:

- **Names and attributes are allow-listed.** Only the builtins below, only
  the public API of contracts.sdk, and only attributes named in
  ``ALLOWED_ATTRIBUTES`` (the chaincode context's API, identities, the
  genesis's organizations, and plain methods of dicts, lists, text and
  integers). No frames, code objects, tracebacks or ``format`` strings, so
  no way from a value to the interpreter around it. No attribute is ever
  assigned.
- **No state outlives a call.** Module-level names are bound to constants
  (text, numbers, bytes, tuples of them) and defaults are constants.
- **No value differs between processes.** No sets (an operator that would make
  one from dict views gives a sorted list instead), and only plain values
  (numbers, text, bytes, lists, maps) can be turned into text: the text of a
  function or object carries a memory address.
- **Bounded work in C code too.** The step counter counts Python steps; the
  guards refuse integers of more than ``MAX_INT_BITS`` bits from ``*`` and
  ``<<`` (and dividing two such), sequences of more than ``MAX_ITEMS`` from
  ``*`` and ``+``, and ranges and ``bytes(n)`` beyond them.

A refused operation raises ``Reject``: the transaction fails with the reason.
"""

from __future__ import annotations

import ast

from contracts.guards import GUARD
from contracts.sdk import CHAINCODE_API

ALLOWED_IMPORTS = {"contracts.sdk", "__future__"}
SAFE_BUILTINS = (
    "abs",
    "all",
    "any",
    "bool",
    "bytes",
    "dict",
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
GUARDED_CALLS = ("str", "bytes", "range")  # called through a guard; never passed around
ALLOWED_ATTRIBUTES = frozenset(
    (
        # the chaincode context (runtime.ChaincodeContext)
        "caller",
        "sender",
        "tx_id",
        "height",
        "timestamp_ms",
        "origin",
        "genesis",
        "get",
        "put",
        "delete",
        "scan",
        "get_obj",
        "put_obj",
        "scan_obj",
        "read",
        "index_put",
        "index_scan",
        "identity",
        "emit",
        "call",
        "query",
        # identities and the genesis
        "key",
        "kind",
        "id",
        "org",
        "org_role",
        "role",
        "status",
        "active",
        "is_admin_of",
        "is_practitioner_of",
        "acts_for",
        "to_value",
        "chain_id",
        "organizations",
        "org_id",
        "name",
        "node_key",
        "admin_key",
        # dicts and lists
        "keys",
        "values",
        "items",
        "update",
        "setdefault",
        "pop",
        "copy",
        "fromkeys",
        "append",
        "extend",
        "insert",
        "index",
        "count",
        "sort",
        "reverse",
        # text, bytes and integers
        "encode",
        "decode",
        "hex",
        "fromhex",
        "join",
        "split",
        "rsplit",
        "strip",
        "lstrip",
        "rstrip",
        "startswith",
        "endswith",
        "lower",
        "upper",
        "isdigit",
        "isalpha",
        "isalnum",
        "isascii",
        "isupper",
        "islower",
        "find",
        "partition",
        "to_bytes",
        "from_bytes",
        "bit_length",
    )
)
MAX_CONSTANT = 10**15
STEP = "__medchain_step__"

BANNED_NODES = {
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
    ast.Match: "'match' statements",
    ast.Lambda: "lambdas",
}


def is_constant(node: ast.AST) -> bool:
    """A constant expression: text, numbers, bytes, None, tuples of them, names of
    other constants (checked where they are bound), and arithmetic on them."""
    if isinstance(node, ast.Constant | ast.Name):
        return True
    if isinstance(node, ast.Tuple):
        return all(is_constant(e) for e in node.elts)
    if isinstance(node, ast.UnaryOp):
        return is_constant(node.operand)
    if isinstance(node, ast.BinOp):
        return is_constant(node.left) and is_constant(node.right)
    return False


class Checker(ast.NodeVisitor):
    """Collects every reason a module is not valid chaincode."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._guarded_ok: set[int] = set()  # ids of Name nodes of GUARDED_CALLS in allowed places

    def fail(self, node: ast.AST, why: str) -> None:
        self.errors.append(f"line {getattr(node, 'lineno', '?')}: {why}")

    def visit_Module(self, node: ast.Module) -> None:
        for stmt in node.body:
            if isinstance(stmt, ast.Assign):
                if not (
                    all(isinstance(t, ast.Name) for t in stmt.targets) and is_constant(stmt.value)
                ):
                    self.fail(
                        stmt,
                        "module-level names are constants (text, numbers, bytes, tuples of "
                        "them): nothing may outlive a call",
                    )
            elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                pass  # a docstring
            elif not isinstance(stmt, ast.FunctionDef | ast.ImportFrom):
                self.fail(stmt, "a module holds imports, constants and functions only")
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        a = node.args
        params = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
        notes = [p.annotation for p in params if p is not None] + [node.returns]
        for note in notes:  # annotations name types; they are never evaluated
            if note is not None:
                self._guarded_ok.update(id(n) for n in ast.walk(note) if isinstance(n, ast.Name))
        for d in [*node.args.defaults, *node.args.kw_defaults]:
            if d is not None and not is_constant(d):
                self.fail(d, "default values are constants (a mutable default outlives a call)")
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._guarded_ok.update(id(n) for n in ast.walk(node.annotation) if isinstance(n, ast.Name))
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.fail(node, "only 'from contracts.sdk import ...' is allowed")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module not in ALLOWED_IMPORTS or node.level:
            self.fail(node, f"import from {node.module!r} is not allowed (only contracts.sdk)")
        elif node.module == "contracts.sdk":
            for alias in node.names:
                if alias.name not in CHAINCODE_API or alias.asname is not None:
                    self.fail(node, f"contracts.sdk.{alias.name} is not part of the chaincode API")

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        if isinstance(f, ast.Name) and f.id in GUARDED_CALLS:
            self._guarded_ok.add(id(f))
        if isinstance(f, ast.Name) and f.id == "isinstance" and len(node.args) == 2:
            kinds = node.args[1]
            for n in kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]:
                if isinstance(n, ast.Name):
                    self._guarded_ok.add(id(n))
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id.startswith("_") and node.id != "_":
            self.fail(node, f"name {node.id!r}: names may not start with an underscore")
        elif node.id in BANNED_NAMES:
            self.fail(node, f"{node.id!r} is not available to chaincode")
        elif node.id in GUARDED_CALLS and id(node) not in self._guarded_ok:
            self.fail(node, f"{node.id!r} may only be called, or named in isinstance")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr.startswith("_"):
            self.fail(
                node, f"attribute {node.attr!r}: private and special attributes are off limits"
            )
        elif node.attr not in ALLOWED_ATTRIBUTES:
            self.fail(node, f"attribute {node.attr!r} is not available to chaincode")
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

    def generic_visit(self, node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            kind = BANNED_NODES.get(type(child))
            if kind:
                self.fail(child, f"{kind} are not allowed in chaincode")
                continue
            self.visit(child)


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
    "format",
    "repr",
    "ascii",
    "callable",
    "map",
    "filter",
    "divmod",
}

# -- rewrites ------------------------------------------------------------------------

GUARDED_OPS = {
    ast.Add: "add",
    ast.Mult: "mul",
    ast.LShift: "lshift",
    ast.Mod: "mod",
    ast.FloorDiv: "div",
    ast.Sub: "setop",
    ast.BitAnd: "setop",
    ast.BitOr: "setop",
    ast.BitXor: "setop",
}


def _guard_call(name: str, *args: ast.expr) -> ast.Call:
    return ast.Call(ast.Name(GUARD.format(name), ast.Load()), list(args), [])


def _needs_guard(op: ast.operator, left: ast.expr, right: ast.expr) -> str | None:
    """The guard a binary operation needs, or None when its operands make it safe:
    an integer constant on either side cannot make a set, a long sequence from a
    short one by '+', or a text '%' format; two constants are constant."""
    guard = GUARDED_OPS.get(type(op))
    if guard is None or (isinstance(left, ast.Constant) and isinstance(right, ast.Constant)):
        return None
    int_side = any(isinstance(x, ast.Constant) and isinstance(x.value, int) for x in (left, right))
    if guard in ("add", "setop", "div") and int_side:
        return None
    if guard == "mod" and isinstance(right, ast.Constant) and isinstance(right.value, int):
        return None
    return guard


class Instrument(ast.NodeTransformer):
    """Count a step at the top of every function and loop body and in every
    comprehension element; route guarded operations and calls through guards."""

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

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        self.generic_visit(node)
        guard = _needs_guard(node.op, node.left, node.right)
        if guard is None:
            return node
        if guard == "setop":
            return _guard_call(guard, ast.Constant(type(node.op).__name__), node.left, node.right)
        return _guard_call(guard, node.left, node.right)

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.stmt:
        self.generic_visit(node)
        target = node.target
        guard = _needs_guard(node.op, target, node.value)
        if guard is None or not isinstance(target, ast.Name | ast.Subscript):
            return node
        load: ast.expr
        if isinstance(target, ast.Name):
            load = ast.Name(target.id, ast.Load())
        else:
            load = ast.Subscript(target.value, target.slice, ast.Load())
        op = (ast.Constant(type(node.op).__name__),) if guard == "setop" else ()
        return ast.Assign([target], _guard_call(guard, *op, load, node.value))

    def visit_FormattedValue(self, node: ast.FormattedValue) -> ast.FormattedValue:
        self.generic_visit(node)
        node.value = _guard_call("text", node.value)
        return node

    def visit_Call(self, node: ast.Call) -> ast.Call:
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id in GUARDED_CALLS:
            node.func = ast.Name(GUARD.format(node.func.id), ast.Load())
        return node
