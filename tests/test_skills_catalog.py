"""The skill catalogue (issue 15): every skill file loads and renders, the instruction types
add up to the taxonomy's 100+, the splits follow microsoft/orca-agentinstruct-1M-v1, and each
skill of this part makes an accepted record and rejects a planted bad answer with its own check.

The end-to-end runs are SCRIPTED: the fake OpenAI server (tests/fake_openai.py) answers each
step of a skill (transformation, task, answer, the answerable judge) with well-formed content
for that skill, recognised from the request (its JSON schema's name; for free-text calls, the
agent's system prompt). Scripted, because the embedded 135M teacher cannot write these tasks
(an MCQ with a key, a JSON schema, a label set, a Fermi chain); it runs each skill once in
``test_skill_on_the_embedded_teacher`` (slow), where only "completes and accounts for every
record" can be asserted, and its counts go in the README's skills table.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from agentinstruct.generate.runner import load_generate_recipe, run_generate
from agentinstruct.generate.skills import TEMPLATE_VARIABLES, available_skills, load_skill, render, template_variables
from agentinstruct.generate.validators import REGISTRY, Candidate, ValidatorContext, build_validators, first_rejection
from agentinstruct.generate.validators.base import LLM
from fake_openai import FakeOpenAIServer, default_responder

from agentinstruct.llm.structured import strict_schema_problems
from agentinstruct.records import Seed

REPO = Path(__file__).resolve().parent.parent
KILN = REPO / "examples" / "docs" / "solar_kiln.txt"
SHIPPED = available_skills()
NO_GATES = {"grounding": {"enabled": False}, "rederive": {"enabled": False}, "dedup": {"enabled": False},
            "decontamination": {"enabled": False}, "tools": {"enabled": False}}

# the split names of microsoft/orca-agentinstruct-1M-v1 for the skills that release has
RELEASE_SPLITS = {
    "mcq": "mcq", "brain_teaser": "brain_teaser", "analytical_reasoning": "analytical_reasoning",
    "struct2text": "struct2text_flow", "fermi": "fermi", "text_extraction": "text_extraction",
    "text_classification": "text_classification", "creative_content": "creative_content",
    "few_shot_reasoning": "fs_cot_flow", "open_domain_qa_llm": "open_domain_qa", "open_domain_qa": "open_domain_qa",
    "reading_comprehension": "rc", "text_modification": "text_modification",
}


# --- every skill file ------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_skill_loads_and_every_template_renders(name):
    """Each template renders with exactly the variables the engine gives it (StrictUndefined:
    a variable it is not given fails), and each type has a description and an example."""
    skill = load_skill(name)
    values = dict(text="The ferry carries 48 cars.", kind="text", source="x.txt",
                  task="Which option is right?\nA) one\nB) two\nC) three\nKey: B", suggestion="make it harder",
                  proposals=skill.refinement.proposals, n=2, target="48", language="English",
                  passages=[{"id": "p1", "text": "A passage.", "source": "x.txt"}], turn=2,
                  history=[{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}],
                  previous_task="Do a simpler thing?", candidates=["Do a hard thing?", "Do two things?"])
    for field, template in skill.templates().items():
        given = {k: v for k, v in values.items() if k in template_variables(field)}
        if field == "instruction.prompt":
            for t in skill.instruction.types:
                assert render(template, **given, type=t).strip(), f"{name}: {field} ({t.name}) renders empty"
            continue
        assert render(template, **given, type=skill.instruction.types[0]).strip(), f"{name}: {field} renders empty"
    for t in skill.instruction.types:
        assert len(t.description) >= 10 and len(t.example) >= 5, f"{name}: type {t.name}"
    assert set(TEMPLATE_VARIABLES)  # the variable lists the engine documents exist


def test_over_100_instruction_types_across_the_skills():
    """The taxonomy's size, counted from the shipped files (153 with the files of issue 15 so
    far; more as the web agent, coding, RAG, tool-use and conversation skills grow)."""
    counts = {n: len(load_skill(n).instruction.types) for n in SHIPPED}
    assert sum(counts.values()) > 100, counts
    assert len(load_skill("reading_comprehension").instruction.types) >= 43


def test_splits_follow_the_public_release():
    for name, split in RELEASE_SPLITS.items():
        assert load_skill(name).split == split, name
    # open-domain QA has both paths, one split: rule-built questions and teacher-written ones
    assert load_skill("open_domain_qa").instruction.method == "answer_first"
    assert load_skill("open_domain_qa_llm").instruction.method == "llm"


def test_shipped_answer_schemas_qualify_for_strict_mode():
    for name in SHIPPED:
        schema = load_skill(name).answer.json_schema
        if schema is not None:
            assert strict_schema_problems(schema) == [], name


def test_argument_agent_may_plant_a_reasoning_flaw():
    agent = next(a for a in load_skill("reading_comprehension").transformation.agents if a.name == "argument_passage")
    assert "flaw" in agent.prompt and "on purpose" in agent.prompt


# --- the skills of this part: scripted content, good and planted bad answers -----------------


@dataclass
class Script:
    """What the scripted teacher says for one skill: the transformed text, the task, a good
    answer, and a bad answer with the check that must reject it (and a bit of its reason)."""

    agent: str
    text: str
    task: str
    answer: str
    bad_answer: str
    rejected_by: str
    reason: str


EMAIL = ("From: Ana Ruiz\nTo: Tomas Brekke\nDate: 3 May\nSubject: Kiln order\n\nDear Tomas, please confirm order 4471: "
         "12 crates of stickers for the new kiln, to be delivered to Porto by the end of the month. Kind regards, Ana.")
EXTRACT_SCHEMA = {"type": "object", "properties": {"order_number": {"type": "string"}, "quantity": {"type": "integer"},
                                                   "delivery_city": {"type": "string"}},
                  "required": ["order_number", "quantity", "delivery_city"], "additionalProperties": False}
KILN_JSON = json.dumps({"designer": "Tomas Brekke", "year": 1987, "air_temp_min_c": 45, "air_temp_max_c": 60,
                        "fan_panel_w": 20})

SCRIPTS: dict[str, Script] = {
    "mcq": Script(
        "concept_notes",
        "- A solar kiln warms air to between 45 and 60 degrees Celsius.\n- Thin sticks called stickers separate the boards "
        "so that warm air reaches every surface.\n- Misconception: stickers are there to stop boards bending.",
        "Why are thin sticks placed between boards stacked for drying?\nA) So that warm air reaches every surface of "
        "each board\nB) So that the boards do not bend under their own weight\nC) So that the sticks absorb the wood's "
        "moisture\nD) So that insects cannot reach the stack\nKey: A",
        "A) Right: air must flow over each face to carry moisture away.\nB) Wrong: weight is not the reason.\n"
        "C) Wrong: thin sticks hold little water.\nD) Wrong: gaps would let insects in, not keep them out.\nAnswer: (A)",
        "A) Possibly.\nB) The boards bend otherwise.\nAnswer: (B)", "mcq_answer", "disagrees with the task's key"),
    "analytical_reasoning": Script(
        "ordering_game",
        "Five talks (K, L, M, N, O) are given one a day, Monday to Friday. 1. K is earlier than L. 2. M is not on "
        "Wednesday. 3. If N is on Monday, O is on Friday. 4. L is earlier than O.",
        "If N is on Monday, which one of the following must be true?\nA) K is on Tuesday\nB) M is on Thursday\n"
        "C) O is on Friday\nD) L is on Wednesday\nE) M is on Tuesday\nKey: C",
        "With N on Monday, constraint 3 puts O on Friday directly. A, B, D and E are each possible but not forced.\n"
        "Answer: (C)",
        "Testing the options, F fits best.\nAnswer: (F)", "mcq_answer", "not among the task's options"),
    "brain_teaser": Script(
        "puzzle_material",
        "- boards: 12 in a stack\n- stickers: one row between every two boards\n- fan: 20 watts\n- drying: 3 to 6 weeks",
        "A stack of 12 boards has a row of stickers between every two neighbouring boards and none on the top or "
        "bottom. How many rows of stickers are there?",
        "Between 12 boards there are gaps only between neighbours: 12 - 1 = 11. The tempting answer 12 counts one gap "
        "too many.\nAnswer: 11 rows",
        "Each board needs a row: 12 - 1 = 12.\nAnswer: 12 rows", "arithmetic_correct", "is wrong"),
    "fermi": Script(
        "quantities_sheet",
        "- drying time: 3 to 6 weeks\n- air: 45 to 60 degrees Celsius\n- fan: 20 watts\n- Estimate: boards dried "
        "per year by a small kiln",
        "Roughly how many boards does a small solar kiln that holds 40 boards dry in a year, if a batch takes "
        "4 weeks in summer and the kiln runs 26 weeks a year?",
        "Assume 40 boards per batch (given) and 4 weeks per batch over 26 working weeks.\n26 / 4 = 6.5\n"
        "6.5 × 40 = 260\nEstimate: 260 boards; it could be half that in a wet year.",
        "26 / 4 = 6.5\n6.5 × 40 = 300\nEstimate: 300 boards", "fermi_arithmetic", "is wrong"),
    "text_extraction": Script(
        "business_email", EMAIL,
        "Extract the order details, copying values exactly as they appear. Schema: " + json.dumps(EXTRACT_SCHEMA),
        json.dumps({"order_number": "4471", "quantity": 12, "delivery_city": "Porto"}),
        json.dumps({"order_number": "4471", "quantity": 12}), "schema_extraction", "'delivery_city' is a required"),
    "text_classification": Script(
        "support_ticket",
        "Hello, the fan of the solar kiln I bought from you stopped turning after two weeks, although the 20-watt "
        "panel is clean and in full sun. The boards inside are still wet. What should I do?",
        "What is the main intent of this message?\nLabels: refund request | technical problem | billing question | "
        "feedback",
        "The writer describes a fan that stopped working and asks what to do; they do not ask for money back, so "
        "'refund request' does not fit.\nLabel: technical problem",
        "The writer is unhappy.\nLabel: complaint", "label_in_set", "not in the task's set"),
    "creative_content": Script(
        "creative_brief",
        "Subject: drying timber with sunlight.\nDetails: matte black walls; clear polycarbonate roof; a 20-watt "
        "solar panel; thin sticks between boards.\nAngles: patience; slow work of the sun.",
        "Write three haiku about a carpenter waiting for timber to dry in the sun; mention the black walls and the "
        "small fan.",
        "Black walls drink the noon\nThe small fan hums through the stack\nPine forgets the rain\n\nHe taps a board, "
        "listens\nStill heavy with the forest\nOne more week of sun\n\nDusk cools the clear roof\nThe fan slows, the "
        "wood sighs out\nPatience, dry and light",
        "As the text says, black walls absorb heat and a fan moves air.", "closed_book", "never sees"),
    "few_shot_reasoning": Script(
        "quantitative_examples",
        "Example 1\nProblem: A kiln holds 30 boards and dries a batch in 3 weeks. How many boards does it dry in 6 "
        "weeks?\nReasoning:\n1. 6 / 3 = 2 batches\n2. 2 × 30 = 60\nAnswer: 60 boards",
        "Problem: A kiln holds 60 boards and dries a batch in 3 weeks. How many boards does it dry in 12 weeks?",
        "Reasoning:\n1. 12 / 3 = 4 batches\n2. 4 × 60 = 240\nAnswer: 240 boards",
        "Reasoning:\n1. 12 / 3 = 4 batches\n2. 4 × 60 = 200\nAnswer: 200 boards", "arithmetic_correct", "is wrong"),
    "struct2text": Script(
        "json_records", KILN_JSON,
        "Write a short paragraph for a woodworking magazine that describes this kiln, using every field.",
        "Designed by Tomas Brekke in 1987, the kiln warms its air to between 45 and 60 degrees Celsius, a range of "
        "60 - 45 = 15 degrees, with a fan run by a 20-watt solar panel.",
        "Designed by Tomas Brekke in 1978, the kiln warms its air to 45 degrees.", "numbers_in_text", "1978"),
    "open_domain_qa_llm": Script(
        "knowledge_points",
        "- Timber must be dried slowly: drying too fast makes the outside shrink before the inside and the wood "
        "cracks.",
        "Why does timber crack when it is dried too quickly?",
        "Because the outer layers lose moisture and shrink before the core does; the stress between the dry shell "
        "and the wet core splits the wood.",
        "According to the text, the outside dries before the inside.", "closed_book", "never sees"),
    "reading_comprehension": Script(
        "argument_passage",
        "The carpenter Tomas Brekke argues that every workshop should build a solar kiln. His own kiln, he says, "
        "dried oak in six weeks in 1987; therefore solar kilns dry any wood quickly in any climate.",
        "Which of the following describes a flaw in Brekke's reasoning?\nA) He generalises from one kiln and one "
        "year\nB) He cites a date\nC) He names a wood\nD) He states a time",
        "A: he draws a conclusion about every wood and every climate from a single kiln in a single year.\n"
        "Answer: (A)",
        "", "non_empty", "empty answer"),
}
MINE = sorted(SCRIPTS)


def scripted_skill(tmp_path: Path, name: str, agent: str, **changes: Any) -> Path:
    """A copy of a shipped skill with one agent (so the scripted text is the one the task is
    about); its prompts, types and checks are the shipped ones."""
    data = load_skill(name).model_dump(mode="json", exclude_none=True)
    data["transformation"] = {"agents_per_seed": 1,
                              "agents": [a for a in data["transformation"]["agents"] if a["name"] == agent]}
    assert data["transformation"]["agents"], f"{name} has no agent {agent}"
    for key, value in changes.items():
        data[key].update(value)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def step_of(body: dict[str, Any]) -> str | None:
    return ((body.get("response_format") or {}).get("json_schema") or {}).get("name")


def scripted_teacher(script: Script, agent_system: str):
    """Answers each step of one skill from ``script``: the agent's call (recognised by its
    system prompt) with the text, the task writer with the task, the answer call with the
    answer, the answerable judge with yes; anything else as the default responder does."""

    def respond(body: dict[str, Any]) -> str:
        step = step_of(body)
        if step == "instruction":
            return json.dumps({"task": script.task})
        if step == "answerable":
            return json.dumps({"answerable": True})
        if step is None:
            system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
            return script.text if system == agent_system else script.answer
        return default_responder(body)

    return respond


def run_scripted(tmp_path: Path, name: str) -> tuple[dict[str, list[dict]], list[dict]]:
    script = SCRIPTS[name]
    skill_path = scripted_skill(tmp_path, name, script.agent)
    agent = load_skill(str(skill_path)).transformation.agents[0]
    out = tmp_path / "out"
    with FakeOpenAIServer(scripted_teacher(script, agent.system)) as server:
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(yaml.safe_dump({
            "teacher": {"backend": "openai", "base_url": server.base_url, "model": "fake", "max_concurrency": 4,
                        "backoff_base_s": 0.01},
            "input": str(KILN), "output": str(out), "skills": [str(skill_path)], "formats": ["jsonl"],
            "gates": NO_GATES, "sampling": {"agents_per_seed": 1, "tasks_per_text": 1, "refinement_rounds": 0}}))
        run_generate(load_generate_recipe(recipe), show_progress=False)
        requests = list(server.requests)
    rows = {p.stem: [json.loads(x) for x in p.read_text().splitlines()] for p in (out / "jsonl").glob("*.jsonl")}
    return rows, requests


@pytest.mark.parametrize("name", MINE)
def test_skill_makes_an_accepted_record_on_a_scripted_teacher(tmp_path, name):
    """Scripted teacher (see the module docstring): the shipped prompts, types and checks of the
    skill accept a well-formed pair, written to the skill's split."""
    skill = load_skill(name)
    rows, requests = run_scripted(tmp_path, name)
    accepted = rows.get(skill.split, [])
    assert accepted, f"{name}: nothing accepted; rejected: {[r['reject_reason'] for r in rows.get('rejected', [])]}"
    row = accepted[0]
    assert row["instruction_type"] in {t.name for t in skill.instruction.types}
    assert row["messages"][-1]["content"] == SCRIPTS[name].answer
    if name in ("mcq", "analytical_reasoning"):
        # the writer's key stays out of the student's turn and out of the teacher's view
        assert "Key:" not in row["messages"][0]["content"] and "A)" in row["messages"][0]["content"]
        answer_calls = [b for b in requests if step_of(b) is None and "A)" in b["messages"][-1]["content"]]
        assert answer_calls and all("Key:" not in b["messages"][-1]["content"] for b in answer_calls)


