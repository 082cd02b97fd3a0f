"""Multi-turn records with tool turns: the record schema, the exported dataset, the chat
templates, TRL's assistant-only masking, and the skill name kept apart from the split."""

import json
from collections import Counter
from pathlib import Path

import datasets
import pyarrow as pa
import pytest
import yaml
from agentinstruct.generate.export import FEATURES, build_dataset, dataset_card, write_outputs
from agentinstruct.generate.runner import load_generate_recipe, run_generate
from agentinstruct.train.chat_templates import TEMPLATES_DIR, assistant_mask, load_template
from agentinstruct.train.data_mixture import DatasetMixture, Source, load_mixture
from fake_openai import FakeOpenAIServer
from transformers import AutoTokenizer

from agentinstruct.embedded import converted_dir
from agentinstruct.records import PROVENANCE_COLUMNS, TRACE_COLUMNS, Message, Record, ToolCall, ToolCallFunction

SYSTEM = "You are a careful assistant with a calculator."
USERS = ["What is 12 times 7?", "Is that more than eighty?", "And 84 minus 9, then halved?"]
CALLS = [  # (tool call, tool result): the results are worded so no assistant turn repeats them
    (ToolCall(id="call_1", function=ToolCallFunction(name="calculator", arguments='{"expression": "12*7"}')),
     "calculator result: 84 (exact)"),
    (ToolCall(id="call_2", function=ToolCallFunction(name="calculator", arguments='{"expression": "84-9"}')),
     "calculator result: 75 (exact)"),
    (ToolCall(id="call_3", function=ToolCallFunction(name="calculator", arguments='{"expression": "75/2"}')),
     "calculator result: 37.5 (exact)"),
]
FINALS = ["Twelve sevens make 84.", "Yes, 84 is four more than 80.", "84 minus 9 is 75; half of that is 37.5."]
TOOLS = [{"type": "function", "function": {
    "name": "calculator", "description": "Evaluate an arithmetic expression exactly.",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                   "required": ["expression"]}}}]


def tool_turns(*pairs: tuple[ToolCall, str], content: str = "") -> list[Message]:
    """One assistant turn calling the tools, then one tool turn per result."""
    calls = [c for c, _ in pairs]
    return [Message(role="assistant", content=content, tool_calls=calls),
            *(Message(role="tool", content=r, tool_call_id=c.id, name=c.function.name) for c, r in pairs)]


def conversation() -> list[Message]:
    """Three user turns: a tool call, a plain reply, then an assistant turn with text and two calls."""
    return [
        Message(role="system", content=SYSTEM),
        Message(role="user", content=USERS[0]), *tool_turns(CALLS[0]), Message(role="assistant", content=FINALS[0]),
        Message(role="user", content=USERS[1]), Message(role="assistant", content=FINALS[1]),
        Message(role="user", content=USERS[2]), *tool_turns(CALLS[1], CALLS[2], content="Two steps."),
        Message(role="assistant", content=FINALS[2]),
    ]


def record(messages: list[Message], *, skill: str, split: str, **extra) -> Record:
    return Record(messages=messages, instruction=messages[1].content, seed_id="s1", source="math.txt",
                  skill=skill, split=split, instruction_type="calculation", transformation="identity",
                  refinement_round=0, teacher_model="t", recipe_hash="h", **extra)


def tool_record() -> Record:
    trace = [{"name": c.function.name, "arguments": c.function.arguments, "result": r} for c, r in CALLS]
    return record(conversation(), skill="math_tools", split="math", passage_ids=["p1", "p7"],
                  suggestions=["ask for the exact value"], tool_trace=trace, turns=3)


def plain_record() -> Record:
    return record([Message(role="user", content="Say hi."), Message(role="assistant", content="Hi.")],
                  skill="reading_comprehension", split="rc")


