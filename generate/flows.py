"""The three AgentInstruct flows for one (seed, skill) unit, plus answering and checks.

The steps are objects with declared contracts (``generate/steps``); the skill's keys compose
them (``steps.compose``) and :class:`UnitFlow` runs the composition:

1. content transformation: sampled agents rewrite the seed;
2. seed instruction generation: tasks of sampled taxonomy types about each transformed text,
   with retrieved passages for a retrieval skill;
3. instruction refinement: a Suggester proposes k changes, an Editor applies each, ``rounds``
   rounds, each building on the edits ``branches`` keeps (an optional judge confirms each edit
   made the task harder);
then the teacher answers each kept task (calling tools where the skill names them), writes and
answers follow-up turns for a multi-turn skill, and the skill's checks accept or reject each
turn. Sampling uses RNGs seeded by (recipe seed, seed id, skill[, task]), so a unit always
makes the same choices; records carry a tuple sort key so output order never depends on timing.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from agentinstruct.generate.checks import Candidate, run_checks
from agentinstruct.generate.config import GenerateRecipe
from agentinstruct.generate.questions import Question, questions_for_text, split_sentences, topic_of
from agentinstruct.generate.skills import Agent, InstructionType, Skill
from agentinstruct.generate.steps.base import LLMStep, Reply
from agentinstruct.generate.steps.compose import compose
from agentinstruct.generate.steps.refine import BestStep, suggestions_schema  # noqa: F401 - re-exported
from agentinstruct.generate.steps.writing import TASK_SCHEMA, trim_to_sentence  # noqa: F401 - re-exported

from agentinstruct.language import language_name
from agentinstruct.llm import ChatModel, LLMError, chat_structured
from agentinstruct.llm.base import track_call_failures
from agentinstruct.records import Message, Record, Seed

if TYPE_CHECKING:
    from agentinstruct.generate.retrieval import Passage, Retriever

    from agentinstruct.llm.tools import ToolBox

Key = tuple[int, ...]
# the last element of a rejected record's key (after the key of what it belongs to), so every
# record of a unit has its own key whatever failed where
REJECT_SUGGEST, REJECT_EDIT, REJECT_HARDER, REJECT_TURN = 901, 902, 903, 904


@dataclass
class UnitResult:
    """Everything one (seed, skill) unit produced: records keyed for a stable order.

    ``failed_calls``: calls that failed for good (outage, timeouts, 5xx after every retry). A
    unit with any is incomplete, whatever rows it made: it is not journaled but redone on the
    next run (a reply that arrived and broke the schema or a check is a real rejection)."""

    records: list[tuple[Key, Record]] = field(default_factory=list)
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
    retriever: Retriever | None = None  # the run's index, for skills with retrieval (or the search tool)
    toolboxes: dict[str, ToolBox] = field(default_factory=dict)  # by skill name: the tools its answers may call

    def params(self, skill: Skill) -> dict:
        s = self.recipe.sampling.for_skill(skill.name)
        return {
            "agents": s.agents_per_seed or skill.transformation.agents_per_seed,
            "tasks": s.tasks_per_text or skill.instruction.tasks_per_text,
            "rounds": skill.refinement.rounds if s.refinement_rounds is None else s.refinement_rounds,
            "suggestions": s.suggestions or skill.refinement.suggestions,
            "keep": s.keep or skill.refinement.keep,
        }


@dataclass
class StepOutcome:
    """One step's result: its outputs, or why it produced none (a reply that broke the schema)."""

    ok: bool
    values: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    raw: str = ""
    prompt: str = ""  # the step's last user turn (what a rejected record shows)