@pytest.mark.parametrize("name", ["mcq", "text_extraction", "fermi", "text_classification"])
def test_planted_bad_answer_is_rejected_in_a_run(tmp_path, name, monkeypatch):
    """Scripted teacher answering with the planted bad answer: the run rejects the pair with
    the skill's own check, and nothing reaches the split."""
    script = SCRIPTS[name]
    monkeypatch.setitem(SCRIPTS, name, Script(**{**script.__dict__, "answer": script.bad_answer}))
    rows, _ = run_scripted(tmp_path, name)
    assert not rows.get(load_skill(name).split)
    assert [r["reject_gate"] for r in rows["rejected"]] == [script.rejected_by]
    assert script.reason in rows["rejected"][0]["reject_reason"]


def skill_candidate(name: str, answer: str) -> Candidate:
    script, skill = SCRIPTS[name], load_skill(name)
    return Candidate(skill=skill, seed=Seed(id="s", text=KILN.read_text(), source=str(KILN)), text=script.text,
                     task=script.task, previous_task=None, instruction_type=skill.instruction.types[0].name,
                     answer=answer, finish_reason="stop")


def own_checks(name: str) -> list:
    """The skill's answer.checks that need no model (the LLM judge is scripted above)."""
    skill = load_skill(name)
    names = [n for n in skill.answer.checks if REGISTRY[n].cost < LLM]
    return build_validators(names, ValidatorContext(recipe=None))


