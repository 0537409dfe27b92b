"""What loaded chaincode may be: the checks on its syntax tree, the rewrites
that guard what the tree cannot show, and the guards themselves.

Chaincode must compute the same thing on every node, touch only its own
namespace, and finish in bounded time and memory. Python gives none of that
by itself, so:

- **Names and attributes are allow-listed.** Only the builtins below, only
  the public API of medchain.contracts.sdk (its types, ``sdk.TYPES``, in
  annotations only), and only attributes named in ``ALLOWED_ATTRIBUTES``
  (the chaincode context's API, identities, the genesis's organizations, and
  plain methods of dicts, lists, text and integers). No frames, code objects,
  tracebacks or ``format`` strings, so no way from a value to the interpreter
  around it. No attribute is ever assigned.
- **No state outlives a call.** Module-level names are bound to constants
  (text, numbers, bytes, tuples of them) and defaults are constants.
- **No value differs between processes.** No sets (an operator that would make
  one from dict views gives a sorted list instead), and only plain values
  (numbers, text, bytes, lists, maps) can be turned into text: the text of a
  function or object carries a memory address.
- **Bounded work in C code too.** The step counter counts Python steps, and
  what C code makes is charged by size: every operation that makes a
  sequence, text or bytes (``*``, ``+``, slices, ``list()``, ``sorted()``,
  ``join`` and the other ``GUARDED_METHODS``, f-strings, ``str()``) costs a
  step per ``ITEMS_PER_STEP`` items or ``BYTES_PER_STEP`` bytes made, and
  is refused before it makes more than ``MAX_ITEMS`` items or ``MAX_TEXT``
  bytes. Integers are limited to ``MAX_INT_BITS`` bits. No ``%`` formatting,
  format specs, ``*`` unpacking or ``*args``.
- **Recursion fails at the same depth everywhere.** Chaincode calls nest at
  most ``MAX_CALL_DEPTH`` deep, and the executor runs every transaction on
  one thread at a fixed stack depth (runtime.Executor), so even recursion
  inside C code (comparing deeply nested lists) stops at the same point on
  every node. Decorators are @transaction, @query and @called_by only, and
  there are no assignment expressions: nothing can keep state from a call.

A refused operation raises ``Reject``: the transaction fails with the reason.
"""

from __future__ import annotations

import ast
import re

from medchain.contracts.guards import GUARD
from medchain.contracts.sdk import CHAINCODE_API, CONTEXT_API, TYPES

