"""``agentinstruct estimate``: what a run will cost before it is paid for.

It runs the recipe's flows (every skill, its gates' LLM calls included) on a small sample of
seeds spread over the input, counts calls and tokens per skill, and projects them onto the
whole input (seeds counted by one streaming pass over ingest, nothing sent anywhere):

* **scripted** (default, unless the teacher is the embedded model): every model the recipe
  calls is pointed at the package's scripted OpenAI-compatible server
  (``agentinstruct.testing.FaultServer``, no faults, no latency). Prompts are the real
  prompts (their later steps hold the scripted replies of earlier ones), so prompt tokens are
  indicative (about 4 characters a token); completions are synthetic, so completion tokens are
  projected from each call's ``max_tokens`` cap: an **upper bound**. Wall time uses an assumed
  latency per call (recipe ``estimate.latency_s`` or ``--latency``).
* **embedded**: the recipe's teacher is the embedded model; the sample runs on it for real.
* **live** (``--live``): against the real teacher (and judge): real tokens, real cost. The
  sample runs one call at a time so wall time / calls measures the latency per call.

Wall time for the whole input = calls x latency / concurrency (the teacher's
``max_concurrency``; with ``auto`` its ``initial_concurrency``, a lower bound of what AIMD
reaches), and no less than the teacher's ``requests_per_minute`` / ``tokens_per_minute``
allow. Cost comes from the recipe's ``price_per_million``.

``--output RUN`` writes the projection to ``RUN/estimate.json`` (the run folder is created
and marked as agentinstruct's); a later ``generate`` into that folder shows projected vs actual
in its manifest and dataset card. Without it the card shows the actuals only (a projection is
never computed behind the user's back: it would spend calls).
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agentinstruct.generate.config import GenerateRecipe
from agentinstruct.generate.ingest import IngestReport, iter_seeds, regex_tokenize
from rich.console import Console
from rich.table import Table

from agentinstruct.llm.base import ModelSpec
from agentinstruct.llm.limits import estimate_tokens
from agentinstruct.records import Seed

ESTIMATE_FILE = "estimate.json"
Mode = Literal["scripted", "embedded", "live"]
SCRIPTED_NOTE = ("scripted server: prompt tokens come from the real prompts (about 4 characters a "
                 "token; later steps carry scripted replies); completions are synthetic, so completion "
                 "tokens are each call's max_tokens cap (an upper bound) and wall time uses an assumed "
                 "latency; run with --live for measured figures")


@dataclass
class SkillSample:
    """One skill's calls on the sample, and per unit (seed) of it."""

    units: int = 0  # sample units run
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = 0.0

    def per_unit(self, what: str) -> float:
        return getattr(self, what) / self.units if self.units else 0.0


@dataclass
class Estimate:
    mode: Mode
    input: str
    seeds: int
    seeds_by_kind: dict[str, int]
    sample_seeds: int
    skills: dict[str, dict[str, Any]]
    total: dict[str, Any]
    latency_s: float
    latency_basis: str
    concurrency: int
    completion_basis: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def table(self) -> Table:
        t = Table(title=f"agentinstruct estimate ({self.mode}) for {self.input}")
        for col in ("skill", "units", "calls", "prompt tokens", "completion tokens", "cost"):
            t.add_column(col, justify="left" if col == "skill" else "right")
        for name, s in [*self.skills.items(), ("total", self.total)]:
            t.add_row(f"[bold]{name}[/]" if name == "total" else name, str(s.get("units", "")),
                      f"{s['calls']:,}", f"{s['prompt_tokens']:,}", f"{s['completion_tokens']:,}",
                      _money(s["cost"]))
        return t

    def lines(self) -> list[str]:
        return [f"seeds: {self.seeds} ({', '.join(f'{k}: {n}' for k, n in self.seeds_by_kind.items())}); "
                f"sample: {self.sample_seeds} seed(s), spread over the input",
                f"wall time: {_hours(self.total['wall_s'])} at concurrency {self.concurrency}, "
                f"latency {self.latency_s:.2f} s per call ({self.latency_basis})",
                f"completion tokens: {self.completion_basis}", *self.notes]


def _money(cost: float | None) -> str:
    return "no price" if cost is None else f"{cost:,.4f}"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def mode_for(recipe: GenerateRecipe, live: bool) -> Mode:
    if live:
        return "live"
    t = recipe.teacher
    return "embedded" if t.backend == "transformers" and t.model.startswith("embedded:") else "scripted"


