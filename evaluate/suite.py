"""One evaluation run: every enabled benchmark on one model -> ``RUN_DIR/results.json`` plus
per-sample logs under ``RUN_DIR/samples/``."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from agentinstruct.evaluate.config import EvalRecipe
from agentinstruct.evaluate.parts import PartLedger

from agentinstruct.llm import ChatModel, ModelSpec, create_model
from agentinstruct.outdir import check_writable_dir
from agentinstruct.provenance import package_versions
from agentinstruct.recipes import load_recipe


def load_eval_recipe(path: str | Path) -> EvalRecipe:
    return load_recipe(path, EvalRecipe)


def chat_template_hash(spec: ModelSpec) -> str | None:
    if spec.backend not in ("transformers", "vllm"):
        return None
    from transformers import AutoTokenizer

    from agentinstruct.embedded import resolve_model_path

    try:
        tok = AutoTokenizer.from_pretrained(spec.adapter or resolve_model_path(spec.model))
    except OSError:
        tok = AutoTokenizer.from_pretrained(resolve_model_path(spec.model))
    template = tok.chat_template if isinstance(tok.chat_template, str) else json.dumps(tok.chat_template)
    return hashlib.sha256((template or "").encode()).hexdigest()[:16]


def default_run_name(spec: ModelSpec) -> str:
    name = spec.display_name().replace("embedded:", "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[-60:] or "model"


def run_eval(
    recipe: EvalRecipe,
    model: ModelSpec,
    *,
    run_name: str | None = None,
    output_dir: str | Path | None = None,
    chat_model: ChatModel | None = None,
    lm: Any = None,
    judge: ChatModel | None = None,
) -> Path:
    """Run the suite; ``chat_model``/``lm``/``judge`` replace the models built from the specs
    (the tests use this to feed fixed outputs with known scores)."""
    run_dir = Path(output_dir or recipe.output_dir) / (run_name or default_run_name(model))
    if recipe.lm_eval.enabled and recipe.lm_eval.tasks:  # before any model loads or folder is made
        from agentinstruct.evaluate.lm_harness import check_models, check_task_names

        check_task_names(recipe.lm_eval)
        if lm is None:  # an adapter lm-eval cannot apply: refused, not scored as the base model
            check_models(recipe.lm_eval, model)
    check_writable_dir(run_dir, "evaluation run folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    scores: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}
    # finished parts are kept under RUN_DIR/parts/ and reused by a rerun (see parts.py)
    ledger = PartLedger(run_dir, {**model.identity(), "adapter": model.adapter, "seed": recipe.seed,
                                  "chat_model": getattr(chat_model, "name", None),
                                  "lm": type(lm).__qualname__ if lm is not None else None,
                                  "judge": getattr(judge, "name", None)})
    chat: list[ChatModel] = [chat_model] if chat_model is not None else []

    def the_chat_model() -> ChatModel:  # built only when a part has to run
        if not chat:
            chat.append(create_model(model))
        return chat[0]

    def part(label: str, name: str, config: Any, fn) -> None:
        done = ledger.run(name, config, fn)
        # one line per finished part, so a log file (CI, Slurm) shows the evaluation moving
        print(f"progress evaluate: part {name} {'reused' if name in ledger.reused else 'done'} "
              f"({done.seconds:.1f} s, {len(done.scores)} score(s))", file=sys.stderr, flush=True)
        scores.update(done.scores)
        notes.extend(done.notes)
        timings[label] = round(timings.get(label, 0.0) + done.seconds, 2)

    if recipe.lm_eval.enabled and recipe.lm_eval.tasks:
        from agentinstruct.evaluate.lm_harness import run_lm_eval

        for task in recipe.lm_eval.tasks:  # one part per task: a killed run keeps the finished ones
            one = recipe.lm_eval.model_copy(update={"tasks": [task]})
            part("lm_eval", f"lm_eval-{task.name}", one.model_dump(mode="json"),
                 lambda n, one=one: run_lm_eval(one, lm if lm is not None else model, run_dir, n))
    if recipe.alpaca_eval.enabled:
        from agentinstruct.evaluate.alpaca import run_alpaca_eval

        part("alpaca_eval", "alpaca_eval", recipe.alpaca_eval.model_dump(mode="json"),
             lambda n: run_alpaca_eval(recipe.alpaca_eval, the_chat_model(), run_dir, n, judge))
    if recipe.hallucination.enabled:
        from agentinstruct.evaluate.hallucination import run_hallucination

        part("hallucination", "hallucination", recipe.hallucination.model_dump(mode="json"),
             lambda n: run_hallucination(recipe.hallucination, the_chat_model(), run_dir, n, judge))
    if recipe.heldout:
        from agentinstruct.evaluate.heldout import run_heldout

        part("heldout", "heldout", recipe.heldout.model_dump(mode="json"),
             lambda n: run_heldout(recipe.heldout, the_chat_model(), run_dir, n))
    results = {
        "run_name": run_dir.name,
        "model": model.display_name(),
        "model_spec": model.identity() | {"adapter": model.adapter},
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "scores": scores,
        "notes": notes,
        "timings_s": timings,
        "reused_parts": ledger.reused,  # finished by an earlier run in this run dir, not rerun
        "config": recipe.model_dump(mode="json"),
        "versions": package_versions(),
        "seeds": {"recipe": recipe.seed, "lm_eval": recipe.lm_eval.seed},
        "chat_template_hash": chat_template_hash(model) if lm is None else None,
        "judge_models": {
            "alpaca_eval": (judge.name if judge else recipe.alpaca_eval.judge.display_name())
            if recipe.alpaca_eval.enabled else None,
            "hallucination": (judge.name if judge else recipe.hallucination.judge.display_name())
            if recipe.hallucination.enabled else None,
        },
    }
    tmp = run_dir / "results.json.tmp"  # a kill leaves the old results or the new ones
    tmp.write_text(json.dumps(results, indent=2, default=str))
    tmp.replace(run_dir / "results.json")
    return run_dir
