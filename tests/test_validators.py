"""One validator concept (issue 14): a skill's checks and a recipe's gates are one registry with
one protocol; judge prompts are templates a recipe or skill overrides; gate counts are typed.

LLM behaviour comes from the scripted fake OpenAI server (tests/fake_openai.py), which records
every request, so the tests can count calls and read the prompts the judge received."""

import asyncio
import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from agentinstruct.generate import validators as v
from agentinstruct.generate.journal import Journal
from agentinstruct.generate.runner import load_generate_recipe, run_generate
from agentinstruct.generate.skills import SKILLS_DIR, load_skill
from agentinstruct.generate.validators.prompts import shipped_prompt
from fake_openai import FakeOpenAIServer, default_responder

from agentinstruct.llm import ModelSpec, create_model
from agentinstruct.recipes import RecipeError
from agentinstruct.records import Seed

DOC = ("Lake Veyra is 2,140 metres above sea level. Biologists counted 12,000 glass eels in 2021. "
       "The lake drains through the Orrin River into the sea.")
SEED = Seed(id="s1", text=DOC, source="lake.txt")


@pytest.fixture
def registry():
    """Validators a test registers are removed again afterwards."""
    before = dict(v.REGISTRY)
    yield v.REGISTRY
    v.REGISTRY.clear()
    v.REGISTRY.update(before)


def write_recipe(tmp_path, server, out, skills, **extra):
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "lake.txt").write_text(DOC)
    (docs / "bakery.txt").write_text("The Tidewater Bakery sells about 1,500 loaves of seaweed rye bread a day. "
                                     "It was founded in 2009 by eleven bakers in Merrow.")
    data = {"teacher": {"backend": "openai", "base_url": server.base_url, "model": "fake", "backoff_base_s": 0.01},
            "input": str(docs), "output": str(out), "skills": skills,
            "sampling": {"agents_per_seed": 1, "tasks_per_text": 2, "refinement_rounds": 0},
            "gates": {"decontamination": {"enabled": False}, "tools": {"sandbox": False}}}
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path = tmp_path / f"recipe-{out.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def skill_file(tmp_path, name="my_rc.yaml", **answer):
    """The shipped reading_comprehension skill with ``answer`` fields changed, as a user file."""
    data = yaml.safe_load((SKILLS_DIR / "reading_comprehension.yaml").read_text())
    data["answer"].update(answer)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def rows(out):
    import datasets

    dd = datasets.load_from_disk(str(out / "dataset"))
    return {split: dd[split].to_list() for split in dd}


def test_a_new_validator_is_one_class_and_a_name(tmp_path, registry):
    """Registered here and named in a skill's checks and a recipe's gates.validators, with no
    other code change: the skill's check rejects every other pair, the gate all the rest."""

    @v.register("every_other")
    class EveryOther:
        cost = v.PURE
        calls = 0

        def __init__(self, ctx):
            self.ctx = ctx

        async def check(self, c):
            EveryOther.calls += 1
            return v.Rejection(self.name, "every other pair: rejected") if EveryOther.calls % 2 else None

    @v.register("reject_all")
    class RejectAll:
        cost = v.PURE

        def __init__(self, ctx):
            pass

        async def check(self, c):
            return v.Rejection(self.name, f"rejected: {c.skill.name} {c.instruction_type}")

    skill = skill_file(tmp_path, checks=["non_empty", "every_other"])
    out = tmp_path / "run"
    with FakeOpenAIServer() as server:
        recipe = write_recipe(tmp_path, server, out, [str(skill)],
                              gates={"grounding": {"enabled": False}, "rederive": {"enabled": False},
                                     "validators": ["reject_all"]})
        summary = run_generate(load_generate_recipe(recipe), show_progress=False)
    by_gate = Counter(r["reject_gate"] for r in rows(out)["rejected"])
    assert by_gate["every_other"] >= 1 and by_gate["reject_all"] >= 1
    assert set(by_gate) <= {"every_other", "reject_all"}
    assert not rows(out)["rc"]  # the gate removed every pair the skill's checks kept
    assert summary.gates["reject_all"]["checked"] == summary.gates["reject_all"]["removed"] == by_gate["reject_all"]
    assert summary.gates["reject_all"]["reasons"] == {"rejected": by_gate["reject_all"]}


def test_unknown_validator_is_a_one_line_error(tmp_path):
    bad_skill = skill_file(tmp_path, checks=["non_empty", "not_a_validator"])
    with pytest.raises(RecipeError) as err:
        load_skill(str(bad_skill))
    message = str(err.value)
    assert "\n" not in message and str(bad_skill) in message and "answer.checks" in message
    assert "unknown validator 'not_a_validator'" in message and "answerable" in message  # lists the known ones
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"skills": ["tool_use"], "gates": {"validators": ["nope"]}}))
    with pytest.raises(RecipeError) as err:
        load_generate_recipe(recipe)
    assert "\n" not in str(err.value) and "gates.validators" in str(err.value) and "'nope'" in str(err.value)
    with pytest.raises(RecipeError, match="unknown validator 'nope'; known: "):
        v.build_validators(["non_empty", "nope"], v.ValidatorContext(recipe=None))


