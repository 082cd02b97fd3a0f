"""Quality gates: tools, grounding, re-derivation, judge scores, dedup, decontamination."""

import asyncio
import json
from pathlib import Path

import datasets
import pytest
import yaml
from agentinstruct.generate import gates_config as cfgs
from agentinstruct.generate.decontam import Decontaminator, NgramIndex
from agentinstruct.generate.dedup import Deduplicator
from agentinstruct.generate.runner import load_generate_recipe, run_generate
from agentinstruct.generate.skills import load_skill
from agentinstruct.generate.tools import calculate, check_arithmetic, check_code, check_tool_calls
from agentinstruct.generate.verify import (
    GroundingCheck,
    JudgeScore,
    RederivationCheck,
    ToolCheck,
    lexical_support,
)
from fake_openai import FakeOpenAIServer

from agentinstruct.llm import ChatModel, Completion
from agentinstruct.records import Message, Record, Seed

SEED = Seed(id="s1", text="Lake Veyra is 2,140 metres above sea level. Biologists counted 12,000 glass eels in 2021.",
            source="lake.txt")


class Scripted(ChatModel):
    def __init__(self, reply):
        super().__init__()
        self.name, self.reply, self.calls = "scripted", reply, 0

    async def chat(self, messages, **kw):
        self.calls += 1
        text = self.reply(messages[-1]["content"]) if callable(self.reply) else self.reply
        return Completion(text, "stop")


def record(answer, user="Passage...\n\nHow many eels were counted?", skill="reading_comprehension",
           itype="literal_comprehension", instruction="How many eels were counted?"):
    return Record(messages=[Message(role="user", content=user), Message(role="assistant", content=answer)],
                  instruction=instruction, seed_id="s1", source="lake.txt", skill=skill,
                  split=SKILLS[skill].split, instruction_type=itype,
                  transformation="identity", refinement_round=0, teacher_model="t", recipe_hash="h")


SKILLS = {s.name: s for s in (load_skill("reading_comprehension"), load_skill("tool_use"))}


def test_calculator_and_arithmetic_check():
    assert calculate("12 + 9 * 2") == 30 and calculate("4 × 7") == 28 and calculate("1,500 / 3") == 500
    with pytest.raises(ValueError):
        calculate("__import__('os').system('true')")
    assert check_arithmetic("So 12 + 9 = 21 and 21 - 15 = 6.") is None
    assert check_arithmetic("So 12 + 9 = 22.") == "calculator: 12 + 9 = 22 is wrong (21)"


def test_sandbox_runs_code():
    assert check_code("```python\nprint(sum(range(10)))\n```", 5) is None
    assert "ZeroDivisionError" in check_code("```python\nx = 1 / 0\n```", 5)
    assert check_code("```python\nwhile True:\n    pass\n```", 1) == "sandbox: code fails: timed out"
    gate = ToolCheck(cfgs.ToolGate(allow_unisolated=True), SKILLS)  # the gate runs blocks off the loop
    assert asyncio.run(gate.check(record("Run:\n```python\nprint(1 / 0)\n```"), SEED)).endswith(
        "ZeroDivisionError: division by zero")
    assert asyncio.run(gate.check(record("Run:\n```python\nprint(12000)\n```"), SEED)) is None


def test_tool_calls_are_checked_against_the_api_description():
    api = "get_forecast(city: str, days: int = 3): daily forecast. get_air_quality(latitude, longitude)"
    ok = json.dumps({"calls": [{"name": "get_forecast", "arguments": {"city": "Oslo", "days": 5}}], "reason": ""})
    assert check_tool_calls(ok, api, "all_parameters_given") is None
    bad_fn = json.dumps({"calls": [{"name": "book_table", "arguments": {}}], "reason": ""})
    assert check_tool_calls(bad_fn, api, "all_parameters_given") == "tool calls: unknown function 'book_table'"
    bad_arg = json.dumps({"calls": [{"name": "get_forecast", "arguments": {"town": "Oslo"}}], "reason": ""})
    assert "has no parameter 'town'" in check_tool_calls(bad_arg, api, "superfluous_parameters")
    assert "must make no call" in check_tool_calls(ok, api, "needed_api_absent")
    gate = ToolCheck(cfgs.ToolGate(sandbox=False), SKILLS)
    r = record(bad_fn, user=f"You can call these APIs:\n{api}\n\nUser request: book", skill="tool_use",
               itype="all_parameters_given")
    assert asyncio.run(gate.check(r, SEED)) == "tool calls: unknown function 'book_table'"


