"""Bad input, everywhere: each case runs the CLI (in process, typer's CliRunner) and must end
with a non-zero exit and ONE line `error: ...` naming the problem, no traceback, and no
corrupt partial output: the disk is left as it was (nothing created, changed or deleted),
except where a run is written on purpose before it reports that nothing usable came out.

No case loads model weights: teachers point at the scripted fake server (tests/fake_openai.py)
or at a closed port, and the LoRA-target case builds the embedded model on the meta device.
The unknown lm-eval task case builds lm-eval's task index (seconds, once per process).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from fake_openai import FakeOpenAIServer
from typer.testing import CliRunner

from agentinstruct.cli import app

REPO = Path(__file__).resolve().parent.parent
DEAD_URL = "http://127.0.0.1:9/v1"  # the discard port: nothing listens, connections are refused
# a folder nobody may create anything in, even root (sysfs refuses mkdir), else a read-only one
UNWRITABLE = "/sys/agentinstruct-test/out" if os.geteuid() == 0 else None


@dataclass
class Case:
    argv: list[str]
    message: str  # expected in the single error line
    keep_disk: bool = True  # the tmp tree must be byte-for-byte as before
    check: Callable[[Path], None] | None = None  # more checks on the tmp tree afterwards


# --- builders -------------------------------------------------------------------------------

def docs(tmp: Path) -> Path:
    d = tmp / "docs"
    d.mkdir(exist_ok=True)
    (d / "lake.txt").write_text("Lake Veyra is fed by three rivers and drains through the Oss. "
                                "It freezes every January and hosts a winter market on the ice.\n")
    return d


def gen_recipe(tmp: Path, base_url: str = DEAD_URL, **extra) -> Path:
    data = {
        "teacher": {"backend": "openai", "base_url": base_url, "model": "fake", "max_retries": 0,
                    "backoff_base_s": 0.0, "backoff_max_s": 0.0, "timeout_s": 5},
        "input": str(docs(tmp)), "output": str(tmp / "run"), "skills": ["text_modification"],
        "limit": 1,
        "gates": {g: {"enabled": False} for g in
                  ("grounding", "rederive", "tools", "dedup", "decontamination", "judge_score")},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path = tmp / "gen.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def gen(tmp: Path, *args: str, **extra) -> list[str]:
    return ["generate", "--recipe", str(gen_recipe(tmp, **extra)), "--no-progress", *args]


def bad_skill(tmp: Path, prompt: str) -> str:
    skill = yaml.safe_load((REPO / "recipes" / "skills" / "text_modification.yaml").read_text())
    skill["instruction"]["prompt"] = prompt
    path = tmp / "typo_skill.yaml"
    path.write_text(yaml.safe_dump(skill))
    return str(path)


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
    return path


def a_file(tmp: Path) -> Path:
    return write(tmp / "f", "x")


def user_folder(tmp: Path) -> Path:
    d = tmp / "mine"
    d.mkdir()
    (d / "thesis.txt").write_text("years of work")
    return d


def messages_file(tmp: Path, rows: list[list[dict]]) -> Path:
    path = tmp / "data.jsonl"
    path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in rows))
    return path


GOOD_CHAT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]


def train_cfg(tmp: Path, data: Path | None = None, **extra) -> list[str]:
    cfg = {
        "model_name_or_path": "embedded:smollm2-135m-instruct", "use_peft": False,
        "dataset_mixture": {"sources": [{"path": str(data or messages_file(tmp, [GOOD_CHAT] * 3))}]},
        "output_dir": str(tmp / "trained"), "use_cpu": True, "bf16": False, "report_to": "none",
        "max_steps": 1,
    }
    cfg.update(extra)
    path = tmp / "sft.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return ["train", "--config", str(path)]


def eval_cfg(tmp: Path, **sections) -> list[str]:
    cfg = {"name": "bad", "output_dir": str(tmp / "evals"), "lm_eval": {"enabled": False}, **sections}
    path = tmp / "eval.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return ["evaluate", "--config", str(path), "--model", "openai:http://127.0.0.1:9/v1:fake", "--no-report"]


def results_dir(tmp: Path, results: dict | str) -> str:
    d = tmp / "evalrun"
    d.mkdir()
    (d / "results.json").write_text(results if isinstance(results, str) else json.dumps(results))
    return str(d)


def no_results(tmp: Path) -> None:
    assert not list(tmp.rglob("results.json")), "a results.json was written"


def written_run(tmp: Path) -> None:
    """Zero usable output: the run is still written (the rejected split explains why)."""
    assert (tmp / "run" / "manifest.json").exists() and (tmp / "run" / "dataset").is_dir()


def user_file_intact(tmp: Path) -> None:
    assert (tmp / "mine" / "thesis.txt").read_text() == "years of work"


def input_intact(tmp: Path) -> None:
    assert (tmp / "docs" / "lake.txt").read_text().startswith("Lake Veyra")


# --- the cases ------------------------------------------------------------------------------

CASES: dict[str, Callable[[Path, str], Case]] = {  # (tmp folder, fake server URL) -> case
    # generate: the recipe
    "generate-missing-recipe": lambda t, url: Case(["generate", "--recipe", str(t / "nope.yaml")], "recipe file not found"),
    "generate-invalid-yaml": lambda t, url: Case(
        ["generate", "--recipe", str(write(t / "r.yaml", "skills: [a\n"))], "invalid YAML"),
    "generate-unknown-key": lambda t, url: Case(gen(t, temprature=0.5), "temprature: unknown key"),
    "generate-max-tokens-negative": lambda t, url: Case(gen(t, max_tokens={"answer": -1}),
                                                   "max_tokens.answer: Input should be greater than or equal to 1"),
    "generate-overlap-not-below-chunk": lambda t, url: Case(gen(t, chunking={"max_tokens": 64, "overlap": 64}),
                                                       "overlap (64) must be smaller than max_tokens (64)"),
    "generate-zero-concurrency": lambda t, url: Case(gen(t, teacher={"backend": "openai", "base_url": DEAD_URL,
                                                                "model": "f", "max_concurrency": 0}),
                                                "teacher.max_concurrency"),
    "generate-temperature-out-of-range": lambda t, url: Case(gen(t, temperature=7), "temperature: Input should be less"),
    "generate-dedup-bands": lambda t, url: Case(gen(t, gates={"dedup": {"num_bands": 5}}),
                                           "num_bands (5) must divide num_perm (128)"),
    "generate-backoff-order": lambda t, url: Case(gen(t, teacher={"backend": "openai", "base_url": DEAD_URL, "model": "f",
                                                             "backoff_base_s": 5, "backoff_max_s": 1}),
                                             "backoff_max_s (1.0) must be at least backoff_base_s (5.0)"),
    "generate-limit-zero": lambda t, url: Case(gen(t, "--limit", "0"), "limit: Input should be greater than or equal to 1"),
    # generate: skills and templates
    "generate-unknown-skill": lambda t, url: Case(gen(t, skills=["no_such_skill"]), "unknown skill 'no_such_skill'"),
    "generate-unknown-skills-flag": lambda t, url: Case(gen(t, "--skills", "nope"), "--skills: unknown skill 'nope'"),
    "generate-template-variable-typo": lambda t, url: Case(
        gen(t, skills=[bad_skill(t, "Text:\n{{ text }}\nType: {{ typ.name }}")]),
        "typo_skill.yaml: instruction.prompt: unknown template variable 'typ' (template line 3); "
        "available: language, passages, text, type"),
    "generate-template-syntax-error": lambda t, url: Case(
        gen(t, skills=[bad_skill(t, "Text:\n{{ text }}\n{% if type %}{{ type.name }}\n")]),
        "typo_skill.yaml: instruction.prompt: template syntax error: Unexpected end of template"),
    "generate-template-syntax-error-line": lambda t, url: Case(
        gen(t, skills=[bad_skill(t, "Text:\n\n{{ text }\n")]),
        "instruction.prompt: template syntax error: unexpected '}' (template line 3)"),
    # generate: input
    "generate-missing-input": lambda t, url: Case(gen(t, input=str(t / "nowhere")), "nowhere does not exist"),
    "generate-missing-hf-dataset-offline": lambda t, url: Case(
        gen(t, input="hf:no-such-org/no-such-dataset"), "input 'hf:no-such-org/no-such-dataset': cannot load"),
    "generate-no-readable-input": lambda t, url: Case(
        gen(t, input=str(write(t / "bin" / "a.txt", b"\x00\x01").parent)),
        "no usable records: 0 seeds read from", keep_disk=False, check=written_run),
    # generate: output
    "generate-output-is-input-overwrite": lambda t, url: Case(gen(t, "--overwrite", output=str(docs(t))),
                                                         "is the input folder", check=input_intact),
    "generate-output-inside-input": lambda t, url: Case(gen(t, output=str(docs(t) / "run")), "lies inside the input"),
    "generate-output-contains-input-overwrite": lambda t, url: Case(
        gen(t, "--overwrite", "--force", output=str(t)), "contains the input", check=input_intact),
    "generate-overwrite-unmarked-folder": lambda t, url: Case(
        gen(t, "--overwrite", output=str(user_folder(t))), "not made by agentinstruct",
        check=user_file_intact),
    "generate-unmarked-folder-no-overwrite": lambda t, url: Case(
        gen(t, output=str(user_folder(t))), "refusing to write into it"),
    "generate-output-is-a-file": lambda t, url: Case(
        gen(t, output=str(a_file(t))), "exists and is not a folder"),
    "generate-output-under-a-file": lambda t, url: Case(
        gen(t, output=str(a_file(t) / "run")), "is a file"),
    "generate-output-unwritable": lambda t, url: Case(gen(t, output=UNWRITABLE or str(t / "ro" / "run")), "not writable"),
    # generate: nothing usable produced
    "generate-every-call-fails": lambda t, url: Case(gen(t), "units failed", keep_disk=False, check=written_run),
    "generate-all-pairs-rejected": lambda t, url: Case(gen(t, base_url=url), "no usable records: all", keep_disk=False,
                                                  check=written_run),
    # train
    "train-missing-config": lambda t, url: Case(["train", "--config", str(t / "nope.yaml")], "recipe file not found"),
    "train-no-dataset-mixture": lambda t, url: Case(train_cfg(t, dataset_mixture=None), "dataset_mixture: required key"),
    "train-missing-source": lambda t, url: Case(train_cfg(t, data=t / "absent.jsonl"), "sources.0"),
    "train-missing-split": lambda t, url: Case(
        train_cfg(t, dataset_mixture={"sources": [{"path": str(messages_file(t, [GOOD_CHAT])), "splits": ["dev"]}]}),
        "no split(s) ['dev']"),
    "train-unknown-role": lambda t, url: Case(
        train_cfg(t, messages_file(t, [GOOD_CHAT, [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "x"}]])),
        "split 'train': row 1: messages[1].role: unknown role 'bot'"),
    "train-message-without-content": lambda t, url: Case(
        train_cfg(t, messages_file(t, [GOOD_CHAT, [{"role": "user"}, {"role": "assistant", "content": "x"}]])),
        "row 1: messages[0].content: missing (user turn)"),
    "train-no-assistant-turn": lambda t, url: Case(
        train_cfg(t, messages_file(t, [[{"role": "user", "content": "Hi"}]])), "row 0: messages: no assistant turn"),
    "train-lora-target-typo": lambda t, url: Case(
        train_cfg(t, use_peft=True, lora_target_modules=["q_proj", "v_projj"]),
        "lora_target_modules: ['v_projj'] not in the model"),
    "train-output-dir-is-a-file": lambda t, url: Case(
        train_cfg(t, output_dir=str(a_file(t))), f"output_dir {t / 'f'}: exists and is not a folder"),
    "train-output-dir-unwritable": lambda t, url: Case(train_cfg(t, output_dir=UNWRITABLE or str(t / "ro" / "o")),
                                                  "not writable"),
    # evaluate
    "evaluate-missing-config": lambda t, url: Case(["evaluate", "--config", str(t / "nope.yaml")], "recipe file not found"),
    "evaluate-zero-max-tokens": lambda t, url: Case(
        eval_cfg(t, heldout={"questions": str(t / "q.jsonl"), "max_tokens": 0}), "heldout.max_tokens"),
    "evaluate-bad-batch-size": lambda t, url: Case(eval_cfg(t, lm_eval={"batch_size": "big"}), "auto or auto:N"),
    "evaluate-bad-model-string": lambda t, url: Case(["evaluate", "--config", eval_cfg(t)[2], "--model", "openai:x"],
                                                "expected openai:BASE_URL:MODEL"),
    "evaluate-unknown-lm-eval-task": lambda t, url: Case(
        eval_cfg(t, lm_eval={"tasks": [{"name": "gsm8kk"}]}), "unknown lm-eval task 'gsm8kk'; did you mean gsm8k"),
    "evaluate-heldout-bad-json-line": lambda t, url: Case(
        eval_cfg(t, heldout={"questions": str(write(t / "q.jsonl", '{"question": "a?", "answers": ["b"]}\n\n'
                                               '{"question": "c?", "answers": ["d"]}\n{oops\n'))}),
        "q.jsonl:4: not JSON", keep_disk=False, check=no_results),
    # report
    "report-missing-run-dir": lambda t, url: Case(["report", str(t / "nope"), "--output", str(t / "rep")], "no results.json"),
    "report-results-without-scores": lambda t, url: Case(
        ["report", results_dir(t, {"run_name": "r", "model": "m", "created": "now", "scores": {}}),
         "--output", str(t / "rep")], "results.json: no scores"),
    "report-results-invalid-json": lambda t, url: Case(["report", results_dir(t, '{"scores": {\n'), "--output", str(t / "rep")],
                                                  "results.json: not valid JSON"),
    "report-output-is-a-file": lambda t, url: Case(
        ["report", results_dir(t, {"run_name": "r", "model": "m", "created": "now",
                                   "scores": {"x": {"value": 0.5}}}),
         "--output", str(a_file(t))], f"--output {t / 'f'}: exists and is not a folder"),
}


def tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()} | {
            str(p.relative_to(root)) + "/": (0, 0) for p in root.rglob("*") if p.is_dir()}


@pytest.fixture(scope="module")
def empty_reply_server():
    """Scripted fake OpenAI server replying with empty strings: every pair is rejected."""
    with FakeOpenAIServer(responder=lambda request: "") as server:
        yield server


@pytest.mark.parametrize("name", list(CASES))
def test_bad_inputs(name, tmp_path, monkeypatch, empty_reply_server):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # no network in any case
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    if name.endswith("unwritable") and UNWRITABLE is None:
        (tmp_path / "ro").mkdir(mode=0o500)
    case = CASES[name](tmp_path, empty_reply_server.base_url)
    before = tree(tmp_path)
    result = CliRunner().invoke(app, case.argv, catch_exceptions=True)
    out = result.output  # stdout and stderr, as a user sees them
    assert result.exit_code != 0, out
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), \
        f"uncaught {type(result.exception).__name__}: {result.exception}"
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    assert case.message in errors[0], errors[0]
    if case.keep_disk:
        assert tree(tmp_path) == before, "the disk changed"
    if case.check:
        case.check(tmp_path)


# --- the guards' good paths: what they let through ------------------------------------------

def test_overwrite_deletes_only_a_folder_agentinstruct_made(tmp_path):
    from agentinstruct.generate.rundir import MARKER, OutputError, check_output, prepare_run_dir

    src = docs(tmp_path)
    run = tmp_path / "run"
    check_output(run, str(src), overwrite=True, force=False)  # absent: fine
    prepare_run_dir(run, overwrite=True)
    (run / "records.jsonl").write_text("old\n")
    assert (run / MARKER).is_file()
    check_output(run, str(src), overwrite=True, force=False)  # ours: may be deleted
    prepare_run_dir(run, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == [MARKER]
    mine = user_folder(tmp_path)
    with pytest.raises(OutputError, match="not made by agentinstruct"):
        check_output(mine, str(src), overwrite=True, force=False)
    check_output(mine, str(src), overwrite=True, force=True)  # --force: the user said so
    empty = tmp_path / "empty"
    empty.mkdir()
    check_output(empty, str(src), overwrite=False, force=False)  # an empty folder is fine
    with pytest.raises(OutputError, match="contains the input"):  # never, even forced
        check_output(tmp_path, f"{src}/*.txt", overwrite=True, force=True)


def test_shipped_skills_templates_all_validate_and_every_field_has_variables():
    from agentinstruct.generate.skills import available_skills, load_skill, template_variables

    for name in available_skills():
        skill = load_skill(name)
        assert all(template_variables(f) for f in skill.templates())


def test_training_turn_shapes_that_are_valid():
    from agentinstruct.train.preflight import message_problem, unknown_lora_targets

    calls = [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]
    assert message_problem([{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                            {"role": "assistant", "content": None, "tool_calls": calls},
                            {"role": "tool", "content": "42"}, {"role": "assistant", "content": "42."}]) is None
    assert "messages[2].content: missing" in message_problem(
        [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}, {"role": "tool", "content": None}])
    names = ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj", "lm_head"]
    assert unknown_lora_targets(names, ["q_proj", "up_proj", "lm_head", "proj", "q_projj"]) == ["proj", "q_projj"]
