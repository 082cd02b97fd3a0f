"""Download everything an evaluation recipe needs into the HF cache, so a later run works with
``HF_HUB_OFFLINE=1``. Local fixtures and embedded models need nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agentinstruct.evaluate.config import EvalRecipe

from agentinstruct.llm.base import ModelSpec


def plan(recipe: EvalRecipe, models: list[ModelSpec]) -> list[tuple[str, str, Callable[[], object]]]:
    """(kind, name, fetch) for every remote artefact; local ones are left out."""
    items: list[tuple[str, str, Callable[[], object]]] = []

    def model_item(spec: ModelSpec) -> None:
        if spec.backend in ("transformers", "vllm") and not spec.model.startswith("embedded:") \
                and not Path(spec.model).exists():
            from huggingface_hub import snapshot_download

            items.append(("model", spec.model, lambda m=spec.model: snapshot_download(m)))

    for spec in models:
        model_item(spec)
    if recipe.lm_eval.enabled:
        from lm_eval.tasks import TaskManager, get_task_dict

        tm = None
        for task in recipe.lm_eval.tasks:
            if task.local:
                continue
            tm = tm or TaskManager()

            def fetch(name=task.name, manager=tm):  # building the task downloads its dataset
                return get_task_dict([name], manager)

            items.append(("lm_eval task", task.name, fetch))
    if recipe.alpaca_eval.enabled:
        model_item(recipe.alpaca_eval.judge)
        if not recipe.alpaca_eval.instructions:
            from agentinstruct.evaluate.alpaca import HUB_FILE, HUB_REPO
            from huggingface_hub import hf_hub_download

            items.append(("dataset file", f"{HUB_REPO}/{HUB_FILE}",
                          lambda: hf_hub_download(HUB_REPO, HUB_FILE, repo_type="dataset")))
    if recipe.hallucination.enabled:
        model_item(recipe.hallucination.judge)
        docs = recipe.hallucination.documents
        if docs.startswith("hf:"):
            import datasets

            name, _, split = docs[3:].partition(":")
            items.append(("dataset", name, lambda: datasets.load_dataset(name, split=split or "train")))
        if recipe.hallucination.hhem:
            from huggingface_hub import snapshot_download

            items.append(("model", "vectara/hallucination_evaluation_model",
                          lambda: snapshot_download("vectara/hallucination_evaluation_model")))
    return items