def test_grounding_lexical_precheck_and_judge():
    assert lexical_support("12,000 glass eels were counted in 2021.", SEED.text) == 1.0
    judge = Scripted('{"supported": false}')
    gate = GroundingCheck(cfgs.GroundingGate(), judge, SKILLS)
    assert asyncio.run(gate.check(record("They counted 12,000 glass eels in 2021."), SEED)) is None
    assert judge.calls == 0  # extractive: no judge call
    reason = asyncio.run(gate.check(record("The eels migrate to the ocean every autumn."), SEED))
    assert reason == "answer not supported by the source document (judge)" and judge.calls == 1
    code_seed = SEED.model_copy(update={"kind": "code"})
    assert asyncio.run(gate.check(record("anything at all"), code_seed)) is None


def test_rederivation_exact_and_judged():
    teacher = Scripted("Counting in the passage gives 12,000.")
    judge = Scripted('{"agree": false}')
    gate = RederivationCheck(cfgs.RederiveGate(), teacher, judge, SKILLS)
    assert asyncio.run(gate.check(record("The answer is 12,000."), SEED)) is None
    assert judge.calls == 0  # numbers compared exactly, no judge
    assert asyncio.run(gate.check(record("The answer is 19,000."), SEED)) == \
        "re-derivation disagrees: 19000.0 vs 12000.0"
    teacher.reply = "Biologists did the count."
    assert asyncio.run(gate.check(record("The Serran Institute did it."), SEED)) == "re-derivation disagrees (judge)"


def test_judge_score_stored_and_minimum():
    reply = '{"correctness": 8, "instruction_following": 6, "complexity": 4, "helpfulness": 6, "rationale": "ok"}'
    gate = JudgeScore(cfgs.JudgeScoreGate(enabled=True, min_score=7), Scripted(reply))
    r = record("12,000.")
    assert asyncio.run(gate.check(r, SEED)) == "judge score 6.0 below minimum 7.0"
    assert r.to_row()["judge_score"] == 6.0 and r.judge_rationale == "ok"
    r2 = record("12,000.")
    assert asyncio.run(JudgeScore(cfgs.JudgeScoreGate(enabled=True), Scripted("no json")).check(r2, SEED)) is None
    assert r2.to_row()["judge_score"] == -1.0 and "unparseable" in r2.judge_rationale


def _row(instruction):
    return {"instruction": instruction, "messages": [{"role": "user", "content": instruction}]}


def test_exact_and_near_duplicates_removed(tmp_path):
    base = "Explain how the solar kiln dries oak boards and why the vents are closed at night in winter"
    existing = tmp_path / "old.jsonl"
    existing.write_text(json.dumps(_row("What is the capital of the fictional Serran Highlands region today")) + "\n")
    d = Deduplicator(cfgs.DedupGate(against=[str(existing)]))
    verdicts = [d(_row(x)) for x in [
        base,
        base.upper() + "!",                                  # exact after normalisation
        base.replace("winter", "summer"),                    # near duplicate
        "Write a poem about the Merrow lantern festival and its three thousand lanterns on the harbour",
        "What is the capital of the fictional Serran Highlands region today?",  # in the existing dataset
    ]]
    assert verdicts[0] is None and verdicts[3] is None
    assert verdicts[1] == ("dedup", "exact duplicate of an earlier instruction")
    assert verdicts[2][1].startswith("near-duplicate") and verdicts[4][0] == "dedup"
    assert d.report()["removed"] == 3 and d.report()["checked"] == 5


