"""Skills as data: one YAML file per skill under ``recipes/skills/`` (shipped as package data).

A skill holds its content-transformation agents, its instruction taxonomy, its
Suggester-Editor refinement, and its answer policy with the validation checks to run.
Prompts are Jinja templates rendered with ``StrictUndefined`` (a typo is an error).
"""

from __future__ import annotations

import fnmatch
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import jinja2
from agentinstruct.generate.retrieval_spec import RetrievalSpec
from jinja2 import meta, nodes
from pydantic import AfterValidator, Field, model_validator

from agentinstruct.recipes import RecipeError, StrictModel, load_recipe
from agentinstruct.records import SeedKind
from agentinstruct.resources import data_path

SKILLS_DIR = data_path("recipes", "skills")  # the shipped skills, in a checkout and in a wheel



def _known_check(name: str) -> str:
    """A validator name of the registry (generate/validators): a new validator needs no edit here."""
    from agentinstruct.generate.validators import REGISTRY, known_names

    if name not in REGISTRY:
        raise ValueError(f"unknown validator {name!r}; known: {', '.join(known_names())}")
    return name


CheckName = Annotated[str, AfterValidator(_known_check)]
QuestionForm = Literal["fronted", "in_situ"]
# the tools of generate/agent_tools.py (TOOL_NAMES) a step can name
ToolName = Literal["calculator", "python", "search"]


class Agent(StrictModel):
    """A content-transformation agent: rewrites a seed into a form suited to the skill."""

    name: str
    applies_to: list[SeedKind] = Field(default_factory=lambda: ["text"])
    system: str = ""
    prompt: str = Field("{{ text }}", description="Jinja; variables: text, kind, source, language")
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
    prompt: str = Field("", description="Jinja; variables: text, type (name, description, example), "
                        "passages, language")
    user_template: str = Field(
        "{{ text }}\n\n{{ task }}", description="the user turn of the training pair; Jinja: text, task, "
        "passages (with retrieval: the passages shown, each with id, text, source), language"
    )
    types: list[InstructionType] = Field(min_length=1)


DEFAULT_HARDER_PROMPT = (
    "Text:\n{{ text }}\n\nOriginal task:\n{{ previous_task }}\n\nEdited task:\n{{ task }}\n\n"
    "Is the edited task harder than the original or does it ask for something different, rather than "
    "only rewording it? Reply in JSON with key \"harder\" (true or false).")
DEFAULT_BEST_PROMPT = (
    "Text:\n{{ text }}\n\nOriginal task:\n{{ task }}\n\nEdited versions:\n"
    "{% for c in candidates %}{{ loop.index0 }}: {{ c }}\n{% endfor %}\n"
    "Which edited version is the best task to continue refining: harder, still answerable from the text "
    "and well written? Reply in JSON with key \"best\" holding its number.")


class Refinement(StrictModel):
    """The Suggester-Editor loop. Each round the Suggester proposes ``suggestions`` changes of its
    own (``proposals`` guide it: they are shown as examples, the reply is not limited to them) and
    the Editor applies each one; ``branches`` decides which edits the next round builds on."""

    rounds: int = Field(1, ge=0)
    suggestions: int = Field(2, ge=1)
    keep: Literal["final", "all"] = "final"
    branches: Literal["first", "all", "best"] = Field(
        "first", description="which edits of a round the next round refines: the first, every one "
        "(a tree, capped by max_versions), or the best one as the judge picks (best_prompt)")
    max_versions: int | None = Field(
        None, ge=1, description="cap on the refined versions of one task (all rounds together); "
        "edits past it are not made")
    editor_may_change_text: bool = Field(
        False, description="the Editor may rewrite the text (passage) too, e.g. remove the fact a "
        "question needs; the answer is then written against the edited text")
    check_harder: bool = Field(
        False, description="a judge confirms each edit made the task harder or different, not "
        "only reworded (harder_prompt); edits it refuses are rejected (gate check_harder)")
    proposals: list[str] = Field(min_length=1, description="examples of changes that guide the Suggester")
    suggester_system: str = ""
    suggester_prompt: str = Field(description="Jinja; variables: text, task, proposals, n, passages, language")
    editor_system: str = ""
    editor_prompt: str = Field(description="Jinja; variables: text, task, suggestion, passages, language")
    harder_prompt: str = Field(DEFAULT_HARDER_PROMPT,
                               description="Jinja (text, previous_task, task, language): the check_harder judge")
    best_prompt: str = Field(DEFAULT_BEST_PROMPT,
                             description="Jinja (text, task, candidates, language): the branches best judge")


