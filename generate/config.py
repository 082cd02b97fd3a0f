"""The generate recipe (``recipes/generate/*.yaml``)."""

from __future__ import annotations

from typing import Literal

from agentinstruct.generate.gates_config import Gates
from pydantic import Field, model_validator

from agentinstruct.llm.base import ModelSpec
from agentinstruct.recipes import StrictModel


class Chunking(StrictModel):
    max_tokens: int = Field(384, ge=16, description="seed chunk size in teacher tokens")
    overlap: int = Field(32, ge=0)
    min_chars: int = Field(40, ge=1, description="shorter chunks are skipped as empty")


class MaxTokens(StrictModel):
    transform: int = 384
    instruction: int = 128
    suggest: int = 160
    edit: int = 160
    answer: int = 320
    check: int = 32


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


class GenerateRecipe(StrictModel):
    teacher: ModelSpec = Field(default_factory=ModelSpec)
    judge: ModelSpec | None = Field(None, description="model for checks; defaults to the teacher")
    input: str = Field("examples/docs", description="folder, glob, file, hf:NAME[:split] or a saved dataset")
    text_column: str = "text"
    output: str = "runs/generate"
    skills: list[str] = Field(min_length=1, description="skill names (recipes/skills) or YAML paths")
    seed: int = 0
    limit: int | None = Field(None, ge=1, description="at most this many seeds")
    seeds_in_flight: int = Field(4, ge=1, description="seeds processed concurrently")
    temperature: float = Field(0.7, ge=0, description="for transformation, instruction, refinement")
    answer_temperature: float = Field(0.0, ge=0, description="for answers and checks")
    structured_reasks: int = Field(1, ge=0)
    chunking: Chunking = Field(default_factory=Chunking)
    max_tokens: MaxTokens = Field(default_factory=MaxTokens)
    sampling: Sampling = Field(default_factory=Sampling)
    gates: Gates = Field(default_factory=Gates, description="quality gates; each can be switched off")
    formats: list[Literal["parquet", "jsonl"]] = Field(default_factory=list)
    code_extensions: list[str] = Field(
        default_factory=lambda: [".py", ".js", ".ts", ".java", ".go", ".rs", ".c", ".cpp", ".h",
                                 ".rb", ".sh", ".sql", ".kt", ".swift", ".cs", ".php", ".scala"]
    )

    @model_validator(mode="after")
    def _per_skill_names(self) -> GenerateRecipe:
        if any(s.endswith((".yaml", ".yml")) for s in self.skills):
            return self  # a skill file's name is only known once it is loaded
        names = set(self.skills)
        unknown = sorted(set(self.sampling.per_skill) - names)
        if unknown:
            raise ValueError(f"sampling.per_skill: {unknown} not in skills {sorted(names)}")
        return self
