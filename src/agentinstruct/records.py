"""The one record schema shared by every stage (see ARCHITECTURE in the README)."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, Field

Role = Literal["system", "user", "assistant"]
SeedKind = Literal["text", "code"]
QuestionMethod = Literal["rule", "llm"]


def content_id(text: str) -> str:
    """Stable id of a piece of content: the same text gets the same id across runs."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class ToolCallFunction(BaseModel):
    name: str
    arguments: str  # JSON text, OpenAI format


class ToolCall(BaseModel):
    """One tool call of an assistant turn (OpenAI format)."""

    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class Message(BaseModel):
    role: Role
    content: str


class Seed(BaseModel):
    """A raw document chunk to teach from."""

    id: str
    text: str
    kind: SeedKind = "text"
    source: str
    chunk: int = 0
    order: int = 0  # position in the input stream; fixes the output order across resumes
    language: str = Field("en", description="ISO 639-1 code of the seed's language, detected at ingest")


PROVENANCE_COLUMNS = (
    "seed_id",
    "source",
    "skill",
    "instruction_type",
    "transformation",
    "refinement_round",
    "teacher_model",
    "recipe_hash",
)
# how the task was written; the span and sentence are "" for tasks the teacher wrote (llm)
QUESTION_COLUMNS = ("question_method", "answer_span", "source_sentence")


class Record(BaseModel):
    """One training example with its provenance. Rejected ones carry ``reject_reason``."""

    messages: list[Message]
    instruction: str = ""  # the task alone, without the passage/API context of the user turn
    seed_id: str
    source: str
    skill: str
    instruction_type: str
    transformation: str
    refinement_round: int
    teacher_model: str
    recipe_hash: str
    language: str = Field("en", description="ISO 639-1 code of the language the pair was written in")
    question_method: QuestionMethod = Field(
        "llm", description="how the task was written: by the teacher (llm) or by rule around an "
        "answer span (rule, the answer_first method)")
    answer_span: str = Field("", description="rule: the span of the source sentence the question asks for")
    source_sentence: str = Field("", description="rule: the sentence of the text the question is about")
    reject_reason: str | None = None
    reject_gate: str | None = None
    scores: dict[str, float] = Field(default_factory=dict)
    judge_rationale: str = ""

    def to_row(self) -> dict:
        row = self.model_dump(mode="json")
        row["messages"] = [m.model_dump() for m in self.messages]
        row["reject_reason"] = self.reject_reason or ""
        row["reject_gate"] = self.reject_gate or ""
        row["judge_score"] = float(self.scores.get("judge", -1.0))
        row.pop("scores")
        return row
