"""pgbench's ``\\set`` expression language: parse once, evaluate per transaction.

Integers are 64-bit (overflow is an error, as in pgbench), ``/`` and ``%``
truncate toward zero like C, a double operand makes ``+ - * /`` double. Also
comparisons (``= <> != < <= > >=``) and ``AND``/``OR``/``NOT`` with
``true``/``false``. Functions (names case-insensitive): ``random``,
``random_exponential``, ``random_gaussian``, ``random_zipfian``, ``abs``,
``least``, ``greatest``, ``int``, ``double``, ``mod``, ``sqrt``, ``ln``,
``exp``, ``pow``/``power``, ``pi``. ``:name`` reads a variable.
:func:`parse` raises :class:`ExprSyntaxError` (a column); evaluation raises
:class:`EvalError` with pgbench's wording.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from perfkit.workload import randoms
from perfkit.workload.randoms import INT64_MAX, INT64_MIN, RandomError, Uniform

Value = int | float | bool


class ExprSyntaxError(ValueError):
    """The expression does not parse (message says where)."""


class EvalError(ValueError):
    """The expression failed when evaluated (division by zero, overflow, bad range...)."""


@dataclass(frozen=True)
class Const:
    value: Value


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class Unary:
    op: str
    arg: Node


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple[Node, ...]


Node = Const | Var | Unary | Binary | Call

_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+)"
    r"|:(?P<var>[A-Za-z0-9_]+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><=|>=|<>|!=|<<|>>|[-+*/%(),<>=&|#~]))"
)
#: Binary operators by precedence (pgbench's exprparse.y, lowest first).
_PRECEDENCE = {"or": 1, "and": 2, "=": 4, "<>": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4}
_PRECEDENCE |= {"+": 6, "-": 6, "*": 7, "/": 7, "%": 7}
_UNSUPPORTED = {"&", "|", "#", "~", "<<", ">>"}
_KEYWORDS = {"true": True, "false": False}


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            col = pos + len(text[pos:]) - len(text[pos:].lstrip())
            raise ExprSyntaxError(f"unexpected character {text[col]!r} at column {col + 1}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
    return out


class _Parser:
    """Precedence climbing over the token list."""

    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            raise ExprSyntaxError("unexpected end of expression")
        self.i += 1
        return tok

    def expect(self, op: str) -> None:
        _, text, col = self.take()
        if text != op:
            raise ExprSyntaxError(f"expected {op!r} at column {col}, got {text!r}")

    def binary_op(self) -> str | None:
        tok = self.peek()
        if tok is None:
            return None
        kind, text, col = tok
        if kind == "op" and text in _UNSUPPORTED:
            raise ExprSyntaxError(f"operator {text!r} (column {col}) is not supported")
        op = text.lower() if kind == "name" else text
        return op if (kind in ("op", "name") and op in _PRECEDENCE) else None

    def expr(self, min_prec: int = 0) -> Node:
        left = self.unary()
        while (op := self.binary_op()) is not None and _PRECEDENCE[op] > min_prec:
            self.take()
            right = self.expr(_PRECEDENCE[op])
            left = Binary(op, left, right)
        return left

    def unary(self) -> Node:
        kind, text, col = self.take()
        if kind == "op" and text in ("+", "-"):
            arg = self.expr(8)
            return arg if text == "+" else _negate(arg)
        if kind == "name" and text.lower() == "not":
            return Unary("not", self.expr(3))
        if kind == "op" and text == "(":
            inner = self.expr()
            self.expect(")")
            return inner
        if kind == "num":
            return Const(_number(text, col))
        if kind == "var":
            return Var(text)
        if kind == "name":
            return self.atom_name(text, col)
        raise ExprSyntaxError(f"unexpected {text!r} at column {col}")

    def atom_name(self, text: str, col: int) -> Node:
        low = text.lower()
        if low in _KEYWORDS:
            return Const(_KEYWORDS[low])
        nxt = self.peek()
        if nxt is None or nxt[1] != "(":
            raise ExprSyntaxError(f"unexpected word {text!r} at column {col} (variables are :name)")
        self.take()
        args: list[Node] = []
        if (tok := self.peek()) is not None and tok[1] == ")":
            self.take()
        else:
            args.append(self.expr())
            while (tok := self.take())[1] == ",":
                args.append(self.expr())
            if tok[1] != ")":
                raise ExprSyntaxError(f"expected ',' or ')' at column {tok[2]}, got {tok[1]!r}")
        _check_call(low, len(args), col)
        return Call(low, tuple(args))


def _number(text: str, col: int) -> Value:
    if re.fullmatch(r"\d+", text):
        value = int(text)
        if value > INT64_MAX + 1:  # INT64_MIN is written as -9223372036854775808
            raise ExprSyntaxError(f"integer {text} at column {col} is out of range for bigint")
        return value
    return float(text)


def _negate(arg: Node) -> Node:
    if isinstance(arg, Const) and not isinstance(arg.value, bool):
        return Const(-arg.value)
    return Binary("-", Const(0), arg)


def parse(text: str) -> Node:
    """The expression's tree; :class:`ExprSyntaxError` when it does not parse."""
    parser = _Parser(text)
    if not parser.toks:
        raise ExprSyntaxError("empty expression")
    node = parser.expr()
    if (tok := parser.peek()) is not None:
        raise ExprSyntaxError(f"unexpected {tok[1]!r} at column {tok[2]}")
    _check_consts(node)
    return node