@dataclass
class TaskDraft:
    """One task on its way to an answer: what the refine, retrieve and answer steps carry.

    ``base``: (agent, text, type, question) indices; ``path``: the index of the edit taken in
    each refinement round (its length is ``rnd``), so ``key`` orders versions round by round."""

    agent: Agent
    itype: InstructionType
    text: str
    task: str
    base: Key
    question: Question | None = None
    rnd: int = 0
    path: Key = ()
    previous: str | None = None
    suggestions: tuple[str, ...] = ()
    passages: list[Passage] = field(default_factory=list)
    answer_passage_id: str | None = None
    retrieved: bool = False

    @property
    def key(self) -> Key:
        return (*self.base, self.rnd, *self.path)

    @property
    def target(self) -> str | None:
        return self.question.target if self.question else None

    @property
    def no_answer(self) -> bool:
        """Passages were shown and none of them holds the answer."""
        return self.retrieved and self.answer_passage_id is None

    def edited(self, task: str, text: str, suggestion: str, index: int) -> TaskDraft:
        """The next version: ``suggestion`` applied by the Editor (its ``index``, from 1)."""
        passages = self.passages
        if text != self.text:  # the Editor changed the passage: the shown answer passage follows
            passages = [replace(p, text=text) if p.id == self.answer_passage_id else p for p in passages]
        return replace(self, task=task, text=text, rnd=self.rnd + 1, path=(*self.path, index),
                       previous=self.task, suggestions=(*self.suggestions, suggestion), passages=passages)


@dataclass
class AnswerOutcome:
    ok: bool
    answer: str = ""
    finish_reason: str = ""
    turns: list[dict[str, Any]] = field(default_factory=list)  # tool turns + the final assistant turn
    trace: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    raw: str = ""