def stage(tmp_path: Path, records_by_split: dict[str, list[Record]]) -> Path:
    staging = tmp_path / "staging"
    staging.mkdir()
    for split, recs in records_by_split.items():
        (staging / f"{split}.jsonl").write_text(
            "".join(json.dumps(r.to_row(), ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    return staging


def test_to_row_writes_uniform_message_dicts():
    rows = [tool_record().to_row(), plain_record().to_row()]
    keys = {"role", "content", "tool_calls", "tool_call_id", "name"}
    assert all(set(m) == keys for row in rows for m in row["messages"])
    plain = rows[1]["messages"][0]
    assert plain["tool_calls"] is None and plain["tool_call_id"] is None and plain["name"] is None
    call = rows[0]["messages"][2]["tool_calls"][0]
    assert call == {"id": "call_1", "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": "12*7"}'}}
    assert (rows[0]["skill"], rows[0]["split"], rows[0]["turns"]) == ("math_tools", "math", 3)
    assert rows[0]["tool_trace"][2]["result"] == CALLS[2][1] and rows[0]["passage_ids"] == ["p1", "p7"]


def test_openai_turns_parse_and_the_card_describes_the_new_columns():
    turn = Message(role="assistant", content=None, tool_calls=[
        {"id": "c1", "type": "function", "function": {"name": "calculator", "arguments": "{}"}}])
    assert turn.content == "" and turn.tool_calls[0].function.name == "calculator"
    manifest = {"splits": ["math", "rejected"], "teacher": "t", "recipe_hash": "h", "skills": ["math_tools"],
                "input": "docs", "ingest": {"seeds": 1}}
    card = dataset_card(manifest, {"math": Counter(accepted=1)})
    for col in (*PROVENANCE_COLUMNS, *TRACE_COLUMNS):
        assert col in FEATURES and f"`{col}`" in card, col
    assert "tool_calls" in card


def test_tool_trace_entries_need_name_arguments_result():
    with pytest.raises(ValueError, match="tool_trace"):
        record(conversation(), skill="x", split="x", tool_trace=[{"name": "calculator", "output": "84"}])


def test_exported_tool_turns_round_trip_and_share_features_with_single_turn(tmp_path):
    rec = tool_record()
    staging = stage(tmp_path, {"math": [rec], "rc": [plain_record()], "rejected": []})
    dd = build_dataset(staging, tmp_path / "cache")
    write_outputs(dd, tmp_path / "out", staging, formats=[])
    dd = datasets.load_from_disk(str(tmp_path / "out" / "dataset"))
    row = dd["math"][0]
    assert row["messages"] == rec.to_row()["messages"]
    assert Record.model_validate(row).messages == rec.messages  # back to typed turns, unchanged
    assert (row["skill"], row["split"], row["turns"], row["suggestions"]) == (
        "math_tools", "math", 3, ["ask for the exact value"])
    assert row["tool_trace"] == rec.to_row()["tool_trace"]
    # a split of single-turn rows (no tool call anywhere) and an empty one get the same schema
    assert dd["math"].features == dd["rc"].features == dd["rejected"].features == FEATURES
    both = datasets.concatenate_datasets([dd["rc"], dd["math"]])
    assert both[0]["messages"][0]["tool_calls"] is None and both[1]["messages"][2]["tool_calls"]
    # messages is a native Arrow list of structs; tool_calls a nullable list<struct<id, type, function>>
    msg = dd["rc"].data.schema.field("messages").type.value_type
    calls = msg.field("tool_calls")
    assert pa.types.is_list(calls.type) and calls.nullable
    assert [f.name for f in calls.type.value_type] == ["id", "type", "function"]
    assert [f.name for f in calls.type.value_type.field("function").type] == ["name", "arguments"]


def test_mixture_aligns_tool_rows_with_plain_role_content_rows(tmp_path):
    """A plain {role, content} source (e.g. a converted public dataset) mixes with tool turns."""
    staging = stage(tmp_path, {"math": [tool_record()], "rejected": []})
    write_outputs(build_dataset(staging, tmp_path / "cache"), tmp_path / "out", staging, formats=[])
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi?"},
                                              {"role": "assistant", "content": "Hello."}]}) + "\n")
    mix = DatasetMixture(sources=[Source(path=str(tmp_path / "out" / "dataset")), Source(path=str(plain))])
    train = load_mixture(mix)["train"]
    assert len(train) == 2 and train.features["messages"] == FEATURES["messages"]
    turns = {len(r["messages"]): r["messages"] for r in train}
    assert turns[2][1] == {"role": "assistant", "content": "Hello.", "tool_calls": None,
                           "tool_call_id": None, "name": None}


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(converted_dir())


def tool_call_texts() -> list[str]:
    return [c.function.arguments for c, _ in CALLS] + ['"calculator"']