def count_seeds(recipe: GenerateRecipe) -> tuple[Counter, IngestReport]:
    """Seeds of the whole input by kind: one streaming pass, nothing kept but counts (chunked
    with the word tokenizer an API teacher's run uses; a local teacher's own tokenizer cuts
    slightly different chunks)."""
    report = IngestReport()
    kinds: Counter = Counter()
    for i, seed in enumerate(_seeds(recipe, report)):
        if recipe.limit is not None and i >= recipe.limit:
            break
        kinds[seed.kind] += 1
    return kinds, report


def _seeds(recipe: GenerateRecipe, report: IngestReport):
    from agentinstruct.generate.seed_filter import SeedFilterRun

    return iter_seeds(recipe.input, tokenize=regex_tokenize, max_tokens=recipe.chunking.max_tokens,
                      overlap=recipe.chunking.overlap, min_chars=recipe.chunking.min_chars,
                      code_extensions=set(recipe.code_extensions), text_column=recipe.text_column,
                      report=report, seed_filter=SeedFilterRun(recipe.seed_filter))


def sample_seeds(recipe: GenerateRecipe, kinds: Counter, n: int) -> list[Seed]:
    """Up to ``n`` seeds of each kind, evenly spread over the input (not just its first file)."""
    picks = {k: {round(i * total / min(n, total)) for i in range(min(n, total))} for k, total in kinds.items()}
    seen: Counter = Counter()
    out = []
    for seed in _seeds(recipe, IngestReport()):
        if seen[seed.kind] in picks.get(seed.kind, ()):
            out.append(seed)
        seen[seed.kind] += 1
    return out


def write_sample(seeds: list[Seed], folder: Path, code_extensions: list[str]) -> None:
    """The sample as files the run reads back as the same seeds (a code seed keeps its suffix,
    so it stays a code seed; each is one chunk already)."""
    folder.mkdir(parents=True)
    for i, seed in enumerate(seeds):
        suffix = Path(seed.source).suffix
        ext = suffix if seed.kind == "code" and suffix in code_extensions else ".txt"
        (folder / f"{i:05d}{ext}").write_text(seed.text, encoding="utf-8")


def scripted_spec(spec: ModelSpec, base_url: str) -> ModelSpec:
    """The same model name, served by the scripted server (so prices still apply to it)."""
    return ModelSpec(backend="openai", base_url=base_url, model=spec.model, max_concurrency=16,
                     max_retries=1, backoff_base_s=0.01, timeout_s=60, structured_output="json_schema")


def sample_recipe(recipe: GenerateRecipe, input_dir: Path, output: Path, base_url: str | None,
                  mode: Mode) -> GenerateRecipe:
    """The recipe for one skill's sample run: the sample as input, a scratch output, every
    model redirected to the scripted server (scripted mode) or run one call at a time (live,
    to measure latency); decontamination off (it makes no LLM call and loads benchmark sets)."""
    update: dict[str, Any] = {"input": str(input_dir), "output": str(output), "limit": None,
                              "formats": [], "budget": {}}
    gates = recipe.gates.model_copy(deep=True)
    gates.decontamination.enabled = False
    if base_url is not None:
        update["teacher"] = scripted_spec(recipe.teacher, base_url)
        update["judge"] = scripted_spec(recipe.judge, base_url) if recipe.judge else None
        if gates.judge_score.judge is not None:
            gates.judge_score.judge = scripted_spec(gates.judge_score.judge, base_url)
    elif mode == "live":
        update["teacher"] = recipe.teacher.model_copy(update={"max_concurrency": 1})
        update["seeds_in_flight"] = 1
    update["gates"] = gates
    data = recipe.model_dump(mode="python")
    data.update(update)
    return GenerateRecipe.model_validate(data)


def _cost(recipe: GenerateRecipe, by_model: dict[str, tuple[int, int]]) -> float | None:
    from agentinstruct.generate.budget import token_cost

    total = 0.0
    for model, (prompt, completion) in by_model.items():
        part = token_cost(recipe.price_per_million, model, prompt, completion)
        if part is None:
            return None
        total += part
    return total


