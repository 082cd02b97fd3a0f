"""Stub of ``vllm.tokenizers.get_tokenizer``: the Hugging Face tokenizer of the folder."""

from __future__ import annotations

from typing import Any


def get_tokenizer(name: str, **kwargs: Any):
    from transformers import AutoTokenizer

    kwargs.pop("tokenizer_mode", None)
    return AutoTokenizer.from_pretrained(name, **kwargs)
