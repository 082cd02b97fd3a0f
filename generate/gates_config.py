"""Quality-gate settings of a generate recipe (``gates:``); every gate can be switched off."""

from __future__ import annotations

from pydantic import Field

from agentinstruct.llm.base import ModelSpec
from agentinstruct.recipes import StrictModel


class GroundingGate(StrictModel):
    enabled: bool = True
    skills: list[str] | None = Field(None, description="skills (name or split) checked; default: all text-seed skills")
    lexical_support: float = Field(0.9, ge=0, le=1, description=(
        "share of the answer's content words found in the seed that passes an extractive answer "
        "without a judge call"))
    judge: bool = Field(True, description=(
        "ask the judge when the lexical check fails; false: lexical support alone decides "
        "(for weak judges, e.g. the 135M embedded model)"))
    max_tokens: int = 24


class RederiveGate(StrictModel):
    enabled: bool = True
    skills: list[str] | None = Field(None, description="skills checked; default: all")
    temperature: float = Field(0.7, ge=0, description="the second, independent answer")
    max_tokens: int = 320
    judge_max_tokens: int = 24


class ToolGate(StrictModel):
    """Checkable answers checked with tools: calculator, Python sandbox, JSON schema, API spec."""

    enabled: bool = True
    calculator: bool = True
    sandbox: bool = True
    sandbox_timeout_s: float = 5.0
    tool_calls: bool = True


class DedupGate(StrictModel):
    enabled: bool = True
    exact: bool = True
    near: bool = True
    threshold: float = Field(0.8, gt=0, le=1, description="Jaccard similarity counted as near-duplicate")
    num_perm: int = Field(128, ge=16)
    num_bands: int = Field(16, ge=1, description="LSH bands (candidates are then verified against threshold)")
    shingle: int = Field(3, ge=1, description="word n-gram size")
    against: list[str] = Field(default_factory=list, description="existing datasets (save_to_disk/jsonl) to dedup against")


class DecontaminationGate(StrictModel):
    enabled: bool = True
    n: int = Field(13, ge=3, description="n-gram size (normalised words)")
    eval_recipes: list[str] = Field(default_factory=lambda: ["recipes/eval/fixtures-cpu.yaml"],
                                    description="the evaluation sets these recipes load are indexed")
    eval_files: list[str] = Field(default_factory=list, description="any other local eval files (JSON/JSONL)")
    cache_dir: str | None = Field(None, description="index cache (default: the user cache)")


class JudgeScoreGate(StrictModel):
    enabled: bool = False
    judge: ModelSpec | None = Field(None, description="default: the recipe's judge, else the teacher")
    min_score: float | None = Field(None, ge=1, le=10)
    max_tokens: int = 96


class Gates(StrictModel):
    grounding: GroundingGate = Field(default_factory=GroundingGate)
    rederive: RederiveGate = Field(default_factory=RederiveGate)
    tools: ToolGate = Field(default_factory=ToolGate)
    dedup: DedupGate = Field(default_factory=DedupGate)
    decontamination: DecontaminationGate = Field(default_factory=DecontaminationGate)
    judge_score: JudgeScoreGate = Field(default_factory=JudgeScoreGate)