@pytest.mark.parametrize("name", MINE)
def test_skill_checks_reject_a_planted_bad_answer(name):
    script = SCRIPTS[name]
    checks = own_checks(name)
    assert script.rejected_by in {c.name for c in checks}
    assert asyncio.run(first_rejection(checks, skill_candidate(name, script.answer))) is None
    rejection = asyncio.run(first_rejection(checks, skill_candidate(name, script.bad_answer)))
    assert rejection is not None and rejection.validator == script.rejected_by, rejection
    assert script.reason in rejection.reason, rejection.reason


# --- the checks themselves -------------------------------------------------------------------


def reason(check: str, answer: str, task: str = "", text: str = "") -> str | None:
    validator = REGISTRY[check](None)
    c = Candidate(skill=load_skill("mcq"), seed=Seed(id="s", text=text, source="x"), text=text, task=task,
                  previous_task=None, instruction_type="t", answer=answer, finish_reason="stop")
    return validator.reason(c)


MCQ = "Which is a mammal?\nA) Trout\nB) Whale\nC) Shark\nD) Squid"


@pytest.mark.parametrize("answer,task,why", [
    ("Answer: (B)", MCQ, None),
    ("Answer: (B)", MCQ + "\nKey: B", None),
    ("**Answer:** B", MCQ, None),
    ("Answer: (C)", MCQ + "\nKey: B", "disagrees with the task's key (B)"),
    ("Answer: (B) or (C)", MCQ, "names 2 options"),
    ("Answer: (E)", MCQ, "not among the task's options"),
    ("B is right.", MCQ, "no final 'Answer: (X)' line"),
    ("Answer: (A)", "Which?\nA) x\nB) y", "lists 2 lettered options"),
    ("Answer: (A)", "Which?\nA) x\nC) y\nD) z", "not lettered A, B, C"),
])
def test_mcq_answer(answer, task, why):
    got = reason("mcq_answer", answer, task)
    assert (got is None) if why is None else (why in got), got


