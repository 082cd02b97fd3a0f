"""The tools an agent step can name while it generates: ``calculator``, ``python``, ``search``.

Each is a :class:`~agentinstruct.llm.tools.ToolSpec` for
:func:`~agentinstruct.llm.tools.chat_with_tools`:

* ``calculator``: arithmetic evaluated exactly with sympy. The expression is parsed with
  Python's ``ast`` (eval mode) and only numbers, ``+ - * / ** %``, unary signs, parentheses and
  a whitelist of functions and constants are turned into sympy objects, node by node; model
  text is never ``eval``-ed or handed to sympy's own parser. Every intermediate value is bounded
  (:class:`CalculatorLimits`), and a power or factorial whose result would be too large is
  refused before it is computed, so ``9**9**9`` answers at once.
* ``python``: code run in :class:`agentinstruct.sandbox.Sandbox` (the tool gate's isolated
  runner); stdout/stderr come back redacted and cut.
* ``search``: the top passages of the run's :class:`~agentinstruct.generate.retrieval.Retriever`,
  with their ids.
"""

from __future__ import annotations

import ast
import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sympy

from agentinstruct.llm.tools import ToolBox, ToolError, ToolSpec
from agentinstruct.recipes import RecipeError
from agentinstruct.redact import redact_secrets

if TYPE_CHECKING:
    from agentinstruct.generate.retrieval import Retriever

    from agentinstruct.sandbox import Sandbox


# --- calculator ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CalculatorLimits:
    """Bounds that keep one evaluation fast whatever the expression."""

    max_chars: int = 500  # expression length
    max_nodes: int = 200  # AST nodes
    max_digits: int = 1000  # every value (intermediate or final) lies within 10**±max_digits
    max_factorial: int = 450  # factorial(n) for 0 <= n <= this (450! has 1,001 digits)
    max_round_digits: int = 50  # round(x, n): |n| at most this
    precision: int = 15  # significant digits of a result that is not an integer


class CalculatorError(ToolError):
    """The expression is not allowed or has no (bounded, real) value."""


_BINARY: dict[type[ast.operator], str] = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/",
                                          ast.Pow: "**", ast.Mod: "%"}
CONSTANTS: dict[str, sympy.Expr] = {"pi": sympy.pi, "e": sympy.E}
# name -> (least, most arguments)
FUNCTIONS: dict[str, tuple[int, int]] = {
    "sqrt": (1, 1), "log": (1, 2), "ln": (1, 1), "exp": (1, 1), "sin": (1, 1), "cos": (1, 1),
    "tan": (1, 1), "abs": (1, 1), "floor": (1, 1), "ceil": (1, 1), "round": (1, 2), "factorial": (1, 1),
}


