"""Tools that check answers: a safe calculator, a sandboxed Python runner, and a validator of
tool calls against the API description the task gave."""

from __future__ import annotations

import ast
import json
import re

from agentinstruct.generate.agent_tools import Calculator, CalculatorError

from agentinstruct.sandbox import Sandbox, SandboxResult

_CALCULATOR = Calculator()
_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"
EQUATION = re.compile(rf"(?<![\w.])((?:{_NUM}\s*[-+*/×x÷]\s*)+{_NUM})\s*=\s*(-?{_NUM})(?![\w])")
CODE_BLOCK = re.compile(r"```(?:python|py)\s*\n(.*?)```", re.DOTALL)


def calculate(expression: str) -> float:
    """An equation's left side as written in an answer (``1,500 / 3``, ``4 × 7``, ``3 x 4``),
    evaluated by the calculator tool (sympy over a whitelisted AST, bounded; see
    ``agent_tools.Calculator``). Raises ``ValueError`` (``CalculatorError``) when it can't."""
    expr = expression.replace(",", "").replace("×", "*").replace("÷", "/")
    expr = re.sub(r"(?<=\d)\s*x\s*(?=\d)", "*", expr)
    value = _CALCULATOR.evaluate(expr)
    try:
        return float(value)
    except OverflowError:
        raise CalculatorError("result out of the range of a float") from None


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


def run_sandboxed(code: str, timeout_s: float = 5.0, memory_mb: int = 512,
                  sandbox: Sandbox | None = None) -> SandboxResult:
    """Run Python in the sandbox (default: the best isolation this machine offers)."""
    return (sandbox or Sandbox()).run(code, timeout_s, memory_mb)


def check_code(text: str, timeout_s: float, sandbox: Sandbox | None = None, memory_mb: int = 512) -> str | None:
    """The first Python block of ``text`` that fails in the sandbox, as a (redacted) reason."""
    for block in CODE_BLOCK.findall(text):
        res = run_sandboxed(block, timeout_s, memory_mb, sandbox)
        if not res.ok:
            return f"sandbox: code fails: {res.reason}"
    return None


NO_CALL_TYPES = {"needed_api_absent", "missing_parameters"}
# a signature as the tool_use skill writes it: get_forecast(city: str, days: int = 3)
_SIGNATURE = re.compile(r"(?<![\w.])([A-Za-z_][A-Za-z0-9_]*)\(([^()]*)\)")


def json_values(text: str) -> list[object]:
    """Every top-level JSON object or array embedded in ``text``."""
    decoder, values, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i] in "[{":
            try:
                value, end = decoder.raw_decode(text, i)
            except json.JSONDecodeError:
                i += 1
                continue
            values.append(value)
            i = end
        else:
            i += 1
    return values


def _spec_parameters(parameters: object) -> set[str]:
    """Parameter names of one function spec: a JSON Schema object, a name->spec map, or a list."""
    if isinstance(parameters, dict):
        if "properties" in parameters or parameters.get("type") == "object":
            props = parameters.get("properties")
            return set(props) if isinstance(props, dict) else set()
        return set(parameters)
    if isinstance(parameters, list):
        return {p["name"] if isinstance(p, dict) else p for p in parameters
                if isinstance(p, str) or (isinstance(p, dict) and isinstance(p.get("name"), str))}
    return set()


def _collect_specs(value: object, apis: dict[str, set[str]]) -> None:
    if isinstance(value, list):
        for item in value:
            _collect_specs(item, apis)
    elif isinstance(value, dict):
        if isinstance(value.get("function"), dict):  # {"type": "function", "function": {...}}
            _collect_specs(value["function"], apis)
        elif isinstance(value.get("name"), str) and ("parameters" in value or "description" in value):
            apis.setdefault(value["name"], set()).update(_spec_parameters(value.get("parameters")))
        else:  # {"functions": [...]}, {"tools": [...]}
            for sub in value.values():
                if isinstance(sub, (list, dict)):
                    _collect_specs(sub, apis)


def _signature_parameters(params: str) -> set[str] | None:
    """Parameter names of ``name(params)``, or None when ``params`` is not a parameter list."""
    try:
        tree = ast.parse(f"def _f({params}): pass")
    except SyntaxError:
        return None
    args = tree.body[0].args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    return {n for n in names if n not in ("self", "cls")}


def parse_api_list(api_text: str) -> dict[str, set[str]]:
    """The APIs a task offers, as {function name: parameter names}: JSON function specs
    (OpenAI function/tool format, a list or under a key), else signatures ``name(a: int, b=1)``.
    Only these count as APIs: other words of the text (the template's own ``name``,
    ``arguments``, the prose) do not."""
    apis: dict[str, set[str]] = {}
    for value in json_values(api_text):
        _collect_specs(value, apis)
    if apis:
        return apis
    for m in _SIGNATURE.finditer(api_text):
        params = _signature_parameters(m.group(2))
        if params is not None:
            apis.setdefault(m.group(1), set()).update(params)
    return apis


def _call_arguments(call: dict) -> dict | None:
    """A call's arguments as an object: a JSON object written as a string (the skill's schema,
    as in OpenAI function calling), or an object; None when they are neither."""
    args = call.get("arguments")
    if args is None or args == "":
        return {}
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    return args if isinstance(args, dict) else None


def check_tool_calls(answer: str, api_text: str, instruction_type: str) -> str | None:
    """Calls must name functions, and parameters of them, from the API list the task gave
    (parsed by ``parse_api_list``); tasks built to be impossible (API absent, parameter
    missing) must make no call."""
    try:
        value = json.loads(answer)
    except json.JSONDecodeError:
        return "tool calls: answer is not JSON"
    calls = value.get("calls") if isinstance(value, dict) else None
    if not isinstance(calls, list):
        return "tool calls: no 'calls' list"
    if instruction_type in NO_CALL_TYPES and calls:
        return f"tool calls: a {instruction_type} task must make no call"
    if not calls:
        return None
    apis = parse_api_list(api_text)
    if not apis:
        return "tool calls: the task gives no API list that can be parsed"
    for call in calls:
        name = call.get("name") if isinstance(call, dict) else None
        if not isinstance(name, str) or name not in apis:
            return f"tool calls: unknown function {name!r}"
        args = _call_arguments(call)
        if args is None:
            return f"tool calls: {name} arguments are not a JSON object"
        for arg in args:
            if arg not in apis[name]:
                return f"tool calls: {name} has no parameter {arg!r}"
    return None