def test_bad_prompt_override_fails_at_load(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"skills": ["tool_use"], "gates": {"grounding": {"prompt": "{{ sauce }}"}}}))
    with pytest.raises(RecipeError) as err:
        load_generate_recipe(recipe)
    assert "\n" not in str(err.value) and "gates.grounding.prompt" in str(err.value)
    assert "unknown template variable 'sauce'" in str(err.value)
    recipe.write_text(yaml.safe_dump({"skills": ["tool_use"], "gates": {"rederive": {"prompt": "missing.jinja"}}}))
    with pytest.raises(RecipeError, match="gates.rederive.prompt: .*missing.jinja does not exist"):
        load_generate_recipe(recipe)
    with pytest.raises(RecipeError, match=r"answer.answerable_prompt: unknown template variable 'passage'"):
        load_skill(str(skill_file(tmp_path, answerable_prompt="{{ passage }} {{ task }}")))


def test_cheap_validators_run_first_and_save_llm_calls():
    """answerable (an LLM call) is listed before non_empty; an empty answer is rejected by
    non_empty without any request reaching the server; a non-empty one costs one request."""
    skill = load_skill("reading_comprehension").model_copy(deep=True)
    skill.answer.checks = ["answerable", "non_empty"]
    with FakeOpenAIServer() as server:
        judge = create_model(ModelSpec(backend="openai", base_url=server.base_url, model="fake"))
        ctx = v.ValidatorContext(recipe=None, judge=judge)
        validators = v.skill_validators(skill, ctx)
        assert [x.name for x in validators] == ["non_empty", "answerable"]
        c = v.Candidate(skill, SEED, DOC, "How many eels were counted?", None, "literal_comprehension", "  ", "stop")
        rejection = asyncio.run(v.first_rejection(validators, c))
        assert rejection == v.Rejection("non_empty", "empty answer") and len(server.requests) == 0
        c.answer = "12,000."
        ran, _ = asyncio.run(v.run_validators(validators, c))
        assert ran == ["non_empty", "answerable"] and len(server.requests) == 1
        assert server.requests[0]["messages"][-1]["content"].startswith("Text:\n" + DOC)


def test_gate_counts_round_trip_and_old_journal_keys():
    counts = v.GateCounts()
    counts.count("rc", None)
    counts.count("rc", "re-derivation disagrees: 1.0 vs 2.0")
    counts.count("tool_use", "re-derivation disagrees (judge)")
    assert (counts.checked, counts.removed) == (3, 2)
    assert counts.reasons == Counter({"re-derivation disagrees": 2})
    assert counts.by_skill == {"rc": Counter(checked=2, removed=1), "tool_use": Counter(checked=1, removed=1)}
    tally = v.GateTally({"rederive": counts})
    assert v.GateTally.from_json(json.loads(json.dumps(tally.to_json()))) == tally
    merged = v.GateTally()
    merged.merge(tally)
    merged.merge(tally)
    assert merged.gates["rederive"].checked == 6 and merged.gates["rederive"].by_skill["rc"]["removed"] == 2
    # the string keys journals held before are read into the same counts
    old = {"gate:rederive:checked": 3, "gate:rederive:removed": 2, "gate:rederive:reason:re-derivation disagrees": 2,
           "gate:rederive:skill:rc|checked": 2, "gate:rederive:skill:rc|removed": 1,
           "gate:rederive:skill:tool_use|checked": 1, "gate:rederive:skill:tool_use|removed": 1, "accepted": 4}
    assert v.GateTally.from_stages(old) == tally
    assert v.GateTally.from_journal_line({"stages": old}) == tally
    assert tally.report()["rederive"]["by_skill"]["rc"] == {"checked": 2, "removed": 1, "passed_share": 0.5}


def judging_responder(body):
    """The default fake replies, with judge verdicts that vary by prompt (some pairs removed)."""
    text = body["messages"][-1]["content"]
    h = int(hashlib.sha256(text.encode()).hexdigest(), 16)
    if "Is every factual claim" in text:
        return json.dumps({"supported": h % 3 != 0})
    if "same final answer" in text:
        return json.dumps({"agree": h % 4 != 0})
    if "Rate this instruction-response pair" in text:
        k = 2 + h % 7
        return json.dumps({"correctness": k, "instruction_following": k, "complexity": k, "helpfulness": k,
                           "rationale": "r"})
    return default_responder(body)


def old_gate_keys(gates_json):
    """The per-unit stage keys the engine wrote before gate counts were typed."""
    keys = Counter()
    for name, g in gates_json.items():
        keys[f"gate:{name}:checked"] += g["checked"]
        keys[f"gate:{name}:removed"] += g["removed"]
        for reason, n in g["reasons"]:
            keys[f"gate:{name}:reason:{reason}"] += n
        for skill, c in g["by_skill"].items():
            for kind in ("checked", "removed"):
                keys[f"gate:{name}:skill:{skill}|{kind}"] += c[kind]
    return keys


