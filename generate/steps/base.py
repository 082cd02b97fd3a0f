"""The contract every flow step declares, in the manner of a distilabel ``Task``.

A step is a small object that says which named values of the task state it reads
(``inputs``) and which it produces (``outputs``), the JSON schema its reply must match
(``schema``; None: free text) and how to turn the state into chat messages
(:meth:`LLMStep.format_input`) and the reply back into named values
(:meth:`LLMStep.format_output`). It knows no backend: the flow runner
(``generate/flows.py``) sends the messages to the model the step names (``model``: the
teacher or the judge) with the completion budget it names (``budget``: a ``max_tokens``
field of the recipe) and hands the reply back. Steps that make no model call
(:class:`LocalStep`, e.g. retrieval) compute their outputs directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from agentinstruct.generate.skills import render

ModelRole = Literal["teacher", "judge"]
Temperature = Literal["sampling", "answer"]  # the recipe's temperature or answer_temperature


class StepInputError(KeyError):
    """A step was run on a state without one of its declared inputs (a composition bug)."""


@dataclass
class Reply:
    """What the model answered a step: the text, the parsed JSON value (structured steps) and
    why it stopped."""

    text: str
    value: Any = None
    finish_reason: str = "stop"


class Step:
    """The declared contract shared by every step kind."""

    name: ClassVar[str]  # the stage: progress bar, cache name, rejection gate
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ()

    def require(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The declared inputs out of ``state``; a missing one is a :class:`StepInputError`."""
        missing = [k for k in self.inputs if k not in state]
        if missing:
            raise StepInputError(f"step {self.name}: state lacks inputs {missing}")
        return {k: state[k] for k in self.inputs}


class LLMStep(Step):
    """A step answered by a model."""

    model: ClassVar[ModelRole] = "teacher"
    budget: ClassVar[str]  # the recipe's max_tokens field for this step's calls
    temperature: ClassVar[Temperature] = "sampling"
    schema: dict[str, Any] | None = None

    def format_input(self, state: Mapping[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def format_output(self, reply: Reply, state: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


class LocalStep(Step):
    """A step computed without a model call."""

    def run(self, state: Mapping[str, Any], **resources: Any) -> dict[str, Any]:
        raise NotImplementedError


def chat(system: str, user: str) -> list[dict[str, Any]]:
    """A chat with an optional system turn and one user turn."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def fill(template: str, state: Mapping[str, Any], names: tuple[str, ...]) -> str:
    """Render ``template`` with the values ``names`` of ``state`` (the step's declared inputs)."""
    return render(template, **{k: state[k] for k in names if k in state})
