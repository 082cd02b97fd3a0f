"""Skills as data: one YAML file per skill under ``recipes/skills/``.

A skill holds its content-transformation agents, its instruction taxonomy, its
Suggester-Editor refinement, and its answer policy with the validation checks to run.
Prompts are Jinja templates rendered with ``StrictUndefined`` (a typo is an error).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import jinja2
from pydantic import Field, model_validator

from agentinstruct.recipes import RecipeError, StrictModel, load_recipe
from agentinstruct.records import SeedKind

SKILLS_DIR = Path(__file__).resolve().parent.parent / "recipes" / "skills"

CheckName = Literal["non_empty", "not_truncated", "format", "answerable", "task_changed", "contains_target"]
QuestionForm = Literal["fronted", "in_situ"]


class Agent(StrictModel):
    """A content-transformation agent: rewrites a seed into a form suited to the skill."""

    name: str
    applies_to: list[SeedKind] = Field(default_factory=lambda: ["text"])
    system: str = ""
    prompt: str = Field("{{ text }}", description="Jinja; variables: text, kind, source")
    passthrough: bool = Field(False, description="use the seed as it is, no LLM call (identity)")
    split_sentences: bool = Field(
        False, description="with passthrough: one transformed text per sentence of the seed "
        "(short, single-purpose steps for small teachers)")
    min_sentence_chars: int = Field(30, ge=1)


class InstructionType(StrictModel):
    name: str
    description: str = Field(min_length=10)
    example: str = Field(min_length=5, description="an example of the expected task shape")
    skip_checks: list[CheckName] = Field(default_factory=list)
    form: QuestionForm | None = Field(
        None, description="with instruction.method answer_first: which question form this type "
        "writes (fronted: 'Through which river does ...?', in_situ: '... drains through which river?')")


class Transformation(StrictModel):
    agents_per_seed: int = Field(2, ge=1)
    agents: list[Agent] = Field(min_length=1)


class Instruction(StrictModel):
    """How tasks are written. ``llm``: the teacher writes each task from the prompt.
    ``answer_first``: for teachers too small to write questions (see generate/questions.py),
    answer spans of each clause are picked and the question around each is built by rule;
    the teacher then answers, and the ``contains_target`` check verifies the answer."""

    method: Literal["llm", "answer_first"] = "llm"
    max_targets: int = Field(2, ge=1, description="answer_first: answer spans per clause")
    tasks_per_text: int = Field(2, ge=1)
    system: str = ""
    prompt: str = Field("", description="Jinja; variables: text, type (name, description, example)")
    user_template: str = Field(
        "{{ text }}\n\n{{ task }}", description="the user turn of the training pair"
    )
    types: list[InstructionType] = Field(min_length=1)


class Refinement(StrictModel):
    rounds: int = Field(1, ge=0)
    suggestions: int = Field(2, ge=1)
    keep: Literal["final", "all"] = "final"
    proposals: list[str] = Field(min_length=1, description="what suggesters may propose")
    suggester_system: str = ""
    suggester_prompt: str = Field(description="Jinja; variables: text, task, proposals, n")
    editor_system: str = ""
    editor_prompt: str = Field(description="Jinja; variables: text, task, suggestion")


class Answer(StrictModel):
    system: str = ""
    step_by_step: bool = False
    step_by_step_hint: str = "Think step by step, then give the final answer."
    format: Literal["text", "json"] = "text"
    context_template: str | None = Field(
        None, description="Jinja (text, task, target: the answer span of an answer_first task, "
        "else None): what the teacher sees when answering, when it differs "
        "from the training user turn (closed-book skills answer from the text they hide)")
    json_schema: dict[str, Any] | None = Field(
        None, description="with format json: the schema answers must match (constrained decoding)"
    )
    include_system_in_messages: bool = False
    checks: list[CheckName] = Field(default_factory=lambda: ["non_empty", "not_truncated"])
    min_chars: int = Field(1, ge=1)
    answerable_prompt: str = Field(
        "Text:\n{{ text }}\n\nTask:\n{{ task }}\n\nCan the task be answered or carried out using "
        "only the text above? Reply in JSON with key \"answerable\" (true or false).",
        description="Jinja; variables: text, task",
    )


class Skill(StrictModel):
    name: str
    split: str = Field(description="split name in the output DatasetDict (e.g. rc)")
    description: str
    seed_kinds: list[SeedKind] = Field(default_factory=lambda: ["text"])
    transformation: Transformation
    instruction: Instruction
    refinement: Refinement
    answer: Answer

    @model_validator(mode="after")
    def _unique_names(self) -> Skill:
        for label, names in (("transformation.agents", [a.name for a in self.transformation.agents]),
                             ("instruction.types", [t.name for t in self.instruction.types])):
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"{label}: duplicate names {sorted(dup)}")
        instr = self.instruction
        if instr.method == "llm" and not instr.prompt.strip():
            raise ValueError("instruction.prompt: required with method llm")
        if instr.method == "answer_first":
            missing = [t.name for t in instr.types if t.form is None]
            if missing:
                raise ValueError(f"instruction.types: {missing} need a form (fronted or in_situ) "
                                 "with method answer_first")
        return self

    def agents_for(self, kind: str) -> list[Agent]:
        return [a for a in self.transformation.agents if kind in a.applies_to]

    def templates(self) -> dict[str, str]:
        """Every Jinja template of the skill, by a dotted name (for validation)."""
        out = {f"transformation.agents.{a.name}.prompt": a.prompt for a in self.transformation.agents}
        if self.instruction.method == "llm":
            out["instruction.prompt"] = self.instruction.prompt
        out.update({
            "instruction.user_template": self.instruction.user_template,
            "refinement.suggester_prompt": self.refinement.suggester_prompt,
            "refinement.editor_prompt": self.refinement.editor_prompt,
            "answer.answerable_prompt": self.answer.answerable_prompt,
        })
        if self.answer.context_template:
            out["answer.context_template"] = self.answer.context_template
        return out


_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False,
                          autoescape=False)


@lru_cache(maxsize=1024)
def _template(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def render(template: str, /, **variables: Any) -> str:
    return _template(template).render(**variables).strip()


def skill_path(name_or_path: str, skills_dir: Path = SKILLS_DIR) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    return skills_dir / f"{name_or_path}.yaml"


def available_skills(skills_dir: Path = SKILLS_DIR) -> list[str]:
    return sorted(p.stem for p in skills_dir.glob("*.yaml"))


def load_skill(name_or_path: str, skills_dir: Path = SKILLS_DIR) -> Skill:
    path = skill_path(name_or_path, skills_dir)
    if not path.exists():
        raise RecipeError(
            f"unknown skill {name_or_path!r} (no file {path}); available: "
            f"{', '.join(available_skills(skills_dir))}"
        )
    return load_recipe(path, Skill)


def select_skills(skills: list[Skill], wanted: list[str] | None) -> list[Skill]:
    """Keep the skills named by name or split (``--skills rc,tool_use``)."""
    if not wanted:
        return skills
    out = []
    for w in wanted:
        match = [s for s in skills if w in (s.name, s.split)]
        if not match:
            raise RecipeError(
                f"--skills: unknown skill {w!r}; the recipe has: "
                + ", ".join(f"{s.name} ({s.split})" for s in skills)
            )
        out.extend(m for m in match if m not in out)
    return out
