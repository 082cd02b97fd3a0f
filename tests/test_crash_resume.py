"""Crash-resume: a run killed with SIGKILL and started again with the same command ends with
exactly what an uninterrupted run makes, and pays for no answered LLM call twice.

Generation runs the real CLI in a subprocess against the scripted fake server
(tests/fake_openai.py, served from this process: the subprocess talks HTTP to it and the server
counts every request), killed from outside at a request count or a journal length, or from
inside at a named export step by a small wrapper that patches that function to SIGKILL its own
process (no test hook in the product code).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
import pytest
import yaml
from agentinstruct.evaluate.config import EvalRecipe
from agentinstruct.evaluate.suite import run_eval
from fake_openai import FakeOpenAIServer
from lm_eval.api.model import LM

from agentinstruct.llm import ChatModel, Completion, ModelSpec

REPO = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).parent / "agentinstruct")
MAX_CONCURRENCY = 4  # the teacher's requests in flight: at most this many are lost to a kill

# Runs the CLI with one function patched to SIGKILL the process before or after it runs:
#   python -c KILL_WRAPPER module:attr.path before|after agentinstruct-args...
KILL_WRAPPER = r"""
import functools, importlib, os, signal, sys
target, when, args = sys.argv[1], sys.argv[2], sys.argv[3:]
module, _, attr = target.partition(":")
owner = importlib.import_module(module)
*path, name = attr.split(".")
for part in path:
    owner = getattr(owner, part)
original = getattr(owner, name)

@functools.wraps(original)
def killed(*a, **kw):
    if when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    result = original(*a, **kw)
    os.kill(os.getpid(), signal.SIGKILL)
    return result

