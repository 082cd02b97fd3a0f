"""Assemble the quality gates a recipe switches on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentinstruct.generate.gates_config import Gates
from agentinstruct.generate.skills import Skill
from agentinstruct.generate.validators import RecordGate, ValidatorContext, recipe_gates

from agentinstruct.llm import ChatModel

if TYPE_CHECKING:
    from agentinstruct.generate.config import GenerateRecipe


def record_gates(cfg: Gates, teacher: ChatModel, judge: ChatModel, skills: list[Skill],
                 scorer: ChatModel | None = None, recipe: GenerateRecipe | None = None) -> list[RecordGate]:
    """Per-record gates, cheapest first; they run inside each unit, so resume covers them. The
    recipe's ``gates`` (``cfg``) names them; ``recipe``, when given, is what validators see."""
    ctx = ValidatorContext(recipe=recipe, teacher=teacher, judge=judge, scorer=scorer or judge,
                           skills={s.name: s for s in skills}, gate_settings=cfg)
    return [RecordGate(v, ctx) for v in recipe_gates(recipe, ctx)]


def row_gates(cfg: Gates) -> list:
    """Gates over the whole run in final order (applied at export: deterministic on resume)."""
    gates: list = []
    if cfg.decontamination.enabled:
        from agentinstruct.generate.decontam import Decontaminator, NgramIndex

        gates.append(Decontaminator(NgramIndex.build(cfg.decontamination)))
    if cfg.dedup.enabled:
        from agentinstruct.generate.dedup import Deduplicator

        gates.append(Deduplicator(cfg.dedup))
    return gates
