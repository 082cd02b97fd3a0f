"""Answer-first question writing (generate/questions.py), the contains_target check, per-skill
sampling overrides, and the answer-first flow on the real embedded teacher."""

import json
import re

import pytest
import yaml
from agentinstruct.generate.checks import Candidate, check_contains_target
from agentinstruct.generate.config import GenerateRecipe
from agentinstruct.generate.questions import clauses, questions_for_text, topic_of, wh_phrase
from agentinstruct.generate.runner import load_generate_recipe, run_generate
from agentinstruct.generate.skills import Skill, load_skill
from fake_openai import FakeOpenAIServer


def asked(text: str, topic: str | None = None) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {"fronted": [], "in_situ": []}
    for q in questions_for_text(text, topic):
        out[q.form].append((q.text, q.target))
    return out


@pytest.mark.parametrize("sentence, fronted, target", [
    ("Lake Veyra drains through the Orrin River to the south.",
     "Through which river does Lake Veyra drain to the south?", "Orrin River"),
    ("Fishing for glass eels has been forbidden since 1998.",
     "Since which year has fishing for glass eels been forbidden?", "1998"),
    ("The bridge was built in 1932 by Anna Berg.", "In which year was the bridge built by Anna Berg?", "1932"),
    ("The bridge was built in 1932 by Anna Berg.", "By whom was the bridge built in 1932?", "Anna Berg"),
    ("The museum attracts 40,000 visitors a year.", "How many visitors does the museum attract a year?",
     "40,000 visitors"),
    ("Females lay about 200 eggs on the underside of oak leaves.",
     "How many eggs do females lay on the underside of oak leaves?", "200 eggs"),
    ("Since 2015 the company has employed 300 people.", "How many people has the company employed since 2015?",
     "300 people"),
    ("In 2022 the regional council banned motor boats on Lake Veyra.",
     "What did the regional council ban on Lake Veyra in 2022?", "motor boats"),
])
def test_fronted_questions(sentence, fronted, target):
    assert (fronted, target) in asked(sentence)["fronted"]


def test_every_target_gets_an_in_situ_question_and_no_question_contains_its_answer():
    qs = questions_for_text("The lake freezes every winter for about four months, from December to March.")
    assert ("The lake freezes every winter for how many months from December to March?", "four months") in \
        [(q.text, q.target) for q in qs if q.form == "in_situ"]
    for q in qs:
        assert q.text.endswith("?") and q.target not in q.text


def test_clauses_restore_subjects_and_keep_verbless_parts():
    assert clauses("It is fed by three glacial streams and drains through the Orrin River.", "Lake Veyra") == [
        "Lake Veyra is fed by three glacial streams", "Lake Veyra drains through the Orrin River"]
    # an appositive without a verb stays with its clause
    assert clauses("Lake Veyra is a lake in the Serran Highlands, 2,140 metres above sea level.") == [
        "Lake Veyra is a lake in the Serran Highlands, 2,140 metres above sea level"]
    assert topic_of("# Field guide\n\nThe **Copperwing moth** lives in the Lindmark valley.") == "The Copperwing moth"


def test_wh_phrases():
    assert wh_phrase("2009") == "which year"
    assert wh_phrase("6 degrees Celsius") == "what temperature"
    assert wh_phrase("40 percent") == "what percentage"
    assert wh_phrase("eleven bakers") == "how many bakers"
    assert wh_phrase("Orrin River") == "which river"
    assert wh_phrase("Ines Calloway", after_preposition="by") == "whom"
    assert wh_phrase("October") == "which month" and wh_phrase("driftwood") == "what"


def test_no_questions_without_a_finite_verb_or_target():
    assert questions_for_text("Wingspan: 4 to 5 centimetres") == []
    assert questions_for_text("## Appearance") == []


def test_contains_target_check():
    skill = load_skill("open_domain_qa")

    def cand(answer, target):
        return Candidate(skill, "t", "t", "q?", None, "fronted_question", answer, "stop", target)

    assert check_contains_target(cand("It drains through the Orrin River.", "Orrin River")) is None
    assert check_contains_target(cand("They counted 12,000 eels.", "12,000")) is None
    assert "Orrin River" in check_contains_target(cand("It drains to the south.", "Orrin River"))
    assert check_contains_target(cand("anything", None)) is None  # llm-written tasks have no target


def test_answer_first_skill_needs_a_form_per_type():
    data = load_skill("open_domain_qa").model_dump()
    data["instruction"]["types"][0]["form"] = None
    with pytest.raises(ValueError, match="need a form"):
        Skill.model_validate(data)
    data["instruction"].update(method="llm", prompt="")
    with pytest.raises(ValueError, match="instruction.prompt: required"):
        Skill.model_validate(data)


def test_per_skill_sampling_overrides_win_and_are_checked():
    recipe = GenerateRecipe(skills=["open_domain_qa", "rc"], sampling={
        "tasks_per_text": 1, "refinement_rounds": 1, "per_skill": {"open_domain_qa": {"refinement_rounds": 0}}})
    odqa = recipe.sampling.for_skill("open_domain_qa")
    assert (odqa.tasks_per_text, odqa.refinement_rounds) == (1, 0)
    assert recipe.sampling.for_skill("rc").refinement_rounds == 1
    with pytest.raises(ValueError, match=r"per_skill: \['tool_use'\] not in skills"):
        GenerateRecipe(skills=["rc"], sampling={"per_skill": {"tool_use": {"tasks_per_text": 2}}})


