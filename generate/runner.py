"""Entry point used by the CLI and the pipeline: recipe + overrides -> a finished run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from agentinstruct.generate.config import GenerateRecipe
from agentinstruct.generate.engine import GenerationRun, RunSummary
from rich.console import Console

from agentinstruct.recipes import parse_recipe, read_yaml, recipe_dir, resolve_path


def load_generate_recipe(path: str | Path, **overrides: Any) -> GenerateRecipe:
    """Load a generate recipe; CLI overrides (None = keep the recipe's value) are validated too.

    The recipe's input paths are relative to its file; an ``input`` override, typed on the
    command line, is relative to the working directory."""
    data = read_yaml(path)
    for key, value in overrides.items():
        if value is not None:
            data[key] = str(value) if isinstance(value, Path) else value
    if overrides.get("input") is not None and not str(overrides["input"]).startswith("hf:"):
        data["input"] = resolve_path(str(overrides["input"]), Path.cwd())
    return parse_recipe(data, GenerateRecipe, str(path), recipe_dir(path))


def run_generate(recipe: GenerateRecipe, *, skills: list[str] | None = None,
                 console: Console | None = None, show_progress: bool = True,
                 overwrite: bool = False, force: bool = False, push_to_hub: str | None = None,
                 restart_on_new_recipe: bool = False) -> RunSummary:
    run = GenerationRun(recipe, skills=skills, console=console, show_progress=show_progress,
                        overwrite=overwrite, force=force, restart_on_new_recipe=restart_on_new_recipe)
    return run.run(push_to_hub=push_to_hub)


def empty_run_reason(summary: RunSummary, input_spec: str) -> str | None:
    """Why a finished run made no usable (accepted) record, on one line; None when it made some.

    The outputs are written either way (the rejected split shows what went wrong); the CLI
    then exits non-zero with this line instead of passing for a successful run."""
    counts = {k: c for k, c in summary.counts.items() if not k.startswith("_")}
    if sum(c["accepted"] for c in counts.values()):
        return None
    if summary.ingest.seeds == 0:
        skipped = ", ".join(f"{r}: {n}" for r, n in summary.ingest.skipped.most_common(3))
        rules = ", ".join(f"{r}: {n}" for r, n in (summary.seed_filter.get("by_rule") or {}).items())
        return (f"no usable records: 0 seeds read from {input_spec} ({summary.ingest.read} input(s) read"
                + (f"; skipped {skipped}" if skipped else "")
                + (f"; removed by the seed filter {rules}" if rules else "") + ")")
    rejected = sum(c["rejected"] for c in counts.values())
    if rejected:
        top = ", ".join(f"{r} ({n})" for r, n in summary.counts.get("_reasons", Counter()).most_common(3))
        return f"no usable records: all {rejected} pair(s) rejected (top reasons: {top}); see the rejected split"
    failures = summary.llm.get("failures", 0)
    return (f"no usable records from {summary.ingest.seeds} seed(s): "
            + (f"{failures} LLM call(s) failed" if failures else "no pairs were made"))


__all__ = ["empty_run_reason", "load_generate_recipe", "run_generate"]