ALLOWED_IMPORTS = {"medchain.contracts.sdk", "__future__"}
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
# Called through a guard that bounds and charges what they make; never passed around.
GUARDED_CALLS = ("str", "bytes", "range", "list", "tuple", "dict", "sorted", "sum")
# Methods that make values: called through guards.guard_method, never taken as values.
GUARDED_METHODS = frozenset(
    (
        "join",
        "extend",
        "copy",
        "to_bytes",
        "from_bytes",
        "ljust",
        "rjust",
        "center",
        "zfill",
        "replace",
        "hex",
        "fromhex",
        "split",
        "rsplit",
        "fromkeys",
        "encode",
        "decode",
        "values",
        "keys",
        "items",
    )
)
DECORATORS = ("transaction", "query")
FORMAT_SPEC = re.compile(r"[<>^]?0?[0-9]{1,2}[dxXbs]?|[dxXbs]")
ALLOWED_ATTRIBUTES = frozenset(
    (
        *CONTEXT_API,  # the chaincode context (sdk.Context, runtime.ChaincodeContext)
        # identities and the genesis (sdk.Identity, sdk.GenesisView, sdk.OrganizationView)
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
    ast.NamedExpr: "assignment expressions (':=')",
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
        self._annotations: set[int] = set()  # ids of Name nodes in annotations

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
        for dec in node.decorator_list:
            plain = isinstance(dec, ast.Name) and dec.id in DECORATORS
            deputy = (
                isinstance(dec, ast.Call)
                and isinstance(dec.func, ast.Name)
                and dec.func.id == "called_by"
                and not dec.keywords
                and all(isinstance(x, ast.Constant) and isinstance(x.value, str) for x in dec.args)
            )
            if not (plain or deputy):
                self.fail(dec, "decorators are @transaction, @query or @called_by('name', ...)")
        a = node.args
        if a.vararg is not None or a.kwarg is not None:
            self.fail(node, "'*args' and '**kwargs' parameters are not allowed")
        params = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
        notes = [p.annotation for p in params if p is not None] + [node.returns]
        for note in notes:  # annotations name types
            if note is not None:
                self._annotation(note)
        for d in [*node.args.defaults, *node.args.kw_defaults]:
            if d is not None and not is_constant(d):
                self.fail(d, "default values are constants (a mutable default outlives a call)")
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._annotation(node.annotation)
        self.generic_visit(node)

    def _annotation(self, note: ast.expr) -> None:
        names = {id(n) for n in ast.walk(note) if isinstance(n, ast.Name)}
        self._guarded_ok.update(names)
        # Without ``from __future__ import annotations`` an annotation is evaluated:
        # a type called there is a value like any other.
        called = {id(n.func) for n in ast.walk(note) if isinstance(n, ast.Call)}
        self._annotations.update(names - called)

    def visit_Import(self, node: ast.Import) -> None:
        self.fail(node, "only 'from medchain.contracts.sdk import ...' is allowed")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module not in ALLOWED_IMPORTS or node.level:
            self.fail(
                node, f"import from {node.module!r} is not allowed (only medchain.contracts.sdk)"
            )
        elif node.module == "medchain.contracts.sdk":
            for alias in node.names:
                if alias.name not in CHAINCODE_API or alias.asname is not None:
                    self.fail(
                        node,
                        f"medchain.contracts.sdk.{alias.name} is not part of the chaincode API",
                    )

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        if isinstance(f, ast.Name) and f.id in GUARDED_CALLS:
            self._guarded_ok.add(id(f))
        if isinstance(f, ast.Attribute) and f.attr in GUARDED_METHODS:
            self._guarded_ok.add(id(f))
            if isinstance(f.value, ast.Name) and f.value.id in GUARDED_CALLS:
                self._guarded_ok.add(id(f.value))  # dict.fromkeys(...), str.join(...)
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
        elif node.id in TYPES and id(node) not in self._annotations:
            self.fail(node, f"{node.id!r} is a type: chaincode names it in annotations only")
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
        elif node.attr in GUARDED_METHODS and id(node) not in self._guarded_ok:
            self.fail(node, f"method {node.attr!r} may only be called")
        self.generic_visit(node)

    def _displays(self, node: ast.List | ast.Tuple) -> None:
        for e in node.elts:
            if isinstance(e, ast.Starred):
                self._guarded_ok.add(id(e))
        self.generic_visit(node)

    visit_List = _displays
    visit_Tuple = _displays

    def visit_Starred(self, node: ast.Starred) -> None:
        if id(node) not in self._guarded_ok:
            self.fail(node, "'*' unpacking is allowed in list and tuple displays only")
        self.generic_visit(node)

    def visit_FormattedValue(self, node: ast.FormattedValue) -> None:
        spec = node.format_spec
        if spec is not None:
            parts = spec.values if isinstance(spec, ast.JoinedStr) else []
            text = (
                parts[0].value if len(parts) == 1 and isinstance(parts[0], ast.Constant) else None
            )
            if not (isinstance(text, str) and FORMAT_SPEC.fullmatch(text)):
                self.fail(node, "f-string format specs are constant widths of at most 2 digits")
            node.format_spec = None  # checked: not visited as an f-string of its own
            self.generic_visit(node)
            node.format_spec = spec
            return
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
    short one by '+', or a text '%' format. Two constants are guarded too: ``*``
    and ``<<`` of constants can make a value of any size."""
    guard = GUARDED_OPS.get(type(op))
    if guard is None:
        return None
    int_side = any(isinstance(x, ast.Constant) and isinstance(x.value, int) for x in (left, right))
    if guard in ("add", "setop", "div") and int_side:
        return None
    if guard == "mod" and isinstance(left, ast.Constant) and isinstance(left.value, int):
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
        # Count call depth, so recursion fails at the same depth on every node.
        enter = ast.Expr(_guard_call("enter"))
        body = ast.Try(node.body, [], [], [ast.Expr(_guard_call("leave"))])
        node.body = self._step([enter, body])
        return node

    def visit_Subscript(self, node: ast.Subscript) -> ast.expr:
        self.generic_visit(node)
        if isinstance(node.slice, ast.Slice) and isinstance(node.ctx, ast.Load):
            sl = node.slice
            parts = [
                x if x is not None else ast.Constant(None) for x in (sl.lower, sl.upper, sl.step)
            ]
            return _guard_call("slice", node.value, *parts)
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

    def visit_Starred(self, node: ast.Starred) -> ast.Starred:
        self.generic_visit(node)
        if isinstance(node.ctx, ast.Load):  # what it copies is charged
            node.value = _guard_call("star", node.value)
        return node

    def visit_FormattedValue(self, node: ast.FormattedValue) -> ast.FormattedValue:
        self.generic_visit(node)
        node.value = _guard_call("text", node.value)
        return node

    def visit_Call(self, node: ast.Call) -> ast.Call:
        self.generic_visit(node)
        f = node.func
        if isinstance(f, ast.Name) and f.id in GUARDED_CALLS:
            node.func = ast.Name(GUARD.format(f.id), ast.Load())
        elif isinstance(f, ast.Attribute) and f.attr in GUARDED_METHODS:
            call = _guard_call("method", f.value, ast.Constant(f.attr), *node.args)
            call.keywords = node.keywords
            return call
        return node