class Calculator:
    """Turns a whitelisted Python expression into a bounded sympy number."""

    def __init__(self, limits: CalculatorLimits | None = None):
        self.limits = limits or CalculatorLimits()

    def evaluate(self, expression: str) -> sympy.Expr:
        lim = self.limits
        if len(expression) > lim.max_chars:
            raise CalculatorError(f"expression longer than {lim.max_chars} characters")
        try:
            tree = ast.parse(expression.strip(), mode="eval")
        except SyntaxError as exc:
            raise CalculatorError(f"not a valid expression: {exc.msg}") from None
        if sum(1 for _ in ast.walk(tree)) > lim.max_nodes:
            raise CalculatorError(f"expression has more than {lim.max_nodes} parts")
        return self._node(tree.body)

    def format(self, value: sympy.Expr) -> str:
        """An integer exactly; anything else to ``precision`` significant digits."""
        if value.is_Integer:
            return str(int(value))
        text = str(value.evalf(self.limits.precision))
        mantissa, sep, exponent = text.partition("e")
        if "." in mantissa:
            mantissa = mantissa.rstrip("0").rstrip(".")
        return mantissa + sep + exponent

    def calculate(self, expression: str) -> str:
        return self.format(self.evaluate(expression))

    # -- nodes --------------------------------------------------------------------------------

    def _node(self, node: ast.AST) -> sympy.Expr:
        if isinstance(node, ast.Constant):
            return self._number(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return self._binary(_BINARY[type(node.op)], self._node(node.left), self._node(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self._node(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            raise CalculatorError(f"unknown name {node.id!r}; constants: {', '.join(CONSTANTS)}")
        if isinstance(node, ast.Call):
            return self._call(node)
        raise CalculatorError(f"{type(node).__name__} is not allowed: only numbers, + - * / ** %, "
                              f"parentheses and the functions {', '.join(FUNCTIONS)}")

    def _number(self, value: object) -> sympy.Expr:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CalculatorError(f"{type(value).__name__} constants are not allowed, only numbers")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise CalculatorError("number out of range")
            return self._checked(sympy.Rational(repr(value)))  # the decimal as written, exactly
        if len(str(abs(value))) > self.limits.max_digits:
            raise CalculatorError(f"number longer than {self.limits.max_digits} digits")
        return sympy.Integer(value)

    def _binary(self, op: str, a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
        if op in ("/", "%") and b == 0:
            raise CalculatorError("division by zero" if op == "/" else "modulo by zero")
        if op == "+":
            return self._checked(a + b)
        if op == "-":
            return self._checked(a - b)
        if op == "*":
            return self._checked(a * b)
        if op == "/":
            return self._checked(a / b)
        if op == "%":
            return self._checked(sympy.Mod(a, b))
        return self._power(a, b)

    def _power(self, base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
        if base == 0:
            if exponent.evalf() < 0:
                raise CalculatorError("division by zero (0 to a negative power)")
            return self._checked(base ** exponent)
        # log10 of the result, estimated in floating point before anything big is computed
        magnitude = sympy.Abs(exponent.evalf(20)) * abs(sympy.log(sympy.Abs(base), 10).evalf(20))
        if magnitude > self.limits.max_digits:
            raise CalculatorError(f"result out of range (about 10**±{self._digits(magnitude)})")
        return self._checked(base ** exponent)

    def _call(self, node: ast.Call) -> sympy.Expr:
        if not isinstance(node.func, ast.Name):
            raise CalculatorError("only the named functions may be called "
                                  f"({', '.join(FUNCTIONS)}), not attributes or expressions")
        name = node.func.id
        if name not in FUNCTIONS:
            raise CalculatorError(f"unknown function {name!r}; functions: {', '.join(FUNCTIONS)}")
        if node.keywords:
            raise CalculatorError(f"{name}: keyword arguments are not allowed")
        least, most = FUNCTIONS[name]
        if not least <= len(node.args) <= most:
            count = str(least) if least == most else f"{least} or {most}"
            raise CalculatorError(f"{name} takes {count} argument(s), got {len(node.args)}")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise CalculatorError(f"{name}: *arguments are not allowed")
        args = [self._node(a) for a in node.args]
        return self._checked(self._apply(name, args))

    def _apply(self, name: str, args: list[sympy.Expr]) -> sympy.Expr:
        x = args[0]
        if name == "factorial":
            if not x.is_Integer or x < 0:
                raise CalculatorError("factorial takes a whole number >= 0")
            if x > self.limits.max_factorial:
                raise CalculatorError(f"factorial of more than {self.limits.max_factorial} is out of range")
            return sympy.factorial(x)
        if name == "exp":
            if x.evalf() > self.limits.max_digits * math.log(10):
                raise CalculatorError("result out of range")
            return sympy.exp(x)
        if name in ("log", "ln"):
            if x.evalf() <= 0 or (len(args) == 2 and (args[1].evalf() <= 0 or args[1] == 1)):
                raise CalculatorError("log takes numbers > 0 (and a base > 0, not 1)")
            return sympy.log(x, args[1]) if len(args) == 2 else sympy.log(x)
        if name == "round":
            digits = args[1] if len(args) == 2 else None
            if digits is not None and (not digits.is_Integer or abs(digits) > self.limits.max_round_digits):
                raise CalculatorError(f"round: digits must be a whole number of at most "
                                      f"{self.limits.max_round_digits}")
            # half to even, as Python's round; exact, so round(pi, 3) is 3.142, not a binary float
            scale = sympy.Integer(10) ** int(digits or 0)
            return sympy.Integer((x * scale).round()) / scale
        builders: dict[str, Callable[[sympy.Expr], sympy.Expr]] = {
            "sqrt": sympy.sqrt, "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "abs": sympy.Abs,
            "floor": sympy.floor, "ceil": sympy.ceiling}
        return builders[name](x)

    def _checked(self, value: sympy.Expr) -> sympy.Expr:
        """``value`` if it is a finite real number within the size bound."""
        if value.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
            raise CalculatorError("undefined (division by zero or a pole)")
        approx = value.evalf(self.limits.precision + 5)
        if not approx.is_number:
            raise CalculatorError("not a number")
        real, imag = approx.as_real_imag()
        if imag != 0:
            raise CalculatorError("the result is not a real number")
        if real != 0:
            digits = abs(sympy.log(sympy.Abs(real), 10).evalf(10))
            if digits > self.limits.max_digits:
                raise CalculatorError(f"result out of range (about 10**±{self._digits(digits)})")
        return value

    @staticmethod
    def _digits(magnitude: sympy.Expr) -> str:
        value = float(magnitude)
        return f"{value:.3g}" if math.isfinite(value) else "inf"


def calculator_tool(limits: CalculatorLimits | None = None) -> ToolSpec:
    """Exact arithmetic for the model: ``{"expression": "(17 * 23) / 4"}`` -> ``"97.75"``."""
    calc = Calculator(limits)

    async def run(arguments: dict[str, Any]) -> str:
        return calc.calculate(arguments["expression"])

    return ToolSpec(
        name="calculator",
        description="Evaluate an arithmetic expression exactly: numbers, + - * / ** % and "
                    "parentheses, the functions " + ", ".join(FUNCTIONS) + " and the constants pi "
                    "and e. Returns the number.",
        parameters={"type": "object", "properties": {"expression": {
            "type": "string", "description": "e.g. (17 * 23) / 4 or sqrt(2) * pi"}},
            "required": ["expression"], "additionalProperties": False},
        run=run)


# --- python --------------------------------------------------------------------------------


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n[... cut at {limit} characters]"


def python_tool(sandbox: Sandbox, *, timeout_s: float = 5.0, memory_mb: int = 512,
                max_output_chars: int = 2000) -> ToolSpec:
    """Run a Python program in ``sandbox`` (no network, a throwaway /tmp, only ``PATH`` in the
    environment); the reply is its exit status and its redacted, cut stdout/stderr. The caller
    chooses the sandbox, and with it the isolation policy (``verify.open_sandbox``)."""

    async def run(arguments: dict[str, Any]) -> str:
        result = await asyncio.to_thread(sandbox.run, arguments["code"], timeout_s, memory_mb)
        lines = [f"exit: {'ok' if result.ok else 'failed: ' + result.reason}"]
        for label, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            if text.strip():
                lines.append(f"{label}:\n{_cut(redact_secrets(text), max_output_chars)}")
        return "\n".join(lines)

    return ToolSpec(
        name="python",
        description=f"Run a Python 3 program (standard library only, no network, {timeout_s:g} s) "
                    "and get back what it prints. Use print() to see values.",
        parameters={"type": "object", "properties": {"code": {
            "type": "string", "description": "the whole program"}},
            "required": ["code"], "additionalProperties": False},
        run=run)


# --- search --------------------------------------------------------------------------------


def search_tool(retriever: Retriever, *, k: int = 3, max_chars: int = 800) -> ToolSpec:
    """The ``k`` best passages for a query, each as ``[id] (source) text`` (cut at ``max_chars``),
    so the answer can cite the passages it used."""

    async def run(arguments: dict[str, Any]) -> str:
        query = arguments["query"].strip()
        if not query:
            raise ToolError("the query is empty")
        passages = retriever.search(query, k)
        if not passages:
            return "no passages found"
        return "\n\n".join(f"[{p.id}] ({p.source}) {_cut(p.text, max_chars)}" for p in passages)

    return ToolSpec(
        name="search",
        description=f"Search the documents; returns the {k} best passages with their ids.",
        parameters={"type": "object", "properties": {"query": {
            "type": "string", "description": "what to look for"}},
            "required": ["query"], "additionalProperties": False},
        run=run)


# --- by name -------------------------------------------------------------------------------

TOOL_NAMES = ("calculator", "python", "search")


def build_toolbox(names: list[str], *, sandbox: Sandbox | None, retriever: Retriever | None) -> ToolBox:
    """The tools a skill names. An unknown name, a name given twice, ``python`` without a
    sandbox or ``search`` without a retriever is a :class:`RecipeError` naming it."""
    specs: list[ToolSpec] = []
    for name in names:
        if name not in TOOL_NAMES:
            raise RecipeError(f"unknown tool {name!r}; known tools: {', '.join(TOOL_NAMES)}")
        if any(s.name == name for s in specs):
            raise RecipeError(f"tool {name!r} is listed twice")
        if name == "calculator":
            specs.append(calculator_tool())
        elif name == "python":
            if sandbox is None:
                raise RecipeError("tool 'python' needs the sandbox (gates.tools.sandbox: true)")
            specs.append(python_tool(sandbox))
        else:
            if retriever is None:
                raise RecipeError("tool 'search' needs a retrieval index (the recipe's retrieval section)")
            specs.append(search_tool(retriever))
    return ToolBox(specs)
