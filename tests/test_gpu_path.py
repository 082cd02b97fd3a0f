"""The GPU path, tested on CPU: the vLLM backend against a stub ``vllm`` package
(tests/stubs/vllm: it records what the backend passes and replays scripted failures), adapters
and dtypes in the lm-eval model arguments, and the training dry check on the shipped recipes
(models built on the meta device: no weights, seconds)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from agentinstruct.llm import LLMError, ModelSpec, json_schema_format

STUBS = Path(__file__).resolve().parent / "stubs"
PROMPT_WAIT_S = 5.0  # a request that has not ended by then is hanging


@pytest.fixture
def stub_vllm(monkeypatch):
    """The stub ``vllm`` importable for one test, and gone from ``sys.modules`` after it."""
    monkeypatch.syspath_prepend(str(STUBS))
    yield __import__("vllm")
    for name in [n for n in sys.modules if n == "vllm" or n.startswith("vllm.")]:
        del sys.modules[name]


@pytest.fixture
def adapter_dir(tmp_path) -> Path:
    """A LoRA adapter folder as PEFT writes it (only its config matters before weights load)."""
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 16, "rank_pattern": {"q_proj": 32}, "lora_alpha": 32}))
    return folder


def _model(stub_vllm, **spec):
    from agentinstruct.llm import create_model

    return create_model(ModelSpec(backend="vllm", model="some/model", batch_wait_ms=1, **spec))


def _ask(model, *texts, **params):
    async def go():
        return await asyncio.wait_for(asyncio.gather(
            *(model.chat([{"role": "user", "content": t}], **params) for t in texts),
            return_exceptions=True), PROMPT_WAIT_S)

    return asyncio.run(go())


def test_chat_failure_fails_the_whole_batch_and_the_loop_keeps_serving(stub_vllm):
    model = _model(stub_vllm)
    model.llm.script.append(RuntimeError("CUDA error: device-side assert"))
    first = _ask(model, "a", "b", "c")  # one batch: all three wait on the failing LLM.chat
    assert [type(r) for r in first] == [LLMError] * 3
    assert all("device-side assert" in str(r) for r in first)
    assert len(model.llm.calls) == 1 and len(model.llm.calls[0]["messages"]) == 3
    later = _ask(model, "d")
    assert later[0].text == "echo: d"
    assert model.stats.failures == 3


def test_output_count_mismatch_fails_the_batch_instead_of_hanging(stub_vllm):
    model = _model(stub_vllm)
    model.llm.script.append(lambda call: [])  # an engine that answered nothing
    results = _ask(model, "a", "b")
    assert [type(r) for r in results] == [LLMError] * 2
    assert "0 outputs for 2 requests" in str(results[0])


class _Crash(BaseException):
    """Escapes the per-batch ``except Exception``: kills the batching loop itself."""


def test_dead_batching_loop_fails_pending_and_later_requests(stub_vllm):
    model = _model(stub_vllm)
    model.llm.script.append(_Crash("worker thread torn down"))
    first = _ask(model, "a", "b")
    assert [type(r) for r in first] == [LLMError] * 2
    assert "batching loop died" in str(first[0])
    later = _ask(model, "c")  # fails at once: no new call reaches the dead engine
    assert isinstance(later[0], LLMError) and "restart the run" in str(later[0])
    assert len(model.llm.calls) == 1


def test_engine_dead_error_stops_the_backend(stub_vllm):
    from vllm.v1.engine.exceptions import EngineDeadError

    model = _model(stub_vllm)
    model.llm.script.append(EngineDeadError("EngineCore died"))
    assert isinstance(_ask(model, "a")[0], LLMError)
    later = _ask(model, "b")
    assert isinstance(later[0], LLMError) and "engine died" in str(later[0])
    assert len(model.llm.calls) == 1


def test_adapter_becomes_a_lora_request_on_every_chat(stub_vllm, adapter_dir):
    model = _model(stub_vllm, adapter=str(adapter_dir))
    kwargs = model.llm.kwargs
    assert kwargs["enable_lora"] is True
    assert kwargs["max_lora_rank"] == 32  # the largest rank in the adapter, rank_pattern included
    assert _ask(model, "hi")[0].text == "echo: hi"
    lora = model.llm.calls[0]["lora_request"]
    assert (lora.lora_name, lora.lora_int_id, lora.lora_path) == ("adapter", 1, str(adapter_dir))
    assert model.name.endswith(f"+{adapter_dir}")


def test_without_adapter_no_lora_is_enabled(stub_vllm):
    model = _model(stub_vllm)
    _ask(model, "hi")
    assert "enable_lora" not in model.llm.kwargs
    assert model.llm.calls[0]["lora_request"] is None


def test_full_model_folder_as_adapter_is_refused_before_the_engine_starts(stub_vllm, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    engines = len(stub_vllm.LLM.instances)
    with pytest.raises(LLMError, match="not a PEFT adapter.*full model"):
        _model(stub_vllm, adapter=str(tmp_path))
    with pytest.raises(LLMError, match="folder not found"):
        _model(stub_vllm, adapter=str(tmp_path / "missing"))
    assert len(stub_vllm.LLM.instances) == engines  # refused before any engine (weights) started


def test_json_schema_goes_to_guided_decoding_on_older_vllm(stub_vllm):
    model = _model(stub_vllm)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    _ask(model, "judge", response_format=json_schema_format(schema))
    _ask(model, "free text")
    constrained, free = (c["sampling_params"][0] for c in model.llm.calls)
    assert constrained.guided_decoding.json == schema
    assert not hasattr(free, "guided_decoding") and not hasattr(free, "structured_outputs")


def test_json_schema_goes_to_structured_outputs_on_newer_vllm(stub_vllm, monkeypatch):
    from dataclasses import make_dataclass

    import vllm.sampling_params as sp

    monkeypatch.setattr(sp, "StructuredOutputsParams",
                        make_dataclass("StructuredOutputsParams", [("json", object, None),
                                                                   ("json_object", object, None)]),
                        raising=False)
    model = _model(stub_vllm)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    _ask(model, "count", response_format=json_schema_format(schema))
    _ask(model, "any json", response_format={"type": "json_object"})
    schema_params, object_params = (c["sampling_params"][0] for c in model.llm.calls)
    assert schema_params.structured_outputs.json == schema
    assert object_params.structured_outputs.json_object is True
    assert not hasattr(schema_params, "guided_decoding")


def test_engine_gets_prefix_caching_and_the_resolved_dtype(stub_vllm, monkeypatch):
    from agentinstruct.llm import dtypes

    model = _model(stub_vllm)
    assert model.llm.kwargs["enable_prefix_caching"] is True
    assert model.llm.kwargs["dtype"] == "float32"  # no GPU here: auto is float32
    monkeypatch.setattr(dtypes, "cuda_available", lambda: True)
    monkeypatch.setattr(dtypes, "cuda_bf16_supported", lambda: True)
    model = _model(stub_vllm, prefix_caching=False)
    assert model.llm.kwargs["dtype"] == "bfloat16"  # auto on a bf16 GPU, not fp32
    assert model.llm.kwargs["enable_prefix_caching"] is False


def test_same_request_gets_the_same_seed_alone_or_in_a_batch(stub_vllm):
    model = _model(stub_vllm)
    _ask(model, "x", temperature=0.7)
    _ask(model, "y", "x", temperature=0.7)
    alone = model.llm.calls[0]["sampling_params"][0].seed
    assert model.llm.calls[1]["sampling_params"][1].seed == alone
    assert model.llm.calls[1]["sampling_params"][0].seed != alone


def test_vllm_prefix_in_the_model_shorthand():
    spec = ModelSpec.from_string("vllm:runs/base+runs/train")
    assert (spec.backend, spec.model, spec.adapter) == ("vllm", "runs/base", "runs/train")
    assert ModelSpec.from_string("vllm:mistralai/Mistral-7B-v0.1").backend == "vllm"


# --- evaluation: the adapter and the dtype reach lm-eval -----------------------------------


def test_hf_eval_args_carry_the_adapter_and_resolved_dtype(adapter_dir, monkeypatch):
    from agentinstruct.evaluate.lm_harness import lm_eval_model

    from agentinstruct.llm import dtypes

    kind, args = lm_eval_model(ModelSpec.from_string(f"some/base+{adapter_dir}"), 8)
    assert kind == "hf"
    assert args == {"pretrained": "some/base", "dtype": "float32", "device": "cpu", "peft": str(adapter_dir)}
    monkeypatch.setattr(dtypes, "cuda_available", lambda: True)
    monkeypatch.setattr(dtypes, "cuda_bf16_supported", lambda: True)
    _, args = lm_eval_model(ModelSpec.from_string(f"some/base+{adapter_dir}"), 8)
    assert (args["dtype"], args["device"]) == ("bfloat16", "cuda")


def test_hf_eval_arg_names_are_lm_evals():
    import inspect

    from lm_eval.models.huggingface import HFLM

    assert {"pretrained", "dtype", "device", "peft"} <= set(inspect.signature(HFLM.__init__).parameters)


def test_vllm_eval_loads_the_adapter_through_lm_evals_vllm_model(stub_vllm, adapter_dir):
    """lm-eval's own vllm model class, built on the stub engine with our arguments: the engine
    starts with LoRA enabled and every request of lm-eval carries our adapter."""
    from agentinstruct.evaluate.lm_harness import lm_eval_model
    from lm_eval.models import vllm_causallms

    from agentinstruct.embedded import DEFAULT_EMBEDDED, resolve_model_path

    kind, args = lm_eval_model(ModelSpec.from_string(f"vllm:{DEFAULT_EMBEDDED}+{adapter_dir}"), 8)
    assert kind == "vllm"
    assert args == {"pretrained": resolve_model_path(DEFAULT_EMBEDDED), "dtype": "float32",
                    "lora_local_path": str(adapter_dir), "max_lora_rank": 32}
    lm = vllm_causallms.VLLM(**args)
    engine = vllm_causallms.LLM.instances[-1]
    assert engine.kwargs["enable_lora"] is True and engine.kwargs["max_lora_rank"] == 32
    assert engine.kwargs["dtype"] == "float32"
    assert lm.lora_request.lora_path == str(adapter_dir)


def test_chat_endpoint_with_an_adapter_is_refused_before_anything_runs(tmp_path, adapter_dir, repo,
                                                                      monkeypatch):
    from agentinstruct.evaluate import lm_harness
    from agentinstruct.evaluate.suite import load_eval_recipe, run_eval

    monkeypatch.setattr(lm_harness, "check_task_names", lambda section: None)  # lm-eval's index: 30 s

    spec = ModelSpec(backend="openai", base_url="http://127.0.0.1:9/v1", model="m", adapter=str(adapter_dir))
    recipe = load_eval_recipe(repo / "recipes/eval/fixtures-cpu.yaml")
    assert recipe.lm_eval.enabled and recipe.lm_eval.tasks
    with pytest.raises(ValueError, match="cannot apply adapter .* base 'm'"):
        run_eval(recipe, spec, output_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()  # no run folder: refused before the suite started


def test_full_model_folder_as_eval_adapter_is_one_line_error(tmp_path):
    from agentinstruct.evaluate.lm_harness import lm_eval_model

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(LLMError, match="full model"):
        lm_eval_model(ModelSpec.from_string(f"some/base+{tmp_path}"), 8)


# --- training dry check: the plan of the shipped recipes, on the meta device ----------------


def _config(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def _dense_params(c: dict) -> int:
    """Parameters of a Llama/Mistral decoder, counted from its config by hand."""
    h, i, layers, v = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    kv = c.get("head_dim", h // c["num_attention_heads"]) * c["num_key_value_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h  # q,o + k,v + gate,up,down + 2 norms
    return v * h * (1 if c.get("tie_word_embeddings") else 2) + layers * per_layer + h


def _lora_params(c: dict, r: int) -> int:
    """LoRA on q,k,v,o,gate,up,down: r x (in + out) per module, per layer."""
    h, i = c["hidden_size"], c["intermediate_size"]
    kv = c.get("head_dim", h // c["num_attention_heads"]) * c["num_key_value_heads"]
    per_layer = (h + h) + 2 * (h + kv) + (h + h) + 2 * (h + i) + (i + h)
    return r * per_layer * c["num_hidden_layers"]


MISTRAL = Path(__file__).resolve().parent.parent / "recipes/model_configs/mistralai/Mistral-7B-v0.1/config.json"


def _dry_run(recipe, *extra):
    from agentinstruct.train.sft import main

    return main(["--config", str(recipe), "--dry_run", "true", *extra])


def test_dry_run_of_the_orca3_qlora_recipe(repo, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.chdir(tmp_path)  # nothing may be written: output_dir is relative
    result = _dry_run(repo / "recipes/orca3-mistral-7b/sft/config_qlora.yaml")
    plan, c = result["plan"], _config(MISTRAL)
    assert result["dry_run"] and result["global_step"] == 0
    assert plan["total_params"] == _dense_params(c) == 7_241_732_096
    assert plan["trainable_params"] == _lora_params(c, r=64) == 167_772_160
    assert plan["effective_batch"] == 4 * 8 * 1 and plan["tokens_per_step"] == 32 * 4096
    # the 4-bit base is a fraction of its bf16 size; the adapter trains with grads + Adam
    assert plan["memory"]["weights"] < _dense_params(c) * 2 / 3
    assert plan["memory"]["gradients"] == plan["trainable_params"] * 2
    out = capsys.readouterr().out
    assert "167,772,160 trainable" in out and "QLoRA" in out and "131,072" in out
    assert not any(tmp_path.iterdir())


def test_dry_run_of_the_orca3_full_recipe_on_8_gpus(repo, monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.chdir(tmp_path)
    result = _dry_run(repo / "recipes/orca3-mistral-7b/sft/config_full.yaml",
                      "--dry_run_accelerate_config", str(repo / "recipes/accelerate_configs/zero3.yaml"))
    plan = result["plan"]
    assert plan["trainable_params"] == plan["total_params"] == _dense_params(_config(MISTRAL))
    assert plan["world"]["processes"] == 8 and plan["world"]["sharded"]
    assert plan["effective_batch"] == 10 * 1 * 8 and plan["tokens_per_step"] == 80 * 8192
    assert "80 = 10 per device x 1 accumulation x 8 processes" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())


def test_dry_run_of_the_cpu_lora_recipe_through_the_cli(repo, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from agentinstruct.cli import app
    from agentinstruct.embedded import DEFAULT_EMBEDDED, resolve_model_path

    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["train", "--config", str(repo / "recipes/smollm2-135m/sft/config_lora.yaml"),
                                   "--dry-run"])
    assert res.exit_code == 0, res.output
    c = _config(Path(resolve_model_path(DEFAULT_EMBEDDED)) / "config.json")
    assert f"{_dense_params(c):,} total, {_lora_params(c, r=16):,} trainable" in res.output
    assert "weights in float32" in res.output and "4 per device x 1 accumulation x 1 processes" in res.output
    assert "nothing was trained" in res.output
    assert not any(tmp_path.iterdir())


def test_dry_run_refuses_an_unknown_lora_target_in_one_line(repo, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from agentinstruct.cli import app

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["train", "--config", str(repo / "recipes/orca3-mistral-7b/sft/config_qlora.yaml"),
                                   "--dry-run", "--lora_target_modules", "q_proj", "qkv_proj"])
    assert res.exit_code == 2
    assert "lora_target_modules: ['qkv_proj'] not in the model" in res.output


@pytest.mark.parametrize("trained", ["adapter", "full model"])
def test_pipeline_evaluates_the_trained_folder_as_what_it_is(trained, tmp_path, repo, monkeypatch):
    """A LoRA run's output is the tuned model's adapter; a full fine-tune's output is the tuned
    model itself (as an adapter it would be refused, or worse, scored as the base)."""
    from agentinstruct.evaluate import suite

    from agentinstruct.pipeline import Pipeline, load_pipeline_recipe

    recipe = load_pipeline_recipe(repo / "recipes/pipeline/orca3-mistral-7b.yaml")
    recipe = recipe.model_copy(update={"output_dir": str(tmp_path)})
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / ("adapter_config.json" if trained == "adapter" else "config.json")).write_text("{}")
    specs = {}
    monkeypatch.setattr(suite, "run_eval", lambda recipe, spec, run_name, output_dir: specs.setdefault(run_name, spec))
    Pipeline(recipe).evaluate("upstream")
    assert (specs["base"].model, specs["base"].adapter) == ("mistralai/Mistral-7B-v0.1", None)
    tuned = specs["tuned"]
    expected = (("mistralai/Mistral-7B-v0.1", str(tmp_path / "train")) if trained == "adapter"
                else (str(tmp_path / "train"), None))
    assert (tuned.model, tuned.adapter) == expected


def test_auto_dtype_is_bf16_on_a_bf16_gpu_fp16_on_an_older_one_fp32_on_cpu(monkeypatch):
    from agentinstruct.llm import dtypes

    assert dtypes.resolve_dtype("auto", "cpu") == "float32"
    monkeypatch.setattr(dtypes, "cuda_bf16_supported", lambda: True)
    assert dtypes.resolve_dtype("auto", "cuda:1") == "bfloat16"
    monkeypatch.setattr(dtypes, "cuda_bf16_supported", lambda: False)
    assert dtypes.resolve_dtype("auto", "cuda") == "float16"
    assert dtypes.resolve_dtype("float32", "cuda") == "float32"  # an explicit dtype is kept
    with pytest.raises(ValueError, match="int8"):
        dtypes.resolve_dtype("int8", "cpu")
