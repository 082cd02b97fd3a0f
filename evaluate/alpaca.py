"""AlpacaEval through the ``alpaca_eval`` package, with the judge on any OpenAI-compatible
endpoint (alpaca_eval's client-config mechanism). A local judge (the embedded model or any
backend) is served on 127.0.0.1 for the duration of the run. The instruction set and reference
outputs come from a local file when given; otherwise from the Hub file
``tatsu-lab/alpaca_eval/alpaca_eval.json`` (``agentinstruct prefetch`` caches it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import yaml
from agentinstruct.evaluate.config import AlpacaEvalSection

from agentinstruct.llm import ChatModel, LLMError, create_model
from agentinstruct.llm.serve import serve_in_thread

log = logging.getLogger(__name__)
JUDGE_PROMPT = Path(__file__).resolve().parent.parent / "recipes" / "eval" / "alpaca_eval_judge" / "prompt.txt"
HUB_REPO, HUB_FILE = "tatsu-lab/alpaca_eval", "alpaca_eval.json"


def load_instructions(section: AlpacaEvalSection) -> list[dict[str, Any]]:
    if section.instructions:
        path = Path(section.instructions)
        text = path.read_text(encoding="utf-8")
        rows = json.loads(text) if path.suffix == ".json" else [json.loads(x) for x in text.splitlines() if x.strip()]
    else:
        from huggingface_hub import hf_hub_download

        rows = json.loads(Path(hf_hub_download(HUB_REPO, HUB_FILE, repo_type="dataset")).read_text())
    for i, row in enumerate(rows):
        if "instruction" not in row or "output" not in row:
            raise ValueError(f"alpaca_eval.instructions row {i}: needs 'instruction' and 'output' (reference)")
    rows = [{**r, "generator": r.get("generator", "reference"), "dataset": r.get("dataset", "alpaca_eval")}
            for r in rows]
    return rows[: section.max_instances] if section.max_instances else rows


async def generate_outputs(model: ChatModel, rows: list[dict[str, Any]], max_tokens: int) -> list[str]:
    outs = await model.chat_batch([[{"role": "user", "content": r["instruction"]}] for r in rows],
                                  max_tokens=max_tokens, temperature=0.0)
    return [o.text if not isinstance(o, LLMError) else "" for o in outs]


def write_annotator(out: Path, judge_name: str, base_url: str, api_key: str | None,
                    max_tokens: int) -> Path:
    """An alpaca_eval annotator config + client config (no secret is written: a real key
    stays in the environment, where the OpenAI client reads it)."""
    folder = out / "annotator"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(JUDGE_PROMPT, folder / "prompt.txt")
    client = {"base_url": base_url}
    if api_key is not None:
        client["api_key"] = api_key
    (folder / "clients.yaml").write_text(yaml.safe_dump({"default": [client]}))
    config = {"agentinstruct_judge": {
        "prompt_template": str(folder / "prompt.txt"),
        "fn_completions": "openai_completions",
        "completions_kwargs": {"model_name": judge_name, "max_tokens": max_tokens, "temperature": 0,
                               "client_config_path": str(folder / "clients.yaml"), "num_procs": 4,
                               "requires_chatml": True,  # else names with "instruct" use /completions
                               "price_per_token": 0},
        "fn_completion_parser": "regex_parser",
        "completion_parser_kwargs": {"outputs_to_match": {1: r"(?i)output \(a\)", 2: r"(?i)output \(b\)"}},
        "batch_size": 1,
    }}
    (folder / "configs.yaml").write_text(yaml.safe_dump(config))
    return folder / "configs.yaml"


@contextlib.contextmanager
def judge_endpoint(section: AlpacaEvalSection, judge: ChatModel | None):
    """(name, base_url, api_key) of the judge; a local judge is served for the block's duration."""
    spec = section.judge
    if judge is None and spec.backend == "openai":
        key = None
        if spec.api_key_env:  # alpaca_eval's OpenAI client reads OPENAI_API_KEY from the environment
            if not os.environ.get(spec.api_key_env):
                raise LLMError(f"alpaca_eval.judge: environment variable {spec.api_key_env} is not set")
            old = os.environ.get("OPENAI_API_KEY")
            os.environ["OPENAI_API_KEY"] = os.environ[spec.api_key_env]
        else:
            key, old = "not-needed", None
        try:
            yield spec.model, spec.base_url or "https://api.openai.com/v1", key
        finally:
            if spec.api_key_env:
                if old is None:
                    os.environ.pop("OPENAI_API_KEY", None)
                else:
                    os.environ["OPENAI_API_KEY"] = old
        return
    model = judge or create_model(spec)
    with serve_in_thread(model) as url:
        yield model.name, url, "not-needed"


