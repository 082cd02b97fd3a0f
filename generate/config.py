"""The generate recipe (``recipes/generate/*.yaml``)."""

from __future__ import annotations

from typing import Literal

from agentinstruct.generate.gates_config import Gates
from agentinstruct.generate.seed_filter import SeedFilter
from pydantic import Field, field_validator, model_validator

from agentinstruct.language import check_code
from agentinstruct.llm.base import ModelSpec
from agentinstruct.recipes import DataSpec, NameOrFile, StrictModel
from agentinstruct.resources import data_path


class Chunking(StrictModel):
    max_tokens: int = Field(384, ge=16, description="seed chunk size in teacher tokens")
    overlap: int = Field(32, ge=0, description="tokens shared by neighbouring chunks (< max_tokens)")
    min_chars: int = Field(40, ge=1, description="shorter chunks are skipped as empty")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Chunking:
        if self.overlap >= self.max_tokens:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than max_tokens ({self.max_tokens})")
        return self


class MaxTokens(StrictModel):
    """Completion budget of each stage's calls (a call with fewer than 1 token always fails)."""

    transform: int = Field(384, ge=1)
    instruction: int = Field(128, ge=1)
    suggest: int = Field(160, ge=1)
    edit: int = Field(160, ge=1)
    answer: int = Field(320, ge=1)
    check: int = Field(32, ge=1)


class SamplingOverrides(StrictModel):
    agents_per_seed: int | None = Field(None, ge=1)
    tasks_per_text: int | None = Field(None, ge=1)
    refinement_rounds: int | None = Field(None, ge=0)
    suggestions: int | None = Field(None, ge=1)
    keep: Literal["final", "all"] | None = None


class Sampling(SamplingOverrides):
    """Overrides of the skills' own defaults: the top-level ones apply to every skill, those
    under ``per_skill: {skill name: {...}}`` to one skill and win over the top-level ones."""

    per_skill: dict[str, SamplingOverrides] = Field(default_factory=dict)

    def for_skill(self, name: str) -> SamplingOverrides:
        merged = self.model_dump(exclude={"per_skill"})
        if name in self.per_skill:
            merged.update(self.per_skill[name].model_dump(exclude_none=True))
        return SamplingOverrides(**merged)


class Price(StrictModel):
    """What a model costs, in the currency of your bill, per million tokens."""

    input: float = Field(ge=0, description="price per million prompt (input) tokens")
    output: float = Field(ge=0, description="price per million completion (output) tokens")


class Budget(StrictModel):
    """Where a run stops: no new seed starts once a limit is reached; the units in flight finish
    and everything finished is exported. Counted per invocation (calls answered from the call
    cache cost nothing); cost uses ``price_per_million``."""

    max_cost: float | None = Field(None, gt=0, description=(
        "stop starting seeds once the run's calls cost this much (needs a price_per_million entry "
        "for every model the run calls)"))
    max_tokens: int | None = Field(None, ge=1, description=(
        "stop starting seeds once the run's calls used this many tokens (prompt + completion, "
        "every model together)"))


class EstimateSettings(StrictModel):
    """Assumptions of ``agentinstruct estimate`` when it does not measure (without ``--live``)."""

    sample: int = Field(6, ge=1, description="seeds run through the flows, spread over the input")
    latency_s: float = Field(2.0, gt=0, description=(
        "assumed seconds per teacher call for the wall-time projection (with --live: measured)"))


class GenerateRecipe(StrictModel):
    teacher: ModelSpec = Field(default_factory=ModelSpec)
    judge: ModelSpec | None = Field(None, description="model for checks; defaults to the teacher")
    input: DataSpec = Field(default_factory=lambda: str(data_path("examples", "docs")),
                            description="folder, glob, file, hf:NAME[:split] or a saved dataset (relative to the recipe); "
                            "default: the shipped example documents")
    text_column: str = "text"
    output: str = Field("runs/generate", description="run directory, relative to the working directory")
    skills: list[NameOrFile] = Field(min_length=1, description=(
        "shipped skill names (recipes/skills) or YAML paths (relative to the recipe)"))
    seed: int = 0
    limit: int | None = Field(None, ge=1, description="at most this many seeds")
    seeds_in_flight: int | None = Field(None, ge=1, description=(
        "upper bound on the seeds processed concurrently; default: seeds are admitted while the "
        "teacher has free request slots (its max_concurrency, or auto's current limit), so the "
        "server stays full whatever a seed's fan-out"))
    temperature: float = Field(0.7, ge=0, le=2, description="for transformation, instruction, refinement")
    answer_temperature: float = Field(0.0, ge=0, le=2, description="for answers and checks")
    structured_reasks: int = Field(1, ge=0)
    max_failed_units: float = Field(0.05, ge=0, le=1, description=(
        "share of units whose LLM calls failed for good (outage, timeouts, 5xx after every retry) "
        "above which the run exits non-zero; failed units are never marked done, so rerunning the "
        "same command retries them (a run where every unit failed always exits non-zero)"))
    chunking: Chunking = Field(default_factory=Chunking)
    max_tokens: MaxTokens = Field(default_factory=MaxTokens)
    sampling: Sampling = Field(default_factory=Sampling)
    gates: Gates = Field(default_factory=Gates, description="quality gates; each can be switched off")
    seed_filter: SeedFilter = Field(default_factory=SeedFilter, description=(
        "seed quality rules run before any LLM call (Gopher/FineWeb heuristics, boilerplate, numeric "
        "tables, near-duplicate seeds, languages); each can be switched off"))
    language: str = Field("auto", description=(
        "language the pairs are written in: auto (each seed's detected language) or an ISO 639-1 "
        "code (always that language, e.g. en)"))
    formats: list[Literal["parquet", "jsonl"]] = Field(default_factory=list)
    price_per_million: dict[str, Price] = Field(default_factory=dict, description=(
        "{MODEL: {input, output}}: price per million tokens of each model (the teacher's, judge's "
        "`model` string), for `agentinstruct estimate`, the budget and the card's cost lines"))
    budget: Budget = Field(default_factory=Budget, description="stop cleanly at a cost or token limit")
    estimate: EstimateSettings = Field(default_factory=EstimateSettings,
                                       description="`agentinstruct estimate`: sample size and assumptions")
    progress_interval_s: float = Field(30.0, gt=0, description=(
        "when stderr is not a terminal (log file, CI, Slurm): seconds between progress lines"))
    code_extensions: list[str] = Field(
        default_factory=lambda: [".py", ".js", ".ts", ".java", ".go", ".rs", ".c", ".cpp", ".h",
                                 ".rb", ".sh", ".sql", ".kt", ".swift", ".cs", ".php", ".scala"]
    )

    @field_validator("language")
    @classmethod
    def _language_code(cls, value: str) -> str:
        return value if value == "auto" else check_code(value, "language")

    @model_validator(mode="after")
    def _budget_prices(self) -> GenerateRecipe:
        if self.budget.max_cost is not None:
            models = {self.teacher.model, *([self.judge.model] if self.judge else [])}
            missing = sorted(models - set(self.price_per_million))
            if missing:
                raise ValueError(f"budget.max_cost: price_per_million has no entry for {missing}")
        return self

    @model_validator(mode="after")
    def _per_skill_names(self) -> GenerateRecipe:
        if any(s.endswith((".yaml", ".yml")) for s in self.skills):
            return self  # a skill file's name is only known once it is loaded
        names = set(self.skills)
        unknown = sorted(set(self.sampling.per_skill) - names)
        if unknown:
            raise ValueError(f"sampling.per_skill: {unknown} not in skills {sorted(names)}")
        return self
