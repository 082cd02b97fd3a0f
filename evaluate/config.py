"""The evaluation recipe (``recipes/eval/*.yaml``)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from agentinstruct.llm.base import ModelSpec
from agentinstruct.recipes import DataSpec, InputPath, StrictModel
from agentinstruct.resources import data_path


class LMEvalTask(StrictModel):
    name: str = Field(description="lm-eval task or group (gsm8k, agieval_en, bbh_zeroshot, mmlu, ...)")
    local: InputPath | None = Field(
        None, description="local JSON/JSONL in the benchmark's own schema, used instead of the Hub (relative to the recipe)"
    )
    num_fewshot: int | None = Field(None, ge=0)
    benchmark: str | None = Field(None, description="label in reports (default: from the task name)")


class LMEvalSection(StrictModel):
    enabled: bool = True
    tasks: list[LMEvalTask] = Field(default_factory=list)
    limit: float | None = Field(None, gt=0, description="items per task (int) or fraction (<1)")
    batch_size: int | str = Field(8, description="rows per batch (>= 1), or auto / auto:N (lm-eval)")
    apply_chat_template: bool = True
    fewshot_as_multiturn: bool = False
    system_instruction: str | None = None
    gen_kwargs: dict[str, Any] = Field(default_factory=dict)
    loglikelihood_model: str | None = Field(
        None,
        description="model for log-likelihood tasks when the evaluated model is a chat endpoint "
        "(which gives no log-likelihoods), e.g. the same weights as a HF folder",
    )
    seed: int = 1234

    @field_validator("batch_size")
    @classmethod
    def _batch_size(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1 or isinstance(v, str) and not re.fullmatch(r"auto(:\d+)?", v):
            raise ValueError(f"must be a positive integer, auto or auto:N (got {v!r})")
        return v

    @field_validator("limit")
    @classmethod
    def _limit(cls, v: float | None) -> float | None:
        if v is not None and v > 1 and v != int(v):
            raise ValueError(f"a limit above 1 is a count of items and must be whole (got {v})")
        return v


class AlpacaEvalSection(StrictModel):
    enabled: bool = False
    instructions: InputPath | None = Field(
        None, description="local alpaca_eval-schema JSON/JSONL (instruction, output=reference, generator); "
        "default: the 805-instruction set from the Hub"
    )
    judge: ModelSpec = Field(default_factory=ModelSpec)
    max_instances: int | None = Field(None, ge=1)
    max_tokens: int = Field(512, ge=1)
    judge_max_tokens: int = Field(64, ge=1)


class HallucinationSection(StrictModel):
    enabled: bool = False
    documents: DataSpec = Field(default_factory=lambda: str(data_path("examples", "docs")),
                                description="folder/glob/file or hf:NAME of documents to summarise; default: the shipped examples")
    text_column: str = "text"
    max_documents: int | None = Field(None, ge=1)
    max_doc_tokens: int = Field(512, ge=16)
    judge: ModelSpec = Field(default_factory=ModelSpec)
    summary_max_tokens: int = Field(160, ge=1)
    judge_max_tokens: int = Field(160, ge=1)
    hhem: bool = Field(False, description="also score with Vectara HHEM-2.1-Open when it is available locally")


class HeldoutSection(StrictModel):
    questions: dict[str, InputPath] = Field(
        description="JSONL file per part, {part: path} (rows: question, answers = accepted strings, source, "
        "split); e.g. {dev: ..., test: ...}. A single path is read as the `report` part alone"
    )
    report: str = Field(
        "test", description="the part whose score is the held-out result (report headline, pipeline lift); "
        "every other part is shown labelled as a tuning (dev) set. Never choose settings by this part"
    )
    max_tokens: int = Field(48, ge=1)
    system: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _single_file(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("questions"), str):
            data = {**data, "questions": {data.get("report", "test"): data["questions"]}}
        return data

    @model_validator(mode="after")
    def _report_part_exists(self) -> HeldoutSection:
        if self.report not in self.questions:
            raise ValueError(f"heldout.report {self.report!r} is not one of heldout.questions "
                             f"({', '.join(self.questions) or 'none'})")
        return self

    def files(self) -> list[str]:
        return list(self.questions.values())


class EvalRecipe(StrictModel):
    name: str = "eval"
    output_dir: str = "runs/eval"
    seed: int = 1234
    lm_eval: LMEvalSection = Field(default_factory=LMEvalSection)
    alpaca_eval: AlpacaEvalSection = Field(default_factory=AlpacaEvalSection)
    hallucination: HallucinationSection = Field(default_factory=HallucinationSection)
    heldout: HeldoutSection | None = Field(None, description="document-grounded held-out QA (see heldout.py)")
