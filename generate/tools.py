"""Tools that check answers: a safe calculator, a sandboxed Python runner, and a validator of
tool calls against the API description the task gave."""

from __future__ import annotations

import ast
import json
import operator
import re
import resource
import subprocess
import sys
import tempfile

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos}
_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"
EQUATION = re.compile(rf"(?<![\w.])((?:{_NUM}\s*[-+*/×x÷]\s*)+{_NUM})\s*=\s*(-?{_NUM})(?![\w])")
CODE_BLOCK = re.compile(r"```(?:python|py)\s*\n(.*?)```", re.DOTALL)


def calculate(expression: str) -> float:
    """Evaluate + - * / ** on numbers only (no names, no calls): the calculator tool."""
    expr = expression.replace(",", "").replace("×", "*").replace("÷", "/")
    expr = re.sub(r"(?<=\d)\s*x\s*(?=\d)", "*", expr)

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            if isinstance(node.op, ast.Pow) and abs(ev(node.right)) > 100:
                raise ValueError("exponent too large")
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.operand))
        raise ValueError(f"not arithmetic: {ast.dump(node)[:60]}")

    return float(ev(ast.parse(expr, mode="eval")))


def check_arithmetic(text: str) -> str | None:
    """The first wrong ``a op b = c`` in ``text``, as a reason; None when all are right."""
    for m in EQUATION.finditer(text):
        try:
            value = calculate(m.group(1))
        except (ValueError, ZeroDivisionError, SyntaxError):
            continue
        stated = float(m.group(2).replace(",", ""))
        if abs(value - stated) > 1e-6 * max(1.0, abs(value)):
            return f"calculator: {m.group(1).strip()} = {m.group(2)} is wrong ({value:g})"
    return None


def _limits(memory_mb: int, cpu_s: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 2**20, memory_mb * 2**20))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
        resource.setrlimit(resource.RLIMIT_NPROC, (64, 64))

    return apply


def run_sandboxed(code: str, timeout_s: float = 5.0, memory_mb: int = 512) -> tuple[bool, str]:
    """Run Python in an isolated interpreter (-I), empty temp cwd, no stdin, CPU/memory limits."""
    with tempfile.TemporaryDirectory() as cwd:
        try:
            proc = subprocess.run([sys.executable, "-I", "-c", code], cwd=cwd, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout_s,
                                  preexec_fn=_limits(memory_mb, max(1, int(timeout_s))),
                                  env={"PATH": "/usr/bin:/bin"})
        except subprocess.TimeoutExpired:
            return False, "timed out"
    if proc.returncode in (-9, -24):  # SIGKILL / SIGXCPU from the CPU-time limit
        return False, "timed out"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return False, last[:200]
    return True, ""


def check_code(text: str, timeout_s: float) -> str | None:
    for block in CODE_BLOCK.findall(text):
        ok, err = run_sandboxed(block, timeout_s)
        if not ok:
            return f"sandbox: code fails: {err}"
    return None


NO_CALL_TYPES = {"needed_api_absent", "missing_parameters"}


def check_tool_calls(answer: str, api_text: str, instruction_type: str) -> str | None:
    """Calls must name functions and parameters that the API description mentions; tasks built
    to be impossible (API absent, parameter missing) must make no call."""
    try:
        value = json.loads(answer)
    except json.JSONDecodeError:
        return "tool calls: answer is not JSON"
    calls = value.get("calls") if isinstance(value, dict) else None
    if not isinstance(calls, list):
        return "tool calls: no 'calls' list"
    if instruction_type in NO_CALL_TYPES and calls:
        return f"tool calls: a {instruction_type} task must make no call"
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", api_text))
    for call in calls:
        name = call.get("name") if isinstance(call, dict) else None
        if not name or name not in words:
            return f"tool calls: unknown function {name!r}"
        for arg in (call.get("arguments") or {}):
            if arg not in words:
                return f"tool calls: {name} has no parameter {arg!r}"
    return None