setattr(owner, name, killed)
from agentinstruct.cli import app
sys.argv = ["agentinstruct", *args]
app()
"""


@pytest.fixture(scope="module")
def server():
    # a small delay per request keeps the run long enough (seconds) to be killed mid-way
    with FakeOpenAIServer(delay=0.04) as s:
        yield s


def gen_recipe(root: Path, base_url: str, out: Path) -> Path:
    """Two skills with Suggester-Editor refinement on, a few seeds, two seeds in flight."""
    data = {
        "teacher": {"backend": "openai", "base_url": base_url, "model": "fake-teacher",
                    "max_concurrency": MAX_CONCURRENCY, "backoff_base_s": 0.01},
        "input": str(REPO / "examples" / "docs"),
        "output": str(out),
        "skills": ["reading_comprehension", "text_modification"],
        "sampling": {"refinement_rounds": 1},
        "limit": 4,
        "seeds_in_flight": 2,
        "formats": ["jsonl", "parquet"],
    }
    path = root / f"recipe-{out.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def generate_cmd(recipe: Path) -> list[str]:
    return [CLI, "generate", "--recipe", str(recipe), "--no-progress"]


def run_ok(cmd: list[str]) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def run_killed_at(target: str, when: str, recipe: Path) -> None:
    """Run generation with ``target`` patched to SIGKILL the process ``when`` it is called."""
    cmd = [sys.executable, "-c", KILL_WRAPPER, target, when, *generate_cmd(recipe)[1:]]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == -signal.SIGKILL, f"not killed at {target} ({res.returncode}): {res.stderr[-3000:]}"


def all_rows(out: Path) -> dict[str, list[dict]]:
    dd = datasets.load_from_disk(str(out / "dataset"))
    return {name: dd[name].to_list() for name in dd}


def journal_lines(out: Path) -> int:
    path = out / "records.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def cached_calls(out: Path) -> int:
    path = out / "cache.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]


@pytest.fixture(scope="module")
def reference(server, tmp_path_factory):
    """An uninterrupted run: its rows, journal length and server request count."""
    root = tmp_path_factory.mktemp("reference")
    out = root / "run"
    before = len(server.requests)
    run_ok(generate_cmd(gen_recipe(root, server.base_url, out)))
    requests = len(server.requests) - before
    bodies = {json.dumps(b, sort_keys=True) for b in server.requests[before:]}
    assert len(bodies) == requests, "the request count bound below needs distinct requests"
    rows = all_rows(out)
    assert rows["rc"] and rows["text_modification"]
    return {"rows": rows, "units": journal_lines(out), "requests": requests,
            "counts": json.loads((out / "manifest.json").read_text())["counts"]}


def assert_same_as_reference(out: Path, reference: dict) -> None:
    assert all_rows(out) == reference["rows"]  # same rows, same order, every split
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == reference["counts"]
    units = [json.loads(line)["unit"] for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(units) == len(set(units)) == reference["units"], "a unit journaled twice or lost"
    for name in ("rc", "text_modification", "rejected"):
        assert pq.read_table(out / "parquet" / f"{name}.parquet").num_rows == len(reference["rows"][name])
        assert (out / "jsonl" / f"{name}.jsonl").read_text().count("\n") == len(reference["rows"][name])
    assert not (out / "dataset.tmp").exists() and not (out / "dataset.old").exists()


@pytest.mark.parametrize("point", ["early", "mid"])
def test_generate_killed_mid_run_resumes_to_the_same_dataset_without_paying_twice(
        server, reference, tmp_path, point):
    """SIGKILL after the first requests (early) or after half the units are journaled (mid).

    Request bound: every call the killed run got an answer for and committed to the call cache
    is answered from there on resume, so the resumed run asks the server for exactly the rest:
    ``resumed == uninterrupted - cached``. The killed run's requests that never reached the
    cache are those in flight at the kill, at most the teacher's ``max_concurrency``: so
    ``killed + resumed <= uninterrupted + max_concurrency``.
    """
    out = tmp_path / "run"
    recipe = gen_recipe(tmp_path, server.base_url, out)
    before = len(server.requests)
    proc = subprocess.Popen(generate_cmd(recipe), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    half = reference["units"] // 2

    def reached() -> bool:
        if point == "early":
            return len(server.requests) - before >= 8
        return journal_lines(out) >= half

    deadline = time.time() + 120
    while not reached() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.3)  # a request the client sent just before dying reaches the server's count
    killed = len(server.requests) - before
    cached = cached_calls(out)
    partial = journal_lines(out)
    assert partial < reference["units"] and killed < reference["requests"]
    if point == "mid":
        assert partial >= half
    assert not (out / "dataset").exists() and not (out / "manifest.json").exists()
    assert 0 <= killed - cached <= MAX_CONCURRENCY, (killed, cached)

    res = run_ok(generate_cmd(recipe))
    resumed = len(server.requests) - before - killed
    assert resumed == reference["requests"] - cached, (resumed, reference["requests"], cached)
    assert killed + resumed <= reference["requests"] + MAX_CONCURRENCY
    assert "units resumed from journal" in res.stdout
    assert_same_as_reference(out, reference)


def test_generate_killed_at_each_export_step_resumes_to_the_same_dataset(server, reference, tmp_path):
    """SIGKILL at every export step in turn, each rerun dying at the next one; after each kill
    dataset/ is absent or complete (loadable, with its card) and manifest.json is present only
    next to the dataset it describes. The LLM calls are paid once: the reruns send none."""
    out = tmp_path / "run"
    recipe = gen_recipe(tmp_path, server.base_url, out)
    before = len(server.requests)

    def check_consistent(*, dataset: bool) -> None:
        assert (out / "dataset").exists() == dataset
        if dataset:
            assert all_rows(out) == reference["rows"]
            assert "# AgentInstruct synthetic dataset" in (out / "dataset" / "README.md").read_text()
        assert not (out / "manifest.json").exists()

    run_killed_at("agentinstruct.generate.export:write_split_files", "after", recipe)  # .staging written
    assert (out / ".staging").is_dir()
    check_consistent(dataset=False)
    assert len(server.requests) - before == reference["requests"]
    run_killed_at("datasets:DatasetDict.save_to_disk", "after", recipe)  # dataset.tmp, not swapped in
    assert (out / "dataset.tmp" / "dataset_dict.json").exists()
    check_consistent(dataset=False)
    run_killed_at("agentinstruct.generate.export:write_text_atomic", "before", recipe)  # all but the manifest
    check_consistent(dataset=True)

    run_ok(generate_cmd(recipe))
    assert_same_as_reference(out, reference)
    # killed again while replacing a finished export: the old dataset stays whole, and its
    # manifest is gone until the new one is in place
    run_killed_at("datasets:DatasetDict.save_to_disk", "after", recipe)
    check_consistent(dataset=True)
    run_ok(generate_cmd(recipe))
    assert_same_as_reference(out, reference)
    assert len(server.requests) - before == reference["requests"]


# -- evaluation: finished parts are not rerun ----------------------------------------------------
class Killed(KeyboardInterrupt):
    """Stands in for a kill (like Ctrl-C): nothing in the suite catches it, nor turns it into a
    failed call."""


class CountingChat(ChatModel):
    """A scripted chat model that logs every prompt and dies on a prompt containing ``crash_on``."""

    def __init__(self, name: str, reply, crash_on: str | None = None):
        super().__init__()
        self.name, self.reply, self.crash_on, self.prompts = name, reply, crash_on, []

    async def chat(self, messages, **kw):
        prompt = messages[-1]["content"]
        self.prompts.append(prompt)
        if self.crash_on and self.crash_on in prompt:
            raise Killed(prompt)
        return Completion(self.reply(prompt), "stop")


def _judge(prompt: str) -> str:
    if "Output (a):" in prompt:
        return "Output (a)"
    return '{"unsupported_claims": [], "hallucinated": false, "quality": 4}'


def eval_recipe(tmp_path: Path, **changes: Any) -> EvalRecipe:
    docs = tmp_path / "docs"
    if not docs.exists():  # written once: a rewritten document folder counts as changed
        docs.mkdir()
        for i in range(3):
            (docs / f"d{i}.txt").write_text(f"Document {i}. " + "The harbour town holds a lantern festival. " * 4)
    data = {"name": "resume", "output_dir": str(tmp_path / "eval"), "lm_eval": {"enabled": False},
            "alpaca_eval": {"enabled": True, "instructions": str(REPO / "examples/benchmarks/alpaca_eval.json")},
            "hallucination": {"enabled": True, "documents": str(docs)}}
    for section, values in changes.items():
        data[section] = {**data[section], **values}
    return EvalRecipe.model_validate(data)


def test_evaluation_rerun_skips_finished_parts_and_reruns_changed_ones(tmp_path):
    """Scripted model and judge (prompts counted): a run dies in its second part (hallucination)
    after alpaca_eval finished; the rerun in the same run dir does not ask alpaca_eval's
    instructions again and ends with the scores of an uninterrupted run. A changed section of
    the recipe runs again; an unchanged one is still reused."""
    alpaca = [r["instruction"] for r in json.loads((REPO / "examples/benchmarks/alpaca_eval.json").read_text())]

    def evaluate(recipe, crash_on=None, run_name="m"):
        model = CountingChat("scripted-model", lambda p: f"An answer to: {p[:40]}", crash_on)
        judge = CountingChat("scripted-judge", _judge)
        try:
            run_eval(recipe, ModelSpec(), run_name=run_name, chat_model=model, judge=judge)
        except Killed:
            pass
        return model, judge

    clean_model, _ = evaluate(eval_recipe(tmp_path), run_name="clean")
    clean = json.loads((tmp_path / "eval" / "clean" / "results.json").read_text())
    assert any(p in alpaca for p in clean_model.prompts) and clean["reused_parts"] == []

    model, _ = evaluate(eval_recipe(tmp_path), crash_on="Document 1.")
    run = tmp_path / "eval" / "m"
    assert not (run / "results.json").exists() and (run / "parts" / "alpaca_eval.json").exists()
    assert not (run / "parts" / "hallucination.json").exists()

    model, judge = evaluate(eval_recipe(tmp_path))
    results = json.loads((run / "results.json").read_text())
    assert not any(p in alpaca for p in model.prompts), "alpaca_eval asked again"
    assert not any("Output (a):" in p for p in judge.prompts), "alpaca_eval judged again"
    assert any("Document 1." in p for p in model.prompts)
    assert results["reused_parts"] == ["alpaca_eval"] and results["scores"] == clean["scores"]

    model, _ = evaluate(eval_recipe(tmp_path, alpaca_eval={"max_tokens": 300}))
    results = json.loads((run / "results.json").read_text())
    assert any(p in alpaca for p in model.prompts) and not any("Document" in p for p in model.prompts)
    assert results["reused_parts"] == ["hallucination"]


class CountingLM(LM):
    """Scripted lm-eval model: GSM8K and BBH prompts get fixed answers; dies on ``crash_on``."""

    def __init__(self, crash_on: str | None = None):
        super().__init__()
        self.crash_on, self.contexts = crash_on, []

    def generate_until(self, requests):
        out = []
        for r in requests:
            ctx = r.args[0]
            self.contexts.append(ctx)
            if self.crash_on and self.crash_on in ctx:
                raise Killed(ctx)
            out.append("#### 6" if "baker" in ctx else "False")
        return out

    def loglikelihood(self, requests):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError


def test_lm_eval_rerun_skips_finished_tasks(tmp_path):
    """A scripted lm-eval model dies in the second task; the rerun does not send the first
    task's prompts again and scores both."""
    recipe = EvalRecipe.model_validate({
        "name": "resume", "output_dir": str(tmp_path / "eval"),
        "lm_eval": {"apply_chat_template": False, "tasks": [
            {"name": "gsm8k", "local": str(REPO / "examples/benchmarks/gsm8k.jsonl"), "num_fewshot": 0},
            {"name": "bbh_zeroshot_boolean_expressions",
             "local": str(REPO / "examples/benchmarks/bbh_boolean_expressions.jsonl")}]}})
    gsm = [json.loads(line)["question"][:40] for line in
           (REPO / "examples/benchmarks/gsm8k.jsonl").read_text().splitlines() if line.strip()]

    def asked_gsm8k(lm: CountingLM) -> int:
        return sum(any(q in c for q in gsm) for c in lm.contexts)

    first = CountingLM(crash_on="True")  # BBH prompts are boolean expressions
    with pytest.raises(Killed):
        run_eval(recipe, ModelSpec(), run_name="m", lm=first)
    assert asked_gsm8k(first) == len(gsm)
    assert (tmp_path / "eval" / "m" / "parts" / "lm_eval-gsm8k.json").exists()
    again = CountingLM()
    run = run_eval(recipe, ModelSpec(), run_name="m", lm=again)
    assert again.contexts and asked_gsm8k(again) == 0, "gsm8k asked again"
    results = json.loads((run / "results.json").read_text())
    assert results["reused_parts"] == ["lm_eval-gsm8k"]
    assert {v["benchmark"] for v in results["scores"].values()} == {"GSM8K", "BBH"}


