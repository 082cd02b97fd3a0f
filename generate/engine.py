"""The generation engine: one async pipeline over a stream of seeds.

Seeds are read lazily and admitted by requests: a new seed starts while the models' demand
(calls asked and not answered) is below their capacity (requests they serve at once), so the
server sees its full concurrency whatever a seed's fan-out; ``seeds_in_flight``, when set, is
an upper bound. Inside a seed every flow step runs concurrently, bounded by the models' own
limits, so a seed can be answering while another is transforming. Finished (seed, skill) units go to the journal at
once; LLM calls go to the call cache. A killed run started again with the same command
continues where it stopped and yields the same records. A unit with a call that failed for
good (outage, timeouts, after every retry) is not finished: it is listed in the summary, not
journaled, and redone by the next run.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agentinstruct.generate import export as ex
from agentinstruct.generate.budget import BudgetGuard
from agentinstruct.generate.config import GenerateRecipe
from agentinstruct.generate.estimate import projected_vs_actual
from agentinstruct.generate.flows import FlowContext, UnitResult, run_unit
from agentinstruct.generate.incremental import CorpusVersion
from agentinstruct.generate.ingest import IngestReport, check_input, hf_tokenizer_spans, iter_seeds, regex_tokenize
from agentinstruct.generate.journal import Journal, unit_id
from agentinstruct.generate.progress import LoggedProgress, generate_log
from agentinstruct.generate.rundir import check_output, discard_unused_run_dir, prepare_run_dir
from agentinstruct.generate.seed_filter import SeedFilterRun
from agentinstruct.generate.skills import Skill, load_skill, refuse_answer_first, select_skills
from agentinstruct.generate.validators.counts import GateTally
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from agentinstruct.cache import CachedChatModel, CallCache
from agentinstruct.llm import ChatModel, LLMError, LLMStats, create_model
from agentinstruct.llm.base import on_first_call, track_call_failures
from agentinstruct.provenance import package_versions
from agentinstruct.recipes import RecipeError, recipe_hash
from agentinstruct.records import Record, Seed
from agentinstruct.redact import redact_counts, redact_value

STAGES = ("transform", "instruction", "suggest", "edit", "answer", "follow_up")
# recipe fields that change where or how fast a run goes, not which records it makes
RUN_ONLY_FIELDS = {"output", "input", "limit", "formats", "seeds_in_flight", "teacher", "judge",
                   "max_failed_units", "price_per_million", "budget", "estimate", "progress_interval_s"}


# without ``seeds_in_flight``: seeds in flight at most this many per request slot of the teacher
# (a seed waiting in a gate or the sandbox holds no slot), or this many for a model that
# reports no capacity (the local backends batch what they are given)
SEEDS_PER_SLOT = 2
SEEDS_WITHOUT_CAPACITY = 4


class Admission:
    """When the engine may start another seed: while every model's demand (plus the admitted
    seeds that have not made their first call yet) is below its capacity, and under the seed
    bound. ``wait`` returns as soon as that holds again (a call or a seed ended)."""

    def __init__(self, models: list[CachedChatModel], bound: int | None):
        self.models = models
        self.bound = bound
        self.seeds = 0  # in flight
        self.unstarted = 0  # admitted, first call not made yet
        self._changed = asyncio.Event()
        for m in models:
            m.listeners.append(self._changed.set)

    def seed_bound(self) -> int:
        if self.bound is not None:
            return self.bound
        caps = [c for c in (m.capacity() for m in self.models) if c is not None]
        return SEEDS_PER_SLOT * max(caps) if caps else SEEDS_WITHOUT_CAPACITY

    def has_room(self) -> bool:
        if self.seeds >= self.seed_bound():
            return False
        for m in self.models:
            cap = m.capacity()
            if cap is not None and m.demand + self.unstarted >= cap:
                return False
        return True

    async def wait(self) -> None:
        while not self.has_room():
            self._changed.clear()
            await self._changed.wait()

    def admitted(self) -> None:
        self.seeds += 1
        self.unstarted += 1

    def first_call(self) -> None:
        self.unstarted -= 1
        self._changed.set()

    def finished(self, started: bool) -> None:
        self.seeds -= 1
        if not started:
            self.unstarted -= 1
        self._changed.set()


class RecordGate(Protocol):
    """A quality gate run on each accepted record of a unit (see ``generate/gates``)."""

    name: str

    async def check(self, record: Record, seed: Seed) -> str | None: ...


class RowGate(Protocol):
    """A gate over the whole run in final order (near-duplicate removal)."""

    name: str

    def __call__(self, row: dict[str, Any]) -> tuple[str, str] | None: ...

    def report(self) -> dict[str, Any]: ...


@dataclass
class RunSummary:
    output: Path
    ingest: IngestReport
    counts: dict[str, Counter]
    stages: Counter
    llm: dict[str, int]
    wall_s: float
    resumed_units: int = 0
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed_units: dict[str, str] = field(default_factory=dict)  # not journaled: redone next run
    seed_filter: dict[str, Any] = field(default_factory=dict)  # SeedFilterRun.report()
    total_units: int = 0
    stopped: str | None = None  # the budget line, when the budget stopped the run

    def failure_reasons(self) -> Counter:
        return Counter(self.failed_units.values())

    def failure_report(self) -> dict[str, Any]:
        return {"count": len(self.failed_units), "of": self.total_units,
                "reasons": dict(self.failure_reasons().most_common(5)),
                "units": list(self.failed_units)}

    def incomplete(self, max_failed_share: float) -> str | None:
        """The one-line error when failed units pass the recipe's share (or are all there was)."""
        n, attempted = len(self.failed_units), self.total_units - self.resumed_units
        if not n or (n < attempted and n / max(self.total_units, 1) <= max_failed_share):
            return None
        reason, k = self.failure_reasons().most_common(1)[0]
        return (f"{n} of {self.total_units} units failed: top reason {reason} ({k}); "
                "rerun the same command to retry them")

    def accepted(self, split: str) -> int:
        return self.counts.get(split, Counter())["accepted"]

    def table(self) -> Table:
        t = Table(title=f"agentinstruct generate -> {self.output}")
        t.add_column("what")
        t.add_column("value", justify="right")
        t.add_row("inputs read", str(self.ingest.read))
        t.add_row("seeds", str(self.ingest.seeds))
        t.add_row("inputs skipped", ", ".join(f"{r}: {n}" for r, n in self.ingest.skipped.items()) or "0")
        if self.seed_filter.get("enabled"):
            t.add_row("seed filter: removed / checked",
                      f"{self.seed_filter['removed']} / {self.seed_filter['checked']}")
            for rule, n in self.seed_filter["by_rule"].items():
                example = (self.seed_filter["examples"].get(rule) or [""])[0]
                t.add_row(f"  {rule}: {example[:60]}", str(n))
        t.add_row("units resumed from journal", str(self.resumed_units))
        if self.failed_units:
            t.add_row("[red]units failed[/] (redone on rerun)", f"{len(self.failed_units)} of {self.total_units}")
            for reason, n in self.failure_reasons().most_common(3):
                t.add_row(f"  failed: {reason}", str(n))
        for split, c in self.counts.items():
            if not split.startswith("_"):
                t.add_row(f"[bold]{split}[/] accepted / rejected", f"{c['accepted']} / {c['rejected']}")
        for reason, n in self.counts.get("_reasons", Counter()).most_common(5):
            t.add_row(f"  rejected: {reason}", str(n))
        for name, g in self.gates.items():
            t.add_row(f"gate {name}: checked / removed", f"{g['checked']} / {g['removed']}")
            for reason, n in list(g.get("reasons", {}).items())[:2]:
                t.add_row(f"  {name}: {reason}", str(n))
            if name == "grounding":
                for skill, c in g.get("by_skill", {}).items():
                    t.add_row(f"  grounded share {skill}", f"{c['passed_share']:.0%} of {c['checked']}")
        t.add_row("LLM calls (cache hits)", f"{self.llm['calls']} ({self.llm['cache_hits']})")
        t.add_row("tokens in / out", f"{self.llm['prompt_tokens']} / {self.llm['completion_tokens']}")
        t.add_row("retries / failures", f"{self.llm['retries']} / {self.llm['failures']}")
        t.add_row("wall time", f"{self.wall_s:.1f} s")
        if self.stopped:
            t.add_row("[yellow]stopped at budget[/]", self.stopped)
        return t