def test_answer_first_flow_on_the_embedded_teacher(tmp_path, repo):
    """The real 135M teacher answers rule-built questions on one document; every accepted
    answer states its question's target and the pairs come in both forms."""
    recipe = load_generate_recipe(repo / "recipes/generate/demo-embedded.yaml", output=tmp_path / "run",
                                  input=str(repo / "examples/docs/lake_veyra.txt"))
    summary = run_generate(recipe, skills=["open_domain_qa"], show_progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run/jsonl/open_domain_qa.jsonl").read_text().splitlines()]
    # measured: 29 of 37 accepted (greedy answers, so stable on a machine; margin for others)
    assert len(rows) >= 15, summary.counts
    assert {r["instruction_type"] for r in rows} == {"fronted_question", "in_situ_question"}
    assert all(r["messages"][0]["content"].endswith("?") for r in rows)
    rejected = [json.loads(x) for x in (tmp_path / "run/jsonl/rejected.jsonl").read_text().splitlines()]
    assert all(r["reject_gate"] in {"contains_target", "not_truncated", "grounding", "non_empty"} for r in rejected)


def _run_fake(tmp_path, repo, skills, responder):
    with FakeOpenAIServer(responder) as server:
        path = tmp_path / "gen.yaml"
        path.write_text(yaml.safe_dump({
            "teacher": {"backend": "openai", "base_url": server.base_url, "model": "fake"},
            "input": str(repo / "examples/docs/lake_veyra.txt"), "output": str(tmp_path / "run"),
            "skills": skills, "formats": ["jsonl"], "sampling": {"refinement_rounds": 0},
            "gates": {"grounding": {"judge": False, "lexical_support": 0.5}, "decontamination": {"enabled": False},
                      "rederive": {"enabled": False}}}))
        run_generate(load_generate_recipe(path), show_progress=False)
        return [r["messages"][-1]["content"] for r in server.requests]


def _states_target(body):
    m = re.search(r'contains "([^"]+)"', body["messages"][-1]["content"])
    return f"It is {m.group(1)}." if m else "No idea."


def test_answer_first_with_a_whole_document_agent(tmp_path, repo):
    """Without split_sentences the agent's whole text is asked about, every sentence of it."""
    skill = load_skill("open_domain_qa").model_dump()
    skill["transformation"]["agents"] = [{"name": "whole", "passthrough": True}]
    path = tmp_path / "whole_qa.yaml"
    path.write_text(yaml.safe_dump({**skill, "name": "whole_qa", "split": "whole_qa"}))
    _run_fake(tmp_path, repo, [str(path)], _states_target)
    rows = [json.loads(x) for x in (tmp_path / "run/jsonl/whole_qa.jsonl").read_text().splitlines()]
    asked = {r["messages"][0]["content"] for r in rows}
    assert {"Through which river does Lake Veyra drain to the south?",
            "Since which year has fishing for glass eels been forbidden?"} <= asked and len(rows) > 20


def test_closed_book_answers_are_written_from_the_source_sentence(tmp_path, repo):
    """The student's user turn is the bare question; the teacher's answer request carries the
    sentence and the target (context_template). A responder that states the target when it
    sees it gets every pair accepted."""
    prompts = _run_fake(tmp_path, repo, ["open_domain_qa"], _states_target)
    rows = [json.loads(x) for x in (tmp_path / "run/jsonl/open_domain_qa.jsonl").read_text().splitlines()]
    assert rows and all("Question:" in p and "Lake Veyra" in p for p in prompts)
    assert any("drains through the Orrin River" in p for p in prompts)
    for r in rows:
        assert "Question:" not in r["messages"][0]["content"]  # the student sees only the question


def test_answer_first_on_whole_texts_asks_about_every_sentence():
    text = "The museum opened in 1998. It attracts 40,000 visitors a year."
    targets = {q.target for q in questions_for_text(text)}
    assert targets == {"1998", "40,000 visitors"}
    assert ("How many visitors does the museum attract a year?", "40,000 visitors") in \
        [(q.text, q.target) for q in questions_for_text(text)]


def test_rule_built_rows_carry_their_method_span_and_sentence(tmp_path, repo):
    """On the fake server: answer_first rows say question_method=rule with the answer span and
    the sentence it was taken from; rows of a teacher-written (llm) skill say llm, span and
    sentence empty. The exported dataset has the three columns."""
    import datasets
    from fake_openai import default_responder

    def responder(body):
        return default_responder(body) if body.get("response_format") else _states_target(body)

    _run_fake(tmp_path, repo, ["open_domain_qa", "reading_comprehension"], responder)
    source = (repo / "examples/docs/lake_veyra.txt").read_text()

    def rows(split):
        return [json.loads(x) for x in (tmp_path / f"run/jsonl/{split}.jsonl").read_text().splitlines()]

    rule = rows("open_domain_qa")
    assert rule and all(r["question_method"] == "rule" for r in rule)
    for r in rule:
        assert r["answer_span"] and r["answer_span"] in r["source_sentence"], r
        assert r["source_sentence"].rstrip(".") in source.replace("*", ""), r["source_sentence"]
    assert {"Orrin River", "1998"} <= {r["answer_span"] for r in rule}
    assert any("drains through the Orrin River" in r["source_sentence"] for r in rule)
    llm = [r for r in rows("rc") + rows("rejected") if r["split"] == "rc"]
    assert llm and all((r["question_method"], r["answer_span"], r["source_sentence"]) == ("llm", "", "")
                       for r in llm)
    dd = datasets.load_from_disk(str(tmp_path / "run/dataset"))
    assert dd["open_domain_qa"][0]["question_method"] == "rule" and "source_sentence" in dd["rc"].column_names
