"""A skill's composition: which steps its flow runs, built from the skill file's keys.

Today's keys map onto the default composition (transform -> instruct -> suggest/edit rounds ->
answer); the new keys add steps: ``retrieval`` a retrieve step, ``conversation.turns`` > 1 a
follow-up step per extra turn, ``answer.tools`` tool rounds inside the answer step,
``refinement.check_harder`` and ``refinement.branches: best`` judge steps. The flow runner
(``generate/flows.py``) runs the composition; the steps themselves know no backend.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentinstruct.generate.skills import Skill
from agentinstruct.generate.steps.answer import AnswerStep
from agentinstruct.generate.steps.base import Step
from agentinstruct.generate.steps.refine import EditStep, HarderStep, SuggestStep
from agentinstruct.generate.steps.retrieve import RetrieveStep
from agentinstruct.generate.steps.writing import FollowUpStep, InstructStep, TransformStep


@dataclass
class Composition:
    """The steps of one skill with the knobs that say how often each runs."""

    transforms: dict[str, TransformStep]  # by agent name; passthrough agents make no call
    instruct: InstructStep | None  # None: answer_first (questions built by rule)
    retrieve: RetrieveStep | None
    suggest: SuggestStep | None  # None: no refinement rounds
    edit: EditStep | None
    harder: HarderStep | None
    answer: AnswerStep
    follow_up: FollowUpStep | None
    rounds: int = 0
    keep: str = "final"
    branches: str = "first"
    max_versions: int | None = None
    turns: int = 1

    def steps(self) -> list[Step]:
        """Every step in the order a task meets them (for inspection and tests)."""
        order = [*self.transforms.values(), self.instruct, self.retrieve, self.suggest, self.edit,
                 self.harder, self.answer, self.follow_up]
        return [s for s in order if s is not None]


def compose(skill: Skill, params: dict) -> Composition:
    """The composition of ``skill`` under the recipe's sampling overrides (``params``:
    agents, tasks, rounds, suggestions, keep; see ``FlowContext.params``)."""
    ref = skill.refinement
    rounds = params["rounds"]
    return Composition(
        transforms={a.name: TransformStep(a) for a in skill.transformation.agents if not a.passthrough},
        instruct=InstructStep(skill.instruction) if skill.instruction.method == "llm" else None,
        retrieve=RetrieveStep(skill.retrieval) if skill.retrieval is not None else None,
        suggest=SuggestStep(ref, params["suggestions"]) if rounds else None,
        edit=EditStep(ref) if rounds else None,
        harder=HarderStep(ref) if rounds and ref.check_harder else None,
        answer=AnswerStep(skill.answer, skill.instruction),
        follow_up=FollowUpStep(skill.conversation) if skill.conversation.turns > 1 else None,
        rounds=rounds, keep=params["keep"], branches=ref.branches, max_versions=ref.max_versions,
        turns=skill.conversation.turns,
    )