def merged_stats(*models: ChatModel) -> dict[str, int]:
    total = Counter()
    seen = set()
    for m in models:
        if id(m.stats) not in seen:
            seen.add(id(m.stats))
            total.update(m.stats.as_dict())
    return {k: total.get(k, 0) for k in LLMStats().as_dict()}


class GenerationRun:
    def __init__(
        self,
        recipe: GenerateRecipe,
        *,
        skills: list[str] | None = None,
        console: Console | None = None,
        show_progress: bool = True,
        overwrite: bool = False,
        force: bool = False,
        restart_on_new_recipe: bool = False,
        record_gates: list[RecordGate] | None = None,
        row_gates: list[RowGate] | None = None,
        extra_manifest: dict[str, Any] | None = None,
    ):
        self.recipe = recipe
        self.skills: list[Skill] = select_skills([load_skill(s) for s in recipe.skills], skills)
        refuse_answer_first(self.skills, recipe.language)
        self.console = console or Console(stderr=True)
        self.show_progress = show_progress
        self.out = Path(recipe.output)
        self.hash = recipe_hash({
            "recipe": recipe.model_dump(mode="json", exclude=RUN_ONLY_FIELDS),
            "teacher": recipe.teacher.identity(),
            "judge": recipe.judge.identity() if recipe.judge else None,
            "skills": [s.model_dump(mode="json") for s in self.skills],
        })
        # refuse a bad output folder now, before any model loads; delete only one of ours
        check_input(recipe.input)
        check_output(self.out, recipe.input, overwrite=overwrite, force=force)
        if record_gates is None:  # say which sandbox isolation is in use; refuse none unless opted in
            from agentinstruct.generate.verify import open_sandbox

            open_sandbox(recipe.gates.tools, log=self.console.print)
        self.tool_sandbox = None  # the sandbox of the python tool, for skills whose answers call it
        if any("python" in s.answer.tools for s in self.skills):
            from agentinstruct.generate.verify import open_sandbox

            self.tool_sandbox = open_sandbox(recipe.gates.tools)
            if self.tool_sandbox is None:
                raise RecipeError("answer.tools: python runs in the tool gate's sandbox; set gates.tools.enabled "
                                  "and gates.tools.sandbox to true")
        self.overwrite = overwrite
        # keep the call cache but start a new journal when the recipe changed (the pipeline)
        self.journal_mode = "archive" if restart_on_new_recipe else "error"
        self.record_gates = record_gates  # None: the gates the recipe switches on
        self.row_gates = row_gates
        self.extra_manifest = extra_manifest or {}
        self.failed_units: dict[str, str] = {}  # unit id -> why its calls failed (this run)
        self.seed_filter = SeedFilterRun(recipe.seed_filter)
        self.total_units = 0
        self.corpus = CorpusVersion(self.out)  # the input's seed ids (incremental runs)

    def _tokenizer(self, teacher: ChatModel):
        inner = getattr(teacher, "inner", teacher)
        tok = getattr(inner, "tokenizer", None)
        return hf_tokenizer_spans(tok) if tok is not None else regex_tokenize

    def _seed_stream(self, teacher: ChatModel, report: IngestReport, log=None,
                     seed_filter: SeedFilterRun | None = None):
        """The run's seeds, in input order (generation reads them once; a retrieval index
        another time, before generation)."""
        return iter_seeds(
            self.recipe.input, tokenize=self._tokenizer(teacher), max_tokens=self.recipe.chunking.max_tokens,
            overlap=self.recipe.chunking.overlap, min_chars=self.recipe.chunking.min_chars,
            code_extensions=set(self.recipe.code_extensions), text_column=self.recipe.text_column,
            report=report, log=log,
            # the retrieval index's own pass filters the same seeds out, without counting them twice
            seed_filter=seed_filter or SeedFilterRun(self.recipe.seed_filter),
        )

    def _retriever(self, teacher: ChatModel):
        """The BM25 index over the run's seeds (``RUN/retrieval``), when a skill retrieves or
        names the search tool: built once from its own pass over the seeds, loaded on resume."""
        if not any(s.retrieval is not None or "search" in s.answer.tools for s in self.skills):
            return None
        from agentinstruct.generate.retrieval import INDEX_FOLDER, BM25Retriever

        fingerprint = recipe_hash({"input": str(self.recipe.input), "limit": self.recipe.limit,
                                   "chunking": self.recipe.chunking.model_dump(mode="json"),
                                   "text_column": self.recipe.text_column,
                                   "code_extensions": sorted(self.recipe.code_extensions),
                                   "tokenizer": teacher.name})
        return BM25Retriever.open_or_build(
            self.out / INDEX_FOLDER,
            lambda: itertools.islice(self._seed_stream(teacher, IngestReport()), self.recipe.limit),
            fingerprint, log=self.console.print)

    def _toolboxes(self, retriever) -> dict[str, Any]:
        """The tools each skill's answers may call (``answer.tools``), by skill name."""
        from agentinstruct.generate.agent_tools import build_toolbox

        return {s.name: build_toolbox(s.answer.tools, sandbox=self.tool_sandbox, retriever=retriever)
                for s in self.skills if s.answer.tools}

    async def _run(self) -> tuple[IngestReport, int, list[ChatModel]]:
        cache = CallCache(self.out / "cache.sqlite")
        teacher = CachedChatModel(create_model(self.recipe.teacher), cache)
        judge = teacher if self.recipe.judge is None else CachedChatModel(create_model(self.recipe.judge), cache)
        journal = Journal(self.out / "records.jsonl", self.hash, self.journal_mode)
        done = journal.done_units()
        report = IngestReport()
        # not a terminal (log file, CI, Slurm): a progress line every progress_interval_s instead
        plog = generate_log(self.recipe.progress_interval_s, self.recipe.input, self.recipe.limit,
                            lambda: report.read, lambda: merged_stats(teacher, judge)["calls"])
        progress = LoggedProgress(SpinnerColumn(), TextColumn("{task.description:<12}"), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(), console=self.console,
                                  disable=not self.show_progress, transient=False, log=plog)
        bars = {s: progress.add_task(s, total=None) for s in ("seeds", *STAGES, "accepted")}

        def on_stage(stage: str, n: int = 1) -> None:
            if stage in bars:  # judge steps (check_harder, pick_best) and retrieval have no bar
                progress.advance(bars[stage], n)

        retriever = self._retriever(teacher)
        ctx = FlowContext(self.recipe, self.hash, teacher, judge, on_stage, retriever=retriever,
                          toolboxes=self._toolboxes(retriever))
        scorer = judge
        if self.record_gates is None:
            from agentinstruct.generate.gates import record_gates

            if self.recipe.gates.judge_score.enabled and self.recipe.gates.judge_score.judge:
                scorer = CachedChatModel(create_model(self.recipe.gates.judge_score.judge), cache)
            self.record_gates = record_gates(self.recipe.gates, teacher, judge, self.skills, scorer)
        models = list({id(m): m for m in (teacher, judge, scorer)}.values())
        self.budget = BudgetGuard(self.recipe.budget, self.recipe.price_per_million, models)
        admission = Admission(models, self.recipe.seeds_in_flight)
        tasks: set[asyncio.Task] = set()
        failure: list[BaseException] = []
        resumed = 0

        async def unit(seed: Seed, skill: Skill, i: int) -> UnitResult:
            res = await run_unit(ctx, seed, skill, i)
            with track_call_failures() as failed_calls:  # the gates' LLM calls count too
                await self._apply_gates(res, seed)
            res.failed_calls.extend(failed_calls)
            return res

        async def process(seed: Seed, units: list[tuple[int, Skill]]) -> None:
            started = False

            def first_call() -> None:
                nonlocal started
                started = True
                admission.first_call()

            try:
                with on_first_call(first_call):
                    results = await asyncio.gather(*(unit(seed, skill, i) for i, skill in units))
                for (_, skill), res in zip(units, results):
                    if not res.complete:
                        # a failed call is not a finished unit: not journaled, so the next run
                        # redoes it (its successful calls answered from the cache)
                        self.failed_units[unit_id(seed.id, skill.name)] = failure_reason(res.failed_calls[0])
                        continue
                    rows = [{"key": list(k), "split": ex.REJECTED if r.reject_reason else skill.split,
                             "row": r.to_row()} for k, r in res.records]
                    # defence in depth: no secret of this environment reaches the journal (and so
                    # no split, manifest, card or Hub push), whatever a model, gate or sandbox produced
                    journal.append(unit_id(seed.id, skill.name), redact_value(rows), redact_counts(res.stages),
                                   gates=redact_value(res.gates.to_json()))
                    progress.advance(bars["accepted"], res.stages["accepted"])
                progress.advance(bars["seeds"])
            except BaseException as exc:  # noqa: BLE001 - surfaced after the loop
                failure.append(exc)
            finally:
                admission.finished(started)

        seeds = self._seed_stream(teacher, report, log=lambda line: self.console.print(f"[yellow]{line}[/]"),
                                  seed_filter=self.seed_filter)
        try:
            with progress:
                for seed in itertools.islice(seeds, self.recipe.limit):
                    self.corpus.saw(seed.id)  # the export keeps only the current input's seeds
                    units = [(i, s) for i, s in enumerate(self.skills) if seed.kind in s.seed_kinds]
                    todo = [(i, s) for i, s in units if unit_id(seed.id, s.name) not in done]
                    resumed += len(units) - len(todo)
                    self.total_units += len(units)
                    if not todo:
                        progress.advance(bars["seeds"])
                        continue
                    await admission.wait()
                    if failure:
                        break
                    if self.budget.reached():  # budget: start no new seed, keep reading ids
                        self.budget.skip(len(todo))
                        continue
                    admission.admitted()
                    task = asyncio.create_task(process(seed, todo))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if tasks:
                    await asyncio.gather(*tasks)
        finally:
            journal.close()
            cache.close()
            await teacher.aclose()
            if judge is not teacher:
                await judge.aclose()
        if failure:
            raise failure[0]
        return report, resumed, [teacher, judge]

    async def _apply_gates(self, res, seed: Seed) -> GateTally:
        """Run the per-record gates on the unit's live records (each record through the gates in
        order, stopping at the first that removes it; records concurrently). The unit's counts
        go to ``res.gates`` (journaled as JSON) and are returned."""
        tally = GateTally()
        for gate in self.record_gates:
            tally.gate(gate.name)  # a gate that checked nothing still reports 0 / 0

        async def one(r: Record) -> None:
            for gate in self.record_gates:
                reason = await gate.check(r, seed)
                tally.gate(gate.name).count(r.skill, reason)
                if reason:
                    r.reject_gate, r.reject_reason = gate.name, reason
                    res.stages["accepted"] -= 1
                    return

        await asyncio.gather(*(one(r) for _, r in res.records if not r.reject_reason))
        res.gates = tally
        return tally

    def run(self, push_to_hub: str | None = None) -> RunSummary:
        start = time.monotonic()
        fresh = self.overwrite or not self.out.exists()
        prepare_run_dir(self.out, overwrite=self.overwrite)
        self.overwrite = False  # a second run() resumes
        self.failed_units, self.total_units = {}, 0
        self.seed_filter = SeedFilterRun(self.recipe.seed_filter)  # a second run() sees the seeds again
        self.corpus = CorpusVersion(self.out)
        try:
            report, resumed, models = asyncio.run(self._run())
        except Exception:
            if fresh:
                discard_unused_run_dir(self.out)
            raise
        # incremental runs: only the units of seeds in the current input are exported
        journal = self.corpus.current(Journal(self.out / "records.jsonl", self.hash))
        stages = Counter()
        tally = GateTally()
        for _, line in journal.lines():
            stages.update(line.get("stages", {}))
            tally.merge(GateTally.from_journal_line(line))  # old journals: their gate stage keys
        splits = [s.split for s in self.skills]
        staging = self.out / ".staging"
        if self.row_gates is None:
            from agentinstruct.generate.gates import row_gates

            self.row_gates = row_gates(self.recipe.gates)
        counts = ex.write_split_files(journal, staging, splits, self.row_gates)
        gates = gate_report(tally)
        for g in self.row_gates:
            gates[g.name] = g.report()
        decon = next((g.card_section() for g in self.row_gates if hasattr(g, "card_section")), None)
        dd = ex.build_dataset(staging, self.out / ".hf_cache")
        summary = RunSummary(self.out, report, counts, stages, merged_stats(*models),
                             time.monotonic() - start, resumed, gates,
                             failed_units=dict(sorted(self.failed_units.items())),
                             total_units=self.total_units, stopped=self.budget.stopped,
                             seed_filter=self.seed_filter.report())
        manifest = {
            "recipe": self.recipe.model_dump(mode="json"),
            "recipe_hash": self.hash,
            "teacher": models[0].name,
            "skills": [s.name for s in self.skills],
            "splits": list(dd.keys()),
            "input": self.recipe.input,
            "versions": package_versions(),
            "ingest": {"read": report.read, "seeds": report.seeds, "skipped": dict(report.skipped),
                       "messages": report.messages},
            "seed_filter": self.seed_filter.report(),
            "counts": {k: dict(v) for k, v in counts.items()},
            "llm": summary.llm,
            "gates": gates,
            "decontamination": decon,
            "wall_s": round(summary.wall_s, 2),
            "failed_units": summary.failure_report(),
            "dataset_version": self.corpus.section(journal.journal, {k: dict(v) for k, v in counts.items()}),
            "budget": self.budget.report(),
            "estimate": projected_vs_actual(self.out, summary.llm, self.budget.report()["cost"], summary.wall_s),
            **self.extra_manifest,
        }
        card = ex.dataset_card(manifest, counts)
        # manifest.json describes dataset/: it goes before the swap and is written last, so a
        # run killed during export never leaves a manifest next to a dataset it does not describe
        (self.out / "manifest.json").unlink(missing_ok=True)
        ex.write_outputs(dd, self.out, staging, self.recipe.formats, card)
        ex.write_text_atomic(self.out / "manifest.json", json.dumps(manifest, indent=2))
        self.corpus.committed()
        # what was made is exported first, so nothing is lost; then a run with too many
        # failed units says so (exit non-zero) instead of passing for a finished one
        message = summary.incomplete(self.recipe.max_failed_units)
        if message:
            raise UnitsFailed(message, summary)
        if push_to_hub:
            ex.push_to_hub(dd, push_to_hub, card)
        return summary


class UnitsFailed(RuntimeError):
    """Too many units had calls that failed for good; the outputs hold what was made."""

    def __init__(self, message: str, summary: RunSummary):
        super().__init__(message)
        self.summary = summary


def failure_reason(exc: LLMError) -> str:
    """The cause of a failed call without the model/URL/attempts prefix, for counting."""
    text = str(exc)
    _, sep, tail = text.partition("attempt(s): ")
    return (tail if sep else text)[:160]


def gate_report(counts: GateTally | Counter) -> dict[str, dict[str, Any]]:
    """Per-gate checked/removed/top reasons/per-skill passed share, from the run's gate tally
    (or, for an old journal, the summed stage counters that held them as strings)."""
    tally = counts if isinstance(counts, GateTally) else GateTally.from_stages(counts)
    return tally.report()
