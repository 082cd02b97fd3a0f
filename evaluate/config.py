"""The evaluation recipe (``recipes/eval/*.yaml``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from agentinstruct.llm.base import ModelSpec
from agentinstruct.recipes import StrictModel


class LMEvalTask(StrictModel):
    name: str = Field(description="lm-eval task or group (gsm8k, agieval_en, bbh_zeroshot, mmlu, ...)")
    local: str | None = Field(
        None, description="local JSON/JSONL in the benchmark's own schema, used instead of the Hub"
    )
    num_fewshot: int | None = None
    benchmark: str | None = Field(None, description="label in reports (default: from the task name)")


class LMEvalSection(StrictModel):
    enabled: bool = True
    tasks: list[LMEvalTask] = Field(default_factory=list)
    limit: float | None = Field(None, description="items per task (int) or fraction (<1)")
    batch_size: int | str = 8
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


class AlpacaEvalSection(StrictModel):
    enabled: bool = False
    instructions: str | None = Field(
        None, description="local alpaca_eval-schema JSON/JSONL (instruction, output=reference, generator); "
        "default: the 805-instruction set from the Hub"
    )
    judge: ModelSpec = Field(default_factory=ModelSpec)
    max_instances: int | None = None
    max_tokens: int = 512
    judge_max_tokens: int = 64


class HallucinationSection(StrictModel):
    enabled: bool = False
    documents: str = Field("examples/docs", description="folder/glob/file or hf:NAME of documents to summarise")
    text_column: str = "text"
    max_documents: int | None = None
    max_doc_tokens: int = 512
    judge: ModelSpec = Field(default_factory=ModelSpec)
    summary_max_tokens: int = 160
    judge_max_tokens: int = 160
    hhem: bool = Field(False, description="also score with Vectara HHEM-2.1-Open when it is available locally")


class HeldoutSection(StrictModel):
    questions: str = Field(description="JSONL: question, answers (accepted strings), source")
    max_tokens: int = 48
    system: str | None = None


class EvalRecipe(StrictModel):
    name: str = "eval"
    output_dir: str = "runs/eval"
    seed: int = 1234
    lm_eval: LMEvalSection = Field(default_factory=LMEvalSection)
    alpaca_eval: AlpacaEvalSection = Field(default_factory=AlpacaEvalSection)
    hallucination: HallucinationSection = Field(default_factory=HallucinationSection)
    heldout: HeldoutSection | None = Field(None, description="document-grounded held-out QA (see heldout.py)")
