"""Quality-gate settings of a generate recipe (``gates:``); every gate can be switched off."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from agentinstruct.llm.base import ModelSpec
from agentinstruct.recipes import BASE_DIR, DataSpec, InputPath, StrictModel
from agentinstruct.resources import data_path


def _prompt(name: str):
    """A judge-prompt override: inline Jinja, or the path of a ``.jinja`` file (relative to the
    recipe), checked against the variables the validator renders ``name`` with."""

    def check(value: str, info: ValidationInfo) -> str:
        from agentinstruct.generate.validators.prompts import load_override

        base = info.context.get(BASE_DIR) if isinstance(info.context, dict) else None
        return load_override(value, name, base)

    return Annotated[str, AfterValidator(check)]


def _prompt_field(name: str, variables: str):
    return Field(None, description=(
        f"the judge prompt (Jinja, or the path of a .jinja file); default: the shipped "
        f"recipes/prompts/{name}.jinja. Variables: {variables}"))


class GroundingGate(StrictModel):
    enabled: bool = True
    skills: list[str] | None = Field(None, description="skills (name or split) checked; default: all text-seed skills")
    lexical_support: float = Field(0.9, ge=0, le=1, description=(
        "share of the answer's content words found in the seed that passes an extractive answer "
        "without a judge call"))
    judge: bool = Field(True, description=(
        "ask the judge when the lexical check fails; false: lexical support alone decides "
        "(for weak judges, e.g. the 135M embedded model)"))
    max_tokens: int = Field(24, ge=1)
    prompt: _prompt("grounding") | None = _prompt_field("grounding", "source, task, answer, language")


class RederiveGate(StrictModel):
    enabled: bool = True
    skills: list[str] | None = Field(None, description="skills checked; default: all")
    temperature: float = Field(0.7, ge=0, le=2, description="the second, independent answer")
    max_tokens: int = Field(320, ge=1)
    judge_max_tokens: int = Field(24, ge=1)
    prompt: _prompt("rederive") | None = _prompt_field(
        "rederive", "task, first (the answer), second (the re-derived one), language")


class ToolGate(StrictModel):
    """Checkable answers checked with tools: calculator, Python sandbox, JSON schema, API spec."""

    enabled: bool = True
    calculator: bool = True
    sandbox: bool = Field(True, description="run the answer's Python blocks in the sandbox; a failing block rejects it")
    sandbox_timeout_s: float = Field(5.0, gt=0, description="wall-clock limit of one block (the run is then killed)")
    sandbox_memory_mb: int = Field(512, ge=64, description="address-space limit of one block")
    allow_unisolated: bool = Field(False, description=(
        "run model-written code even where the machine offers no namespace isolation (no working "
        "bwrap or unshare): the code could then use the network, write files and read this process's "
        "/proc. Off: such a run refuses to start"))
    tool_calls: bool = True


class DedupGate(StrictModel):
    enabled: bool = True
    exact: bool = True
    near: bool = True
    threshold: float = Field(0.8, gt=0, le=1, description="Jaccard similarity counted as near-duplicate")
    num_perm: int = Field(128, ge=16)
    num_bands: int = Field(16, ge=1, description="LSH bands (candidates are then verified against threshold)")
    shingle: int = Field(3, ge=1, description="word n-gram size")
    against: list[DataSpec] = Field(default_factory=list, description="existing datasets (save_to_disk/jsonl) to dedup against")

    @model_validator(mode="after")
    def _bands_divide_perms(self) -> DedupGate:
        if self.num_bands > self.num_perm or self.num_perm % self.num_bands:
            raise ValueError(f"num_bands ({self.num_bands}) must divide num_perm ({self.num_perm})")
        return self


class DecontaminationGate(StrictModel):
    enabled: bool = True
    n: int = Field(13, ge=3, description="n-gram size (normalised words)")
    eval_recipes: list[InputPath] = Field(default_factory=lambda: [str(data_path("recipes", "eval", "fixtures-cpu.yaml"))],
                                          description="the evaluation sets these recipes load are indexed; "
                                          "default: the shipped fixtures-cpu.yaml")
    eval_files: list[InputPath] = Field(default_factory=list, description="any other local eval files (JSON/JSONL)")
    cache_dir: str | None = Field(None, description="index cache (default: the user cache)")
    min_words: int = Field(5, ge=1, description=(
        "a question/prompt shorter than n words is matched as a whole normalised string when it has "
        "at least this many words (shorter ones are too generic to mean a copy)"))
    answer_min_words: int = Field(6, ge=1, description=(
        "the same for answers, choices and reference outputs: short answers ('True', '(B)', 'Paris', "
        "'the United States') would remove every row that merely mentions them"))
    min_chars: int = Field(20, ge=1, description="a whole-string item also needs at least this many characters")
    strict: bool = Field(False, description=(
        "fail the run when an evaluation set cannot be loaded (offline, not cached, unknown task); "
        "default: warn loudly and mark it 'not checked' on the card"))


class JudgeScoreGate(StrictModel):
    enabled: bool = False
    judge: ModelSpec | None = Field(None, description="default: the recipe's judge, else the teacher")
    min_score: float | None = Field(None, ge=1, le=10)
    max_tokens: int = Field(96, ge=1)
    prompt: _prompt("judge_score") | None = _prompt_field("judge_score", "user (the last user turn), answer, language")


class Gates(StrictModel):
    grounding: GroundingGate = Field(default_factory=GroundingGate)
    rederive: RederiveGate = Field(default_factory=RederiveGate)
    tools: ToolGate = Field(default_factory=ToolGate)
    dedup: DedupGate = Field(default_factory=DedupGate)
    decontamination: DecontaminationGate = Field(default_factory=DecontaminationGate)
    judge_score: JudgeScoreGate = Field(default_factory=JudgeScoreGate)
    validators: list[str] = Field(default_factory=list, description=(
        "more per-record gates by validator name (the registry of generate/validators, e.g. a "
        "skill check such as contains_target, or one a plugin registered). Every per-record gate "
        "runs cheapest first (pure Python, then tools, then LLM calls), the built-ins first within a cost"))

    @field_validator("validators")
    @classmethod
    def _known_validators(cls, names: list[str]) -> list[str]:
        from agentinstruct.generate.validators import REGISTRY, known_names

        unknown = [n for n in names if n not in REGISTRY]
        if unknown:
            raise ValueError(f"unknown validator {unknown[0]!r}; known: {', '.join(known_names())}")
        return names
