"""Tool calls are checked against the API list the task gave, parsed, never against every word
of the user turn (the template's own "name"/"arguments" and the prose must not count)."""

import asyncio
import json

from agentinstruct.generate import gates_config as cfgs
from agentinstruct.generate.skills import load_skill, render
from agentinstruct.generate.tools import check_tool_calls, parse_api_list
from agentinstruct.generate.verify import ToolCheck

from agentinstruct.records import Message, Record, Seed

SKILL = load_skill("tool_use")
SPECS = json.dumps([
    {"name": "get_forecast", "description": "Daily weather forecast for a city over some days.",
     "parameters": {"type": "object",
                    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "description": "default 3"}},
                    "required": ["city"]}},
    {"type": "function", "function": {"name": "get_air_quality", "description": "Air quality index at a point.",
                                      "parameters": {"type": "object", "properties": {
                                          "latitude": {"type": "number"}, "longitude": {"type": "number"}}}}},
], indent=2)
TABLE = """| signature | description | parameters |
|---|---|---|
| get_forecast(city: str, days: int = 3) | Daily weather forecast (for a city). | city is required |
| get_air_quality(latitude: float, longitude: float) | Air quality index. | both required |"""
TASK = "What will the weather be in Oslo for the next 5 days? You could use book_table(city) too."


def user_turn(api_text: str, task: str = TASK) -> str:
    """The user turn exactly as the shipped skill's template writes it."""
    return render(SKILL.instruction.user_template, text=api_text, task=task)


def answer(*calls) -> str:
    return json.dumps({"calls": [{"name": n, "arguments": json.dumps(a) if isinstance(a, dict) else a}
                                 for n, a in calls], "reason": ""})


def test_api_lists_parse_into_functions_and_parameters():
    expected = {"get_forecast": {"city", "days"}, "get_air_quality": {"latitude", "longitude"}}
    assert parse_api_list(user_turn(SPECS)) == expected
    assert parse_api_list(user_turn(TABLE, task="x")) == expected
    assert parse_api_list("The template says name and arguments; no API here.") == {}


def test_template_and_prose_words_are_not_functions():
    for api in (SPECS, TABLE):
        user = user_turn(api, task="Forecast for Oslo")
        assert check_tool_calls(answer(("get_forecast", {"city": "Oslo", "days": 5})), user,
                                "all_parameters_given") is None
        for word in ("name", "arguments", "calls", "weather", "forecast", "city"):
            assert check_tool_calls(answer((word, {})), user, "all_parameters_given") == \
                f"tool calls: unknown function {word!r}"
        # a parameter of another function, the template's words, prose: not parameters here
        for param in ("latitude", "name", "arguments", "weather"):
            assert check_tool_calls(answer(("get_forecast", {param: 1})), user, "superfluous_parameters") == \
                f"tool calls: get_forecast has no parameter {param!r}"


def test_arguments_must_be_a_json_object():
    user = user_turn(SPECS, task="Forecast for Oslo")
    assert check_tool_calls(answer(("get_forecast", "city=Oslo")), user, "all_parameters_given") == \
        "tool calls: get_forecast arguments are not a JSON object"
    assert check_tool_calls(answer(("get_forecast", "[1, 2]")), user, "all_parameters_given") == \
        "tool calls: get_forecast arguments are not a JSON object"


def test_no_call_types_and_unparseable_api_lists():
    user = user_turn(SPECS, task="Book me a table")
    assert check_tool_calls(answer(), user, "needed_api_absent") is None
    assert check_tool_calls(answer(("get_forecast", {"city": "Oslo"})), user, "needed_api_absent") == \
        "tool calls: a needed_api_absent task must make no call"
    prose = user_turn("This module fetches forecasts given a city name.", task="Oslo?")
    assert check_tool_calls(answer(("fetches", {})), prose, "all_parameters_given") == \
        "tool calls: the task gives no API list that can be parsed"


def test_the_gate_ignores_functions_named_only_in_the_request():
    """ToolCheck reads the API list from the user turn less the request: book_table(city) in the
    request is not an API the task offered."""
    def record(reply: str) -> Record:
        return Record(messages=[Message(role="user", content=user_turn(SPECS)),
                                Message(role="assistant", content=reply)],
                      instruction=TASK, seed_id="s1", source="api.py", skill=SKILL.name, split=SKILL.split,
                      instruction_type="all_parameters_given", transformation="api_description",
                      refinement_round=0, teacher_model="t", recipe_hash="h")

    gate, seed = ToolCheck(cfgs.ToolGate(), {SKILL.name: SKILL}), Seed(id="s1", text="x", source="api.py")
    assert asyncio.run(gate.check(record(answer(("book_table", {"city": "Paris"}))), seed)) == \
        "tool calls: unknown function 'book_table'"
    assert asyncio.run(gate.check(record(answer(("get_forecast", {"city": "Oslo", "days": 5}))), seed)) is None
