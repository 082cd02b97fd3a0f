"""Decontamination that sees every evaluation item: short items matched whole, every set loaded
the way the evaluation loads it (lm-eval's TaskManager, held-out parts, eval files) with a load
status, and a card that never claims a set it did not check. Offline, no model, no LLM."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml
from agentinstruct.generate import export
from agentinstruct.generate.decontam import Decontaminator, NgramIndex
from agentinstruct.generate.gates_config import DecontaminationGate

SHORT_Q = "Which river carries water out of Lake Veyra?"           # 8 words: no 13-gram
ACCENTED_Q = "Quelle rivière traverse le lac Véyra en été ?"        # non-ASCII words count
LONG_ITEM = ("The lighthouse keeper of Orrin Bay logged forty seven storms during the winter of 1931 "
             "and lit the lamp every night")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def eval_recipe(tmp_path: Path, body: dict) -> str:
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "lm_eval": {"enabled": False}, **body}))
    return str(path)


def heldout_recipe(tmp_path: Path) -> str:
    write_jsonl(tmp_path / "test.jsonl", [
        {"question": SHORT_Q, "answers": ["Orrin"], "source": "lake.txt"},
        {"question": ACCENTED_Q, "answers": ["la Brenne"], "source": "lake.txt"},
        {"question": "What is the capital?", "answers": ["Paris"], "source": "x.txt"},  # too short to index
    ])
    return eval_recipe(tmp_path, {"heldout": {"questions": {"test": "test.jsonl"}}})


def row(user: str, assistant: str = "An answer.") -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def card_for(gate: Decontaminator) -> str:
    manifest = {"splits": ["rc"], "teacher": "t", "recipe_hash": "h", "skills": ["rc"], "input": "docs",
                "ingest": {"seeds": 1}, "decontamination": gate.card_section()}
    return export.dataset_card(manifest, {"rc": Counter(accepted=1, rejected=0)})


def card_rows(card: str) -> dict[str, list[str]]:
    """benchmark -> the cells of its row in the decontamination table."""
    section = card.split("## Decontamination", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| benchmark")]
    return {r[0]: r for r in rows}


def test_short_heldout_question_is_caught_but_a_shared_answer_word_is_not(tmp_path):
    cfg = DecontaminationGate(eval_recipes=[heldout_recipe(tmp_path)], cache_dir=str(tmp_path / "cache"))
    gate = Decontaminator(NgramIndex.build(cfg))
    hit = gate(row("Quiz: " + SHORT_Q.upper().replace("?", "") + " Explain briefly."))
    assert hit and hit[1] == "contaminated: held-out (test): 'which river carries water out of lake veyra'"
    assert gate(row("Say something.", "Answer: " + ACCENTED_Q.upper()))  # in the assistant turn, Unicode case
    assert gate(row("The Orrin carries water north, past Paris.")) is None          # the answer word alone
    assert gate(row("Which river carries water out of Lake Veyrasund?")) is None    # not a whole-word copy
    assert gate(row("What is the capital? Paris, of course.")) is None              # under min_words
    assert gate.removed and sum(gate.removed.values()) == 2
    [status] = gate.index.sets
    assert (status.benchmark, status.checked, status.items) == ("held-out (test)", True, 3)


def test_lm_eval_tasks_with_local_datasets_are_indexed_through_the_task_manager(tmp_path):
    """Both tasks are built by lm-eval's TaskManager exactly as the evaluation builds them: the
    registered gsm8k YAML with a local file as its dataset (lm_harness.task_spec), and a task YAML
    of our own (a path as the task name) whose dataset is a local JSON file."""
    question = "Ana has 9 marbles and buys 4 more. How many now?"  # 11 words
    write_jsonl(tmp_path / "gsm.jsonl", [
        {"question": question, "answer": "She has 9 + 4 = <<9+4=13>>13 marbles.\n#### 13"},
        {"question": "A farmer plants 3 rows of 8 trees and then plants 5 more rows of the same size. "
                     "How many trees are there?", "answer": "8 * 8 = <<8*8=64>>64.\n#### 64"}])
    write_jsonl(tmp_path / "qa.jsonl", [{"q": "Name the tallest lighthouse on the Merrow coast.",
                                         "a": "The old Orrin Point light near Brell"}])
    task_yaml = tmp_path / "tiny_task.yaml"
    task_yaml.write_text(yaml.safe_dump({
        "task": "tiny_local_qa", "dataset_path": "json", "test_split": "test",
        "dataset_kwargs": {"data_files": {"test": str(tmp_path / "qa.jsonl")}},
        "output_type": "generate_until", "doc_to_text": "Q: {{q}}\nA:", "doc_to_target": "{{a}}",
        "metric_list": [{"metric": "exact_match", "higher_is_better": True}]}))
    recipe = eval_recipe(tmp_path, {"lm_eval": {"tasks": [
        {"name": "gsm8k", "local": "gsm.jsonl", "num_fewshot": 0},
        {"name": str(task_yaml), "benchmark": "Tiny QA"}]}})
    index = NgramIndex.build(DecontaminationGate(eval_recipes=[recipe], cache_dir=str(tmp_path)))
    gsm, tiny = index.sets
    assert (gsm.benchmark, gsm.checked, gsm.items) == ("GSM8K", True, 2) and "gsm.jsonl" in gsm.source
    assert (tiny.benchmark, tiny.checked, tiny.items) == ("Tiny QA", True, 1)
    gate = Decontaminator(index)
    assert gate(row("Please solve: " + question))[1].startswith("contaminated: GSM8K:")
    assert gate(row("Tell me: name the tallest lighthouse on the Merrow coast!"))[1].startswith("contaminated: Tiny QA:")
    assert gate(row("Who?", "It is the old Orrin Point light near Brell, of course."))  # its answer, 8 words
    assert gate(row("Ana has 9 marbles. Tom has 4 boxes of pencils. The Orrin Point light.")) is None
    assert gate.card_section()["removed"] == {"GSM8K": 1, "Tiny QA": 2}


def test_a_set_that_cannot_be_loaded_is_reported_not_checked(tmp_path, monkeypatch, caplog):
    """A Hub-only task with the Hub offline and an empty cache, and an unknown task name: both
    warned about, marked not checked, left out of the claimed benchmarks; the run goes on."""
    import datasets
    import huggingface_hub.constants as hub_constants

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hf_hub"))
    write_jsonl(tmp_path / "test.jsonl", [{"question": SHORT_Q, "answers": ["Orrin"]}])
    recipe = eval_recipe(tmp_path, {"lm_eval": {"tasks": [{"name": "gsm8k"}, {"name": "no_such_task_xyz"}]},
                                    "heldout": {"questions": "test.jsonl"}})
    cfg = DecontaminationGate(eval_recipes=[recipe], cache_dir=str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING):
        index = NgramIndex.build(cfg)
    by_name = {s.benchmark: s for s in index.sets}
    assert not by_name["GSM8K"].checked and "OfflineModeIsEnabled" in by_name["GSM8K"].note
    assert "not a registered task" in by_name["no_such_task_xyz"].note
    assert not by_name["no_such_task_xyz"].checked and by_name["held-out (test)"].checked
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("GSM8K" in m and "NOT CHECKED" in m for m in warned)
    assert any("no_such_task_xyz" in m and "NOT CHECKED" in m for m in warned)
    gate = Decontaminator(index)
    assert gate(row(SHORT_Q))  # the sets that loaded still work
    section = gate.card_section()
    assert section["benchmarks"] == ["held-out (test)"] and set(section["not_checked"]) == {"GSM8K", "no_such_task_xyz"}
    rows = card_rows(card_for(gate))
    assert rows["GSM8K"][1] == "**not checked**" and rows["no_such_task_xyz"][1] == "**not checked**"
    assert rows["held-out (test)"][1] == "yes"
    assert "**Not checked (could not be loaded):** GSM8K, no_such_task_xyz" in card_for(gate)
    assert not list((tmp_path / "cache").glob("decontam/index-*.pkl"))  # a partial index is not cached
    with pytest.raises(ValueError, match="NOT CHECKED.*strict"):
        NgramIndex.build(cfg.model_copy(update={"strict": True}))


def test_card_removals_per_benchmark_match_the_rejected_rows(tmp_path):
    recipe = heldout_recipe(tmp_path)
    write_jsonl(tmp_path / "tiny_eval.jsonl", [{"question": LONG_ITEM + "?", "answer": "forty seven"}])
    cfg = DecontaminationGate(eval_recipes=[recipe], eval_files=[str(tmp_path / "tiny_eval.jsonl")],
                              cache_dir=str(tmp_path / "cache"))
    NgramIndex.build(cfg)  # the second build comes from the cache, statuses included
    assert list((tmp_path / "cache").glob("decontam/index-*.pkl"))
    gate = Decontaminator(NgramIndex.build(cfg))
    rows = [row(SHORT_Q), row("x", "So: " + SHORT_Q), row("Story: " + LONG_ITEM.lower()),
            row("A clean question about bread?"), row("Another clean one, with forty seven words?")]
    rejected = Counter(re.match(r"contaminated: (.+?): '", hit[1]).group(1)
                       for hit in (gate(r) for r in rows) if hit)
    assert rejected == {"held-out (test)": 2, "tiny_eval": 1}
    table = card_rows(card_for(gate))
    assert {b: (cells[1], int(cells[2]), int(cells[3])) for b, cells in table.items()} == \
        {"held-out (test)": ("yes", 3, 2), "tiny_eval": ("yes", 1, 1)}
    assert gate.report()["removed"] == 3


def test_the_orca3_generate_recipe_decontaminates_against_the_orca3_benchmarks(repo):
    """The server/Orca-3 path plans the real sets the Orca-3 evaluation loads (nothing loaded here)."""
    from agentinstruct.generate.decontam import _plan
    from agentinstruct.generate.runner import load_generate_recipe

    cfg = load_generate_recipe(repo / "recipes/generate/openai-server.yaml").gates.decontamination
    assert [Path(p).name for p in cfg.eval_recipes] == ["orca3-suite.yaml"]
    planned = [(p.status.benchmark, p.status.source) for p in _plan(cfg) if p.load is not None]
    assert [b for b, _ in planned] == ["AGIEval", "GSM8K", "BBH", "MMLU", "AlpacaEval"]
    assert all("Hub" in source for _, source in planned)  # the real sets, not the local fixtures