@pytest.mark.parametrize("answer,why", [
    ("Because of X.\nLabel: Billing Question", None),
    ("Label: billing question.", None),
    ("Choose all.\nLabels: feedback | billing question", None),
    ("Label: spam", "not in the task's set"),
    ("It is feedback.", "no final 'Label: ...' line"),
    ("Labels: feedback | feedback", "names a label twice"),
])
def test_label_in_set(answer, why):
    got = reason("label_in_set", answer, "Classify it.\nLabels: refund request | billing question | feedback")
    assert (got is None) if why is None else (why in got), got


def test_label_in_set_needs_a_defined_set():
    assert "defines 1 labels" in reason("label_in_set", "Label: x", "Classify it.\nLabels: x")
    assert "defines 0 labels" in reason("label_in_set", "Label: x", "Classify it as you like.")


ENUM_SCHEMA = {"type": "object", "properties": {"items": {"type": "array", "items": {
    "type": "object", "properties": {"item": {"type": "string"}, "category": {"type": "string", "enum": ["travel", "food"]}},
    "required": ["item", "category"], "additionalProperties": False}}}, "required": ["items"], "additionalProperties": False}


@pytest.mark.parametrize("answer,why", [
    ('{"items": [{"item": "Train to Porto", "category": "travel"}]}', None),  # enum values need not be in the text
    ('```json\n{"items": [{"item": "train to porto", "category": "travel"}]}\n```', None),
    ('{"items": [{"item": "Bus to Porto", "category": "travel"}]}', "'Bus to Porto' ($.items[0].item) is not in the text"),
    ('{"items": [{"item": "Train to Porto", "category": "hotel"}]}', "does not match the task's schema at items/0/category"),
    ('{"items": [{"item": "Train to Porto"}]}', "'category' is a required property"),
    ('{"items": [', "not valid JSON"),
])
def test_schema_extraction(answer, why):
    task = "Extract each expense. Schema: " + json.dumps(ENUM_SCHEMA)
    got = reason("schema_extraction", answer, task, text="Expenses: Train to Porto (42 EUR); lunch.")
    assert (got is None) if why is None else (why in got), got


