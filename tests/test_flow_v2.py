"""Flow engine v2 (issue 14): multi-turn records, retrieval in tasks, tool rounds while
answering, refinement that iterates, the Editor changing the passage, tuple order keys, and
exact resume for a recipe using every new step type.

The model side is scripted: the fake OpenAI server (tests/fake_openai.py) answers each step
by a ``responder`` that recognises the step from its request (the JSON schema's name, the
offered tools, the prompt), because the embedded 135M teacher cannot reliably write
follow-ups, tool calls or edits on cue; that model runs the same capabilities once at the end
(``test_new_capabilities_on_the_embedded_teacher``), where only "does not crash and accounts
for every record" can be asserted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from agentinstruct.generate.agent_tools import TOOL_NAMES
from agentinstruct.generate.questions import questions_for_text
from agentinstruct.generate.runner import load_generate_recipe, run_generate
from agentinstruct.generate.skills import ToolName, load_skill
from agentinstruct.generate.steps.compose import compose
from fake_openai import FakeOpenAIServer, default_responder, tool_calling_responder

from agentinstruct.recipes import RecipeError

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "examples" / "docs"
LAKE = DOCS / "lake_veyra.txt"
CLI = str(Path(sys.executable).parent / "agentinstruct")
NO_GATES = {"grounding": {"enabled": False}, "rederive": {"enabled": False}, "dedup": {"enabled": False},
            "decontamination": {"enabled": False}}


# --- helpers ---------------------------------------------------------------------------------


def step_of(body: dict[str, Any]) -> str | None:
    """The step a request comes from: its JSON schema's name, or None for a free-text call."""
    fmt = body.get("response_format") or {}
    return (fmt.get("json_schema") or {}).get("name")


def last_user(body: dict[str, Any]) -> str:
    return next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")


def skill_file(tmp_path: Path, base: str, name: str, **changes: Any) -> str:
    """A copy of a shipped skill under another name with ``changes`` merged in (dotted
    top-level sections: {"refinement": {...}} updates that section)."""
    data = load_skill(base).model_dump(mode="json", exclude_none=True)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    data.update(name=name, split=name)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def recipe_file(tmp_path: Path, base_url: str, skills: list[str], out: Path, **extra: Any) -> Path:
    data = {"teacher": {"backend": "openai", "base_url": base_url, "model": "fake", "max_concurrency": 8,
                        "backoff_base_s": 0.01},
            "input": str(extra.pop("input", LAKE)), "output": str(out), "skills": skills, "formats": ["jsonl"],
            "gates": NO_GATES, "sampling": {"agents_per_seed": 1, "tasks_per_text": 1}}
    data.update(extra)
    path = tmp_path / f"recipe-{out.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(tmp_path: Path, skills: list[str], responder, name: str = "run", **extra: Any):
    """Generate on the fake server; (rows by split, the server's request bodies, out dir)."""
    out = tmp_path / name
    with FakeOpenAIServer(responder) as server:
        run_generate(load_generate_recipe(recipe_file(tmp_path, server.base_url, skills, out, **extra)),
                     show_progress=False)
        requests = list(server.requests)
    return read_rows(out), requests, out


def read_rows(out: Path) -> dict[str, list[dict]]:
    return {p.stem: [json.loads(x) for x in p.read_text().splitlines()] for p in (out / "jsonl").glob("*.jsonl")}


def journal_stages(out: Path) -> dict[str, int]:
    total: dict[str, int] = {}
    for line in (out / "records.jsonl").read_text().splitlines():
        for k, v in json.loads(line)["stages"].items():
            total[k] = total.get(k, 0) + v
    return total


# --- composition -----------------------------------------------------------------------------


