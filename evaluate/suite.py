"""One evaluation run: every enabled benchmark on one model -> ``RUN_DIR/results.json`` plus
per-sample logs under ``RUN_DIR/samples/``."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

from agentinstruct.evaluate.config import EvalRecipe

from agentinstruct.llm import ChatModel, ModelSpec, create_model
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
    run_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    scores: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}

    def timed(label: str, fn, *args, **kwargs) -> None:
        t0 = time.monotonic()
        scores.update(fn(*args, **kwargs))
        timings[label] = round(time.monotonic() - t0, 2)

    if recipe.lm_eval.enabled and recipe.lm_eval.tasks:
        from agentinstruct.evaluate.lm_harness import run_lm_eval

        timed("lm_eval", run_lm_eval, recipe.lm_eval, lm if lm is not None else model, run_dir, notes)
    needs_chat = recipe.alpaca_eval.enabled or recipe.hallucination.enabled or recipe.heldout
    if needs_chat and chat_model is None:
        chat_model = create_model(model)
    if recipe.alpaca_eval.enabled:
        from agentinstruct.evaluate.alpaca import run_alpaca_eval

        timed("alpaca_eval", run_alpaca_eval, recipe.alpaca_eval, chat_model, run_dir, notes, judge)
    if recipe.hallucination.enabled:
        from agentinstruct.evaluate.hallucination import run_hallucination

        timed("hallucination", run_hallucination, recipe.hallucination, chat_model, run_dir, notes, judge)
    if recipe.heldout:
        from agentinstruct.evaluate.heldout import run_heldout

        timed("heldout", run_heldout, recipe.heldout, chat_model, run_dir, notes)
    results = {
        "run_name": run_dir.name,
        "model": model.display_name(),
        "model_spec": model.identity() | {"adapter": model.adapter},
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "scores": scores,
        "notes": notes,
        "timings_s": timings,
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
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return run_dir