@pytest.mark.parametrize("template", sorted(p.stem for p in TEMPLATES_DIR.glob("*.jinja")))
def test_every_shipped_template_renders_tool_turns_and_masks_only_the_assistant(tokenizer, template):
    tokenizer.chat_template = load_template(template)
    messages = tool_record().to_row()["messages"]
    text = tokenizer.apply_chat_template(messages, tokenize=False, tools=TOOLS)
    for piece in [*tool_call_texts(), *(r for _, r in CALLS), *FINALS, *USERS,
                  "Evaluate an arithmetic expression exactly."]:
        assert piece in text, piece
    ids, mask = assistant_mask(tokenizer, messages)
    trained = tokenizer.decode([t for t, m in zip(ids, mask) if m])
    for piece in [*tool_call_texts(), *FINALS, "Two steps."]:
        assert piece in trained, piece
    for piece in [*(r for _, r in CALLS), *USERS, SYSTEM]:
        assert piece not in trained, piece
    # turns of the OpenAI shape without the optional keys render too (HF-style calls, no ids)
    bare = [{"role": "user", "content": "Hi"},
            {"role": "assistant", "tool_calls": [{"name": "calculator", "arguments": {"expression": "1+1"}}]},
            {"role": "tool", "content": "2"}, {"role": "assistant", "content": "Two."}]
    assert '"expression": "1+1"' in tokenizer.apply_chat_template(bare, tokenize=False)


def test_trl_sft_trainer_masks_every_assistant_turn_and_no_tool_result(tmp_path, tokenizer):
    """TRL's SFTTrainer tokenises the exported multi-turn dataset (loaded through the training
    mixture, unchanged) with assistant_only_loss: the trained spans are exactly the assistant
    turns, tool calls included; the tool results, user turns and the tools list are not trained."""
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    staging = stage(tmp_path, {"math": [tool_record()], "rejected": []})
    write_outputs(build_dataset(staging, tmp_path / "cache"), tmp_path / "out", staging, formats=[])
    train = load_mixture(DatasetMixture(sources=[Source(path=str(tmp_path / "out" / "dataset"))]))["train"]
    train = train.add_column("tools", [json.dumps(TOOLS)])  # TRL's optional tools column (JSON text)
    tokenizer.chat_template = load_template("smollm2_chatml")
    args = SFTConfig(output_dir=str(tmp_path / "sft"), assistant_only_loss=True, report_to=[],
                     use_cpu=True, bf16=False, max_length=None, dataset_num_proc=None)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(converted_dir()), args=args,
                         train_dataset=train, processing_class=tokenizer)
    ex = trainer.train_dataset[0]
    ids, labels = ex["input_ids"], ex["labels"]
    spans, run = [], []
    for tok, lab in zip(ids, labels):
        if lab != -100:
            run.append(tok)
        elif run:
            spans.append(tokenizer.decode(run))
            run = []
    if run:
        spans.append(tokenizer.decode(run))
    full = tokenizer.decode(ids)
    assert "Evaluate an arithmetic expression exactly." in full and CALLS[0][1] in full  # rendered, untrained
    assistants = [m for m in conversation() if m.role == "assistant"]
    assert len(spans) == len(assistants) == 5
    for span, turn in zip(spans, assistants):
        assert turn.content in span and span.endswith(tokenizer.eos_token)
        for call in turn.tool_calls or []:
            assert call.function.arguments in span and '"calculator"' in span
    trained = "".join(spans)
    for piece in [*(r for _, r in CALLS), *USERS, SYSTEM, "Evaluate an arithmetic expression"]:
        assert piece not in trained, piece


def test_generated_rows_keep_the_skill_name_apart_from_the_split(tmp_path, repo):
    """A fake-server run (tests/fake_openai.py scripts the teacher): the split is routed by
    ``split`` ("rc"), the row's ``skill`` is the skill's name."""
    out = tmp_path / "run"
    with FakeOpenAIServer() as server:
        data = {"teacher": {"backend": "openai", "base_url": server.base_url, "model": "fake-teacher",
                            "max_concurrency": 8, "backoff_base_s": 0.01},
                "input": str(repo / "examples" / "docs" / "lake_veyra.txt"), "output": str(out),
                "skills": ["reading_comprehension"], "formats": ["jsonl"]}
        (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(data))
        run_generate(load_generate_recipe(tmp_path / "recipe.yaml"), show_progress=False)
    dd = datasets.load_from_disk(str(out / "dataset"))
    assert set(dd) == {"rc", "rejected"} and len(dd["rc"]) > 0
    for split in dd:
        assert set(dd[split]["skill"]) <= {"reading_comprehension"}
        assert set(dd[split]["split"]) <= {"rc"}
    assert set(dd["rc"]["skill"]) == {"reading_comprehension"} and set(dd["rc"]["turns"]) == {1}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["rc"]["accepted"] == len(dd["rc"])
    assert manifest["counts"]["rc"].get("rejected", 0) == len(dd["rejected"])  # counted by the row's split
