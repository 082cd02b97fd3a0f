"""The closed loop: generate -> train -> evaluate (base and tuned) -> report, from one recipe.

Each stage writes a marker holding the hash of its inputs; a stage whose marker matches is
skipped, so a second run only redoes what changed (and a killed stage resumes on its own:
generation from its journal and call cache, training from its last checkpoint).
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import time
from html import escape as html_escape
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field
from rich.console import Console
from rich.table import Table

from agentinstruct.recipes import InputPath, StrictModel, load_recipe, resolve_path


class GenerateStep(StrictModel):
    recipe: InputPath = Field(description="a generate recipe (relative to the pipeline recipe)")
    limit: int | None = None
    skills: list[str] | None = None


class TrainStep(StrictModel):
    recipe: InputPath = Field(description="an SFT recipe; its dataset and output_dir are set by the pipeline")
    args: list[str] = Field(default_factory=list, description="extra TrlParser flags, e.g. --max_steps 20")
    accelerate_args: list[str] = Field(default_factory=lambda: ["--num_processes", "1", "--num_machines", "1",
                                                                "--mixed_precision", "no", "--dynamo_backend", "no"])


class EvaluateStep(StrictModel):
    recipe: InputPath


class PipelineRecipe(StrictModel):
    name: str
    output_dir: str
    student: str = Field("embedded:smollm2-135m-instruct", description="the base model that is fine-tuned")
    generate: GenerateStep
    train: TrainStep
    evaluate: EvaluateStep


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path) and p.is_file():
            h.update(p.read_bytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def marker_key(marker: Path) -> str | None:
    """The input hash a finished stage left in its marker (None: not run, or not finished)."""
    try:
        return json.loads(marker.read_text()).get("key")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class Pipeline:
    def __init__(self, recipe: PipelineRecipe, console: Console | None = None, show_progress: bool = True):
        self.r = recipe
        self.out = Path(recipe.output_dir)
        self.console = console or Console(stderr=True)
        self.show_progress = show_progress
        self.timings: dict[str, float] = {}

    def _stage(self, name: str, key: str, fn) -> bool:
        """Run ``fn`` unless the marker of ``name`` holds ``key``; record the wall time. The
        marker is written by a rename once ``fn`` returned, so a stage killed at any point
        (even while its marker is written) runs again."""
        marker = self.out / "markers" / f"{name}.json"
        t0 = time.monotonic()
        if marker_key(marker) == key:
            self.console.print(f"[dim]{name}: up to date, skipped[/]")
            self.timings[name] = round(time.monotonic() - t0, 1)
            return False
        self.console.print(f"[bold]{name}[/] ...")
        fn()
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_name(f"{marker.name}.tmp")
        tmp.write_text(json.dumps({"key": key}))
        tmp.replace(marker)
        self.timings[name] = round(time.monotonic() - t0, 1)
        return True

    # -- stages -----------------------------------------------------------------------------
    def generate(self) -> str:
        from agentinstruct.generate.runner import load_generate_recipe, run_generate

        recipe = load_generate_recipe(self.r.generate.recipe, output=self.out / "generate", limit=self.r.generate.limit)
        from agentinstruct.generate.skills import skill_path

        key = _digest(recipe.model_dump(mode="json"), self.r.generate.skills, *(skill_path(s) for s in recipe.skills))

        def run() -> None:
            summary = run_generate(recipe, skills=self.r.generate.skills, console=self.console,
                                   show_progress=self.show_progress, restart_on_new_recipe=True)
            Console().print(summary.table())

        self._stage("generate", key, run)
        return key

    def train(self, upstream: str) -> str:
        cfg = yaml.safe_load(Path(self.r.train.recipe).read_text())
        cfg["model_name_or_path"] = self.r.student
        cfg["dataset_mixture"] = {**cfg.get("dataset_mixture", {}),
                                  "sources": [{"path": str(self.out / "generate" / "dataset")}]}
        cfg["output_dir"] = str(self.out / "train")
        template = cfg.get("chat_template")
        if template and Path(template).suffix:  # a file next to the SFT recipe, not a shipped name
            cfg["chat_template"] = resolve_path(template, Path(self.r.train.recipe).parent)
        derived = self.out / "train_recipe.yaml"
        derived.parent.mkdir(parents=True, exist_ok=True)
        derived.write_text(yaml.safe_dump(cfg, sort_keys=False))
        key = _digest(upstream, cfg, self.r.train.args)

        def run() -> None:
            import agentinstruct.train.sft as sft

            cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", *self.r.train.accelerate_args,
                   sft.__file__, "--config", str(derived), *self.r.train.args]
            self.console.print("[dim]$ " + " ".join(cmd) + "[/]")
            proc = subprocess.run(cmd)
            if proc.returncode != 0:
                raise RuntimeError(f"training failed (exit {proc.returncode}): {' '.join(cmd)}")

        self._stage("train", key, run)
        return key

    def evaluate(self, upstream: str) -> tuple[Path, Path]:
        from agentinstruct.evaluate.suite import load_eval_recipe, run_eval
        from agentinstruct.llm import ModelSpec

        recipe = load_eval_recipe(self.r.evaluate.recipe)
        eval_dir = self.out / "eval"
        base_spec = ModelSpec.from_string(self.r.student)
        trained = self.out / "train"  # a LoRA adapter, or a whole model after full fine-tuning
        full_model = not (trained / "adapter_config.json").is_file() and (trained / "config.json").is_file()
        tuned_spec = base_spec.model_copy(update={"model": str(trained)} if full_model else {"adapter": str(trained)})
        files = [Path(p) for p in (*(recipe.heldout.files() if recipe.heldout else ()),
                                   *(t.local for t in recipe.lm_eval.tasks), recipe.alpaca_eval.instructions) if p]
        ekey = _digest(recipe.model_dump(mode="json"), *files)
        self._stage("evaluate base", _digest(ekey, self.r.student),
                    lambda: run_eval(recipe, base_spec, run_name="base", output_dir=eval_dir))
        self._stage("evaluate tuned", _digest(ekey, upstream),
                    lambda: run_eval(recipe, tuned_spec, run_name="tuned", output_dir=eval_dir))
        return eval_dir / "base", eval_dir / "tuned"

    def report(self, base: Path, tuned: Path) -> tuple[Path, Path]:
        from agentinstruct.evaluate.report import write_report

        t0 = time.monotonic()
        sections = [dataset_section(self.out / "generate"), training_section(self.out / "train"),
                    heldout_section(base, tuned)]
        lift = heldout_lift(base, tuned)  # the headline: the test part's verdict
        md, html = write_report([base, tuned], self.out / "report", f"{self.r.name}: base vs tuned student",
                                [s for s in sections if s is not None] + [timings_section(self.timings)],
                                headline=lift["sentence"] if lift else None)
        self.timings["report"] = round(time.monotonic() - t0, 1)
        return md, html

    def run(self) -> dict[str, Any]:
        start = time.monotonic()
        g = self.generate()
        t = self.train(g)
        base, tuned = self.evaluate(t)
        md, html = self.report(base, tuned)
        total = round(time.monotonic() - start, 1)
        (self.out / "timings.json").write_text(json.dumps({**self.timings, "total": total}, indent=2))
        table = Table(title=f"pipeline {self.r.name}: wall time per stage")
        table.add_column("stage")
        table.add_column("seconds", justify="right")
        for k, v in self.timings.items():
            table.add_row(k, f"{v:.1f}")
        table.add_row("[bold]total[/]", f"{total:.1f}")
        Console().print(table)
        lift = heldout_lift(base, tuned)
        if lift:
            Console().print(lift["sentence"])
        Console().print(f"report: {md} and {html}")
        return {"report_md": md, "report_html": html, "timings": self.timings, "total_s": total, "lift": lift}


# -- report sections ----------------------------------------------------------------------------
def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def dataset_section(gen_dir: Path):
    from agentinstruct.evaluate.report import Section

    path = gen_dir / "manifest.json"
    if not path.exists():
        return None
    m = json.loads(path.read_text())
    rows = [(s, c.get("accepted", 0), c.get("rejected", 0)) for s, c in m["counts"].items() if not s.startswith("_")]
    gates = m.get("gates", {})
    md = [f"Teacher `{m['teacher']}`, {m['ingest']['seeds']} seeds, LLM calls {m['llm']['calls']} "
          f"(+{m['llm']['cache_hits']} answered from the call cache), "
          f"tokens in/out {m['llm']['prompt_tokens']}/{m['llm']['completion_tokens']}.", "",
          "| split | accepted | rejected |", "|---|---|---|"] + [f"| {s} | {a} | {r} |" for s, a, r in rows]
    md += ["", "| gate | checked | removed |", "|---|---|---|"] + \
          [f"| {g} | {v['checked']} | {v['removed']} |" for g, v in gates.items()]
    html = "<table><tr><th>split</th><th>accepted</th><th>rejected</th></tr>" + "".join(
        f"<tr><td>{s}</td><td>{a}</td><td>{r}</td></tr>" for s, a, r in rows) + "</table>"
    html += "<table><tr><th>gate</th><th>checked</th><th>removed</th></tr>" + "".join(
        f"<tr><td>{g}</td><td>{v['checked']}</td><td>{v['removed']}</td></tr>" for g, v in gates.items()) + "</table>"
    return Section("Generated dataset", "\n".join(md), f"<p>{md[0]}</p>{html}")


def training_section(train_dir: Path):
    from agentinstruct.evaluate.report import Section

    state = train_dir / "trainer_state.json"
    if not state.exists():
        return None
    hist = [h for h in json.loads(state.read_text())["log_history"] if "loss" in h]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([h["step"] for h in hist], [h["loss"] for h in hist], marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("Training curve")
    fig.tight_layout()
    png = _png(fig)
    first, last = (hist[0]["loss"], hist[-1]["loss"]) if hist else (None, None)
    md = f"{len(hist)} logged steps; loss {first:.3f} -> {last:.3f}.\n\n![training curve](training_curve.png)" \
        if hist else "no logged steps"
    return Section("Training curve", md, f"<p>{md.splitlines()[0]}</p>{{{{img:training_curve.png}}}}",
                   {"training_curve.png": png})


def _heldout_parts(run: Path) -> dict[str, dict[str, Any]]:
    """part -> held-out score of one run (empty when the run has no held-out scores)."""
    try:
        scores = json.loads((run / "results.json").read_text())["scores"]
    except FileNotFoundError:
        return {}
    return {s["part"]: s for s in scores.values() if s.get("metric") == "accuracy" and "part" in s}


def _part_lift(part: str, b: dict[str, Any], t: dict[str, Any]) -> dict[str, Any]:
    from agentinstruct.evaluate.heldout import paired_bootstrap

    if len(b["correct"]) != len(t["correct"]):
        raise ValueError(f"held-out part {part!r}: base has {len(b['correct'])} questions, tuned "
                         f"{len(t['correct'])}; the runs are not paired (re-run both evaluations)")
    diff, lo, hi = paired_bootstrap(b["correct"], t["correct"])
    supported = lo > 0

    def one(s: dict[str, Any]) -> str:
        failed = f", {s['failed']} failed calls counted wrong" if s.get("failed") else ""
        return (f"{s['value']:.1%} ({sum(s['correct'])}/{s['n']}, 95% CI {s['ci95'][0]:.1%}-{s['ci95'][1]:.1%}"
                f"{failed})")

    if b.get("role") == "test":
        label = f"Held-out accuracy, {part} part (written after tuning; nothing was chosen by it)"
        verdict = "a lift the interval supports." if supported else "the interval includes zero, so no lift is claimed."
    else:
        label = (f"Held-out accuracy, {part} part (the tuning set: the settings were chosen by this score, "
                 "so it is optimistic and is not the reported result)")
        verdict = "shown for reference only."
    sentence = (f"{label}: base {one(b)}, tuned {one(t)}. Difference {diff:+.1%} "
                f"(paired bootstrap 95% CI {lo:+.1%} to {hi:+.1%}): {verdict}")
    return {"part": part, "base": b, "tuned": t, "diff": diff, "ci": [lo, hi], "supported": supported,
            "sentence": sentence}


def heldout_lift(base: Path, tuned: Path) -> dict[str, Any] | None:
    """The verdict on the reported (test) part, with the tuning (dev) parts under ``dev``;
    None when the runs have no reported held-out part."""
    b, t = _heldout_parts(base), _heldout_parts(tuned)
    shared = [p for p in b if p in t]
    report = next((p for p in shared if b[p].get("role") == "test"), None)
    if report is None:
        return None
    return {**_part_lift(report, b[report], t[report]),
            "dev": [_part_lift(p, b[p], t[p]) for p in shared if p != report]}


FAILED_CALLS_RULE = ("A failed model call counts as a wrong answer: accuracy is over every question asked, "
                     "and the failures are shown.")


def heldout_section(base: Path, tuned: Path):
    from agentinstruct.evaluate.report import Section

    lift = heldout_lift(base, tuned)
    if lift is None:
        return None
    sentences = [lift["sentence"], *(d["sentence"] for d in lift["dev"]), FAILED_CALLS_RULE]
    return Section(f"Held-out document questions (measured lift, {lift['part']} part)", "\n\n".join(sentences),
                   "".join(f"<p>{html_escape(x)}</p>" for x in sentences))


def timings_section(timings: dict[str, float]):
    from agentinstruct.evaluate.report import Section

    md = "| stage | seconds |\n|---|---|\n" + "\n".join(f"| {k} | {v:.1f} |" for k, v in timings.items())
    html = "<table>" + "".join(f"<tr><td>{k}</td><td>{v:.1f}</td></tr>" for k, v in timings.items()) + "</table>"
    return Section("Wall time per stage", md, html)


def load_pipeline_recipe(path: str | Path) -> PipelineRecipe:
    return load_recipe(path, PipelineRecipe)