DEFAULT_FOLLOW_UP_PROMPT = (
    "Text:\n{{ text }}\n\nConversation so far:\n{% for m in history %}{{ m.role }}: {{ m.content }}\n"
    "{% endfor %}\nWrite the user's next message: one follow-up question about the text that builds "
    "on the conversation and can be answered from the text. Reply in JSON with key \"task\" holding "
    "only the message.")


class Conversation(StrictModel):
    """Multi-turn records: after the first answer the teacher writes the user's next message
    (grounded in the same text) and answers it, ``turns`` user turns in all. Every answer is
    checked with the skill's checks; a rejected turn ends the conversation at the last good one."""

    turns: int = Field(1, ge=1, description="user turns per record (1: single-turn)")
    follow_up_system: str = Field("You write the next message of the user in a conversation about a text.",
                                  description="system prompt of the follow-up writer")
    follow_up_prompt: str = Field(DEFAULT_FOLLOW_UP_PROMPT, description=(
        "Jinja; variables: text, task (the first task), history (the turns so far: role, content), "
        "turn (the number of the turn being written, from 2), passages, language"))


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
    tools: list[ToolName] = Field(default_factory=list, description=(
        "tools the teacher may call while it answers: calculator, python (the sandbox of gates.tools), "
        "search (the run's retrieval index)"))
    max_tool_rounds: int = Field(3, ge=0, description="model turns that may call tools before the answer")
    tool_turns_in_messages: bool = Field(
        False, description="write the tool calls and results into messages (assistant tool_calls and "
        "tool turns), for tool-use skills; they are in tool_trace either way")
    no_answer_markers: list[str] = Field(
        default_factory=lambda: ["not contain", "not mention", "no information", "not say", "not state",
                                 "not provide", "cannot be answered", "can't be answered", "not given",
                                 "not included", "does not tell", "do not tell"],
        description="declines_without_answer: phrases one of which an answer must hold when no "
        "passage contains the answer (case-insensitive)")
    checks: list[CheckName] = Field(default_factory=lambda: ["non_empty", "not_truncated"])
    min_chars: int = Field(1, ge=1)
    answerable_prompt: str | None = Field(
        None, description="the answerable check's judge prompt (Jinja; variables: text, task, language); "
        "default: the shipped recipes/prompts/answerable.jinja")


class Skill(StrictModel):
    name: str
    split: str = Field(description="split name in the output DatasetDict (e.g. rc)")
    description: str
    seed_kinds: list[SeedKind] = Field(default_factory=lambda: ["text"])
    transformation: Transformation
    instruction: Instruction
    refinement: Refinement
    answer: Answer
    retrieval: RetrievalSpec | None = Field(
        None, description="show k retrieved passages with each task (the answer passage and "
        "distractors, or none holding the answer); the index is built over the run's seeds")
    conversation: Conversation = Field(default_factory=Conversation)

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
        if self.retrieval is not None and self.retrieval.no_answer_rate > 0 and \
                "declines_without_answer" not in self.answer.checks:
            raise ValueError("answer.checks: a skill with retrieval.no_answer_rate > 0 needs "
                             "declines_without_answer (the no-answer case must be checked)")
        dup = sorted({t for t in self.answer.tools if self.answer.tools.count(t) > 1})
        if dup:
            raise ValueError(f"answer.tools: {dup} listed twice")
        if self.answer.tools and self.answer.format == "json":
            raise ValueError("answer.tools: needs answer.format text (a tool loop ends in a text reply)")
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
            "refinement.harder_prompt": self.refinement.harder_prompt,
            "refinement.best_prompt": self.refinement.best_prompt,
            "conversation.follow_up_prompt": self.conversation.follow_up_prompt,
        })
        if self.answer.context_template:
            out["answer.context_template"] = self.answer.context_template
        if self.answer.answerable_prompt is not None:
            out["answer.answerable_prompt"] = self.answer.answerable_prompt
        return out


