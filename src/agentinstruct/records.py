"""The one record schema shared by every stage (see ARCHITECTURE in the README)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

if TYPE_CHECKING:
    import datasets

Role = Literal["system", "user", "assistant", "tool"]
SeedKind = Literal["text", "code"]
QuestionMethod = Literal["rule", "llm"]


def content_id(text: str) -> str:
    """Stable id of a piece of content: the same text gets the same id across runs."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class ToolCallFunction(BaseModel):
    name: str
    arguments: str = Field(description="the call's arguments as JSON text (the OpenAI format)")


class ToolCall(BaseModel):
    """One tool call of an assistant turn, in the OpenAI chat format."""

    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class Message(BaseModel):
    """One chat turn (OpenAI format). An assistant turn may call tools (``tool_calls``, its
    ``content`` then often empty); a ``tool`` turn holds one result, naming the call it answers."""

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] | None = Field(None, description="assistant turns: the tools it calls")
    tool_call_id: str | None = Field(None, description="tool turns: the id of the call this result answers")
    name: str | None = Field(None, description="tool turns: the tool's name")

    @field_validator("content", mode="before")
    @classmethod
    def _no_null_content(cls, content: object) -> object:
        return "" if content is None else content  # OpenAI writes null content on tool-calling turns


def messages_feature() -> datasets.List:
    """The Arrow type of an exported ``messages`` column: the same for every row and split,
    with or without tool turns (absent keys are nulls), so splits concatenate and TRL reads it."""
    import datasets

    string = datasets.Value("string")
    call = {"id": string, "type": string, "function": {"name": string, "arguments": string}}
    return datasets.List({"role": string, "content": string, "tool_calls": datasets.List(call),
                          "tool_call_id": string, "name": string})


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
    "split",
    "instruction_type",
    "transformation",
    "refinement_round",
    "teacher_model",
    "recipe_hash",
)
# how the task was written; the span and sentence are "" for tasks the teacher wrote (llm)
QUESTION_COLUMNS = ("question_method", "answer_span", "source_sentence")
# how a multi-turn / retrieval / tool-using record was made; empty lists for a plain one
TRACE_COLUMNS = ("passage_ids", "suggestions", "tool_trace", "turns")
TOOL_TRACE_KEYS = ("name", "arguments", "result")


class Record(BaseModel):
    """One training example with its provenance. Rejected ones carry ``reject_reason``."""

    messages: list[Message]
    instruction: str = ""  # the task alone, without the passage/API context of the user turn
    seed_id: str
    source: str
    skill: str = Field(description="the skill's name (e.g. reading_comprehension)")
    split: str = Field(description="the skill's output split (e.g. rc); rows in `rejected` keep the split "
                       "they would have gone to")
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
    passage_ids: list[str] = Field(default_factory=list, description="retrieved passages shown to the teacher")
    suggestions: list[str] = Field(default_factory=list, description="refinement suggestions applied, in order")
    tool_trace: list[dict[str, str]] = Field(
        default_factory=list, description="the tool rounds while answering: {name, arguments, result} each")
    turns: int = Field(1, ge=1, description="user turns in messages (counted from them unless given)")
    reject_reason: str | None = None
    reject_gate: str | None = None
    scores: dict[str, float] = Field(default_factory=dict)
    judge_rationale: str = ""

    @field_validator("tool_trace")
    @classmethod
    def _trace_keys(cls, trace: list[dict[str, str]]) -> list[dict[str, str]]:
        # a fixed shape keeps the exported column one Arrow struct type across rows
        for i, step in enumerate(trace):
            if set(step) != set(TOOL_TRACE_KEYS):
                raise ValueError(f"tool_trace[{i}]: expected keys {', '.join(TOOL_TRACE_KEYS)}, got {', '.join(step)}")
        return trace

    @model_validator(mode="after")
    def _count_turns(self) -> Record:
        if "turns" not in self.model_fields_set:
            self.turns = max(1, sum(m.role == "user" for m in self.messages))
        return self

    def to_row(self) -> dict:
        """The exported row: every message with all its keys (None where absent), so the Arrow
        schema of ``messages`` is the same for single-turn and tool-using rows."""
        row = self.model_dump(mode="json")
        row["messages"] = [m.model_dump(mode="json") for m in self.messages]
        row["reject_reason"] = self.reject_reason or ""
        row["reject_gate"] = self.reject_gate or ""
        row["judge_score"] = float(self.scores.get("judge", -1.0))
        row.pop("scores")
        return row