def test_schema_extraction_needs_a_stated_schema_and_checks_numbers():
    assert reason("schema_extraction", "{}", "Extract the names.") == "task states no JSON schema"
    schema = {"type": "object", "properties": {"eur": {"type": "number"}}, "required": ["eur"], "additionalProperties": False}
    task = "Extract. Schema: " + json.dumps(schema)
    assert reason("schema_extraction", '{"eur": 42}', task, text="Train 42 EUR") is None
    assert "43" in reason("schema_extraction", '{"eur": 43}', task, text="Train 42 EUR")


@pytest.mark.parametrize("answer,why", [
    ("3000000 / 2500 = 1200\n1200 × 0.5 = 600\nEstimate: 600 tuners", None),
    ("3,000,000 / 2,500 = 1,200\n1200 × 0.5 = 600\nEstimate: about 610 tuners", None),  # rounding within 10%
    ("3000000 / 2500 = 1300\n1300 × 0.5 = 650\nEstimate: 650", "3000000 / 2500 = 1300 is wrong (1200)"),
    ("3000000 / 2500 = 1200\nEstimate: 1200", "shows 1 arithmetic steps"),
    ("3000000 / 2500 = 1200\n1200 × 0.5 = 600\nSo roughly 600.", "no final 'Estimate:' line"),
    ("3000000 / 2500 = 1200\n1200 × 0.5 = 600\nEstimate: 5000 tuners", "not the result of any arithmetic step"),
])
def test_fermi_arithmetic(answer, why):
    got = reason("fermi_arithmetic", answer)
    assert (got is None) if why is None else (why in got), got