# -- training: a killed run resumes from its last whole checkpoint --------------------------------
def test_resume_picks_the_last_whole_checkpoint(tmp_path):
    """A checkpoint cut short by a kill (no trainer_state.json, or a torn one) is passed over;
    numeric order, not name order; an explicit --resume_from_checkpoint wins."""
    from agentinstruct.train.sft import last_whole_checkpoint, resume_checkpoint

    assert last_whole_checkpoint(tmp_path / "missing") is None and last_whole_checkpoint(tmp_path) is None
    for step, state in ((2, '{"global_step": 2}'), (9, '{"global_step": 9}'), (10, '{"global_st'), (12, None)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "adapter_model.safetensors").write_bytes(b"x")
        if state is not None:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-99.tmp").mkdir()
    assert last_whole_checkpoint(tmp_path) == str(tmp_path / "checkpoint-9")
    assert resume_checkpoint(None, tmp_path) == str(tmp_path / "checkpoint-9")
    assert resume_checkpoint(str(tmp_path / "checkpoint-2"), tmp_path) == str(tmp_path / "checkpoint-2")


def _train_cmd(recipe: Path, *extra: str) -> list[str]:
    return [str(Path(sys.executable).parent / "accelerate"), "launch", "--num_processes", "1",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            str(REPO / "train" / "sft.py"), "--config", str(recipe), *extra]