def run_sample(recipe: GenerateRecipe, seeds: list[Seed], skills: list, mode: Mode,
               work: Path) -> tuple[dict[str, SkillSample], float | None]:
    """Each skill's calls and tokens on the sample; with live/embedded also the measured
    seconds per call."""
    from agentinstruct.generate.engine import GenerationRun

    sample_dir = work / "sample"
    write_sample(seeds, sample_dir, recipe.code_extensions)
    server = None
    if mode == "scripted":
        from agentinstruct.testing.fault_server import FaultConfig, FaultServer

        server = FaultServer(FaultConfig()).start()
    out: dict[str, SkillSample] = {}
    wall = calls = 0.0
    try:
        for skill in skills:
            units = sum(1 for s in seeds if s.kind in skill.seed_kinds)
            res = SkillSample(units=units)
            out[skill.name] = res
            if not units:
                continue
            before = len(server.requests) if server else 0
            rec = sample_recipe(recipe, sample_dir, work / f"run-{skill.name}",
                                server.base_url if server else None, mode)
            run = GenerationRun(rec, skills=[skill.name], show_progress=False,
                                console=Console(stderr=True, quiet=True))
            summary = run.run()
            if server is not None:  # what the server was asked: real prompts, max_tokens caps
                by_model: dict[str, list[int]] = {}
                for body in server.requests[before:]:
                    p = sum(estimate_tokens(str(m.get("content") or "")) for m in body.get("messages", []))
                    c = int(body.get("max_tokens") or body.get("max_completion_tokens") or 0)
                    acc = by_model.setdefault(body.get("model", rec.teacher.model), [0, 0])
                    acc[0] += p
                    acc[1] += c
                res.calls = len(server.requests) - before
                res.prompt_tokens = sum(v[0] for v in by_model.values())
                res.completion_tokens = sum(v[1] for v in by_model.values())
                res.cost = _cost(recipe, {k: (v[0], v[1]) for k, v in by_model.items()})
            else:  # measured; every token priced as the teacher's
                llm = summary.llm
                res.calls = llm["calls"]
                res.prompt_tokens, res.completion_tokens = llm["prompt_tokens"], llm["completion_tokens"]
                res.cost = _cost(recipe, {recipe.teacher.model: (res.prompt_tokens, res.completion_tokens)})
                wall += summary.wall_s
                calls += llm["calls"]
    finally:
        if server is not None:
            server.stop()
    return out, (wall / calls if calls else None)


def concurrency_of(spec: ModelSpec) -> int:
    return spec.max_concurrency if isinstance(spec.max_concurrency, int) else spec.initial_concurrency


