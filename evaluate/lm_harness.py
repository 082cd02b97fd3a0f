"""AGIEval, GSM8K, BBH (and anything else lm-eval has) through ``lm_eval.simple_evaluate``.

A task with ``local:`` keeps lm-eval's own prompt, metrics and filters but reads its documents
from a local file in the benchmark's schema (GSM8K: question/answer; AGIEval: query/choices/gold;
BBH: input/target), so runs work offline and tests can use fixtures.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

from agentinstruct.evaluate.config import LMEvalSection, LMEvalTask
from agentinstruct.evaluate.stats import from_stderr, per_item

from agentinstruct.embedded import resolve_model_path
from agentinstruct.llm.adapters import adapter_config, lora_rank
from agentinstruct.llm.base import ModelSpec
from agentinstruct.llm.dtypes import resolve_device, resolve_dtype

log = logging.getLogger(__name__)

LOGLIKELIHOOD_TYPES = {"loglikelihood", "multiple_choice", "loglikelihood_rolling"}
HEADLINE_METRICS = ("exact_match", "acc")


def benchmark_label(task: str) -> str:
    for prefix, label in (("gsm8k", "GSM8K"), ("agieval", "AGIEval"), ("bbh", "BBH"), ("mmlu", "MMLU")):
        if task.startswith(prefix):
            return label
    return task


def task_spec(task: LMEvalTask, task_manager: Any) -> str | dict[str, Any]:
    """A name, or the registered task's full config with the local file as its dataset.

    lm-eval builds a dict spec as an inline config (the registered YAML is not merged in), so
    the registered YAML is loaded here (``include:`` resolved) and the overrides laid over it.
    """
    if task.local is None and task.num_fewshot is None:
        return task.name
    from lm_eval.tasks._yaml_loader import load_yaml  # the loader lm-eval's TaskManager uses

    entry = task_manager.task_index.get(task.name)
    if entry is None or not entry.yaml_path:
        raise ValueError(f"lm_eval: {task.name!r} is not a single registered task; 'local' and "
                         "'num_fewshot' overrides need one (list group members one by one)")
    spec: dict[str, Any] = load_yaml(entry.yaml_path, resolve_func=True)
    for key in ("tag", "group"):
        spec.pop(key, None)
    spec["task"] = task.name
    if task.local is not None:
        path = str(Path(task.local).resolve())
        if not Path(path).exists():
            raise FileNotFoundError(f"lm_eval task {task.name}: local file {task.local} not found")
        spec.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": {"test": path}},
                    test_split="test", validation_split=None, training_split=None)
        if spec.get("fewshot_split") or spec.get("num_fewshot"):
            spec["fewshot_split"] = "test"  # few-shot examples then come from the same local file
    if task.num_fewshot is not None:
        spec["num_fewshot"] = task.num_fewshot
    return spec


def lm_eval_model(spec: ModelSpec, batch_size: int | str) -> tuple[str, dict[str, Any]]:
    """Map our model spec to an lm-eval model type and its arguments.

    A ``FOLDER+ADAPTER`` model is evaluated with its adapter (``peft=`` for lm-eval's hf model,
    ``lora_local_path=`` for its vllm model) and refused where the adapter cannot be applied,
    never scored silently as the base model. The dtype is resolved here (``auto``: bf16 on a
    GPU, fp32 on CPU), since lm-eval's own ``auto`` means the checkpoint's dtype.
    """
    if spec.adapter:
        adapter_config(spec.adapter)  # a missing or non-adapter folder: one line, before weights load
    if spec.backend == "transformers":
        device = resolve_device(spec.device)
        args: dict[str, Any] = {"pretrained": resolve_model_path(spec.model),
                                "dtype": resolve_dtype(spec.dtype, device), "device": device}
        if spec.adapter:
            args["peft"] = spec.adapter
        return "hf", args
    if spec.backend == "vllm":
        args = {"pretrained": resolve_model_path(spec.model),
                "dtype": resolve_dtype(spec.dtype, resolve_device(spec.device))}
        if spec.adapter:
            args.update(lora_local_path=spec.adapter, max_lora_rank=lora_rank(spec.adapter))
        return "vllm", args
    if spec.backend == "openai":
        if spec.adapter:
            raise ValueError(f"lm_eval: the openai backend cannot apply adapter {spec.adapter!r} "
                             f"(it would score the base {spec.model!r}); evaluate "
                             f"{spec.model}+{spec.adapter} locally, or serve it with `agentinstruct "
                             "serve --model FOLDER+ADAPTER` and evaluate that endpoint")
        base = (spec.base_url or "https://api.openai.com/v1").rstrip("/")
        return "local-chat-completions", {"model": spec.model, "base_url": f"{base}/chat/completions",
                                          "num_concurrent": spec.concurrency_ceiling(),
                                          "max_retries": spec.max_retries, "tokenized_requests": False}
    raise ValueError(f"lm_eval: no lm-eval model type for backend {spec.backend!r}")


def check_models(section: LMEvalSection, model: ModelSpec) -> None:
    """Raise now, before any model loads, what :func:`lm_eval_model` would raise mid-run."""
    lm_eval_model(model, section.batch_size)
    if section.loglikelihood_model:
        lm_eval_model(ModelSpec.from_string(section.loglikelihood_model), section.batch_size)


def output_types(spec: str | dict[str, Any], task_manager: Any) -> set[str]:
    from lm_eval.tasks import get_task_dict

    types: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        else:
            types.add(node.config.output_type)

    walk(get_task_dict([spec], task_manager))
    return types


def extract_scores(results: dict[str, Any], task: LMEvalTask) -> dict[str, dict[str, Any]]:
    """Headline metrics of each task/group: ``{name: {value, stderr, metric, filter, n, benchmark}}``."""
    scores = {}
    table = {**results.get("results", {}), **results.get("groups", {})}
    n_samples = results.get("n-samples", {})
    for tname, metrics in table.items():
        for key, value in metrics.items():
            if "," not in key or key.endswith("_stderr") or "_stderr," in key:
                continue
            metric, filt = key.split(",", 1)
            if metric not in HEADLINE_METRICS or not isinstance(value, (int, float)):
                continue
            stderr = metrics.get(f"{metric}_stderr,{filt}")
            stderr = float(stderr) if isinstance(stderr, (int, float)) else None
            name = f"{tname} {metric}" + (f" ({filt})" if filt != "none" else "")
            items = sample_items(results.get("samples") or {}, tname, metric, filt)
            scores[name] = {
                "value": float(value), "stderr": stderr,
                "metric": metric, "filter": filt, "task": tname,
                "n": (n_samples.get(tname) or {}).get("effective"),
                "benchmark": task.benchmark or benchmark_label(task.name),
                "source": "local" if task.local else "hub",
                **(items if items is not None else from_stderr(float(value), stderr)),
            }
    return scores


def sample_items(samples: dict[str, list[dict[str, Any]]], tname: str, metric: str, filt: str
                 ) -> dict[str, Any] | None:
    """n, exact/bootstrap interval and per-document values of one metric from lm-eval's logged
    samples (by ``doc_id``); None for a group (its samples are its subtasks') or a metric the
    samples lack."""
    rows = [r for r in samples.get(tname, []) if r.get("filter") == filt]
    if not rows or not all(isinstance(r.get(metric), (int, float, bool)) for r in rows):
        return None
    rows.sort(key=lambda r: r["doc_id"])
    values = [float(r[metric]) for r in rows]
    binary = all(v in (0.0, 1.0) for v in values)
    return per_item([int(v) for v in values] if binary else values, [r["doc_id"] for r in rows],
                    "proportion" if binary else "mean")


@functools.cache
def task_manager() -> Any:
    """lm-eval's task index, built once per process: it reads every task YAML (seconds), and the
    suite runs one task per call."""
    from lm_eval.tasks import TaskManager

    return TaskManager()


def check_task_names(section: LMEvalSection) -> None:
    """Every task name must be one lm-eval knows (a task, group or tag), checked before any
    model loads; a typo gets the closest names instead of a traceback from inside lm-eval."""
    import difflib

    known = set(task_manager().all_tasks)
    for i, task in enumerate(section.tasks):
        if task.name not in known:
            close = difflib.get_close_matches(task.name, sorted(known), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"lm_eval.tasks.{i}.name: unknown lm-eval task {task.name!r}{hint}")


def run_lm_eval(section: LMEvalSection, model: ModelSpec | Any, out_dir: Path,
                notes: list[str]) -> dict[str, dict[str, Any]]:
    """Run every task of the section; returns headline scores, writes per-sample logs."""
    import lm_eval
    from lm_eval.api.model import LM

    tm = task_manager()
    scores: dict[str, dict[str, Any]] = {}
    samples_dir = out_dir / "samples"
    samples_dir.mkdir(parents=True, exist_ok=True)
    for task in section.tasks:
        spec = task_spec(task, tm)
        target, model_args = model, None
        if not isinstance(model, LM):
            kind, model_args = lm_eval_model(model, section.batch_size)
            target = kind
            if kind == "local-chat-completions" and output_types(spec, tm) & LOGLIKELIHOOD_TYPES:
                if section.loglikelihood_model:
                    ll = ModelSpec.from_string(section.loglikelihood_model)
                    target, model_args = lm_eval_model(ll, section.batch_size)
                    notes.append(f"{task.name}: needs log-likelihoods, which a chat endpoint cannot give; "
                                 f"scored with {section.loglikelihood_model} instead")
                else:
                    notes.append(f"{task.name}: skipped - needs log-likelihoods, which a chat endpoint "
                                 "cannot give; set lm_eval.loglikelihood_model to score it")
                    continue
        is_chat_api = target == "local-chat-completions"
        results = lm_eval.simple_evaluate(
            model=target,
            model_args=model_args,
            tasks=[spec],
            batch_size=None if isinstance(target, LM) or is_chat_api else section.batch_size,
            limit=section.limit,
            apply_chat_template=section.apply_chat_template,
            fewshot_as_multiturn=section.fewshot_as_multiturn and section.apply_chat_template,
            system_instruction=section.system_instruction,
            gen_kwargs=section.gen_kwargs or None,
            log_samples=True,
            task_manager=tm,
            random_seed=section.seed, numpy_random_seed=section.seed,
            torch_random_seed=section.seed, fewshot_random_seed=section.seed,
        )
        if results is None:  # non-zero rank in a distributed run
            continue
        scores.update(extract_scores(results, task))
        for tname, rows in (results.get("samples") or {}).items():
            with open(samples_dir / f"{tname}.jsonl", "w", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")
    return scores
