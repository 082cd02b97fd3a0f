"""PEFT adapter folders (``FOLDER+ADAPTER`` models): checked before any weights load, so a
missing or non-adapter folder is a one-line error instead of a silent evaluation of the base."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from agentinstruct.llm.base import LLMError

ADAPTER_CONFIG = "adapter_config.json"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # owner/name: an adapter on the Hub (or its cache)


def adapter_config(path: str) -> dict[str, Any]:
    """The ``adapter_config.json`` of a PEFT adapter: a local folder, or an ``owner/name`` Hub id."""
    folder = Path(path)
    if not folder.is_dir():
        if not HUB_ID.fullmatch(path):
            raise LLMError(f"adapter {path!r}: folder not found")
        return _hub_adapter_config(path)
    cfg = folder / ADAPTER_CONFIG
    if not cfg.is_file():
        hint = (" (it holds a full model: evaluate it as a model, without +ADAPTER)"
                if (folder / "config.json").is_file() else "")
        raise LLMError(f"adapter {path!r}: no {ADAPTER_CONFIG}, so it is not a PEFT adapter{hint}")
    try:
        return json.loads(cfg.read_text())
    except json.JSONDecodeError as exc:
        raise LLMError(f"adapter {path!r}: {ADAPTER_CONFIG} is not valid JSON ({exc})") from None


def _hub_adapter_config(repo_id: str) -> dict[str, Any]:
    from huggingface_hub import hf_hub_download

    try:
        return json.loads(Path(hf_hub_download(repo_id, ADAPTER_CONFIG)).read_text())
    except Exception as exc:  # noqa: BLE001 - offline, missing repo, not an adapter: one line
        raise LLMError(f"adapter {repo_id!r}: not a local folder, and no {ADAPTER_CONFIG} on the "
                       f"Hub or in its cache ({type(exc).__name__})") from None


def lora_rank(path: str) -> int:
    """The largest LoRA rank in the adapter (``r`` and any per-module ``rank_pattern``): what a
    vLLM engine must be started with (``max_lora_rank``) to load it."""
    cfg = adapter_config(path)
    if cfg.get("peft_type", "LORA") != "LORA":
        raise LLMError(f"adapter {path!r}: peft_type {cfg.get('peft_type')!r}; only LoRA adapters "
                       "can be served by vLLM")
    ranks = [int(cfg.get("r", 8)), *(int(r) for r in (cfg.get("rank_pattern") or {}).values())]
    return max(ranks)
