"""The three AgentInstruct flows for one (seed, skill) unit, plus answering and checks.

1. content transformation: sampled agents rewrite the seed;
2. seed instruction generation: tasks of sampled taxonomy types about each transformed text;
3. instruction refinement: a Suggester proposes k changes, an Editor applies each, N rounds;
then the teacher answers each kept task and the skill's checks accept or reject the pair.
Sampling uses an RNG seeded by (recipe seed, seed id, skill), so a unit always makes the
same choices; records carry a sort key so output order never depends on timing.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field

from agentinstruct.generate.checks import Candidate, run_checks
from agentinstruct.generate.config import GenerateRecipe
from agentinstruct.generate.questions import Question, questions_for_text, split_sentences, topic_of
from agentinstruct.generate.skills import Agent, InstructionType, Skill, render

from agentinstruct.llm import ChatModel, LLMError, chat_structured, conversation
from agentinstruct.llm.base import track_call_failures
from agentinstruct.records import Message, Record, Seed

TASK_SCHEMA = {
    "type": "object",
    "properties": {"task": {"type": "string", "minLength": 8, "maxLength": 600}},
    "required": ["task"],
    "additionalProperties": False,
}


def suggestions_schema(n: int) -> dict:
    return {
        "type": "object",
        "properties": {"suggestions": {"type": "array", "minItems": n, "maxItems": n,
                                       "items": {"type": "string", "minLength": 3, "maxLength": 300}}},
        "required": ["suggestions"],
        "additionalProperties": False,
    }


@dataclass
class UnitResult:
    """Everything one (seed, skill) unit produced: records keyed for a stable order.

    ``failed_calls``: calls that failed for good (outage, timeouts, 5xx after every retry). A
    unit with any is incomplete, whatever rows it made: it is not journaled but redone on the
    next run (a reply that arrived and broke the schema or a check is a real rejection)."""

    records: list[tuple[str, Record]] = field(default_factory=list)
    stages: Counter = field(default_factory=Counter)
    failed_calls: list[LLMError] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.failed_calls


@dataclass
class FlowContext:
    recipe: GenerateRecipe
    recipe_hash: str
    teacher: ChatModel
    judge: ChatModel
    on_stage: callable = lambda stage, n=1: None  # progress hook

    def params(self, skill: Skill) -> dict:
        s = self.recipe.sampling.for_skill(skill.name)
        return {
            "agents": s.agents_per_seed or skill.transformation.agents_per_seed,
            "tasks": s.tasks_per_text or skill.instruction.tasks_per_text,
            "rounds": skill.refinement.rounds if s.refinement_rounds is None else s.refinement_rounds,
            "suggestions": s.suggestions or skill.refinement.suggestions,
            "keep": s.keep or skill.refinement.keep,
        }


def trim_to_sentence(text: str) -> str:
    """Cut a truncated generation back to its last complete sentence or line."""
    ends = [m.end() for m in re.finditer(r"[.!?](\s|$)|\n", text)]
    return text[: ends[-1]].strip() if ends else text.strip()


class UnitFlow:
    def __init__(self, ctx: FlowContext, seed: Seed, skill: Skill, skill_index: int):
        self.ctx, self.seed, self.skill, self.skill_index = ctx, seed, skill, skill_index
        self.p = ctx.params(skill)
        self.result = UnitResult()
        self.mt = ctx.recipe.max_tokens

    def _key(self, *parts: int) -> str:
        return ":".join([f"{self.seed.order:09d}", f"{self.skill_index:02d}"] + [f"{p:03d}" for p in parts])

    def _record(self, messages: list[dict], agent: str, itype: str, rnd: int, *,
                reject: tuple[str, str] | None = None, task: str = "",
                question: Question | None = None) -> Record:
        """One record; ``question`` is the rule-built question (answer_first) the task came from,
        recorded with its answer span and sentence so rule rows can be told from teacher ones."""
        return Record(
            messages=[Message(**m) for m in messages], instruction=task,
            seed_id=self.seed.id, source=self.seed.source, skill=self.skill.split,
            instruction_type=itype, transformation=agent, refinement_round=rnd,
            teacher_model=self.ctx.teacher.name, recipe_hash=self.ctx.recipe_hash,
            question_method="rule" if question else "llm",
            answer_span=question.target if question else "",
            source_sentence=question.sentence if question else "",
            reject_gate=reject[0] if reject else None, reject_reason=reject[1] if reject else None,
        )

    def _reject(self, key: str, gate: str, reason: str, user: str, agent: str, itype: str = "",
                rnd: int = 0, answer: str | None = None, question: Question | None = None) -> None:
        msgs = [{"role": "user", "content": user}]
        if answer is not None:
            msgs.append({"role": "assistant", "content": answer})
        self.result.records.append((key, self._record(msgs, agent, itype, rnd, reject=(gate, reason),
                                                      question=question)))
        self.result.stages[f"rejected:{gate}"] += 1

    async def run(self) -> UnitResult:
        agents = self.skill.agents_for(self.seed.kind)
        if not agents:
            return self.result
        rng = random.Random(f"{self.ctx.recipe.seed}:{self.seed.id}:{self.skill.name}")
        chosen = sorted(rng.sample(range(len(agents)), min(self.p["agents"], len(agents))))
        types = self.skill.instruction.types
        plan = [(ai, agents[ai], [types[t] for t in sorted(rng.sample(range(len(types)), min(self.p["tasks"], len(types))))])
                for ai in chosen]
        await asyncio.gather(*(self._branch(ai, agent, its) for ai, agent, its in plan))
        self.result.records.sort(key=lambda kr: kr[0])
        return self.result

    async def _text(self, stage: str, system: str, user: str, max_tokens: int,
                    temperature: float) -> tuple[str, str]:
        completion = await self.ctx.teacher.chat(conversation(system, user), max_tokens=max_tokens,
                                                 temperature=temperature)
        self.ctx.on_stage(stage)
        return completion.text.strip(), completion.finish_reason

    async def _json(self, stage: str, system: str, user: str, schema: dict, max_tokens: int):
        res = await chat_structured(self.ctx.teacher, conversation(system, user), schema,
                                    name=stage, max_tokens=max_tokens,
                                    temperature=self.ctx.recipe.temperature,
                                    reasks=self.ctx.recipe.structured_reasks)
        self.ctx.on_stage(stage)
        return res

    async def _branch(self, ai: int, agent: Agent, itypes: list[InstructionType]) -> None:
        # 1. content transformation
        if agent.passthrough and agent.split_sentences:
            sentences = split_sentences(self.seed.text)
            title = sentences[0].lstrip("# ").strip() if sentences else ""
            # each sentence keeps the document's title line, so "It ..." still has a subject
            texts = [f"{title}\n{t}" for t in sentences[1:] if len(t) >= agent.min_sentence_chars]
            topic = topic_of(self.seed.text)
            await asyncio.gather(*(self._task(ai, si * 100 + ti, agent, text, it, topic)
                                   for si, text in enumerate(texts) for ti, it in enumerate(itypes)))
            return
        if agent.passthrough:
            text = self.seed.text
        else:
            prompt = render(agent.prompt, text=self.seed.text, kind=self.seed.kind, source=self.seed.source)
            try:
                text, finish = await self._text("transform", agent.system, prompt, self.mt.transform,
                                                self.ctx.recipe.temperature)
            except LLMError as exc:
                self._reject(self._key(ai), "transformation", f"call failed: {exc}", prompt, agent.name)
                return
            if finish == "length":
                text = trim_to_sentence(text)
            if len(text) < self.ctx.recipe.chunking.min_chars:
                self._reject(self._key(ai), "transformation", "transformed text empty or too short",
                             prompt, agent.name, answer=text)
                return
        await asyncio.gather(*(self._task(ai, ti, agent, text, it) for ti, it in enumerate(itypes)))

    async def _task(self, ai: int, ti: int, agent: Agent, text: str, itype: InstructionType,
                    topic: str | None = None) -> None:
        # 2. seed instruction generation
        instr = self.skill.instruction
        if instr.method == "answer_first":
            # questions are built by rule around answer spans; a split-sentence text's first
            # line is the document title, context for the answer but not asked about
            asked = text.split("\n", 1)[-1] if agent.split_sentences else text
            questions = [q for q in questions_for_text(asked, topic, instr.max_targets) if q.form == itype.form]
            self.ctx.on_stage("instruction", len(questions))
            if not questions:
                self.result.stages["instruction:no_target"] += 1
            await asyncio.gather(*(self._refine(ai, ti * 10 + qi, agent, text, itype, q.text, q)
                                   for qi, q in enumerate(questions)))
            return
        prompt = render(instr.prompt, text=text, type=itype)
        res = await self._json("instruction", instr.system, prompt, TASK_SCHEMA, self.mt.instruction)
        if not res.ok:
            self._reject(self._key(ai, ti), "instruction", f"no valid task: {res.error}", prompt,
                         agent.name, itype.name, answer=res.raw)
            return
        await self._refine(ai, ti, agent, text, itype, res.value["task"].strip())

    async def _refine(self, ai: int, ti: int, agent: Agent, text: str, itype: InstructionType,
                      task: str, question: Question | None = None) -> None:
        versions: list[tuple[str, int, str | None]] = [(task, 0, None)]
        # 3. instruction refinement: Suggester -> Editor, `rounds` times along one chain
        current = versions[0][0]
        ref = self.skill.refinement
        for rnd in range(1, self.p["rounds"] + 1):
            sprompt = render(ref.suggester_prompt, text=text, task=current,
                             proposals=ref.proposals, n=self.p["suggestions"])
            sres = await self._json("suggest", ref.suggester_system, sprompt,
                                    suggestions_schema(self.p["suggestions"]), self.mt.suggest)
            if not sres.ok:
                self._reject(self._key(ai, ti, 900 + rnd), "refinement", f"suggester: {sres.error}",
                             sprompt, agent.name, itype.name, rnd, answer=sres.raw, question=question)
                break
            edits = await asyncio.gather(*(
                self._json("edit", ref.editor_system,
                           render(ref.editor_prompt, text=text, task=current, suggestion=s),
                           TASK_SCHEMA, self.mt.edit)
                for s in sres.value["suggestions"]))
            new = [(e.value["task"].strip(), rnd, current) for e in edits if e.ok]
            for si, e in enumerate(edits):
                if not e.ok:
                    self._reject(self._key(ai, ti, 900 + rnd * 10 + si), "refinement",
                                 f"editor: {e.error}", current, agent.name, itype.name, rnd, answer=e.raw,
                                 question=question)
            if not new:
                break
            versions.extend(new)
            current = new[0][0]
        if self.p["keep"] == "final":
            last = max(v[1] for v in versions)
            kept = [(vi, v) for vi, v in enumerate(versions) if v[1] == last]
        else:
            kept = list(enumerate(versions))
        await asyncio.gather(*(self._answer(ai, ti, vi, agent, text, itype, *v, question=question)
                               for vi, v in kept))

    async def _answer(self, ai: int, ti: int, vi: int, agent: Agent, text: str,
                      itype: InstructionType, task: str, rnd: int, previous: str | None,
                      question: Question | None = None) -> None:
        key = self._key(ai, ti, vi)
        target = question.target if question else None
        policy = self.skill.answer
        user = render(self.skill.instruction.user_template, text=text, task=task)
        system = policy.system
        if policy.step_by_step:
            system = f"{system} {policy.step_by_step_hint}".strip()
        # the teacher may see more than the student's user turn (closed-book skills)
        seen = (render(policy.context_template, text=text, task=task, target=target)
                if policy.context_template else user)
        convo = conversation(system, seen)
        if policy.format == "json" and policy.json_schema:
            res = await chat_structured(self.ctx.teacher, convo, policy.json_schema, name="answer",
                                        max_tokens=self.mt.answer,
                                        temperature=self.ctx.recipe.answer_temperature,
                                        reasks=self.ctx.recipe.structured_reasks)
            self.ctx.on_stage("answer")
            if not res.ok:
                self._reject(key, "format", f"answer: {res.error}", user, agent.name, itype.name, rnd,
                             answer=res.raw, question=question)
                return
            answer, finish = json.dumps(res.value, ensure_ascii=False), res.finish_reason
        else:
            try:
                answer, finish = await self._text("answer", system, seen, self.mt.answer,
                                                  self.ctx.recipe.answer_temperature)
            except LLMError as exc:
                self._reject(key, "answer", f"call failed: {exc}", user, agent.name, itype.name, rnd,
                             question=question)
                return
        cand = Candidate(self.skill, text, self.seed.text, task, previous, itype.name, answer, finish,
                         target)
        failed = await run_checks(cand, self.ctx.judge, self.mt.check, itype.skip_checks)
        messages = ([{"role": "system", "content": policy.system}]
                    if policy.include_system_in_messages and policy.system else [])
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        record = self._record(messages, agent.name, itype.name, rnd, reject=failed, task=task,
                              question=question)
        self.result.records.append((key, record))
        self.result.stages["rejected:" + failed[0] if failed else "accepted"] += 1


async def run_unit(ctx: FlowContext, seed: Seed, skill: Skill, skill_index: int) -> UnitResult:
    with track_call_failures() as failed:  # every call of the unit, its checks included
        result = await UnitFlow(ctx, seed, skill, skill_index).run()
    result.failed_calls.extend(failed)
    return result
