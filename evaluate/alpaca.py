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
from agentinstruct.evaluate.stats import from_stderr, per_item

from agentinstruct.llm import ChatModel, Completion, LLMError, create_model
from agentinstruct.llm.serve import serve_in_thread
from agentinstruct.resources import data_path

log = logging.getLogger(__name__)
JUDGE_PROMPT = data_path("recipes", "eval", "alpaca_eval_judge", "prompt.txt")  # shipped package data
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


async def generate_outputs(model: ChatModel, rows: list[dict[str, Any]], max_tokens: int) -> list[str | LLMError]:
    """One output per row: its text, or the LLMError of a call that failed."""
    outs = await model.chat_batch([[{"role": "user", "content": r["instruction"]}] for r in rows],
                                  max_tokens=max_tokens, temperature=0.0)
    return [o if isinstance(o, LLMError) else o.text for o in outs]


class CountingJudge(ChatModel):
    """A local judge as served to alpaca_eval: a failed call is counted and answered with an empty
    reply, which alpaca_eval cannot parse and so leaves out of the win rate (instead of the
    OpenAI client's retries ending the whole run)."""

    def __init__(self, inner: ChatModel):
        super().__init__()
        self.inner, self.name = inner, inner.name
        self.failed: int = 0
        self.first_error: str | None = None

    async def chat(self, messages, **params: Any) -> Completion:
        try:
            return await self.inner.chat(messages, **params)
        except LLMError as exc:
            self.failed += 1
            self.first_error = self.first_error or str(exc)
            return Completion("", "error")


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
    """(name, base_url, api_key, counter) of the judge; a local judge is served for the block's
    duration, wrapped in a CountingJudge (``counter``; None for a remote judge, whose failed calls
    alpaca_eval itself retries and then raises)."""
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
            yield spec.model, spec.base_url or "https://api.openai.com/v1", key, None
        finally:
            if spec.api_key_env:
                if old is None:
                    os.environ.pop("OPENAI_API_KEY", None)
                else:
                    os.environ["OPENAI_API_KEY"] = old
        return
    model = CountingJudge(judge or create_model(spec))
    with serve_in_thread(model) as url:
        yield model.name, url, "not-needed", model