@pytest.mark.slow  # reason: two launches of a real LoRA run on the embedded model, ~1-2 min on 2 cores
def test_training_killed_after_a_checkpoint_resumes_from_it(tmp_path):
    """Real CPU LoRA run of the embedded SmolLM2 (the CPU recipe), SIGKILLed once checkpoint-2 is
    saved; a checkpoint cut short is planted next to it. The same command again resumes from
    the last whole checkpoint and stops at max_steps, logging each step once."""
    rows = [[{"role": "user", "content": f"What is {i} plus {i}?"},
             {"role": "assistant", "content": f"It is {2 * i}."}] for i in range(12)]
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"messages": rows})}).save_to_disk(
        str(tmp_path / "data"))
    recipe = yaml.safe_load((REPO / "recipes/smollm2-135m/sft/config_lora.yaml").read_text())
    out = tmp_path / "out"
    recipe["dataset_mixture"]["sources"][0]["path"] = str(tmp_path / "data")
    recipe.update(output_dir=str(out), max_length=128, per_device_train_batch_size=2, save_steps=2,
                  save_total_limit=None, warmup_steps=0, max_steps=6)
    path = tmp_path / "cpu.yaml"
    path.write_text(yaml.safe_dump(recipe))

    proc = subprocess.Popen(_train_cmd(path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, cwd=REPO)
    deadline = time.time() + 300
    while not (out / "checkpoint-2" / "trainer_state.json").exists() and time.time() < deadline \
            and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "trainer_state.json").exists() and not (out / "checkpoint-6").exists()
    whole = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if (p / "trainer_state.json").exists())
    torn = out / f"checkpoint-{whole + 1}"  # as a kill while saving leaves it
    torn.mkdir(exist_ok=True)
    (torn / "adapter_model.safetensors").write_bytes(b"partial")
    (torn / "trainer_state.json").unlink(missing_ok=True)

    res = subprocess.run(_train_cmd(path), capture_output=True, text=True, timeout=600, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert f"Resuming from checkpoint {out / f'checkpoint-{whole}'}" in log and f"Skipping {torn}" in log
    state = json.loads((out / "trainer_state.json").read_text())
    steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert state["global_step"] == 6 and steps == [1, 2, 3, 4, 5, 6]


# -- pipeline: finished stages are not rerun ------------------------------------------------------
def pipeline_recipe(tmp_path: Path, base_url: str) -> Path:
    """A reduced pipeline: generate on the fake server, 2 LoRA steps, held-out QA on 4 questions."""
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps({"question": f"How many eels were counted in survey {i}?",
                                             "answers": ["12,000"], "source": "lake_veyra.txt"}) + "\n"
                                 for i in range(4)))
    eval_recipe = tmp_path / "eval.yaml"
    eval_recipe.write_text(yaml.safe_dump({"name": "tiny", "lm_eval": {"enabled": False},
                                           "heldout": {"questions": str(questions), "max_tokens": 8}}))
    gen = tmp_path / "gen.yaml"
    gen.write_text(yaml.safe_dump({
        "teacher": {"backend": "openai", "base_url": base_url, "model": "fake",
                    "max_concurrency": MAX_CONCURRENCY, "backoff_base_s": 0.01},
        "input": str(REPO / "examples/docs"), "skills": ["reading_comprehension", "text_modification"],
        "limit": 3, "seeds_in_flight": 1}))
    pipe = tmp_path / "pipe.yaml"
    pipe.write_text(yaml.safe_dump({
        "name": "reduced", "output_dir": str(tmp_path / "run"), "generate": {"recipe": str(gen)},
        "train": {"recipe": str(REPO / "recipes/smollm2-135m/sft/config_lora.yaml"),
                  "args": ["--max_steps", "2", "--max_length", "256", "--per_device_train_batch_size", "2",
                           "--save_steps", "2"]},
        "evaluate": {"recipe": str(eval_recipe)}}))
    return pipe


