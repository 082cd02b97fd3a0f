"""Assemble the quality gates a recipe switches on."""

from __future__ import annotations

from agentinstruct.generate.gates_config import Gates
from agentinstruct.generate.skills import Skill

from agentinstruct.llm import ChatModel


def record_gates(cfg: Gates, teacher: ChatModel, judge: ChatModel, skills: list[Skill],
                 scorer: ChatModel | None = None) -> list:
    """Per-record gates, cheapest first; they run inside each unit, so resume covers them."""
    from agentinstruct.generate import verify

    by_split = {s.split: s for s in skills}
    gates: list = []
    if cfg.tools.enabled:
        gates.append(verify.ToolCheck(cfg.tools, by_split))
    if cfg.grounding.enabled:
        gates.append(verify.GroundingCheck(cfg.grounding, judge, by_split))
    if cfg.rederive.enabled:
        gates.append(verify.RederivationCheck(cfg.rederive, teacher, judge, by_split))
    if cfg.judge_score.enabled:
        gates.append(verify.JudgeScore(cfg.judge_score, scorer or judge))
    return gates


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