def test_numbers_in_text_allows_shown_steps_and_small_counts():
    text = "Sales: 1,840 in May and 1,790 in June."
    assert reason("numbers_in_text", "Two months: 1,840 then 1790, down 1840 - 1790 = 50.", text=text) is None
    assert "1900" in reason("numbers_in_text", "Sales peaked at 1900.", text=text)
    assert "is wrong" in reason("numbers_in_text", "1840 - 1790 = 40", text=text)


def test_closed_book_and_final_answer_line_and_structure():
    assert "refers to a text" in reason("closed_book", "Based on the passage, 4.")
    assert reason("closed_book", "The passage of time heals.") is None
    assert reason("final_answer_line", "So.\nAnswer: 11") is None
    assert "no final" in reason("final_answer_line", "So it is 11.")
    assert reason("well_formed_structure", "| a | b |\n|---|---|\n| 1 | 2 |") is None
    assert "3 cells" in reason("well_formed_structure", "| a | b |\n|---|---|\n| 1 | 2 | 3 |")
    assert "rule" in reason("well_formed_structure", "| a | b |\n| 1 | 2 |")
    assert "does not parse" in reason("well_formed_structure", '{"a": 1,}')


# --- the embedded teacher --------------------------------------------------------------------


def tiny_skill(tmp_path: Path, name: str) -> Path:
    """The shipped skill with one agent (its passthrough one if it has one: no transformation
    call), one type, no refinement: the smallest run of its prompts and checks."""
    data = load_skill(name).model_dump(mode="json", exclude_none=True)
    agents = data["transformation"]["agents"]
    agent = next((a for a in agents if a.get("passthrough")), agents[0])
    data["transformation"] = {"agents_per_seed": 1, "agents": [agent]}
    data["instruction"]["types"] = data["instruction"]["types"][:1]
    data["refinement"]["rounds"] = 0
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


