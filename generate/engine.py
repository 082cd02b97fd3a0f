"""The generation engine: one async pipeline over a stream of seeds.

Seeds are read lazily; at most ``seeds_in_flight`` seeds are being worked on, and inside
them every flow step runs concurrently, bounded by the models' own limits, so a seed can be
answering while another is transforming. Finished (seed, skill) units go to the journal at
once; LLM calls go to the call cache. A killed run started again with the same command
continues where it stopped and yields the same records.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agentinstruct.generate import export as ex
from agentinstruct.generate.config import GenerateRecipe
from agentinstruct.generate.flows import FlowContext, run_unit
from agentinstruct.generate.ingest import IngestReport, hf_tokenizer_spans, iter_seeds, regex_tokenize
from agentinstruct.generate.journal import Journal, unit_id
from agentinstruct.generate.skills import Skill, load_skill, select_skills
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from agentinstruct.cache import CachedChatModel, CallCache
from agentinstruct.llm import ChatModel, LLMStats, create_model
from agentinstruct.provenance import package_versions
from agentinstruct.recipes import recipe_hash
from agentinstruct.records import Record, Seed

STAGES = ("transform", "instruction", "suggest", "edit", "answer")
# recipe fields that change where or how fast a run goes, not which records it makes
RUN_ONLY_FIELDS = {"output", "input", "limit", "formats", "seeds_in_flight", "teacher", "judge"}


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

    def accepted(self, split: str) -> int:
        return self.counts.get(split, Counter())["accepted"]

    def table(self) -> Table:
        t = Table(title=f"agentinstruct generate -> {self.output}")
        t.add_column("what")
        t.add_column("value", justify="right")
        t.add_row("inputs read", str(self.ingest.read))
        t.add_row("seeds", str(self.ingest.seeds))
        t.add_row("inputs skipped", ", ".join(f"{r}: {n}" for r, n in self.ingest.skipped.items()) or "0")
        t.add_row("units resumed from journal", str(self.resumed_units))
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
        restart_on_new_recipe: bool = False,
        record_gates: list[RecordGate] | None = None,
        row_gates: list[RowGate] | None = None,
        extra_manifest: dict[str, Any] | None = None,
    ):
        self.recipe = recipe
        self.skills: list[Skill] = select_skills([load_skill(s) for s in recipe.skills], skills)
        self.console = console or Console(stderr=True)
        self.show_progress = show_progress
        self.out = Path(recipe.output)
        self.hash = recipe_hash({
            "recipe": recipe.model_dump(mode="json", exclude=RUN_ONLY_FIELDS),
            "teacher": recipe.teacher.identity(),
            "judge": recipe.judge.identity() if recipe.judge else None,
            "skills": [s.model_dump(mode="json") for s in self.skills],
        })
        if overwrite and self.out.exists():
            shutil.rmtree(self.out)
        # keep the call cache but start a new journal when the recipe changed (the pipeline)
        self.journal_mode = "archive" if restart_on_new_recipe else "error"
        self.record_gates = record_gates  # None: the gates the recipe switches on
        self.row_gates = row_gates
        self.extra_manifest = extra_manifest or {}

    def _tokenizer(self, teacher: ChatModel):
        inner = getattr(teacher, "inner", teacher)
        tok = getattr(inner, "tokenizer", None)
        return hf_tokenizer_spans(tok) if tok is not None else regex_tokenize

    async def _run(self) -> tuple[IngestReport, int, list[ChatModel]]:
        cache = CallCache(self.out / "cache.sqlite")
        teacher = CachedChatModel(create_model(self.recipe.teacher), cache)
        judge = teacher if self.recipe.judge is None else CachedChatModel(create_model(self.recipe.judge), cache)
        journal = Journal(self.out / "records.jsonl", self.hash, self.journal_mode)
        done = journal.done_units()
        report = IngestReport()
        progress = Progress(SpinnerColumn(), TextColumn("{task.description:<12}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), console=self.console,
                            disable=not self.show_progress, transient=False)
        bars = {s: progress.add_task(s, total=None) for s in ("seeds", *STAGES, "accepted")}

        def on_stage(stage: str, n: int = 1) -> None:
            progress.advance(bars[stage], n)

        ctx = FlowContext(self.recipe, self.hash, teacher, judge, on_stage)
        if self.record_gates is None:
            from agentinstruct.generate.gates import record_gates

            scorer = judge
            if self.recipe.gates.judge_score.enabled and self.recipe.gates.judge_score.judge:
                scorer = CachedChatModel(create_model(self.recipe.gates.judge_score.judge), cache)
            self.record_gates = record_gates(self.recipe.gates, teacher, judge, self.skills, scorer)
        sem = asyncio.Semaphore(self.recipe.seeds_in_flight)
        tasks: set[asyncio.Task] = set()
        failure: list[BaseException] = []
        resumed = 0

        async def process(seed: Seed, units: list[tuple[int, Skill]]) -> None:
            try:
                results = await asyncio.gather(*(run_unit(ctx, seed, skill, i) for i, skill in units))
                for (_, skill), res in zip(units, results):
                    await self._apply_gates(res, seed)
                    rows = [{"key": k, "split": ex.REJECTED if r.reject_reason else skill.split,
                             "row": r.to_row()} for k, r in res.records]
                    journal.append(unit_id(seed.id, skill.name), rows, dict(res.stages))
                    progress.advance(bars["accepted"], res.stages["accepted"])
                progress.advance(bars["seeds"])
            except BaseException as exc:  # noqa: BLE001 - surfaced after the loop
                failure.append(exc)
            finally:
                sem.release()

        seeds = iter_seeds(
            self.recipe.input, tokenize=self._tokenizer(teacher), max_tokens=self.recipe.chunking.max_tokens,
            overlap=self.recipe.chunking.overlap, min_chars=self.recipe.chunking.min_chars,
            code_extensions=set(self.recipe.code_extensions), text_column=self.recipe.text_column,
            report=report, log=lambda line: self.console.print(f"[yellow]{line}[/]"),
        )
        try:
            with progress:
                for seed in itertools.islice(seeds, self.recipe.limit):
                    units = [(i, s) for i, s in enumerate(self.skills) if seed.kind in s.seed_kinds]
                    todo = [(i, s) for i, s in units if unit_id(seed.id, s.name) not in done]
                    resumed += len(units) - len(todo)
                    if not todo:
                        progress.advance(bars["seeds"])
                        continue
                    await sem.acquire()
                    if failure:
                        break
                    task = asyncio.create_task(process(seed, todo))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if tasks:
                    await asyncio.gather(*tasks)
        finally:
            journal.close()
            await teacher.aclose()
            if judge is not teacher:
                await judge.aclose()
        if failure:
            raise failure[0]
        return report, resumed, [teacher, judge]

    async def _apply_gates(self, res, seed: Seed) -> None:
        for gate in self.record_gates:
            live = [(k, r) for k, r in res.records if not r.reject_reason]
            verdicts = await asyncio.gather(*(gate.check(r, seed) for _, r in live))
            res.stages[f"gate:{gate.name}:checked"] += len(live)
            for (_, r), reason in zip(live, verdicts):
                res.stages[f"gate:{gate.name}:skill:{r.skill}|checked"] += 1
                if reason:
                    res.stages[f"gate:{gate.name}:skill:{r.skill}|removed"] += 1
                    r.reject_gate, r.reject_reason = gate.name, reason
                    res.stages[f"gate:{gate.name}:removed"] += 1
                    res.stages[f"gate:{gate.name}:reason:{ex.reason_class(reason)}"] += 1
                    res.stages["accepted"] -= 1

    def run(self, push_to_hub: str | None = None) -> RunSummary:
        start = time.monotonic()
        self.out.mkdir(parents=True, exist_ok=True)
        report, resumed, models = asyncio.run(self._run())
        journal = Journal(self.out / "records.jsonl", self.hash)
        stages = Counter()
        for _, line in journal.lines():
            stages.update(line.get("stages", {}))
        splits = [s.split for s in self.skills]
        staging = self.out / ".staging"
        if self.row_gates is None:
            from agentinstruct.generate.gates import row_gates

            self.row_gates = row_gates(self.recipe.gates)
        counts = ex.write_split_files(journal, staging, splits, self.row_gates)
        gates = gate_report(stages)
        for g in self.row_gates:
            gates[g.name] = g.report()
        decon = next((g.card_section() for g in self.row_gates if hasattr(g, "card_section")), None)
        dd = ex.build_dataset(staging, self.out / ".hf_cache")
        summary = RunSummary(self.out, report, counts, stages, merged_stats(*models),
                             time.monotonic() - start, resumed, gates)
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
            "counts": {k: dict(v) for k, v in counts.items()},
            "llm": summary.llm,
            "gates": gates,
            "decontamination": decon,
            "wall_s": round(summary.wall_s, 2),
            **self.extra_manifest,
        }
        ex.write_outputs(dd, self.out, staging, self.recipe.formats)
        card = ex.dataset_card(manifest, counts)
        (self.out / "dataset" / "README.md").write_text(card, encoding="utf-8")
        (self.out / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if push_to_hub:
            ex.push_to_hub(dd, push_to_hub, card)
        return summary


def gate_report(stages: Counter) -> dict[str, dict[str, Any]]:
    """Per-gate checked/removed/top reasons from the unit counters of the journal."""
    gates: dict[str, dict[str, Any]] = {}
    for key, n in stages.items():
        if not key.startswith("gate:"):
            continue
        _, name, what, *rest = key.split(":", 3)
        g = gates.setdefault(name, {"checked": 0, "removed": 0, "reasons": Counter(), "by_skill": {}})
        if what == "reason":
            g["reasons"][rest[0]] += n
        elif what == "skill":
            skill, kind = rest[0].split("|")
            g["by_skill"].setdefault(skill, {"checked": 0, "removed": 0})[kind] += n
        else:
            g[what] += n
    for g in gates.values():
        g["reasons"] = dict(g["reasons"].most_common(5))
        for c in g["by_skill"].values():  # e.g. the grounded share of each skill
            c["passed_share"] = round(1 - c["removed"] / c["checked"], 3) if c["checked"] else None
    return gates