_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False,
                          autoescape=False)


@lru_cache(maxsize=1024)
def _template(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def render(template: str, /, **variables: Any) -> str:
    return _template(template).render(**variables).strip()


# What each template is rendered with (generate/flows.py, checks.py, verify.py); the field
# descriptions above document the same. Keys are Skill.templates() names, ``*`` any agent.
# Every template also gets ``language``: the name of the language the pair is written in
# ("English", "Russian"; the recipe's ``language``, or the seed's detected one with auto).
TEMPLATE_VARIABLES: dict[str, frozenset[str]] = {
    "transformation.agents.*.prompt": frozenset({"text", "kind", "source", "language"}),
    "instruction.prompt": frozenset({"text", "type", "passages", "language"}),
    "instruction.user_template": frozenset({"text", "task", "passages", "language"}),
    "refinement.suggester_prompt": frozenset({"text", "task", "proposals", "n", "passages", "language"}),
    "refinement.editor_prompt": frozenset({"text", "task", "suggestion", "passages", "language"}),
    "refinement.harder_prompt": frozenset({"text", "previous_task", "task", "language"}),
    "refinement.best_prompt": frozenset({"text", "task", "candidates", "language"}),
    "answer.answerable_prompt": frozenset({"text", "task", "language"}),
    "answer.context_template": frozenset({"text", "task", "target", "passages", "language"}),
    "conversation.follow_up_prompt": frozenset({"text", "task", "history", "turn", "passages", "language"}),
}


def template_variables(field: str) -> frozenset[str]:
    for pattern, names in TEMPLATE_VARIABLES.items():
        if fnmatch.fnmatchcase(field, pattern):
            return names
    raise KeyError(f"no variable list for template field {field!r} (add it to TEMPLATE_VARIABLES)")


def template_problem(source: str, allowed: frozenset[str]) -> str | None:
    """Why ``source`` would fail when rendered with ``allowed``: a syntax error or a variable
    it is not given (with the template line), else None."""
    try:
        ast = _ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return f"template syntax error: {exc.message} (template line {exc.lineno})"
    unknown = sorted(meta.find_undeclared_variables(ast) - allowed - set(_ENV.globals))
    if not unknown:
        return None
    line = min((n.lineno for n in ast.find_all(nodes.Name) if n.name == unknown[0]), default=1)
    return (f"unknown template variable {unknown[0]!r} (template line {line}); "
            f"available: {', '.join(sorted(allowed))}")


def validate_templates(skill: Skill, where: str) -> None:
    """Check every template of a skill when it loads, so a typo fails before any model does."""
    for field, source in skill.templates().items():
        problem = template_problem(source, template_variables(field))
        if problem:
            raise RecipeError(f"{where}: {field}: {problem}")


def skill_path(name_or_path: str, skills_dir: Path = SKILLS_DIR) -> Path:
    """A shipped skill by name, or a user's skill file by its ``.yaml`` path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    return skills_dir / f"{name_or_path}.yaml"


def available_skills(skills_dir: Path = SKILLS_DIR) -> list[str]:
    return sorted(p.stem for p in skills_dir.glob("*.yaml") if not p.stem.startswith("_"))  # _template


def load_skill(name_or_path: str, skills_dir: Path = SKILLS_DIR) -> Skill:
    path = skill_path(name_or_path, skills_dir)
    if not path.exists():
        raise RecipeError(
            f"unknown skill {name_or_path!r} (no file {path}); available: "
            f"{', '.join(available_skills(skills_dir))}"
        )
    skill = load_recipe(path, Skill)
    validate_templates(skill, str(path))
    return skill


def refuse_answer_first(skills: list[Skill], language: str) -> None:
    """``answer_first`` builds questions by English grammar rules (generate/questions.py): a
    recipe that fixes another language cannot use it (auto-detected non-English seeds are
    rejected per seed instead)."""
    if language in ("auto", "en"):
        return
    for skill in skills:
        if skill.instruction.method == "answer_first":
            from agentinstruct.language import language_name

            raise RecipeError(
                f"skill {skill.name}: instruction.method answer_first builds English questions only, but the "
                f"recipe's language is {language} ({language_name(language)}); use method llm or language: auto")


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
