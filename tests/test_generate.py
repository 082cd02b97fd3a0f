"""The generation engine end to end: fake OpenAI server (exact, fast, killable) and the real
embedded model."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
import yaml
from agentinstruct.generate.runner import load_generate_recipe, run_generate
from fake_openai import FakeOpenAIServer

from agentinstruct.records import PROVENANCE_COLUMNS

CLI = str(Path(sys.executable).parent / "agentinstruct")


def server_recipe(tmp_path, base_url, out, **extra):
    data = {
        "teacher": {"backend": "openai", "base_url": base_url, "model": "fake-teacher",
                    "max_concurrency": 16, "backoff_base_s": 0.01},
        "input": str(Path(__file__).parent.parent / "examples" / "docs"),
        "output": str(out),
        "skills": ["reading_comprehension", "text_modification", "tool_use"],
        "seeds_in_flight": 4,
        "formats": ["jsonl", "parquet"],
    }
    data.update(extra)
    path = tmp_path / f"recipe-{out.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def all_rows(out):
    dd = datasets.load_from_disk(str(out / "dataset"))
    return {name: dd[name].to_list() for name in dd}


def check_rows(rows_by_split):
    for split, rows in rows_by_split.items():
        for row in rows:
            roles = [m["role"] for m in row["messages"]]
            if split != "rejected":
                assert roles[-2:] == ["user", "assistant"], row
                assert all(m["content"].strip() for m in row["messages"])
                assert row["reject_reason"] == ""
            else:
                assert row["reject_reason"] and row["reject_gate"]
            for col in PROVENANCE_COLUMNS:
                assert row[col] not in (None, ""), (col, row)


def test_full_run_through_openai_backend(tmp_path):
    out = tmp_path / "run"
    with FakeOpenAIServer() as server:
        recipe = load_generate_recipe(server_recipe(tmp_path, server.base_url, out))
        summary = run_generate(recipe, show_progress=False)
    rows = all_rows(out)
    assert set(rows) == {"rc", "text_modification", "tool_use", "rejected"}
    assert all(rows[s] for s in ("rc", "text_modification", "tool_use"))
    check_rows(rows)
    # the three flows ran: transformed texts, refined tasks (round 1), teacher answers
    rc = rows["rc"]
    assert {r["refinement_round"] for r in rc} == {1}
    assert {r["skill"] for r in rows["tool_use"]} == {"tool_use"}
    assert all(r["source"].endswith(".py") for r in rows["tool_use"])
    assert all(json.loads(r["messages"][-1]["content"])["calls"] is not None for r in rows["tool_use"])
    # outputs, manifest, card
    assert (out / "parquet" / "rc.parquet").exists() and (out / "jsonl" / "rc.jsonl").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["rc"]["accepted"] == len(rc) and manifest["versions"]["datasets"]
    card = (out / "dataset" / "README.md").read_text()
    assert "fake-teacher" in card and "| rc |" in card and "seed_id" in card
    assert summary.llm["calls"] > 0 and summary.llm["cache_hits"] == 0
    # a second run resumes everything from the journal and the cache: same rows, no calls
    with FakeOpenAIServer() as server2:
        recipe2 = load_generate_recipe(server_recipe(tmp_path, server2.base_url, out))
        again = run_generate(recipe2, show_progress=False)
        assert server2.requests == []
    assert again.resumed_units > 0 and all_rows(out) == rows


def test_skills_filter_and_limit(tmp_path):
    out = tmp_path / "run"
    with FakeOpenAIServer() as server:
        recipe = load_generate_recipe(server_recipe(tmp_path, server.base_url, out), limit=2)
        summary = run_generate(recipe, skills=["rc"], show_progress=False)
    assert summary.ingest.seeds == 2
    assert set(all_rows(out)) == {"rc", "rejected"}


def _journal_lines(out):
    path = out / "records.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


def test_sigkill_then_resume_gives_identical_records(tmp_path):
    with FakeOpenAIServer(delay=0.03) as server:
        killed = tmp_path / "killed"
        recipe = server_recipe(tmp_path, server.base_url, killed, seeds_in_flight=2)
        proc = subprocess.Popen([CLI, "generate", "--recipe", str(recipe), "--no-progress"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while _journal_lines(killed) < 3 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        partial = _journal_lines(killed)
        assert not (killed / "dataset").exists()

        resumed = subprocess.run([CLI, "generate", "--recipe", str(recipe), "--no-progress"],
                                 capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        assert "units resumed from journal" in resumed.stdout

        clean = tmp_path / "clean"
        whole = subprocess.run([CLI, "generate", "--recipe", str(server_recipe(tmp_path, server.base_url, clean)),
                                "--no-progress"], capture_output=True, text=True, timeout=300)
        assert whole.returncode == 0, whole.stderr
    a, b = all_rows(killed), all_rows(clean)
    assert a == b
    flat = [json.dumps(r, sort_keys=True) for rows in a.values() for r in rows]
    assert len(flat) == len(set(flat)), "duplicated records after resume"
    units = [json.loads(line)["unit"] for line in (killed / "records.jsonl").read_text().splitlines()]
    assert len(units) == len(set(units)) and len(units) > partial


def test_unknown_skill_in_recipe_is_a_clear_cli_error(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("skills: [reading_comprehension, juggling]\n")
    res = subprocess.run([CLI, "generate", "--recipe", str(recipe)], capture_output=True, text=True)
    assert res.returncode == 2
    assert "unknown skill 'juggling'" in res.stderr and "Traceback" not in res.stderr


def test_missing_input_is_a_clear_cli_error(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"skills: [tool_use]\ninput: {tmp_path}/nothing-here\noutput: {tmp_path}/o\n")
    res = subprocess.run([CLI, "generate", "--recipe", str(recipe), "--no-progress"],
                         capture_output=True, text=True)
    # checked when the recipe loads: one line naming the recipe, the key and the resolved path
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"{recipe}: input: path {tmp_path}/nothing-here does not exist" in " ".join(res.stderr.split())


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory, repo):
    out = tmp_path_factory.mktemp("embedded") / "run"
    recipe = load_generate_recipe(repo / "recipes" / "generate" / "demo-embedded.yaml",
                                  output=out, limit=3)
    summary = run_generate(recipe, skills=["rc", "tool_use"], show_progress=False)
    return out, summary


def test_embedded_model_run_produces_valid_dataset(embedded_run):
    out, summary = embedded_run
    rows = all_rows(out)
    check_rows(rows)
    assert sum(len(r) for r in rows.values()) >= 1, f"no rows at all: {summary.counts}"
    assert summary.llm["calls"] > 5 and summary.llm["completion_tokens"] > 100
    # whether the 135M teacher's pairs pass the gates is luck; every row is accounted for
    assert sum(c["accepted"] + c["rejected"] for k, c in summary.counts.items() if not k.startswith("_")) == \
        sum(len(r) for r in rows.values())


def test_sft_trainer_accepts_generated_dataset(embedded_run, tmp_path):
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from agentinstruct.embedded import converted_dir

    out, _ = embedded_run
    dd = datasets.load_from_disk(str(out / "dataset"))
    accepted = [dd[s] for s in dd if s != "rejected" and len(dd[s])]
    # the format check needs chat rows: accepted ones, else rejected ones that have an answer
    train = datasets.concatenate_datasets(accepted) if accepted else \
        dd["rejected"].filter(lambda r: r["messages"][-1]["role"] == "assistant")
    assert len(train) > 0
    model_dir = str(converted_dir())
    trainer = SFTTrainer(
        model=model_dir,
        args=SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=1, use_cpu=True, bf16=False,
                       gradient_checkpointing=False, report_to=[], max_length=512),
        train_dataset=train.select_columns(["messages"]),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )
    assert len(trainer.train_dataset) == len(train) and "input_ids" in trainer.train_dataset.column_names


def test_push_to_hub_sends_dataset_and_card_without_writing_the_token(tmp_path, monkeypatch):
    """The Hub calls are stubbed (no network here); the token stays in the environment."""
    import huggingface_hub

    pushed = {}
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    monkeypatch.setattr(datasets.DatasetDict, "push_to_hub",
                        lambda self, repo, private=False: pushed.update(repo=repo, splits=sorted(self)))
    monkeypatch.setattr(huggingface_hub.DatasetCard, "push_to_hub",
                        lambda self, repo, repo_type=None: pushed.update(card_repo=repo, card=self.content))
    out = tmp_path / "run"
    with FakeOpenAIServer() as server:
        recipe = load_generate_recipe(server_recipe(tmp_path, server.base_url, out), limit=1)
        run_generate(recipe, skills=["rc"], show_progress=False, push_to_hub="me/agentinstruct-demo")
    assert pushed["repo"] == pushed["card_repo"] == "me/agentinstruct-demo"
    assert pushed["splits"] == ["rc", "rejected"] and "# AgentInstruct synthetic dataset" in pushed["card"]
    for path in out.rglob("*"):
        if path.is_file():
            assert b"hf_secret_token_value" not in path.read_bytes(), path
