"""Entry point used by the CLI and the pipeline: recipe + overrides -> a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentinstruct.generate.config import GenerateRecipe
from agentinstruct.generate.engine import GenerationRun, RunSummary
from rich.console import Console

from agentinstruct.recipes import parse_recipe, read_yaml


def load_generate_recipe(path: str | Path, **overrides: Any) -> GenerateRecipe:
    """Load a generate recipe; CLI overrides (None = keep the recipe's value) are validated too."""
    data = read_yaml(path)
    for key, value in overrides.items():
        if value is not None:
            data[key] = str(value) if isinstance(value, Path) else value
    return parse_recipe(data, GenerateRecipe, str(path))


def run_generate(recipe: GenerateRecipe, *, skills: list[str] | None = None,
                 console: Console | None = None, show_progress: bool = True,
                 overwrite: bool = False, push_to_hub: str | None = None,
                 restart_on_new_recipe: bool = False) -> RunSummary:
    run = GenerationRun(recipe, skills=skills, console=console, show_progress=show_progress,
                        overwrite=overwrite, restart_on_new_recipe=restart_on_new_recipe)
    return run.run(push_to_hub=push_to_hub)


__all__ = ["load_generate_recipe", "run_generate"]