def test_shipped_skills_compose_the_default_steps_and_new_keys_add_steps():
    params = {"agents": 1, "tasks": 1, "rounds": 1, "suggestions": 2, "keep": "final"}
    rc = [s.name for s in compose(load_skill("reading_comprehension"), params).steps()]
    assert rc[-4:] == ["instruction", "suggest", "edit", "answer"] and set(rc[:-4]) == {"transform"}
    assert [s.name for s in compose(load_skill("open_domain_qa"), params).steps()] == ["suggest", "edit", "answer"]
    conv = [s.name for s in compose(load_skill("conversation"), {**params, "rounds": 0}).steps()]
    assert conv == ["instruction", "answer", "follow_up"]
    rag = [s.name for s in compose(load_skill("rag"), params).steps()]
    assert rag == ["instruction", "retrieve", "suggest", "edit", "check_harder", "answer"]
    tools = compose(load_skill("calculator_reasoning"), params).answer
    assert tools.tools == ["calculator"] and tools.max_tool_rounds == 2
    for step in compose(load_skill("rag"), params).steps():  # every step declares its contract
        assert step.inputs and step.outputs, step.name
    assert set(get_args(ToolName)) == set(TOOL_NAMES)  # a skill can name exactly the built-in tools


def test_new_templates_are_validated_when_the_skill_loads(tmp_path):
    path = skill_file(tmp_path, "conversation", "typo", conversation={"turns": 2, "follow_up_prompt": "{{ histroy }}"})
    with pytest.raises(RecipeError, match=r"conversation.follow_up_prompt: unknown template variable 'histroy'"):
        load_skill(path)
    path = skill_file(tmp_path, "rag", "unchecked", answer={"checks": ["non_empty"]})
    with pytest.raises(RecipeError, match="declines_without_answer"):
        load_skill(path)


# --- multi-turn ------------------------------------------------------------------------------


def conversation_responder(reject_turn: int | None = None):
    """First question, follow-ups numbered by turn, answers naming their turn; the answerable
    judge refuses the follow-up of ``reject_turn``."""

    def respond(body):
        step, user = step_of(body), last_user(body)
        if step == "instruction":
            return json.dumps({"task": "Through which river does Lake Veyra drain?"})
        if step == "follow_up":
            turn = re.search(r"\(turn (\d+)\)", user).group(1)
            return json.dumps({"task": f"And what about follow-up number {turn}?"})
        if step == "answerable":
            return json.dumps({"answerable": not (reject_turn and f"follow-up number {reject_turn}" in user)})
        if step is None:
            n = sum(m["role"] == "user" for m in body["messages"])
            return f"Answer to turn {n}: the Orrin River, to the south."
        return default_responder(body)

    return respond


def test_three_turn_conversation_every_turn_checked(tmp_path):
    rows, requests, _ = run(tmp_path, ["conversation"], conversation_responder())
    [row] = rows["follow_up"]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"] * 3 and row["turns"] == 3
    assert row["messages"][2]["content"] == "And what about follow-up number 2?"
    assert [m["content"] for m in row["messages"][1::2]] == [f"Answer to turn {n}: the Orrin River, to the south."
                                                          for n in (1, 2, 3)]
    judged = [last_user(b) for b in requests if step_of(b) == "answerable"]
    assert len(judged) == 3 and "follow-up number 3" in judged[2]  # every turn's answer was checked
    # the teacher answering turn 3 saw the whole conversation so far
    third = next(b for b in requests if step_of(b) is None and last_user(b).endswith("number 3?"))
    assert [m["role"] for m in third["messages"]] == ["system", "user", "assistant", "user", "assistant", "user"]


def test_rejected_third_turn_ends_the_conversation_at_turn_two(tmp_path):
    rows, _, out = run(tmp_path, ["conversation"], conversation_responder(reject_turn=3))
    [row] = rows["follow_up"]
    assert row["turns"] == 2 and [m["role"] for m in row["messages"]] == ["user", "assistant"] * 2
    [rejected] = rows["rejected"]
    assert rejected["reject_gate"] == "answerable" and rejected["reject_reason"].startswith("turn 3:")
    assert rejected["messages"][-2]["content"] == "And what about follow-up number 3?"
    assert journal_stages(out)["rejected_turn:answerable"] == 1


# --- retrieval -------------------------------------------------------------------------------


