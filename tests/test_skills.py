"""Every shipped skill file is valid: taxonomy described, prompts render, paper coverage."""

import pytest
from agentinstruct.generate.flows import TASK_SCHEMA
from agentinstruct.generate.skills import Skill, available_skills, load_skill, render

from agentinstruct.recipes import RecipeError, parse_recipe

SHIPPED = available_skills()


def test_three_paper_skills_are_shipped():
    assert {"reading_comprehension", "text_modification", "tool_use"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_skill_prompts_render_and_types_are_described(name):
    skill = load_skill(name)
    values = dict(text="Some passage text.", kind="text", source="x.txt", task="Do a thing?",
                  suggestion="make it harder", proposals=skill.refinement.proposals, n=2,
                  type=skill.instruction.types[0], target="a span", language="English",
                  passages=[{"id": "p1", "text": "A passage.", "source": "x.txt"}], turn=2,
                  history=[{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}],
                  previous_task="Do a simpler thing?", candidates=["Do a hard thing?", "Do two things?"])
    for label, template in skill.templates().items():
        out = render(template, **values)
        assert out.strip(), f"{name}: {label} renders empty"
    for t in skill.instruction.types:
        assert len(t.description) >= 10 and t.example, f"{name}: type {t.name} lacks a description"
        if skill.instruction.method == "llm":
            assert render(skill.instruction.prompt, text="x", type=t, language="English")
    assert skill.split and skill.seed_kinds


def test_reading_comprehension_matches_the_paper():
    skill = load_skill("reading_comprehension")
    agents = {a.name for a in skill.transformation.agents}
    assert agents == {"argument_passage", "debate", "conversation", "meeting_transcript", "poem",
                      "satirical_passage", "instructional_passage", "long_text", "identity"}
    types = {t.name for t in skill.instruction.types}
    assert len(types) >= 20
    for needed in ["literal_comprehension", "numerical_discrete_reasoning", "critical_comprehension",
                   "evaluative_comprehension", "vocabulary_and_language_use", "relationship_comprehension",
                   "sequencing_events", "strengthen", "weaken", "assumption", "flaw", "inference",
                   "principle", "method_of_reasoning"]:
        assert needed in types


def test_text_modification_has_the_18_operations():
    types = {t.name for t in load_skill("text_modification").instruction.types}
    assert len(types) == 18


def test_tool_use_covers_parameter_cases():
    skill = load_skill("tool_use")
    types = {t.name for t in skill.instruction.types}
    assert {"all_parameters_given", "superfluous_parameters", "missing_parameters", "multiple_apis",
            "needed_api_absent"} <= types
    assert skill.seed_kinds == ["code"] and skill.answer.format == "json" and skill.answer.json_schema


def test_unknown_skill_is_a_clear_error():
    with pytest.raises(RecipeError, match="unknown skill 'no_such_skill'.*available: .*reading_comprehension"):
        load_skill("no_such_skill")


def test_bad_skill_file_names_the_key(tmp_path):
    data = load_skill("tool_use").model_dump()
    data["instruction"]["types"][0]["descripton"] = data["instruction"]["types"][0].pop("description")
    with pytest.raises(RecipeError, match=r"skill.yaml: instruction\.types\.0\.(description|descripton)"):
        parse_recipe(data, Skill, "skill.yaml")


def test_prompt_typo_is_an_error():
    with pytest.raises(Exception, match="undefined"):
        render("{{ txet }}", text="x")


def test_task_schema_is_closed():
    assert TASK_SCHEMA["additionalProperties"] is False