def project(recipe: GenerateRecipe, kinds: Counter, skills: list, sample: dict[str, SkillSample],
            latency_s: float) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    per_skill: dict[str, dict[str, Any]] = {}
    total: dict[str, Any] = {"units": 0, "calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0}
    for skill in skills:
        s = sample[skill.name]
        units = sum(n for k, n in kinds.items() if k in skill.seed_kinds)
        row = {"units": units, "sample_units": s.units,
               **{w: round(s.per_unit(w) * units) for w in ("calls", "prompt_tokens", "completion_tokens")},
               "cost": None if s.cost is None else round(s.cost / s.units * units, 6) if s.units else 0.0}
        per_skill[skill.name] = row
        for w in ("units", "calls", "prompt_tokens", "completion_tokens"):
            total[w] += row[w]
        total["cost"] = None if total["cost"] is None or row["cost"] is None else round(total["cost"] + row["cost"], 6)
    t = recipe.teacher
    wall = total["calls"] * latency_s / concurrency_of(t)
    if t.requests_per_minute:
        wall = max(wall, total["calls"] / t.requests_per_minute * 60)
    if t.tokens_per_minute:
        wall = max(wall, (total["prompt_tokens"] + total["completion_tokens"]) / t.tokens_per_minute * 60)
    total["wall_s"] = round(wall, 1)
    return per_skill, total


def estimate(recipe: GenerateRecipe, *, sample: int | None = None, live: bool = False,
             latency_s: float | None = None, skills: list[str] | None = None) -> Estimate:
    from agentinstruct.generate.skills import load_skill, select_skills

    mode = mode_for(recipe, live)
    loaded = select_skills([load_skill(s) for s in recipe.skills], skills)
    n = sample or recipe.estimate.sample
    kinds, report = count_seeds(recipe)
    if not kinds:
        skipped = ", ".join(f"{r}: {k}" for r, k in report.skipped.most_common(3))
        raise ValueError(f"input {recipe.input}: 0 seeds ({report.read} input(s) read"
                         + (f"; skipped {skipped})" if skipped else ")") + "; nothing to estimate")
    seeds = sample_seeds(recipe, kinds, n)
    with tempfile.TemporaryDirectory(prefix="agentinstruct-estimate-") as tmp:
        measured, per_call = run_sample(recipe, seeds, loaded, mode, Path(tmp))
    if mode != "scripted" and per_call is not None and latency_s is None:
        latency, basis = per_call, "measured on the sample, one call at a time" if mode == "live" else \
            "measured on the embedded model (sample wall time / calls)"
    else:
        latency = latency_s if latency_s is not None else recipe.estimate.latency_s
        basis = "assumed (--latency)" if latency_s is not None else "assumed (recipe estimate.latency_s)"
    per_skill, total = project(recipe, kinds, loaded, measured, latency)
    notes = [SCRIPTED_NOTE] if mode == "scripted" else []
    if total["cost"] is None:
        notes.append(f"cost: no price_per_million entry for {recipe.teacher.model!r} (or another model called)")
    if mode != "scripted" and recipe.judge is not None:
        notes.append("cost: the judge's tokens are priced at the teacher's price")
    return Estimate(mode=mode, input=str(recipe.input), seeds=sum(kinds.values()), seeds_by_kind=dict(kinds),
                    sample_seeds=len(seeds), skills=per_skill, total=total, latency_s=round(latency, 4),
                    latency_basis=basis, concurrency=concurrency_of(recipe.teacher),
                    completion_basis="max_tokens cap of each call (upper bound; completions were scripted)"
                    if mode == "scripted" else "measured", notes=notes)


def save(est: Estimate, run_dir: Path) -> Path:
    """``RUN/estimate.json``, in a run folder generate accepts (created and marked if new)."""
    from agentinstruct.generate.export import write_text_atomic
    from agentinstruct.generate.rundir import check_output, prepare_run_dir

    check_output(run_dir, est.input, overwrite=False, force=False)
    prepare_run_dir(run_dir, overwrite=False)
    path = run_dir / ESTIMATE_FILE
    write_text_atomic(path, json.dumps(est.to_json(), indent=2))
    return path


def projected_vs_actual(out: Path, llm: dict[str, int], cost: float | None, wall_s: float) -> dict[str, Any]:
    """The manifest's ``estimate``: this invocation's actual calls/tokens/cost/wall time, next to
    the projection ``estimate --output`` stored in the run folder (None when there is none)."""
    path = out / ESTIMATE_FILE
    projected = None
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            projected = {"mode": data["mode"], **data["total"]}
        except (json.JSONDecodeError, KeyError):
            projected = None
    actual = {"calls": llm.get("calls", 0), "prompt_tokens": llm.get("prompt_tokens", 0),
              "completion_tokens": llm.get("completion_tokens", 0), "cost": cost, "wall_s": round(wall_s, 1)}
    return {"projected": projected, "actual": actual}


def card_lines(section: dict[str, Any] | None, budget: dict[str, Any] | None) -> list[str]:
    """The dataset card's ``## Cost`` section: projected vs actual, and the budget's verdict."""
    if not section:
        return []
    a, p = section["actual"], section.get("projected")
    lines = ["", "## Cost", "", "| | calls | prompt tokens | completion tokens | cost | wall time |",
             "|---|---|---|---|---|---|"]
    if p:
        lines.append(f"| projected ({p['mode']}) | {p['calls']} | {p['prompt_tokens']} | {p['completion_tokens']} | "
                     f"{_money(p.get('cost'))} | {_hours(p.get('wall_s', 0))} |")
    lines.append(f"| actual (this run) | {a['calls']} | {a['prompt_tokens']} | {a['completion_tokens']} | "
                 f"{_money(a.get('cost'))} | {_hours(a['wall_s'])} |")
    if not p:
        lines += ["", "No projection: run `agentinstruct estimate --output RUN` before generating to see one."]
    if budget and budget.get("stopped"):
        lines += ["", f"**{budget['stopped']}**: {budget['units_not_started']} unit(s) not started; "
                  "rerun with a larger budget to continue."]
    return lines