class UnitFlow:
    """Runs one (seed, skill) unit through the skill's composition (``generate/steps``)."""

    def __init__(self, ctx: FlowContext, seed: Seed, skill: Skill, skill_index: int):
        self.ctx, self.seed, self.skill, self.skill_index = ctx, seed, skill, skill_index
        self.p = ctx.params(skill)
        self.flow = compose(skill, self.p)
        self.result = UnitResult()
        self.mt = ctx.recipe.max_tokens
        code = ctx.recipe.language
        self.language_code = seed.language if code == "auto" else code
        self.language = language_name(self.language_code)

    def _key(self, *parts: int) -> Key:
        return (self.seed.order, self.skill_index, *parts)

    # --- records ------------------------------------------------------------------------------

    def _record(self, messages: list[dict], agent: str, *, reject: tuple[str, str] | None = None,
                draft: TaskDraft | None = None, itype: str = "", rnd: int = 0, task: str = "",
                turns: int = 1, trace: list[dict[str, str]] | None = None) -> Record:
        """One record. A draft's rule-built question (answer_first) is recorded with its answer
        span and sentence, so rule rows can be told from teacher ones; its passages and the
        suggestions that made it are its provenance."""
        question = draft.question if draft else None
        return Record(
            messages=[Message(**m) for m in messages], instruction=task,
            seed_id=self.seed.id, source=self.seed.source, skill=self.skill.name, split=self.skill.split,
            instruction_type=draft.itype.name if draft else itype, transformation=agent,
            refinement_round=draft.rnd if draft else rnd,
            teacher_model=self.ctx.teacher.name, recipe_hash=self.ctx.recipe_hash,
            language=self.language_code,
            question_method="rule" if question else "llm",
            answer_span=question.target if question else "",
            source_sentence=question.sentence if question else "",
            passage_ids=[p.id for p in draft.passages] if draft else [],
            suggestions=list(draft.suggestions) if draft else [],
            tool_trace=trace or [], turns=turns,
            reject_gate=reject[0] if reject else None, reject_reason=reject[1] if reject else None,
        )

    def _reject(self, key: Key, gate: str, reason: str, user: str, agent: str, *, answer: str | None = None,
                draft: TaskDraft | None = None, itype: str = "", rnd: int = 0) -> None:
        msgs = [{"role": "user", "content": user}]
        if answer is not None:
            msgs.append({"role": "assistant", "content": answer})
        self.result.records.append((key, self._record(msgs, agent, reject=(gate, reason), draft=draft,
                                                      itype=itype, rnd=rnd)))
        self.result.stages[f"rejected:{gate}"] += 1

    # --- running steps ----------------------------------------------------------------------

    def _state(self, **values: Any) -> dict[str, Any]:
        """The named values steps read (each takes its declared ``inputs`` from it)."""
        state = {"seed_id": self.seed.id, "seed_text": self.seed.text, "source": self.seed.source,
                 "kind": self.seed.kind, "language": self.language, "passages": [], "target": None,
                 "history": [], "proposals": self.skill.refinement.proposals, "n": self.p["suggestions"]}
        state.update(values)
        return state

    def _draft_state(self, d: TaskDraft, **values: Any) -> dict[str, Any]:
        return self._state(**{"text": d.text, "task": d.task, "type": d.itype, "target": d.target,
                              "passages": d.passages, **values})

    async def _call(self, step: LLMStep, state: dict[str, Any]) -> StepOutcome:
        """Send a step's messages to its model. A structured step whose reply breaks its schema
        (after the re-asks) is a failed outcome; a free-text step's failed call raises LLMError."""
        messages = step.format_input(state)
        prompt = messages[-1]["content"]
        model = self.ctx.teacher if step.model == "teacher" else self.ctx.judge
        max_tokens = getattr(self.mt, step.budget)
        temperature = (self.ctx.recipe.temperature if step.temperature == "sampling"
                       else self.ctx.recipe.answer_temperature)
        if step.schema is not None:
            res = await chat_structured(model, messages, step.schema, name=step.name, max_tokens=max_tokens,
                                        temperature=temperature, reasks=self.ctx.recipe.structured_reasks)
            self.ctx.on_stage(step.name)
            if not res.ok:
                return StepOutcome(False, error=res.error, raw=res.raw, prompt=prompt)
            reply = Reply(res.raw, res.value, res.finish_reason)
        else:
            completion = await model.chat(messages, max_tokens=max_tokens, temperature=temperature)
            self.ctx.on_stage(step.name)
            reply = Reply(completion.text, None, completion.finish_reason)
        return StepOutcome(True, step.format_output(reply, state), raw=reply.text, prompt=prompt)

    # --- the flow ---------------------------------------------------------------------------

    async def run(self) -> UnitResult:
        agents = self.skill.agents_for(self.seed.kind)
        if not agents:
            return self.result
        if self.skill.instruction.method == "answer_first" and self.language_code != "en":
            # the question rules are English grammar (generate/questions.py): a counted rejection
            self._reject(self._key(0), "instruction", f"answer_first builds English questions only "
                         f"(seed language {self.language_code}, {self.language})", self.seed.text, agents[0].name)
            return self.result
        rng = random.Random(f"{self.ctx.recipe.seed}:{self.seed.id}:{self.skill.name}")
        chosen = sorted(rng.sample(range(len(agents)), min(self.p["agents"], len(agents))))
        types = self.skill.instruction.types
        plan = [(ai, agents[ai], [types[t] for t in sorted(rng.sample(range(len(types)), min(self.p["tasks"], len(types))))])
                for ai in chosen]
        await asyncio.gather(*(self._branch(ai, agent, its) for ai, agent, its in plan))
        self.result.records.sort(key=lambda kr: kr[0])
        return self.result

    async def _branch(self, ai: int, agent: Agent, itypes: list[InstructionType]) -> None:
        # 1. content transformation
        if agent.passthrough and agent.split_sentences:
            sentences = split_sentences(self.seed.text)
            title = sentences[0].lstrip("# ").strip() if sentences else ""
            # each sentence keeps the document's title line, so "It ..." still has a subject
            texts = [f"{title}\n{t}" for t in sentences[1:] if len(t) >= agent.min_sentence_chars]
            topic = topic_of(self.seed.text)
            await asyncio.gather(*(self._write(ai, xi, ti, agent, text, it, topic)
                                   for xi, text in enumerate(texts) for ti, it in enumerate(itypes)))
            return
        if agent.passthrough:
            text = self.seed.text
        else:
            step = self.flow.transforms[agent.name]
            state = self._state(text=self.seed.text)
            try:
                out = await self._call(step, state)
            except LLMError as exc:
                self._reject(self._key(ai), "transformation", f"call failed: {exc}", step.prompt(state), agent.name)
                return
            text = out.values["text"]
            if len(text) < self.ctx.recipe.chunking.min_chars:
                self._reject(self._key(ai), "transformation", "transformed text empty or too short",
                             out.prompt, agent.name, answer=text)
                return
        await asyncio.gather(*(self._write(ai, 0, ti, agent, text, it) for ti, it in enumerate(itypes)))

    async def _write(self, ai: int, xi: int, ti: int, agent: Agent, text: str, itype: InstructionType,
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
            await asyncio.gather(*(self._prepare(TaskDraft(agent, itype, text, q.text, (ai, xi, ti, qi), q))
                                   for qi, q in enumerate(questions)))
            return
        draft = TaskDraft(agent, itype, text, "", (ai, xi, ti, 0))
        spec = self.skill.retrieval
        if spec is not None and spec.query == "seed":  # the instruction writer sees the passages
            draft = self._retrieve(draft)
            if draft is None:
                return
        out = await self._call(self.flow.instruct, self._draft_state(draft))
        if not out.ok:
            self._reject(self._key(*draft.base), "instruction", f"no valid task: {out.error}", out.prompt,
                         agent.name, answer=out.raw, draft=draft)
            return
        await self._prepare(replace(draft, task=out.values["task"]))

    def _retrieve(self, d: TaskDraft) -> TaskDraft | None:
        """The draft with its passages (the task's own RNG draws the no-answer case and the
        order), or None when the index cannot supply enough distractors (rejected)."""
        from agentinstruct.generate.retrieval import RetrievalError

        rng = random.Random(f"{self.ctx.recipe.seed}:{self.seed.id}:{self.skill.name}:{d.base}")
        try:
            out = self.flow.retrieve.run(self._draft_state(d), retriever=self.ctx.retriever, rng=rng)
        except RetrievalError as exc:
            self._reject(self._key(*d.base), "retrieval", str(exc), d.task or d.text, d.agent.name, draft=d)
            return None
        self.ctx.on_stage("retrieve")
        return replace(d, passages=out["passages"], answer_passage_id=out["answer_passage_id"], retrieved=True)

    async def _prepare(self, d: TaskDraft) -> None:
        if self.flow.retrieve is not None and not d.retrieved:
            d = self._retrieve(d)
            if d is None:
                return
        versions = await self._refine(d)
        await asyncio.gather(*(self._converse(v) for v in versions))

    async def _refine(self, original: TaskDraft) -> list[TaskDraft]:
        """3. instruction refinement: Suggester -> Editor for ``rounds`` rounds, each round
        building on the edits ``branches`` keeps; the versions ``keep`` asks for."""
        flow = self.flow
        versions, frontier = [original], [original]
        made = 0
        for _ in range(flow.rounds):
            suggested = await asyncio.gather(*(self._call(flow.suggest, self._draft_state(p)) for p in frontier))
            jobs: list[tuple[TaskDraft, int, str]] = []
            for parent, res in zip(frontier, suggested):
                if not res.ok:
                    self._reject(self._key(*parent.key, REJECT_SUGGEST), "refinement", f"suggester: {res.error}",
                                 res.prompt, parent.agent.name, answer=res.raw, draft=replace(parent, rnd=parent.rnd + 1))
                    continue
                for j, s in enumerate(res.values["suggestions"]):
                    if flow.max_versions is None or made + len(jobs) < flow.max_versions:
                        jobs.append((parent, j, s))
            edits = await asyncio.gather(*(self._call(flow.edit, self._draft_state(p, suggestion=s))
                                           for p, _, s in jobs))
            children: list[TaskDraft] = []
            for (parent, j, s), e in zip(jobs, edits):
                if not e.ok:
                    self._reject(self._key(*parent.key, REJECT_EDIT, j), "refinement", f"editor: {e.error}",
                                 parent.task, parent.agent.name, answer=e.raw, draft=replace(parent, rnd=parent.rnd + 1))
                    continue
                children.append(parent.edited(e.values["task"], e.values.get("text", parent.text), s, j + 1))
            if flow.harder is not None:
                children = await self._harder_only(children)
            made += len(children)
            if not children:
                break
            versions.extend(children)
            frontier = await self._next_frontier(frontier, children)
        if flow.keep == "final":
            last = max(v.rnd for v in versions)
            return [v for v in versions if v.rnd == last]
        return versions

    async def _harder_only(self, children: list[TaskDraft]) -> list[TaskDraft]:
        """check_harder: the edits the judge confirms made the task harder or different."""
        verdicts = await asyncio.gather(*(self._call(self.flow.harder, self._draft_state(c, previous_task=c.previous))
                                          for c in children))
        kept = []
        for c, v in zip(children, verdicts):
            if v.ok and v.values["harder"]:
                kept.append(c)
                continue
            reason = f"judge failed: {v.error}" if not v.ok else "the edit only rewords the task (judge)"
            self._reject(self._key(*c.key, REJECT_HARDER), "check_harder", reason, c.task, c.agent.name,
                         answer=c.previous, draft=c)
        return kept

    async def _next_frontier(self, frontier: list[TaskDraft], children: list[TaskDraft]) -> list[TaskDraft]:
        """The edits the next round refines: per parent its first, all, or the judge's best."""
        if self.flow.branches == "all":
            return children
        groups = [[c for c in children if c.path[:-1] == p.path] for p in frontier]
        groups = [g for g in groups if g]
        if self.flow.branches == "first":
            return [g[0] for g in groups]
        picks = await asyncio.gather(*(self._pick_best(g) for g in groups))
        return [g[i] for g, i in zip(groups, picks)]

    async def _pick_best(self, group: list[TaskDraft]) -> int:
        if len(group) == 1:
            return 0
        parent_task = group[0].previous or ""
        res = await self._call(BestStep(self.skill.refinement, len(group)),
                               self._state(text=group[0].text, task=parent_task, candidates=[c.task for c in group]))
        return res.values["best"] if res.ok else 0  # a judge that fails to pick: the first edit

    # --- answering: one or more turns -------------------------------------------------------

    async def _answer(self, state: dict[str, Any]) -> AnswerOutcome:
        """The teacher's answer to the state's task: plain, JSON, or after tool rounds."""
        step = self.flow.answer
        if step.tools:
            from agentinstruct.llm.tools import INVALID_TOOL_REQUEST, chat_with_tools

            res = await chat_with_tools(self.ctx.teacher, step.format_input(state), self.ctx.toolboxes[self.skill.name],
                                        max_rounds=step.max_tool_rounds, max_tokens=self.mt.answer,
                                        temperature=self.ctx.recipe.answer_temperature)
            self.ctx.on_stage("answer")
            if res.finish_reason == INVALID_TOOL_REQUEST:
                return AnswerOutcome(False, error="tool request invalid", raw=res.text)
            answer = res.text.strip()
            turns = res.messages[:-1] + [{"role": "assistant", "content": answer}]
            return AnswerOutcome(True, answer, res.finish_reason, turns, res.trace())
        out = await self._call(step, state)
        if not out.ok:
            return AnswerOutcome(False, error=out.error, raw=out.raw)
        answer = out.values["answer"]
        return AnswerOutcome(True, answer, out.values["finish_reason"], [{"role": "assistant", "content": answer}])

    async def _converse(self, d: TaskDraft) -> None:
        """Answer the task and, for a multi-turn skill, each follow-up the teacher writes as
        the user; every answer is checked. A rejected first turn rejects the record; a later
        one ends the conversation at the last good turn (the rejection is recorded)."""
        policy, step = self.skill.answer, self.flow.answer
        agent = d.agent.name
        user = step.user_turn(self._draft_state(d))
        messages = ([{"role": "system", "content": policy.system}]
                    if policy.include_system_in_messages and policy.system else [])
        plain: list[dict[str, str]] = []  # the student's turns without tool turns (follow-up writer)
        teacher: list[dict[str, Any]] = []  # the teacher's view of the turns so far
        trace: list[dict[str, str]] = []
        skip = list(d.itype.skip_checks)
        if d.no_answer:  # the right answer says the passages do not hold it
            skip += ["answerable", "contains_target"]
        good = 0
        for turn in range(1, self.flow.turns + 1):
            if turn == 1:
                task, shown = d.task, user
            else:
                fu = await self._call(self.flow.follow_up, self._draft_state(d, history=plain, turn=turn))
                if not fu.ok:
                    self._end_conversation(d, turn, "follow_up", f"no valid follow-up: {fu.error}", messages,
                                           fu.raw or "(no follow-up written)", None)
                    break
                task = shown = fu.values["task"]
            try:
                out = await self._answer(self._draft_state(d, task=task, history=teacher))
            except LLMError as exc:
                if turn == 1:
                    self._reject(self._key(*d.key), "answer", f"call failed: {exc}", user, agent, draft=d)
                    return
                # the failed call makes the unit incomplete (not journaled, redone on the next run)
                self._end_conversation(d, turn, "answer", f"call failed: {exc}", messages, shown, None)
                break
            if not out.ok:
                if turn == 1:
                    self._reject(self._key(*d.key), "format", f"answer: {out.error}", user, agent, answer=out.raw,
                                 draft=d)
                    return
                self._end_conversation(d, turn, "format", f"answer: {out.error}", messages, shown, out.raw)
                break
            cand = Candidate(self.skill, d.text, self.seed.text, task, d.previous if turn == 1 else None,
                             d.itype.name, out.answer, out.finish_reason, d.target if turn == 1 else None,
                             language=self.language, passages=d.passages, answer_passage_id=d.answer_passage_id)
            failed = await run_checks(cand, self.ctx.judge, self.mt.check, skip)
            turn_messages = [{"role": "user", "content": shown}]
            turn_messages += out.turns if policy.tool_turns_in_messages else [{"role": "assistant", "content": out.answer}]
            if failed and turn == 1:
                record = self._record(messages + turn_messages, agent, reject=failed, draft=d, task=task,
                                      trace=out.trace)
                self.result.records.append((self._key(*d.key), record))
                self.result.stages["rejected:" + failed[0]] += 1
                return
            if failed:
                self._end_conversation(d, turn, failed[0], failed[1], messages, shown, out.answer)
                break
            messages += turn_messages
            trace += out.trace
            teacher += [{"role": "user", "content": step.teacher_turn(self._draft_state(d)) if turn == 1 else shown},
                        {"role": "assistant", "content": out.answer}]
            plain += [{"role": "user", "content": shown}, {"role": "assistant", "content": out.answer}]
            good = turn
        record = self._record(messages, agent, draft=d, task=d.task, turns=good, trace=trace)
        self.result.records.append((self._key(*d.key), record))
        self.result.stages["accepted"] += 1

    def _end_conversation(self, d: TaskDraft, turn: int, gate: str, reason: str, messages: list[dict],
                          user: str, answer: str | None) -> None:
        """A turn after the first failed: it is kept as a rejected record (so its reason is
        counted) and the conversation ends at the turn before it."""
        failed = [*messages, {"role": "user", "content": user}]
        if answer is not None:
            failed.append({"role": "assistant", "content": answer})
        record = self._record(failed, d.agent.name, reject=(gate, f"turn {turn}: {reason}"), draft=d, task=d.task,
                              turns=turn)
        self.result.records.append((self._key(*d.key, REJECT_TURN, turn), record))
        self.result.stages[f"rejected_turn:{gate}"] += 1


async def run_unit(ctx: FlowContext, seed: Seed, skill: Skill, skill_index: int) -> UnitResult:
    with track_call_failures() as failed:  # every call of the unit, its checks included
        result = await UnitFlow(ctx, seed, skill, skill_index).run()
    result.failed_calls.extend(failed)
    return result
