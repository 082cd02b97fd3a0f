"""Skill-specific answer checks (cost 0 or 1): the form a skill's answer must take, checked
against what its task states.

* ``mcq_answer``: the task lists lettered options; the answer ends with one ``Answer: (X)``
  line naming exactly one of them, and matches the task writer's key when the task carries one
  (a last line ``Key: X``, which the mcq skill's user turn leaves out).
* ``label_in_set``: the task defines its label set (a line ``Labels: a | b | c``); the answer's
  ``Label:`` line names labels of that set only (exactly one with ``Label:``).
* ``schema_extraction``: the task states a JSON schema; the answer is JSON valid against it, and
  every string and number it extracts occurs in the text (enum values excepted).
* ``numbers_in_text``: every number the answer states occurs in the text, or is the result of
  an arithmetic step the answer shows (data-to-text: no invented figures).
* ``fermi_arithmetic``: the answer shows its estimate as explicit ``a × b = c`` steps (at least
  ``MIN_FERMI_STEPS``), every step re-checked by the calculator, and ends with an ``Estimate:``
  line whose number is the result of a step (rounded at most ``ESTIMATE_ROUNDING``).

The line formats are what the skill files (recipes/skills/) tell the teacher to write; the
parsers here accept the usual variants (``(B)``, ``B)``, ``B.``; ``|`` or ``;`` separators).
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
from agentinstruct.generate.tools import EQUATION, calculate, json_values
from agentinstruct.generate.validators.base import TOOL, Candidate, register
from agentinstruct.generate.validators.text_checks import TextValidator

from agentinstruct.text import normalise

MIN_OPTIONS = 3  # an MCQ needs at least three options to be one
MIN_LABELS = 2
MIN_FERMI_STEPS = 2  # a Fermi estimate multiplies at least two factors out loud
FREE_NUMBER_MAX = 10  # small counts ("two regions", "step 3") need no source in the text
ESTIMATE_ROUNDING = 0.1  # a Fermi estimate may round its last step's result (to 2 significant figures)

# an option line: "A) text", "(A) text", "A. text", "A: text" (a letter A-H at a line start)
OPTION = re.compile(r"^\s*\(?([A-H])[).:]\s+\S", re.MULTILINE)
ANSWER_LINE = re.compile(r"^\s*\**\s*(?:final\s+)?answer\s*\**\s*:\s*\**\s*(.+?)\s*\**\s*$",
                         re.IGNORECASE | re.MULTILINE)
KEY_LINE = re.compile(r"^\s*key\s*:\s*\(?([A-H])\)?\s*$", re.IGNORECASE | re.MULTILINE)
LETTER = re.compile(r"(?<![A-Za-z])\(?([A-H])\)?(?![A-Za-z])")
LABELS_LINE = re.compile(r"^\s*\**\s*(?:labels|classes|categories)\s*\**\s*:\s*(.+?)\s*$",
                         re.IGNORECASE | re.MULTILINE)
LABEL_ANSWER = re.compile(r"^\s*\**\s*(labels?)\s*\**\s*:\s*\**\s*(.+?)\s*\**\s*$", re.IGNORECASE | re.MULTILINE)
ESTIMATE_LINE = re.compile(r"^\s*\**\s*estimate\s*\**\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?(?![\w])")
FENCED = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL)


# the stateless base class of the text checks
FormCheck = TextValidator


def _number(text: str) -> float | None:
    m = NUMBER.search(text)
    return float(m.group(0).replace(",", "")) if m else None


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


# --- multiple choice -----------------------------------------------------------------------


def mcq_options(task: str) -> list[str]:
    """The option letters of a task, in order (one per option line)."""
    return OPTION.findall(task)


def mcq_key(task: str) -> str | None:
    m = KEY_LINE.search(task)
    return m.group(1).upper() if m else None


@register("mcq_answer")
class MCQAnswer(FormCheck):
    """Exactly one correct option, and the answer's letter is one of the task's options (and
    the task writer's key, when the task carries one)."""

    def reason(self, c: Candidate) -> str | None:
        letters = mcq_options(c.task)
        if len(letters) < MIN_OPTIONS:
            return f"task lists {len(letters)} lettered options (needs at least {MIN_OPTIONS})"
        if len(set(letters)) != len(letters) or letters != [chr(ord("A") + i) for i in range(len(letters))]:
            return f"task options are not lettered A, B, C... once each ({', '.join(letters)})"
        lines = ANSWER_LINE.findall(c.answer)
        if not lines:
            return "answer has no final 'Answer: (X)' line"
        chosen = sorted({m.upper() for m in LETTER.findall(lines[-1])})
        if len(chosen) != 1:
            return f"answer line names {len(chosen)} options ({lines[-1]!r}); exactly one must be correct"
        letter = chosen[0]
        if letter not in letters:
            return f"answer ({letter}) is not among the task's options ({', '.join(letters)})"
        key = mcq_key(c.task)
        if key is not None and key != letter:
            return f"answer ({letter}) disagrees with the task's key ({key})"
        return None


# --- classification ------------------------------------------------------------------------


def _label_key(label: str) -> str:
    return normalise(label.strip().strip("*\"'`.[]"))


def split_labels(line: str) -> list[str]:
    sep = "|" if "|" in line else ";" if ";" in line else ","
    return [x.strip().strip("*\"'`.[]") for x in line.split(sep) if x.strip().strip("*\"'`.[]")]


def task_labels(task: str) -> list[str]:
    m = LABELS_LINE.search(task)
    return split_labels(m.group(1)) if m else []


@register("label_in_set")
class LabelInSet(FormCheck):
    """The answer's label(s) belong to the label set the task defined."""

    def reason(self, c: Candidate) -> str | None:
        labels = task_labels(c.task)
        if len(labels) < MIN_LABELS:
            return f"task defines {len(labels)} labels (needs a 'Labels: a | b' line with at least {MIN_LABELS})"
        allowed = {_label_key(x) for x in labels}
        # the answer's own label line is its last one (an answer may quote the task's list first)
        lines = LABEL_ANSWER.findall(c.answer)
        if not lines:
            return "answer has no final 'Label: ...' line"
        word, value = lines[-1]
        given = split_labels(value) if word.lower() == "labels" else [value.strip().strip("*\"'`.[]")]
        if not given:
            return "answer's label line is empty"
        outside = [g for g in given if _label_key(g) not in allowed]
        if outside:
            return f"label {outside[0]!r} is not in the task's set ({' | '.join(labels)})"
        if len({_label_key(g) for g in given}) != len(given):
            return "answer names a label twice"
        return None


# --- extraction against a stated schema ----------------------------------------------------


def task_schema(task: str) -> dict | None:
    """The first JSON object in the task that is a JSON schema (has a type or properties)."""
    for value in json_values(task):
        if isinstance(value, dict) and ("properties" in value or value.get("type") in ("object", "array")):
            return value
    return None


def answer_json(answer: str) -> tuple[Any, str | None]:
    """The answer as JSON: the whole answer, or its one fenced block; (value, why not)."""
    text = answer.strip()
    blocks = FENCED.findall(text)
    if blocks:
        if len(blocks) > 1:
            return None, "answer holds more than one JSON block"
        text = blocks[0].strip()
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"answer is not valid JSON ({exc.msg}, line {exc.lineno})"


def _leaves(value: Any, schema: dict | None, path: str = "$"):
    """(path, leaf value, its sub-schema) for each string/number leaf of ``value``."""
    schema = schema if isinstance(schema, dict) else {}
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for k, v in value.items():
            yield from _leaves(v, props.get(k), f"{path}.{k}")
    elif isinstance(value, list):
        items = schema.get("items")
        for i, v in enumerate(value):
            yield from _leaves(v, items, f"{path}[{i}]")
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        yield path, value, schema


def _in_text(value: str | float, text_norm: str, text_numbers: list[float]) -> bool:
    if isinstance(value, (int, float)):
        return any(_same(float(value), n) for n in text_numbers)
    v = normalise(value)
    if not v:
        return True
    if f" {v} " in f" {text_norm} ":
        return True
    number = _number(value) if NUMBER.fullmatch(value.strip()) else None
    return number is not None and any(_same(number, n) for n in text_numbers)


def text_numbers(text: str) -> list[float]:
    return [float(m.replace(",", "")) for m in NUMBER.findall(text)]


@register("schema_extraction")
class SchemaExtraction(FormCheck):
    """The answer is JSON valid against the schema the task states, and what it extracts is in
    the text: every string (unless one of the schema's enum values) and number."""

    def reason(self, c: Candidate) -> str | None:
        schema = task_schema(c.task)
        if schema is None:
            return "task states no JSON schema"
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            return f"task's schema is not a valid JSON schema ({exc.message[:80]})"
        value, why = answer_json(c.answer)
        if why:
            return why
        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "<root>"
            return f"answer does not match the task's schema at {where}: {error.message[:120]}"
        norm, numbers = normalise(c.text), text_numbers(c.text)
        for path, leaf, sub in _leaves(value, schema):
            if "enum" in sub or "const" in sub:
                continue
            if not _in_text(leaf, norm, numbers):
                return f"extracted value {leaf!r} ({path}) is not in the text"
        return None


# --- numbers and arithmetic ----------------------------------------------------------------


def checked_equations(text: str) -> tuple[list[float], str | None]:
    """The results of the ``a op b = c`` steps in ``text``, re-computed by the calculator, and
    the first wrong step as a reason (None when all are right)."""
    results: list[float] = []
    for m in EQUATION.finditer(text):
        try:
            value = calculate(m.group(1))
        except (ValueError, ZeroDivisionError, SyntaxError):
            continue
        stated = float(m.group(2).replace(",", ""))
        if not _same(value, stated):
            return results, f"calculator: {m.group(1).strip()} = {m.group(2)} is wrong ({value:g})"
        results.append(stated)
    return results, None


@register("numbers_in_text")
class NumbersInText(FormCheck):
    """Every number the answer states is in the text, is small (a count up to
    ``FREE_NUMBER_MAX``), or is a checked result of an arithmetic step the answer shows."""

    def reason(self, c: Candidate) -> str | None:
        results, wrong = checked_equations(c.answer)
        if wrong:
            return wrong
        known = text_numbers(c.text) + text_numbers(c.task) + results
        operands = [float(x.replace(",", "")) for m in EQUATION.finditer(c.answer)
                    for x in NUMBER.findall(m.group(1))]
        for n in text_numbers(c.answer):
            if abs(n) <= FREE_NUMBER_MAX or any(_same(n, k) for k in known + operands):
                continue
            return f"number {n:g} in the answer is neither in the text nor a shown calculation"
        return None


@register("fermi_arithmetic")
class FermiArithmetic(FormCheck):
    """A Fermi estimate shows its arithmetic: at least ``MIN_FERMI_STEPS`` ``a × b = c`` steps,
    each re-checked by the calculator, and an ``Estimate:`` line stating a step's result."""

    cost = TOOL

    def reason(self, c: Candidate) -> str | None:
        results, wrong = checked_equations(c.answer)
        if wrong:
            return wrong
        if len(results) < MIN_FERMI_STEPS:
            return (f"answer shows {len(results)} arithmetic steps written as 'a × b = c' "
                    f"(needs at least {MIN_FERMI_STEPS})")
        lines = ESTIMATE_LINE.findall(c.answer)
        if not lines:
            return "answer has no final 'Estimate:' line"
        value = _number(lines[-1])
        if value is None:
            return f"estimate line states no number ({lines[-1]!r})"
        if not any(abs(value - r) <= ESTIMATE_ROUNDING * max(abs(r), 1e-9) for r in results):
            return f"estimate {value:g} is not the result of any arithmetic step shown"
        return None


@register("arithmetic_correct")
class ArithmeticCorrect(FormCheck):
    """Every ``a op b = c`` step the answer shows is right (the calculator re-computes it);
    an answer without steps passes."""

    cost = TOOL

    def reason(self, c: Candidate) -> str | None:
        return checked_equations(c.answer)[1]


# --- answer forms --------------------------------------------------------------------------


@register("final_answer_line")
class FinalAnswerLine(FormCheck):
    """The answer ends its reasoning with an ``Answer: ...`` line that states something."""

    def reason(self, c: Candidate) -> str | None:
        lines = ANSWER_LINE.findall(c.answer)
        if not lines or not lines[-1].strip("*. "):
            return "answer has no final 'Answer: ...' line"
        return None


# a closed-book pair must stand alone: neither turn may point at a text the student never sees
TEXT_REFERENCE = re.compile(
    r"\b(?:according to|as (?:stated|mentioned|described) in|based on|from|in) the (?:passage|text|article|"
    r"document|excerpt|source|seed)\b|\bthe (?:passage|text|article|excerpt) (?:says|states|mentions|describes)\b",
    re.IGNORECASE)


@register("closed_book")
class ClosedBook(FormCheck):
    """Closed-book skills (the user turn holds no text): neither the task nor the answer refers
    to "the passage" or "the text", which the student never sees."""

    def reason(self, c: Candidate) -> str | None:
        for part, where in ((c.task, "task"), (c.answer, "answer")):
            m = TEXT_REFERENCE.search(part)
            if m:
                return f"{where} refers to a text the user never sees ({m.group(0)!r})"
        return None


TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def table_problem(answer: str) -> str | None:
    """The first Markdown table whose rows do not all have its header's number of cells, or
    that lacks the ``|---|`` rule under its header."""
    lines = answer.splitlines()
    i = 0
    while i < len(lines):
        if not TABLE_ROW.match(lines[i]):
            i += 1
            continue
        block = []
        while i < len(lines) and TABLE_ROW.match(lines[i]):
            block.append(lines[i].strip().strip("|").split("|"))
            i += 1
        if len(block) < 2:
            continue
        if not TABLE_RULE.match("|" + "|".join(block[1]) + "|"):
            return "Markdown table has no '|---|' rule under its header"
        width = len(block[0])
        bad = next((r for r in block[2:] if len(r) != width), None)
        if bad is not None:
            return f"Markdown table row has {len(bad)} cells, its header {width}"
    return None


@register("well_formed_structure")
class WellFormedStructure(FormCheck):
    """Structured parts of an answer are well formed: an answer that is JSON (or holds fenced
    JSON blocks) parses, and every Markdown table keeps its header's column count."""

    def reason(self, c: Candidate) -> str | None:
        text = c.answer.strip()
        blocks = re.findall(r"```json\s*\n(.*?)```", text, re.DOTALL)
        if text[:1] in "[{":
            blocks.append(text)
        for block in blocks:
            try:
                json.loads(block)
            except json.JSONDecodeError as exc:
                return f"answer's JSON does not parse ({exc.msg}, line {exc.lineno})"
        return table_problem(text)
