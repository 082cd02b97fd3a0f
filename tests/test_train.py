"""Training: templates and masking, the mixture loader, recipes, and a real CPU LoRA run."""

import json
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import yaml
from agentinstruct.train.chat_templates import (
    TemplateError,
    assistant_mask,
    check_trainable_tokens,
    load_template,
)
from agentinstruct.train.data_mixture import DatasetMixture, load_mixture
from agentinstruct.train.sft import parse_args
from fake_openai import FakeOpenAIServer
from transformers import AutoTokenizer

from agentinstruct.embedded import converted_dir
from agentinstruct.recipes import RecipeError

CONVO = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is two plus two?"},
    {"role": "assistant", "content": "Four."},
    {"role": "user", "content": "And three plus three?"},
    {"role": "assistant", "content": "Six."},
]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(converted_dir())


@pytest.mark.parametrize("template", ["smollm2_chatml", "mistral_instruct"])
def test_only_assistant_tokens_are_trained(tokenizer, template):
    tokenizer.chat_template = load_template(template)
    ids, mask = assistant_mask(tokenizer, CONVO)
    trained = tokenizer.decode([t for t, m in zip(ids, mask) if m])
    untrained = tokenizer.decode([t for t, m in zip(ids, mask) if not m])
    assert trained.replace(" ", "") == f"Four.{tokenizer.eos_token}Six.{tokenizer.eos_token}"
    for text in ("You are terse.", "What is two plus two?", "And three plus three?"):
        assert text in untrained and text not in trained


def test_smollm2_training_template_matches_inference_template(tokenizer):
    own = AutoTokenizer.from_pretrained(converted_dir()).chat_template
    msgs = CONVO[:2]
    ours = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True,
                                         chat_template=load_template("smollm2_chatml"))
    theirs = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, chat_template=own)
    assert ours == theirs
    no_system = [CONVO[1], CONVO[2]]
    assert tokenizer.apply_chat_template(no_system, tokenize=False, chat_template=own) == \
        tokenizer.apply_chat_template(no_system, tokenize=False, chat_template=load_template("smollm2_chatml"))


def test_template_without_generation_block_is_rejected(tmp_path):
    p = tmp_path / "plain.jinja"
    p.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    with pytest.raises(TemplateError, match="no {% generation %} block"):
        load_template(str(p))
    with pytest.raises(TemplateError, match="not found"):
        load_template("no_such_template")


def test_zero_trainable_tokens_fails_fast(tokenizer):
    tokenizer.chat_template = load_template("smollm2_chatml")
    with pytest.raises(TemplateError, match="0 trainable tokens"):
        check_trainable_tokens(tokenizer, [[{"role": "user", "content": "hi"}]])
    shown = check_trainable_tokens(tokenizer, [CONVO])
    assert "[[Four." in shown


def _saved(tmp_path, name, splits):
    dd = datasets.DatasetDict({s: datasets.Dataset.from_dict(cols) for s, cols in splits.items()})
    dd.save_to_disk(str(tmp_path / name))
    return str(tmp_path / name)


def msgs(i):
    return [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]


def test_mixture_weights_splits_and_columns(tmp_path):
    a = _saved(tmp_path, "a", {"rc": {"messages": [msgs(i) for i in range(10)], "seed_id": ["s"] * 10},
                               "tool_use": {"messages": [msgs(i) for i in range(4)], "seed_id": ["t"] * 4},
                               "rejected": {"messages": [msgs(i) for i in range(7)], "seed_id": ["r"] * 7}})
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text("\n".join(json.dumps({"messages": msgs(100 + i), "x": 1}) for i in range(6)))
    mix = DatasetMixture.model_validate({"sources": [{"path": a, "weight": 0.5},
                                                     {"path": str(jsonl), "weight": 1.0}],
                                         "seed": 3, "test_split_size": 0.25})
    dd = load_mixture(mix)
    total = len(dd["train"]) + len(dd["test"])
    assert total == 5 + 2 + 6  # half of each split of a (rejected excluded), all of b
    assert dd["train"].column_names == ["messages"]
    only_rc = load_mixture(DatasetMixture.model_validate({"sources": [{"path": a, "splits": ["rc"]}]}))
    assert len(only_rc["train"]) == 10