def test_planted_benchmark_item_is_removed_and_reported(tmp_path):
    """A tiny eval set; one of its items planted (re-cased, re-punctuated) in a seed document."""
    item = ("The lighthouse keeper of Orrin Bay logged forty seven storms during the winter of 1931 "
            "and lit the lamp every night")
    evalset = tmp_path / "tiny_eval.jsonl"
    evalset.write_text(json.dumps({"question": item + "?", "answer": "forty seven"}) + "\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "clean.txt").write_text("The Tidewater Bakery sells about 1,500 loaves of seaweed rye bread a day. "
                                    "It was founded in 2009 by eleven bakers in Merrow.")
    (docs / "leaky.txt").write_text("Harbour history. " + item.upper().replace(" during", ", during") + ". The end.")
    out = tmp_path / "run"
    with FakeOpenAIServer() as server:
        path = tmp_path / "r.yaml"
        path.write_text(yaml.safe_dump({
            "teacher": {"backend": "openai", "base_url": server.base_url, "model": "fake"},
            "input": str(docs), "output": str(out), "skills": ["reading_comprehension"],
            "sampling": {"agents_per_seed": 9, "tasks_per_text": 1},  # identity agent included: passage verbatim
            "gates": {"decontamination": {"eval_recipes": [], "eval_files": [str(evalset)], "n": 13,
                                          "cache_dir": str(tmp_path / "cache")}}}))
        summary = run_generate(load_generate_recipe(path), show_progress=False)
    dd = datasets.load_from_disk(str(out / "dataset"))
    removed = [r for r in dd["rejected"] if r["reject_gate"] == "decontamination"]
    assert removed and all(r["source"].endswith("leaky.txt") for r in removed)
    assert "contaminated: tiny_eval: 'the lighthouse keeper" in removed[0]["reject_reason"]
    from agentinstruct.generate.decontam import words

    planted = " ".join(words(item))
    assert not [r for r in dd["rc"] if planted in " ".join(words(json.dumps(r["messages"])))]
    assert any(r["source"].endswith("clean.txt") for r in dd["rc"])
    manifest = json.loads((out / "manifest.json").read_text())
    decon = manifest["decontamination"]
    assert (decon["n"], decon["benchmarks"], decon["removed"]) == (13, ["tiny_eval"], {"tiny_eval": len(removed)})
    assert [(s["benchmark"], s["checked"], s["items"], s["removed"]) for s in decon["sets"]] == \
        [("tiny_eval", True, 1, len(removed))]
    card = (out / "dataset" / "README.md").read_text()
    assert "## Decontamination" in card and f"| tiny_eval | yes | 1 | {len(removed)} |" in card
    assert summary.gates["decontamination"]["removed"] == len(removed)
    # every gate reports checked / removed; grounding reports the grounded share per skill
    assert {"tools", "grounding", "rederive", "dedup", "decontamination"} <= set(summary.gates)
    assert summary.gates["grounding"]["by_skill"]["reading_comprehension"]["passed_share"] is not None


def test_index_built_from_the_eval_recipes_benchmarks(tmp_path, repo):
    cfg = cfgs.DecontaminationGate(eval_recipes=[str(repo / "recipes/eval/fixtures-cpu.yaml")], n=8,
                                   cache_dir=str(tmp_path))
    index = NgramIndex.build(cfg)
    assert {"GSM8K", "AGIEval", "BBH", "AlpacaEval"} <= set(index.benchmarks)
    gsm_q = json.loads(Path(repo / "examples/benchmarks/gsm8k.jsonl").read_text().splitlines()[1])["question"]
    gate = Decontaminator(index)
    assert gate({"messages": [{"role": "user", "content": "Solve: " + gsm_q}]})[1].startswith("contaminated: GSM8K")
    assert gate({"messages": [{"role": "user", "content": "A question about something else entirely, "
                                                          "with many words that appear in no benchmark at all."}]}) is None
    assert list(tmp_path.glob("decontam/index-*.pkl"))  # cached for the next run
