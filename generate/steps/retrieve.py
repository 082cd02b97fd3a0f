"""The retrieve step: the passages a retrieval skill shows with a task (no model call)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from agentinstruct.generate.retrieval_spec import RetrievalSpec
from agentinstruct.generate.steps.base import LocalStep


class RetrieveStep(LocalStep):
    """k passages for the task: the answer passage (the task's own text, under its seed's id)
    and distractors that do not contain the answer, or, at ``no_answer_rate``, only passages
    that leave the answer passage out. ``rng`` is the task's own, so the draw is the same on
    every run whatever the order tasks finish in."""

    name = "retrieve"
    inputs = ("seed_id", "seed_text", "source", "text", "task", "target")
    outputs = ("passages", "answer_passage_id")

    def __init__(self, spec: RetrievalSpec):
        self.spec = spec

    def run(self, state: Mapping[str, Any], *, retriever: Any, rng: random.Random) -> dict[str, Any]:
        from agentinstruct.generate.retrieval import Passage, passages_for_spec

        s = self.require(state)
        answer = Passage(id=s["seed_id"], text=s["text"], source=s["source"])
        query = s["task"] if self.spec.query == "task" else s["seed_text"]
        found = passages_for_spec(retriever, self.spec, answer, query, must_not_contain=s["target"], rng=rng)
        return {"passages": found.passages, "answer_passage_id": found.answer_id}
