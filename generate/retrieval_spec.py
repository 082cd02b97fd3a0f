"""A skill's ``retrieval:`` section (:class:`RetrievalSpec`), apart from the index code.

Kept out of ``generate/retrieval.py`` so that loading a skill (every CLI command does) does not
import bm25s, scipy and the stemmer; ``retrieval.py`` re-exports it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from agentinstruct.recipes import StrictModel


class RetrievalSpec(StrictModel):
    """A skill's ``retrieval:`` section: show retrieved passages with each task.

    Fields:
        k: how many passages the task shows (the answer passage counts as one).
        distractors: how many of them are guaranteed not to hold the answer (hard negatives,
            ranked for the query); at most ``k - 1``. The other ``k - 1 - distractors`` are the
            next best retrieved passages.
        no_answer_rate: the share of tasks (0..1) that leave the answer passage out, so all
            ``k`` passages are distractors and the right reply is that the passages do not say.
        query: what is searched for: ``task`` (the task text) or ``seed`` (the seed's text).
    """

    k: int = Field(3, ge=1, description="passages shown with each task, the answer passage included")
    distractors: int = Field(2, ge=0, description="passages guaranteed not to contain the answer (at most k - 1)")
    no_answer_rate: float = Field(0.0, ge=0.0, le=1.0,
                                  description="share of tasks whose passages leave the answer passage out (all distractors)")
    query: Literal["task", "seed"] = Field("task", description="search with the task text (task) or the seed text (seed)")

    @model_validator(mode="after")
    def _distractors_fit(self) -> RetrievalSpec:
        if self.distractors > self.k - 1:
            raise ValueError(f"distractors ({self.distractors}) must be at most k - 1 ({self.k - 1})")
        return self