def run_alpaca_eval(section: AlpacaEvalSection, model: ChatModel, out_dir: Path, notes: list[str],
                    judge: ChatModel | None = None) -> dict[str, dict[str, Any]]:
    import alpaca_eval

    out = (out_dir / "alpaca_eval").resolve()  # alpaca_eval reads relative config paths from its own folder
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    rows = load_instructions(section)
    outputs = asyncio.run(generate_outputs(model, rows, section.max_tokens))
    name = model.name.replace("/", "_")
    model_outputs = [{"instruction": r["instruction"], "output": o, "generator": name, "dataset": r["dataset"]}
                     for r, o in zip(rows, outputs)]
    (out / "model_outputs.json").write_text(json.dumps(model_outputs, indent=1, ensure_ascii=False))
    with judge_endpoint(section, judge) as (judge_name, base_url, key):
        config = write_annotator(out, judge_name, base_url, key, section.judge_max_tokens)
        metric_used, leaderboard, annotations = "length_controlled_winrate", None, None
        metrics = [("get_length_controlled_winrate", "length_controlled_winrate"), ("get_winrate", "win_rate")]
        if section.instructions:  # LC's length model is fitted on the official reference set
            metrics = metrics[1:]
            notes.append("alpaca_eval: a local instruction set - reporting the plain win rate (the "
                         "length-controlled win rate needs the official 805-instruction references)")
        for fn_metric, metric in metrics:
            try:
                leaderboard, annotations = alpaca_eval.evaluate(
                    model_outputs=model_outputs, reference_outputs=rows, annotators_config=str(config),
                    name=name, output_path=str(out), precomputed_leaderboard=None,
                    is_return_instead_of_print=True, fn_metric=fn_metric, sort_by=metric,
                    is_cache_leaderboard=False,
                    max_instances=section.max_instances,
                )
                value = leaderboard.loc[name].get(metric)
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    raise ValueError(f"{metric} is undefined for these annotations")
                metric_used = metric
                break
            except Exception as exc:  # noqa: BLE001 - LC needs inputs tiny sets may lack
                if fn_metric == "get_winrate":
                    raise
                notes.append(f"alpaca_eval: length-controlled win rate unavailable ({type(exc).__name__}: "
                             f"{str(exc)[:120]}); reporting the plain win rate")
    row = leaderboard.loc[name]
    prefs = [a.get("preference") for a in (annotations or [])]
    unparsed = sum(1 for p in prefs if p is None or (isinstance(p, float) and math.isnan(p)))
    if unparsed:
        notes.append(f"alpaca_eval: {unparsed} of {len(prefs)} judge replies could not be parsed (not counted)")
    se = row.get("standard_error")
    return {f"alpaca_eval {metric_used}": {
        "value": float(row[metric_used]) / 100.0,
        "stderr": float(se) / 100.0 if se is not None and not math.isnan(float(se)) else None,
        "metric": metric_used, "benchmark": "AlpacaEval", "n": len(rows), "n_unparsed": unparsed,
        "judge": judge_name, "source": "local" if section.instructions else "hub",
    }}
