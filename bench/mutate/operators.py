"""The mutants of a Python source file: small changes a bug would make, each a replacement of
one span of the text, so that the rest of the file stays as written.

Every function is mutated, decorated ones included (`@transaction.atomic` services), and the
module's constants too: mutmut leaves out both. Left alone: docstrings, annotations, the text
of f-strings and logging calls, whose mutants no test should have to catch. Text constants
(SQL, field names) are mutated by hand where it matters (bench/mutate/__init__.py).
"""

import ast
from dataclasses import dataclass

SWAPPED = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
    ast.Is: ast.IsNot, ast.IsNot: ast.Is,
    ast.And: ast.Or, ast.Or: ast.And,
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult, ast.Mod: ast.FloorDiv,
}  # fmt: skip
LOGGING = {"debug", "info", "warning", "error", "exception", "critical"}


@dataclass(frozen=True)
class Mutant:
    key: str  # function, operator and rank: stable while the function's code is
    line: int
    end_line: int
    start: int  # offsets in the text
    end: int
    replacement: str
    operator: str

    def apply(self, source: str) -> str:
        return source[: self.start] + self.replacement + source[self.end :]

    def describe(self, source: str) -> str:
        return f"{source[self.start : self.end]!r} -> {self.replacement!r}"


def mutants(source: str) -> list[Mutant]:
    finder = _Finder(source)
    finder.visit(ast.parse(source))
    return finder.found


class _Finder(ast.NodeVisitor):
    def __init__(self, source: str):
        self.source = source
        lines = source.splitlines(keepends=True)
        self.line_starts = [0]
        for line in lines:
            self.line_starts.append(self.line_starts[-1] + len(line.encode()))
        self.encoded = source.encode()
        self.names: list[str] = []
        self.ranks: dict[tuple[str, str], int] = {}
        self.found: list[Mutant] = []

    # Where a node is, in the text

    def _offset(self, line: int, column: int) -> int:
        """A character offset from ast's line and UTF-8 byte column."""
        byte = self.line_starts[line - 1] + column
        return len(self.encoded[:byte].decode())

    def _add(self, node, replacement: str, operator: str) -> None:
        where = ".".join(self.names) or "<module>"
        rank = self.ranks.get((where, operator), 0)
        self.ranks[where, operator] = rank + 1
        self.found.append(
            Mutant(
                key=f"{where}:{operator}:{rank}",
                line=node.lineno,
                end_line=node.end_lineno,
                start=self._offset(node.lineno, node.col_offset),
                end=self._offset(node.end_lineno, node.end_col_offset),
                replacement=replacement,
                operator=operator,
            )
        )

    # Scopes, and what is not mutated

    def _scope(self, node):
        self.names.append(node.name)
        for decorator in getattr(node, "decorator_list", []):
            self.visit(decorator)
        for statement in node.body:
            self.visit(statement)
        self.names.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scope

    def visit_arg(self, node):  # an annotation
        pass

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self.visit(node.value)

    def visit_JoinedStr(self, node):  # an f-string's text and values: messages
        pass

    def visit_Expr(self, node):
        value = node.value
        if isinstance(value, ast.Constant):  # a docstring
            return
        if isinstance(value, ast.Call) and not _is_logging(value):
            self._add(node, "pass", "call_removed")
        self.generic_visit(node)

    def visit_Call(self, node):
        if _is_logging(node):
            return
        self.generic_visit(node)

    # The mutants

    def visit_Compare(self, node):
        for index, op in enumerate(node.ops):
            changed = ast.Compare(node.left, list(node.ops), node.comparators)
            changed.ops[index] = SWAPPED[type(op)]()
            self._add(node, ast.unparse(changed), f"compare_{type(op).__name__}")
        self.generic_visit(node)

    def visit_BoolOp(self, node):
        changed = ast.BoolOp(SWAPPED[type(node.op)](), node.values)
        self._add(node, ast.unparse(changed), f"bool_{type(node.op).__name__}")
        self.generic_visit(node)

    def visit_UnaryOp(self, node):
        if isinstance(node.op, ast.Not):
            self._add(node, ast.unparse(node.operand), "not_removed")
        self.generic_visit(node)

    def visit_BinOp(self, node):
        swapped = SWAPPED.get(type(node.op))
        if swapped is not None:
            changed = ast.BinOp(node.left, swapped(), node.right)
            self._add(node, ast.unparse(changed), f"arith_{type(node.op).__name__}")
        self.generic_visit(node)

    def visit_Constant(self, node):
        value = node.value
        if isinstance(value, bool):
            self._add(node, repr(not value), "bool_constant")
        elif isinstance(value, int):
            self._add(node, repr(value + 1), "number")

    def visit_Return(self, node):
        value = node.value
        if value is not None and not (isinstance(value, ast.Constant) and value.value is None):
            self._add(node, "return None", "return_none")
        self.generic_visit(node)


def _is_logging(call: ast.Call) -> bool:
    function = call.func
    return (
        isinstance(function, ast.Attribute)
        and function.attr in LOGGING
        and isinstance(function.value, ast.Name)
        and function.value.id in {"logger", "logging", "log"}
    )
