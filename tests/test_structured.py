import asyncio

import pytest

from agentinstruct.llm import ChatModel, Completion, chat_structured, extract_json

SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question", "answer"],
    "additionalProperties": False,
}


class Scripted(ChatModel):
    """Returns fixed texts: the only way to feed exact garbage to the parser."""

    name = "scripted"

    def __init__(self, replies):
        super().__init__()
        self.replies = list(replies)
        self.seen = []

    async def chat(self, messages, **kw):
        self.seen.append(messages)
        return Completion(self.replies.pop(0), "stop")


def test_extract_fenced_and_embedded_json():
    assert extract_json('Sure!\n```json\n{"a": 1}\n```\nbye') == {"a": 1}
    assert extract_json('prefix {"a": [1, 2]} suffix {"b": 2}') == {"a": [1, 2]}
    assert extract_json("[1, 2]") == [1, 2]
    with pytest.raises(ValueError):
        extract_json("no json here")


def test_valid_reply_accepted_first_time():
    m = Scripted(['{"question": "q", "answer": "a"}'])
    res = asyncio.run(chat_structured(m, [{"role": "user", "content": "x"}], SCHEMA))
    assert res.ok and res.value == {"question": "q", "answer": "a"} and res.attempts == 1


def test_fenced_reply_extracted():
    m = Scripted(['Here you go:\n```json\n{"question": "q", "answer": "a"}\n```'])
    res = asyncio.run(chat_structured(m, [{"role": "user", "content": "x"}], SCHEMA))
    assert res.ok and res.value["answer"] == "a"


def test_reask_then_success():
    m = Scripted(["garbage", '{"question": "q", "answer": "a"}'])
    res = asyncio.run(chat_structured(m, [{"role": "user", "content": "x"}], SCHEMA, reasks=1))
    assert res.ok and res.attempts == 2
    assert "not valid" in m.seen[1][-1]["content"]


def test_garbage_reported_as_failure_with_raw_text():
    m = Scripted(["garbage one", '{"question": 3}'])
    res = asyncio.run(chat_structured(m, [{"role": "user", "content": "x"}], SCHEMA, reasks=1))
    assert not res.ok and res.value is None
    assert res.raw == '{"question": 3}' and res.error and res.attempts == 2


def test_embedded_model_returns_schema_valid_json(embedded_model):
    res = asyncio.run(chat_structured(
        embedded_model,
        [{"role": "user", "content": "Write one quiz question about bread and its answer as JSON."}],
        SCHEMA, max_tokens=120, reasks=0,
    ))
    # constrained decoding: any complete reply is valid; only a truncated one may fail
    assert res.ok or res.finish_reason == "length", res
    if res.ok:
        assert set(res.value) == {"question", "answer"}