@pytest.mark.slow  # reason: the real SmolLM2-135M writes and answers one task per skill, ~10-30 s each on 2 cores
@pytest.mark.parametrize("name", MINE)
def test_skill_on_the_embedded_teacher(tmp_path, name):
    """The real embedded teacher: 1 seed, 1 agent, 1 type, no refinement. It completes, every
    pair is accounted for (accepted in the split or rejected with a reason), and the counts
    are printed for the README's skills table."""
    out = tmp_path / "emb"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "input": str(KILN), "output": str(out), "skills": [str(tiny_skill(tmp_path, name))], "limit": 1,
        "formats": ["jsonl"], "sampling": {"tasks_per_text": 1, "refinement_rounds": 0},
        "max_tokens": {"transform": 160, "instruction": 96, "answer": 96},
        "gates": {"decontamination": {"enabled": False}, "grounding": {"judge": False},
                  "rederive": {"enabled": False}, "tools": {"enabled": False}}}))
    summary = run_generate(load_generate_recipe(recipe), show_progress=False)
    split = load_skill(name).split
    rows = {p.stem: [json.loads(x) for x in p.read_text().splitlines()] for p in (out / "jsonl").glob("*.jsonl")}
    accepted, rejected = rows.get(split, []), rows.get("rejected", [])
    assert accepted or rejected
    assert all(r["reject_reason"] for r in rejected)
    assert summary.accepted(split) == len(accepted)
    reasons = sorted({(r["reject_gate"] or "") for r in rejected})
    print(f"\nEMBEDDED {name} split={split} accepted={len(accepted)} rejected={len(rejected)} gates={reasons}")
