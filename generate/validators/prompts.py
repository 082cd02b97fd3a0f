"""The judge prompts of the validators: Jinja templates shipped under ``recipes/prompts/``.

Prompts are data: each validator that asks a model renders one of these, and a recipe
(``gates.<gate>.prompt``) or a skill (``answer.answerable_prompt``) may replace it with inline
Jinja or the path of a ``.jinja`` file. An override is checked when the recipe loads: a syntax
error or a variable the validator does not pass fails with one line naming the field.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from agentinstruct.resources import data_path

PROMPTS_DIR = data_path("recipes", "prompts")
PROMPT_SUFFIXES = (".jinja", ".j2", ".txt")

# what each shipped prompt is rendered with (every one also gets ``language``)
PROMPT_VARIABLES: dict[str, frozenset[str]] = {
    "answerable": frozenset({"text", "task", "language"}),
    "grounding": frozenset({"source", "task", "answer", "language"}),
    "rederive": frozenset({"task", "first", "second", "language"}),
    "judge_score": frozenset({"user", "answer", "language"}),
}


@cache
def shipped_prompt(name: str) -> str:
    """The text of ``recipes/prompts/<name>.jinja``."""
    return (PROMPTS_DIR / f"{name}.jinja").read_text(encoding="utf-8")


def looks_like_path(value: str) -> bool:
    """A one-line value ending in a template suffix is a file; anything else is inline Jinja."""
    return "\n" not in value and "{" not in value and value.strip().endswith(PROMPT_SUFFIXES)


def load_override(value: str, prompt: str, base: Path | None) -> str:
    """The template text of an override (inline, or read from a path relative to ``base``),
    checked against the variables ``prompt`` is rendered with. ValueError (one line) if bad."""
    from agentinstruct.generate.skills import template_problem

    from agentinstruct.recipes import resolve_path

    source = value
    if looks_like_path(value):
        path = Path(resolve_path(value.strip(), base)) if base is not None else Path(value.strip())
        if not path.is_file():
            raise ValueError(f"prompt file {path} does not exist")
        source = path.read_text(encoding="utf-8")
    problem = template_problem(source, PROMPT_VARIABLES[prompt])
    if problem:
        raise ValueError(problem)
    return source