def run_alpaca_eval(section: AlpacaEvalSection, model: ChatModel, out_dir: Path, notes: list[str],
                    judge: ChatModel | None = None) -> dict[str, dict[str, Any]]:
    import alpaca_eval

    out = (out_dir / "alpaca_eval").resolve()  # alpaca_eval reads relative config paths from its own folder
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    rows = load_instructions(section)
    outputs = asyncio.run(generate_outputs(model, rows, section.max_tokens))
    name = model.name.replace("/", "_")
    model_outputs = [{"instruction": r["instruction"], "output": o if isinstance(o, str) else "",
                      "generator": name, "dataset": r["dataset"], **({"error": str(o)} if isinstance(o, LLMError) else {})}
                     for r, o in zip(rows, outputs)]
    (out / "model_outputs.json").write_text(json.dumps(model_outputs, indent=1, ensure_ascii=False))
    # a failed output is not judged: it counts as a loss to the reference (see losses_for_failures)
    judged = [i for i, o in enumerate(outputs) if isinstance(o, str)]
    failed = len(rows) - len(judged)
    base = {"metric": "win_rate", "benchmark": "AlpacaEval", "attempted": len(rows), "failed": failed,
            "source": "local" if section.instructions else "hub"}
    losses = [(i, 0.0) for i, o in enumerate(outputs) if isinstance(o, LLMError)]  # a failed output: a loss
    if failed:
        first = next(o for o in outputs if isinstance(o, LLMError))
        notes.append(f"alpaca_eval: {failed} of {len(rows)} model outputs failed and count as losses to the "
                     f"reference (plain win rate over all {len(rows)}; first error: {str(first)[:160]})")
    if not judged:
        return {"alpaca_eval win_rate": {**base, "value": 0.0, "stderr": None, "n_unparsed": 0, "judge_failed": 0,
                                         "judge": section.judge.display_name(),
                                         **per_item([v for _, v in losses], [i for i, _ in losses], "mean")}}
    model_outputs = [model_outputs[i] for i in judged]
    references = [rows[i] for i in judged]
    with judge_endpoint(section, judge) as (judge_name, base_url, key, counter):
        config = write_annotator(out, judge_name, base_url, key, section.judge_max_tokens)
        metric_used, leaderboard, annotations = "length_controlled_winrate", None, None
        metrics = [("get_length_controlled_winrate", "length_controlled_winrate"), ("get_winrate", "win_rate")]
        if section.instructions:  # LC's length model is fitted on the official reference set
            metrics = metrics[1:]
            notes.append("alpaca_eval: a local instruction set - reporting the plain win rate (the "
                         "length-controlled win rate needs the official 805-instruction references)")
        elif failed:  # failures enter as losses, which only the plain win rate can take
            metrics = metrics[1:]
        for fn_metric, metric in metrics:
            if counter is not None:
                counter.failed, counter.first_error = 0, None  # count the calls of the attempt that counts
            try:
                leaderboard, annotations = alpaca_eval.evaluate(
                    model_outputs=model_outputs, reference_outputs=references, annotators_config=str(config),
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
    judge_failed = counter.failed if counter is not None else 0
    unparsed = sum(1 for p in prefs if p is None or (isinstance(p, float) and math.isnan(p))) - judge_failed
    if judge_failed:
        notes.append(f"alpaca_eval: {judge_failed} of {len(prefs)} judge calls failed (left out of the win rate; "
                     f"first error: {(counter.first_error or '')[:160]})")
    if unparsed:
        notes.append(f"alpaca_eval: {unparsed} of {len(prefs)} judge replies could not be parsed (not counted)")
    value, se = float(row[metric_used]), row.get("standard_error")
    if failed:
        value, se = losses_for_failures(prefs, failed)
    stderr = float(se) / 100.0 if se is not None and not math.isnan(float(se)) else None
    if metric_used == "win_rate":  # a mean of per-instruction wins: bootstrap, pairable by instruction
        wins = sorted(preference_items(annotations or [], rows, judged) + losses)
        interval = per_item([v for _, v in wins], [i for i, _ in wins], "mean")
    else:  # the length-controlled win rate is a fitted model's output, not a mean of items
        interval = {"n": len(judged) + failed - judge_failed - unparsed, **from_stderr(value / 100.0, stderr)}
    return {f"alpaca_eval {metric_used}": {
        **base, "value": value / 100.0, "stderr": stderr,
        "metric": metric_used, "n_unparsed": unparsed, "judge_failed": judge_failed, "judge": judge_name,
        **interval,
    }}


def preference_items(annotations: list[dict[str, Any]], rows: list[dict[str, Any]], judged: list[int]
                     ) -> list[tuple[int, float]]:
    """(instruction index, win) per parsed judgement, as alpaca_eval scores it: 1 the model's
    output preferred, 0 the reference's, 0.5 a draw; unparsed and failed judgements left out."""
    index = {rows[i]["instruction"]: i for i in reversed(judged)}
    out = []
    for pos, a in enumerate(annotations):
        p = a.get("preference")
        if p is None or (isinstance(p, float) and math.isnan(p)):
            continue
        p = 1.5 if float(p) == 0.0 else float(p)  # alpaca_eval's old encoding of a draw
        if not 1.0 <= p <= 2.0:
            continue
        i = index.get(a.get("instruction"), judged[pos] if pos < len(judged) else pos)
        out.append((i, p - 1.0))
    return out


def losses_for_failures(prefs: list[Any], failed: int) -> tuple[float, float | None]:
    """alpaca_eval's plain win rate (and its standard error, in points) over the judged
    preferences plus one loss to the reference (preference 1) per failed model output."""
    from alpaca_eval.metrics import get_winrate

    out = get_winrate([{"preference": p} for p in prefs] + [{"preference": 1.0}] * failed)
    return float(out["win_rate"]), out.get("standard_error")
