"""One validator concept: a skill's ``answer.checks`` and a recipe's per-record gates are both
names in one registry, and every validator has the same protocol.

A validator is a class with a ``name``, a ``cost`` (0: pure Python, 1: a tool or the sandbox,
2: an LLM call) and ``async check(candidate) -> Rejection | None``. ``@register("name")`` puts
it in :data:`REGISTRY`; from then on a skill may list it in ``answer.checks`` and a recipe in
``gates.validators``, with no other code change. :func:`build_validators` makes instances from
names (through ``cls.from_context(ctx)`` when the class has it, else ``cls(ctx)``), and
:func:`first_rejection` runs them cheapest first, so an LLM call is never spent on a pair a
cheaper validator already rejected.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agentinstruct.recipes import RecipeError
from agentinstruct.records import Seed

if TYPE_CHECKING:
    from agentinstruct.generate.config import GenerateRecipe
    from agentinstruct.generate.gates_config import Gates
    from agentinstruct.generate.retrieval import Passage
    from agentinstruct.generate.skills import Skill

    from agentinstruct.llm import ChatModel

PURE, TOOL, LLM = 0, 1, 2  # validator costs: the order they run in


@dataclass
class Rejection:
    """Why a validator rejected a candidate; ``validator`` is its registry name."""

    validator: str
    reason: str


@dataclass
class Candidate:
    """One finished (possibly multi-turn) pair with what validators need to judge it."""

    skill: Skill
    seed: Seed
    text: str  # the (transformed) text the task is about; for a finished record, the seed text
    task: str
    previous_task: str | None  # the task before the last edit (refined versions only)
    instruction_type: str
    answer: str
    finish_reason: str
    target: str | None = None  # answer_first tasks: the span of the text the answer must state
    messages: list[dict] = field(default_factory=list)  # the training pair, OpenAI dicts
    passages: list[Passage] = field(default_factory=list)  # retrieved passages shown with the task
    answer_passage_id: str | None = None  # None with passages: the no-answer case
    tool_trace: list[dict] = field(default_factory=list)
    language: str = "English"  # the language name templates get as ``language``
    # what validators learn about a pair that is kept (e.g. the judge score), copied to the record
    scores: dict[str, float] = field(default_factory=dict)
    judge_rationale: str = ""

    @property
    def user(self) -> str:
        """The last user turn of the pair (the task itself when there are no messages)."""
        turns = [m.get("content") or "" for m in self.messages if m.get("role") == "user"]
        return turns[-1] if turns else self.task


@runtime_checkable
class Validator(Protocol):
    name: str
    cost: int  # 0 = pure Python, 1 = tool/sandbox, 2 = LLM call: cheap ones run first

    async def check(self, c: Candidate) -> Rejection | None: ...


REGISTRY: dict[str, type] = {}


def register(name: str):
    """Class decorator: make the validator class available under ``name``."""

    def wrap(cls: type) -> type:
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"validator {name!r} is registered twice ({REGISTRY[name].__qualname__}, {cls.__qualname__})")
        cls.name = name
        if not isinstance(getattr(cls, "cost", None), int):
            raise TypeError(f"validator {name!r}: {cls.__qualname__} needs an int ``cost`` (0, 1 or 2)")
        REGISTRY[name] = cls
        return cls

    return wrap


def known_names() -> list[str]:
    return sorted(REGISTRY)


def unknown_name_error(name: str, where: str) -> str:
    return f"{where}: unknown validator {name!r}; known: {', '.join(known_names())}"


@dataclass
class ValidatorContext:
    """What validators are built with: the run's recipe (its gate settings), models, skills."""

    recipe: GenerateRecipe | None
    teacher: ChatModel | None = None
    judge: ChatModel | None = None
    scorer: ChatModel | None = None  # the judge-score model (default: the judge)
    skills: dict[str, Skill] = field(default_factory=dict)  # by name
    check_max_tokens: int | None = None  # default: recipe.max_tokens.check
    gate_settings: Gates | None = None  # default: recipe.gates

    @property
    def gates(self) -> Gates:
        if self.gate_settings is not None:
            return self.gate_settings
        if self.recipe is not None:
            return self.recipe.gates
        from agentinstruct.generate.gates_config import Gates

        return Gates()

    @property
    def max_tokens(self) -> int:
        if self.check_max_tokens is not None:
            return self.check_max_tokens
        if self.recipe is not None:
            return self.recipe.max_tokens.check
        from agentinstruct.generate.config import MaxTokens

        return MaxTokens().check

    def skill(self, key: str) -> Skill:
        """A skill by name or split (records name the one or the other)."""
        if key in self.skills:
            return self.skills[key]
        for s in self.skills.values():
            if key == s.split:
                return s
        raise KeyError(f"no skill {key!r} in this run ({', '.join(self.skills)})")


def build_validator(name: str, ctx: ValidatorContext, where: str = "validators") -> Any:
    if name not in REGISTRY:
        raise RecipeError(unknown_name_error(name, where))
    cls = REGISTRY[name]
    make = getattr(cls, "from_context", None)
    return make(ctx) if make is not None else cls(ctx)


def build_validators(names: Iterable[str], ctx: ValidatorContext, where: str = "validators") -> list[Any]:
    """Instances of the named validators, cheapest first (the listed order within a cost)."""
    return by_cost([build_validator(n, ctx, where) for n in names])


def by_cost(validators: Iterable[Any]) -> list[Any]:
    return sorted(validators, key=lambda v: v.cost)  # stable: listed order within a cost


def skill_validators(skill: Skill, ctx: ValidatorContext, skip: Sequence[str] = ()) -> list[Any]:
    """The validators of a skill's ``answer.checks`` (less ``skip``: an instruction type's
    ``skip_checks``)."""
    return build_validators([n for n in skill.answer.checks if n not in skip], ctx,
                            where=f"skill {skill.name}: answer.checks")


def gate_names(gates: Gates) -> list[str]:
    """The per-record gates a recipe switches on, in the order they run."""
    names = [n for n in ("tools", "grounding", "rederive", "judge_score") if getattr(gates, n).enabled]
    return names + [n for n in gates.validators if n not in names]


def recipe_gates(recipe: GenerateRecipe | None, ctx: ValidatorContext) -> list[Any]:
    """The recipe's per-record gates (the built-in ones it switches on, then ``gates.validators``)."""
    gates = ctx.gates if recipe is None or ctx.gate_settings is not None else recipe.gates
    return build_validators(gate_names(gates), ctx, where="gates.validators")


async def run_validators(validators: Sequence[Any], c: Candidate) -> tuple[list[str], Rejection | None]:
    """Run cheapest first until one rejects: (names of those that ran, the rejection or None)."""
    ran: list[str] = []
    for v in by_cost(validators):
        ran.append(v.name)
        rejection = await v.check(c)
        if rejection is not None:
            return ran, rejection
    return ran, None


async def first_rejection(validators: Sequence[Any], c: Candidate) -> Rejection | None:
    """The first rejection, cheapest validators first (cost 0, then 1, then 2), or None."""
    return (await run_validators(validators, c))[1]