def _check_consts(node: Node) -> None:
    if isinstance(node, Const) and isinstance(node.value, int) and node.value > INT64_MAX:
        raise ExprSyntaxError(f"integer {node.value} is out of range for bigint")
    for child in _children(node):
        _check_consts(child)


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Unary):
        return (node.arg,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Call):
        return node.args
    return ()


def variables(node: Node) -> set[str]:
    """The names of the variables ``node`` reads."""
    found = {node.name} if isinstance(node, Var) else set()
    for child in _children(node):
        found |= variables(child)
    return found


# -- evaluation ---------------------------------------------------------------------


def _int64(value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise EvalError("bigint out of range")
    return value


def to_int(value: Value) -> int:
    """pgbench's ``coerceToInt``: doubles truncate (NaN/out of range is an error)."""
    if isinstance(value, bool):
        raise EvalError("cannot coerce boolean to int")
    if isinstance(value, float):
        if math.isnan(value) or not float(INT64_MIN) <= value < float(INT64_MAX):
            raise EvalError("double to int overflow for " + repr(value))
        return int(value)
    return value


def to_double(value: Value) -> float:
    """pgbench's ``coerceToDouble``."""
    if isinstance(value, bool):
        raise EvalError("cannot coerce boolean to double")
    return float(value)


def to_bool(value: Value) -> bool:
    """pgbench's ``valueTruth``."""
    return bool(value)


def _c_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _mod(a: Value, b: Value) -> int:
    li, ri = to_int(a), to_int(b)
    if ri == 0:
        raise EvalError("division by zero")
    if ri == -1:
        return 0
    return li - ri * _c_div(li, ri)


def _arith(op: str, a: Value, b: Value) -> Value:
    if op == "%":
        return _mod(a, b)
    ints = isinstance(a, int) and isinstance(b, int)
    if ints and not isinstance(a, bool) and not isinstance(b, bool):
        if op == "/":
            if b == 0:
                raise EvalError("division by zero")
            return _int64(-a) if b == -1 else _c_div(a, b)
        return _int64(a + b if op == "+" else a - b if op == "-" else a * b)
    x, y = to_double(a), to_double(b)
    if op == "/":
        if y == 0.0:
            raise EvalError("division by zero")
        return x / y
    return x + y if op == "+" else x - y if op == "-" else x * y


def _compare(op: str, a: Value, b: Value) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        a, b = to_double(a), to_double(b)
    return {
        "=": a == b,
        "<>": a != b,
        "!=": a != b,
        "<": a < b,
        "<=": a <= b,
        ">": a > b,
        ">=": a >= b,
    }[op]


def _extreme(pick: Callable[..., Any], args: list[Value]) -> Value:
    if any(isinstance(a, float) for a in args):
        return float(pick(to_double(a) for a in args))
    return int(pick(to_int(a) for a in args))


def _abs(args: list[Value]) -> Value:
    (v,) = args
    return abs(v) if isinstance(v, float) else _int64(abs(to_int(v)))


def _double_fn(fn: Callable[..., float]) -> Callable[[list[Value]], Value]:
    def call(args: list[Value]) -> Value:
        try:
            return fn(*(to_double(a) for a in args))
        except (ValueError, OverflowError) as exc:
            raise EvalError(str(exc)) from None

    return call


#: name -> (min args, max args or None); the random ones draw from the client's generator.
ARITY: dict[str, tuple[int, int | None]] = {
    "random": (2, 2),
    "random_exponential": (3, 3),
    "random_gaussian": (3, 3),
    "random_zipfian": (3, 3),
    "abs": (1, 1),
    "least": (1, None),
    "greatest": (1, None),
    "int": (1, 1),
    "double": (1, 1),
    "mod": (2, 2),
    "sqrt": (1, 1),
    "ln": (1, 1),
    "exp": (1, 1),
    "pow": (2, 2),
    "power": (2, 2),
    "pi": (0, 0),
}

_PURE: dict[str, Callable[[list[Value]], Value]] = {
    "abs": _abs,
    "least": lambda a: _extreme(min, a),
    "greatest": lambda a: _extreme(max, a),
    "int": lambda a: to_int(a[0]),
    "double": lambda a: to_double(a[0]),
    "mod": lambda a: _mod(a[0], a[1]),
    "sqrt": _double_fn(math.sqrt),
    "ln": _double_fn(math.log),
    "exp": _double_fn(math.exp),
    "pow": _double_fn(math.pow),
    "power": _double_fn(math.pow),
    "pi": lambda a: math.pi,
}

_RANDOM: dict[str, Callable[..., int]] = {
    "random": randoms.uniform_int,
    "random_exponential": randoms.exponential,
    "random_gaussian": randoms.gaussian,
    "random_zipfian": randoms.zipfian,
}


def _check_call(fn: str, n: int, col: int) -> None:
    if fn not in ARITY:
        raise ExprSyntaxError(f"unknown function {fn!r} at column {col}")
    low, high = ARITY[fn]
    if n < low or (high is not None and n > high):
        want = f"{low}" if low == high else f"at least {low}"
        raise ExprSyntaxError(f"{fn}() takes {want} argument(s), got {n} (column {col})")


def _call(node: Call, args: list[Value], rng: Uniform) -> Value:
    if node.fn in _RANDOM:
        lb, ub = to_int(args[0]), to_int(args[1])
        extra = [to_double(a) for a in args[2:]]
        try:
            return _RANDOM[node.fn](rng, lb, ub, *extra)
        except RandomError as exc:
            raise EvalError(str(exc)) from None
    return _PURE[node.fn](args)


def evaluate(node: Node, env: Mapping[str, Value], rng: Uniform) -> Value:
    """The value of ``node`` with the variables in ``env``, drawing from ``rng``."""
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Var):
        try:
            return env[node.name]
        except KeyError:
            raise EvalError(f"undefined variable {node.name!r}") from None
    if isinstance(node, Unary):
        return not to_bool(evaluate(node.arg, env, rng))
    if isinstance(node, Binary):
        if node.op in ("and", "or"):
            left = to_bool(evaluate(node.left, env, rng))
            if left == (node.op == "or"):
                return left
            return to_bool(evaluate(node.right, env, rng))
        a, b = evaluate(node.left, env, rng), evaluate(node.right, env, rng)
        if node.op in ("+", "-", "*", "/", "%"):
            return _arith(node.op, a, b)
        return _compare(node.op, a, b)
    return _call(node, [evaluate(a, env, rng) for a in node.args], rng)