def rag_responder(body):
    step, user = step_of(body), last_user(body)
    if step == "instruction":
        return json.dumps({"task": "What does the passage say about the lake and its river?"})
    if step is None:
        return "The passages do not contain the answer." if "DECLINE" in user or "Lake Veyra" not in user else \
            "Lake Veyra drains through the Orrin River."
    return default_responder(body)


def passages_of(out: Path) -> dict[str, str]:
    lines = (out / "retrieval" / "passages.jsonl").read_text().splitlines()
    return {d["id"]: d["text"] for d in map(json.loads, lines)}


def test_rag_task_with_answer_passage_and_two_distractors(tmp_path):
    skill = skill_file(tmp_path, "rag", "rag_answer", retrieval={"k": 3, "distractors": 2, "no_answer_rate": 0.0})
    rows, requests, out = run(tmp_path, [skill], rag_responder, input=DOCS, sampling={
        "agents_per_seed": 1, "tasks_per_text": 1, "refinement_rounds": 0})
    texts = passages_of(out)
    assert rows["rag_answer"]
    for row in rows["rag_answer"]:
        ids = row["passage_ids"]
        assert len(ids) == len(set(ids)) == 3 and row["seed_id"] in ids  # the answer passage + 2 distractors
        user = row["messages"][0]["content"]
        assert all(texts[i].strip()[:60] in user for i in ids)  # the task shows all three
    asked = [last_user(b) for b in requests if step_of(b) is None]
    assert all(user.count("Passage ") == 3 for user in asked)


def test_rag_no_answer_case_expects_a_decline(tmp_path):
    skill = skill_file(tmp_path, "rag", "rag_none", retrieval={"k": 3, "distractors": 2, "no_answer_rate": 1.0})

    def stubborn(body):  # asked about the kiln, it answers without the answer passage: the check must catch it
        if step_of(body) == "instruction":
            title = re.search(r"Passage:\n#* *(.+)", last_user(body)).group(1)
            return json.dumps({"task": f"What does the passage say about {title}?"})
        if step_of(body) is None:
            return "It dries timber with the sun." if "Solar Kiln" in last_user(body).split("Question:")[-1] \
                else "The passages do not contain this information."
        return rag_responder(body)

    rows, _, _ = run(tmp_path, [skill], stubborn, input=DOCS, sampling={
        "agents_per_seed": 1, "tasks_per_text": 1, "refinement_rounds": 0})
    accepted, rejected = rows["rag_none"], rows["rejected"]
    assert accepted and all(r["seed_id"] not in r["passage_ids"] and len(r["passage_ids"]) == 3 for r in accepted)
    assert all("do not contain" in r["messages"][-1]["content"] for r in accepted)
    [refused] = rejected
    assert refused["reject_gate"] == "declines_without_answer" and "Solar Kiln" in refused["instruction"]


# --- tools while generating ------------------------------------------------------------------