def test_gate_report_from_the_journal_and_from_an_old_journal(tmp_path):
    """A fake-server run with judge verdicts that remove pairs: the journal holds each unit's
    gate counts as JSON, the summary and manifest report them in the earlier form, and a
    journal in the earlier format (string stage keys) resumes to the same report."""
    out = tmp_path / "run"
    with FakeOpenAIServer(judging_responder) as server:
        recipe = write_recipe(tmp_path, server, out, ["reading_comprehension"],
                              sampling={"agents_per_seed": 3, "tasks_per_text": 3, "refinement_rounds": 0},
                              gates={"judge_score": {"enabled": True, "min_score": 5}})
        summary = run_generate(load_generate_recipe(recipe), show_progress=False)
        calls = len(server.requests)
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["gates"] == json.loads(json.dumps(summary.gates))
        got = summary.gates
        assert list(got)[:4] == ["tools", "grounding", "rederive", "judge_score"]
        removed = Counter(r["reject_gate"] for r in rows(out)["rejected"])
        for name in ("tools", "grounding", "rederive", "judge_score"):
            g = got[name]
            assert set(g) == {"checked", "removed", "reasons", "by_skill"}
            assert g["removed"] == removed[name] == sum(g["reasons"].values())
            assert g["by_skill"]["reading_comprehension"]["checked"] == g["checked"]  # keyed by skill name
        assert got["grounding"]["removed"] and got["rederive"]["removed"]  # the verdicts did remove pairs
        # each gate checks what the one before it kept
        assert got["grounding"]["checked"] == got["tools"]["checked"] - got["tools"]["removed"]
        assert got["rederive"]["checked"] == got["grounding"]["checked"] - got["grounding"]["removed"]

        # rewrite the journal as an old run left it, then resume: no new call, the same report
        journal = out / "records.jsonl"
        lines = [line for _, line in Journal(journal, "").lines()]
        assert all("gates" in line for line in lines)
        old = []
        for line in lines:
            stages = Counter(line["stages"])
            stages.update(old_gate_keys(line.pop("gates")))
            old.append(json.dumps({**line, "stages": dict(stages)}))
        journal.write_text("\n".join(old) + "\n")
        again = run_generate(load_generate_recipe(recipe), show_progress=False)
        assert len(server.requests) == calls
    assert again.gates == summary.gates


def test_prompt_overrides_are_what_the_judge_receives(tmp_path):
    """Inline Jinja (grounding, judge_score), a .jinja file next to the recipe (rederive) and the
    skill's answerable_prompt replace the shipped prompts."""
    (tmp_path / "agree.jinja").write_text("FILE AGREE on {{ task }}: [{{ first }}] vs [{{ second }}]? "
                                          'Reply in JSON with key "agree".')
    skill = skill_file(tmp_path, answerable_prompt='SKILL ANSWERABLE {{ task }} in {{ language }}. JSON "answerable".')
    out = tmp_path / "run"
    with FakeOpenAIServer() as server:
        recipe = write_recipe(tmp_path, server, out, [str(skill)], gates={
            "grounding": {"lexical_support": 1.0, "prompt": "INLINE GROUNDING\n{{ source }}\n---\n{{ answer }}"},
            "rederive": {"prompt": "agree.jinja"},
            "judge_score": {"enabled": True, "prompt": "INLINE SCORE [{{ user }}] [{{ answer }}]"}})
        run_generate(load_generate_recipe(recipe), show_progress=False)
        prompts = [r["messages"][-1]["content"] for r in server.requests]
    assert any(p.startswith("SKILL ANSWERABLE ") and p.endswith('in English. JSON "answerable".') for p in prompts)
    assert any(p.startswith(f"INLINE GROUNDING\n{DOC}\n---\n") for p in prompts)
    assert any(p.startswith("FILE AGREE on ") for p in prompts)
    assert any(p.startswith("INLINE SCORE [") for p in prompts)
    shipped_starts = [shipped_prompt(n).split("\n")[0] for n in ("grounding", "judge_score")]
    assert not any(p.startswith(s) for p in prompts for s in shipped_starts)
    assert not any(p.startswith("Text:\n") and "answerable" in p for p in prompts)  # the shipped answerable


def test_shipped_prompts_render_like_the_former_constants():
    """The prompts moved out of Python render to the same text (so existing call caches still hit)."""
    from agentinstruct.generate.skills import render

    assert render(shipped_prompt("grounding"), source="S", task="T", answer="A", language="English") == (
        "Source document:\nS\n\nTask:\nT\n\nAnswer:\nA\n\nIs every factual claim in the answer supported by the "
        'source document? Reply in JSON with key "supported" (true or false).')
    assert render(shipped_prompt("judge_score"), user="U", answer="A", language="English").endswith(
        "Reply in JSON.\n\nInstruction:\nU\n\nResponse:\nA")
    assert Path(str(v.prompts.PROMPTS_DIR)).name == "prompts"