def test_pipeline_killed_in_generate_resumes_the_stage_then_skips_it(server, tmp_path):
    """The pipeline CLI is SIGKILLed inside its generate stage (fake server). The stage run again
    resumes from the journal and call cache (only the calls in flight at the kill are paid
    twice), writes its marker, and is then skipped with no request at all; a marker torn by a
    kill while it was written counts as not finished."""
    from rich.console import Console

    from agentinstruct.pipeline import Pipeline, load_pipeline_recipe

    pipe = pipeline_recipe(tmp_path, server.base_url)
    gen_out = tmp_path / "run" / "generate"
    before = len(server.requests)
    proc = subprocess.Popen([CLI, "pipeline", "--config", str(pipe), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while journal_lines(gen_out) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, "the pipeline ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.3)  # a request the client sent just before dying reaches the server's count
    killed, cached, partial = len(server.requests) - before, cached_calls(gen_out), journal_lines(gen_out)
    markers = tmp_path / "run" / "markers"
    assert not (markers / "generate.json").exists() and not (gen_out / "dataset").exists()
    assert 0 <= killed - cached <= MAX_CONCURRENCY

    def stage() -> Pipeline:
        return Pipeline(load_pipeline_recipe(pipe), Console(stderr=True), show_progress=False)

    stage().generate()
    resumed = len(server.requests) - before - killed
    units = [json.loads(line)["unit"] for line in (gen_out / "records.jsonl").read_text().splitlines()]
    assert len(units) == len(set(units)) > partial
    assert (markers / "generate.json").exists() and (gen_out / "manifest.json").exists()
    rows = all_rows(gen_out)

    stage().generate()
    assert len(server.requests) - before == killed + resumed, "a finished stage asked the server again"
    (markers / "generate.json").write_text('{"ke')  # torn while written
    stage().generate()
    assert len(server.requests) - before == killed + resumed  # rerun from journal and cache: no call
    assert json.loads((markers / "generate.json").read_text())["key"] and all_rows(gen_out) == rows


@pytest.mark.slow  # reason: trains and evaluates the embedded model on CPU, ~2-3 min on 2 cores
def test_pipeline_killed_in_evaluate_reruns_only_unfinished_stages(server, tmp_path):
    """The pipeline CLI (fake server teacher, embedded student) is SIGKILLed while it evaluates
    the base model; the same command again skips generate and train (no server request, the
    trained adapter untouched) and finishes the evaluations."""
    pipe = pipeline_recipe(tmp_path, server.base_url)
    run = tmp_path / "run"
    proc = subprocess.Popen([CLI, "pipeline", "--config", str(pipe), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while not ((run / "markers" / "train.json").exists() and (run / "eval" / "base").exists()) \
            and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the pipeline ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "markers" / "evaluate base.json").exists()
    requests = len(server.requests)
    adapter = (run / "train" / "adapter_model.safetensors").stat().st_mtime_ns

    res = subprocess.run([CLI, "pipeline", "--config", str(pipe), "--no-progress"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "generate: up to date, skipped" in res.stderr and "train: up to date, skipped" in res.stderr
    assert len(server.requests) == requests
    assert (run / "train" / "adapter_model.safetensors").stat().st_mtime_ns == adapter
    for name in ("base", "tuned"):
        assert json.loads((run / "eval" / name / "results.json").read_text())["scores"]
    assert (run / "markers" / "evaluate tuned.json").exists()