def test_mixture_errors_are_clear(tmp_path):
    bad = _saved(tmp_path, "bad", {"train": {"text": ["x", "y"]}})
    with pytest.raises(RecipeError, match=r"sources\.0 .*no 'messages' column \(columns: text\)"):
        load_mixture(DatasetMixture.model_validate({"sources": [{"path": bad}]}))
    good = _saved(tmp_path, "good", {"rc": {"messages": [msgs(0)]}})
    with pytest.raises(RecipeError, match=r"no split\(s\) \['nope'\]"):
        load_mixture(DatasetMixture.model_validate({"sources": [{"path": good, "splits": ["nope"]}]}))


SFT_RECIPES = sorted(Path(__file__).parent.parent.glob("recipes/*/sft/*.yaml"))


@pytest.mark.parametrize("recipe", SFT_RECIPES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_every_sft_recipe_parses_with_trl(recipe):
    # bf16 recipes cannot be built on a CPU; the override keeps every other key checked
    script, cfg, model = parse_args(["--config", str(recipe), "--bf16", "false", "--use_cpu", "true"])
    assert script.dataset_mixture["sources"] and load_template(script.chat_template)
    assert cfg.assistant_only_loss and model.model_name_or_path


def test_unknown_recipe_key_is_rejected_by_trlparser(tmp_path, repo):
    text = (repo / "recipes/smollm2-135m/sft/config_lora.yaml").read_text() + "\nlearning_rat: 0.1\n"
    (tmp_path / "r.yaml").write_text(text)
    with pytest.raises(ValueError, match="learning_rat"):
        parse_args(["--config", str(tmp_path / "r.yaml")])


def test_orca3_recipe_is_the_paper_setting(repo):
    _, cfg, model = parse_args(["--config", str(repo / "recipes/orca3-mistral-7b/sft/config_full.yaml"),
                                "--bf16", "false", "--use_cpu", "true"])
    assert model.model_name_or_path == "mistralai/Mistral-7B-v0.1"
    assert (cfg.num_train_epochs, cfg.learning_rate, cfg.lr_scheduler_type.value, cfg.warmup_steps,
            cfg.weight_decay, cfg.max_length, cfg.packing, cfg.per_device_train_batch_size,
            cfg.gradient_checkpointing) == (3, 8e-6, "cosine", 500, 0.1, 8192, True, 10, True)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    from agentinstruct.generate.runner import load_generate_recipe, run_generate

    root = tmp_path_factory.mktemp("gen")
    with FakeOpenAIServer() as server:
        path = root / "recipe.yaml"
        path.write_text(yaml.safe_dump({
            "teacher": {"backend": "openai", "base_url": server.base_url, "model": "fake"},
            "input": str(Path(__file__).parent.parent / "examples" / "docs"), "output": str(root / "run"),
            "skills": ["reading_comprehension"], "limit": 2}))
        run_generate(load_generate_recipe(path), show_progress=False)
    return root / "run" / "dataset"


def _launch(recipe, *extra):
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--num_processes", "1",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "train/sft.py", "--config", str(recipe), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).parent.parent)


def test_accelerate_launch_trains_resumes_and_adapter_generates(small_dataset, tmp_path, repo):
    recipe = yaml.safe_load((repo / "recipes/smollm2-135m/sft/config_lora.yaml").read_text())
    out = tmp_path / "out"
    recipe["dataset_mixture"]["sources"][0]["path"] = str(small_dataset)
    recipe.update(output_dir=str(out), max_length=384, per_device_train_batch_size=2,
                  learning_rate=1e-3, save_steps=3, warmup_steps=0)
    path = tmp_path / "cpu.yaml"
    path.write_text(yaml.safe_dump(recipe))

    first = _launch(path, "--max_steps", "3")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Example with its loss mask" in first.stdout + first.stderr
    state = json.loads((out / "trainer_state.json").read_text())
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    assert state["global_step"] == 3 and losses[-1] < losses[0], losses
    assert (out / "checkpoint-3").is_dir() and (out / "adapter_model.safetensors").exists()
    assert "agentinstruct provenance" in (out / "README.md").read_text()

    second = _launch(path, "--max_steps", "5")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Resuming from checkpoint" in second.stdout + second.stderr
    state = json.loads((out / "trainer_state.json").read_text())
    steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert state["global_step"] == 5 and steps == [1, 2, 3, 4, 5]

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(converted_dir())
    model = PeftModel.from_pretrained(base, str(out))
    tok = AutoTokenizer.from_pretrained(str(out))
    ids = tok.apply_chat_template([{"role": "user", "content": "Hello"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        gen = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert gen.shape[1] > ids["input_ids"].shape[1]
    assert model.generation_config.eos_token_id == tok.eos_token_id