def test_tool_round_trip_with_the_calculator(tmp_path):
    def decide(body):
        return None if any(m["role"] == "tool" for m in body["messages"]) else \
            [("calculator", {"expression": "12000 - 4000"})]

    def fallback(body):
        if step_of(body) == "instruction":
            return json.dumps({"task": "How many more eels were counted in 2009 than in 2021?"})
        tool = [m for m in body["messages"] if m["role"] == "tool"]
        return f"The difference is {tool[-1]['content']} eels." if tool else default_responder(body)

    rows, requests, _ = run(tmp_path, ["calculator_reasoning"], tool_calling_responder(decide, fallback))
    [row] = rows["tool_reasoning"]
    assert row["tool_trace"] == [{"name": "calculator", "arguments": '{"expression": "12000 - 4000"}', "result": "8000"}]
    roles = [m["role"] for m in row["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant"]
    call = row["messages"][1]["tool_calls"][0]
    assert call["id"] == "call_0" and call["function"]["name"] == "calculator"
    assert row["messages"][2]["tool_call_id"] == "call_0" and row["messages"][2]["content"] == "8000"
    assert row["messages"][3]["content"] == "The difference is 8000 eels."
    fed_back = [b for b in requests if any(m["role"] == "tool" for m in b["messages"])]
    assert fed_back and fed_back[0]["messages"][-1] == {"role": "tool", "tool_call_id": "call_0", "content": "8000"}


# --- refinement ------------------------------------------------------------------------------


def refine_responder(best: int = 0, harder: bool = True, text: str | None = None):
    """Suggestions named by round, edits that append the suggestion applied; ``text``: the
    Editor also rewrites the passage to it."""

    def respond(body):
        step, user = step_of(body), last_user(body)
        if step == "instruction":
            return json.dumps({"task": "Through which river does Lake Veyra drain?"})
        if step == "suggest":
            task = re.search(r"Question: (.*)", user).group(1)
            rnd = task.count("[") + 1
            n = body["response_format"]["json_schema"]["schema"]["properties"]["suggestions"]["minItems"]
            return json.dumps({"suggestions": [f"round{rnd} change {x}" for x in "AB"[:n]]})
        if step == "edit":
            task = re.search(r"Question: (.*)", user).group(1)
            suggestion = re.search(r"Suggestion: (.*)", user).group(1)
            value = {"task": f"{task} [{suggestion}]"}
            if "text" in body["response_format"]["json_schema"]["schema"]["properties"]:  # editor_may_change_text
                passage = re.search(r"Passage:\n(.*?)\n\nQuestion:", user, re.S)
                value["text"] = text if text is not None else passage.group(1)
            return json.dumps(value)
        if step == "pick_best":
            return json.dumps({"best": best})
        if step == "check_harder":
            return json.dumps({"harder": harder})
        if step is None:
            return "The Orrin River, as the passage says."
        return default_responder(body)

    return respond


def refine_skill(tmp_path: Path, name: str, **refinement: Any) -> str:
    return skill_file(tmp_path, "reading_comprehension", name,
                      transformation={"agents_per_seed": 1, "agents": [{"name": "identity", "passthrough": True}]},
                      refinement={"rounds": 2, "suggestions": 2, **refinement},
                      answer={**load_skill("reading_comprehension").answer.model_dump(mode="json", exclude_none=True),
                              "checks": ["non_empty", "not_truncated", "task_changed"]})


def bracketed(task: str) -> list[str]:
    return re.findall(r"\[([^\]]+)\]", task)


def test_two_rounds_two_branches_make_every_version(tmp_path):
    skill = refine_skill(tmp_path, "tree", branches="all", keep="all")
    rows, _, _ = run(tmp_path, [skill], refine_responder())
    tree = rows["tree"]
    assert [r["refinement_round"] for r in tree] == [0, 1, 1, 2, 2, 2, 2]  # 1 + 2 + 2x2, in round order
    for r in tree:  # each version names the suggestions that made it, in order
        assert r["suggestions"] == bracketed(r["instruction"])
    assert {tuple(r["suggestions"]) for r in tree if r["refinement_round"] == 2} == {
        (f"round1 change {a}", f"round2 change {b}") for a in "AB" for b in "AB"}


def test_refinement_cap_best_branch_and_first_branch(tmp_path):
    capped, _, _ = run(tmp_path, [refine_skill(tmp_path, "capped", branches="all", keep="all", max_versions=3)],
                       refine_responder(), name="capped")
    assert [r["refinement_round"] for r in capped["capped"]] == [0, 1, 1, 2]
    best, _, _ = run(tmp_path, [refine_skill(tmp_path, "best", branches="best", keep="final")],
                     refine_responder(best=1), name="best")
    assert [r["suggestions"] for r in best["best"]] == [["round1 change B", f"round2 change {x}"] for x in "AB"]
    first, _, _ = run(tmp_path, [refine_skill(tmp_path, "first", branches="first", keep="final")],
                      refine_responder(best=1), name="first")
    assert [r["suggestions"] for r in first["first"]] == [["round1 change A", f"round2 change {x}"] for x in "AB"]


def test_editor_changes_the_passage_and_the_answer_follows_it(tmp_path):
    edited = "Lake Veyra is a lake in the Serran Highlands; the text no longer says where it drains."
    skill = refine_skill(tmp_path, "unanswerable", rounds=1, suggestions=1, editor_may_change_text=True)
    rows, requests, _ = run(tmp_path, [skill], refine_responder(text=edited))
    [row] = rows["unanswerable"]
    assert row["refinement_round"] == 1 and edited in row["messages"][0]["content"]
    assert "Orrin River" not in row["messages"][0]["content"]
    [answer_request] = [b for b in requests if step_of(b) is None]
    assert edited in last_user(answer_request) and "Orrin River" not in last_user(answer_request)


def test_check_harder_rejects_an_edit_that_only_rewords(tmp_path):
    skill = refine_skill(tmp_path, "harder", rounds=1, suggestions=1, check_harder=True)
    rows, _, _ = run(tmp_path, [skill], refine_responder(harder=False))
    # the only edit was refused, so the task stays as written (round 0) and the edit is rejected
    assert [r["refinement_round"] for r in rows["harder"]] == [0]
    [refused] = rows["rejected"]
    assert refused["reject_gate"] == "check_harder" and refused["refinement_round"] == 1
    rows, requests, _ = run(tmp_path, [skill], refine_responder(harder=True), name="ok")
    assert [r["refinement_round"] for r in rows["harder"]] == [1]
    assert any(step_of(b) == "check_harder" for b in requests)


# --- order keys ------------------------------------------------------------------------------


def test_order_is_stable_with_more_than_ten_questions_per_text(tmp_path):
    """A whole-document answer_first agent asks > 10 questions of one text: the rows come out in
    question order per type (the keys are tuples, journaled as JSON lists), not completion order."""
    skill = skill_file(tmp_path, "open_domain_qa", "whole", transformation={
        "agents_per_seed": 1, "agents": [{"name": "whole", "passthrough": True}]})

    def states_target(body):
        m = re.search(r'contains "([^"]+)"', last_user(body))
        return f"It is {m.group(1)}." if m else default_responder(body)

    rows, _, out = run(tmp_path, [skill], states_target, sampling={"tasks_per_text": 2, "refinement_rounds": 0})
    text = LAKE.read_text()
    for form, itype in (("fronted", "fronted_question"), ("in_situ", "in_situ_question")):
        expected = [q.text for q in questions_for_text(text, None, 2) if q.form == form]
        got = [r["instruction"] for r in rows["whole"] if r["instruction_type"] == itype]
        assert len(expected) > 10 and got == [q for q in expected if q in got] and len(got) > 10
    keys = [rec["key"] for line in (out / "records.jsonl").read_text().splitlines()
            for rec in json.loads(line)["records"]]
    assert all(isinstance(k, list) and all(isinstance(p, int) for p in k) for k in keys)
    assert len({tuple(k) for k in keys}) == len(keys)


# --- resume ----------------------------------------------------------------------------------


def everything_responder(body):
    """One responder for every new step type (the resume test's recipe uses them all)."""
    if body.get("tools") and body.get("tool_choice") != "none" and \
            not any(m["role"] == "tool" for m in body["messages"]):
        return {"content": "", "tool_calls": [{"id": "x", "type": "function", "function": {
            "name": "calculator", "arguments": json.dumps({"expression": "2 * 21"})}}]}
    if step_of(body) == "follow_up":
        turn = re.search(r"\(turn (\d+)\)", last_user(body)).group(1)
        return json.dumps({"task": f"And what about follow-up number {turn}?"})
    step = step_of(body)
    if step in ("suggest", "edit", "pick_best", "check_harder"):
        return refine_responder()(body)
    if step is None:
        tool = [m for m in body["messages"] if m["role"] == "tool"]
        return f"The result is {tool[-1]['content']}." if tool else rag_responder(body)
    return default_responder(body)


def resume_recipe(tmp_path: Path, base_url: str, out: Path) -> Path:
    skills = [skill_file(tmp_path, "conversation", "conv", conversation={"turns": 3}),
              skill_file(tmp_path, "rag", "rag2"),
              "calculator_reasoning",
              refine_skill(tmp_path, "tree", branches="all", keep="all")]
    return recipe_file(tmp_path, base_url, skills, out, input=DOCS, seeds_in_flight=2,
                       teacher={"backend": "openai", "base_url": base_url, "model": "fake",
                                "max_concurrency": 4, "backoff_base_s": 0.01})


def journal_lines(out: Path) -> int:
    path = out / "records.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_sigkill_and_resume_give_identical_records_with_every_new_step(tmp_path):
    cmd = [CLI, "generate", "--no-progress", "--recipe"]
    with FakeOpenAIServer(everything_responder, delay=0.03) as server:
        clean = tmp_path / "clean"
        res = subprocess.run([*cmd, str(resume_recipe(tmp_path, server.base_url, clean))],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        total = journal_lines(clean)
        killed = tmp_path / "killed"
        recipe = resume_recipe(tmp_path, server.base_url, killed)
        proc = subprocess.Popen([*cmd, str(recipe)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while journal_lines(killed) < total // 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.01)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert 0 < journal_lines(killed) < total and (killed / "retrieval" / "meta.json").exists()
        built = (killed / "retrieval" / "meta.json").stat().st_mtime_ns
        res = subprocess.run([*cmd, str(recipe)], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        assert (killed / "retrieval" / "meta.json").stat().st_mtime_ns == built  # the index was reused
    a, b = read_rows(killed), read_rows(clean)
    assert a == b
    for split in ("conv", "rag2", "tool_reasoning", "tree"):  # every step type made records
        assert a.get(split), (split, {k: len(v) for k, v in a.items()})
    assert any(r["turns"] == 3 for r in a["conv"]) and all(r["passage_ids"] for r in a["rag2"])
    assert all(r["tool_trace"] for r in a["tool_reasoning"]) and {r["refinement_round"] for r in a["tree"]} == {0, 1, 2}


# --- the embedded teacher ----------------------------------------------------------------------


@pytest.mark.slow  # minutes: JSON-constrained tool requests take tens of seconds each on 2 CPU cores
def test_new_capabilities_on_the_embedded_teacher(tmp_path):
    """Multi-turn, retrieval, calculator tool rounds (JSON tool-request fallback, xgrammar) and two
    refinement rounds on the real SmolLM2-135M, one seed each: nothing crashes and every record is
    accounted for. Yields are the 135M teacher's (measured: see the assertion messages)."""
    skills = [skill_file(tmp_path, "conversation", "conv", conversation={"turns": 2}),
              skill_file(tmp_path, "rag", "rag2", retrieval={"k": 2, "distractors": 1, "no_answer_rate": 0.5},
                         refinement={"rounds": 1, "suggestions": 1, "check_harder": False}),
              skill_file(tmp_path, "calculator_reasoning", "calc", answer={
                  **load_skill("calculator_reasoning").answer.model_dump(mode="json", exclude_none=True),
                  "max_tool_rounds": 1})]
    recipe = load_generate_recipe(REPO / "recipes" / "generate" / "demo-embedded.yaml", output=tmp_path / "run",
                                  input=str(DOCS / "*.txt"), limit=2)
    recipe = recipe.model_copy(update={"skills": skills, "gates": recipe.gates.model_copy(update={
        "rederive": recipe.gates.rederive.model_copy(update={"enabled": False}),
        "decontamination": recipe.gates.decontamination.model_copy(update={"enabled": False})})})
    summary = run_generate(recipe, show_progress=False)
    rows = read_rows(tmp_path / "run")
    made = sum(len(v) for v in rows.values())
    counted = sum(c["accepted"] + c["rejected"] for k, c in summary.counts.items() if not k.startswith("_"))
    assert made == counted and made >= 1, summary.counts
    assert summary.llm["calls"] > 5
