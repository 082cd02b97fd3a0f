"""Training chat templates with ``{% generation %}`` tags, and the assistant-mask checks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from agentinstruct.resources import data_path

TEMPLATES_DIR = data_path("recipes", "templates")  # the shipped templates, in a checkout and in a wheel

log = logging.getLogger(__name__)


class TemplateError(ValueError):
    pass


def load_template(name_or_path: str, base_dir: Path | None = None) -> str:
    """A shipped template by name (``recipes/templates/<name>.jinja``) or a user's file by path
    (relative to ``base_dir``, the training recipe's folder, when given; else to the working directory)."""
    path = Path(name_or_path).expanduser()
    if not path.suffix:
        path = TEMPLATES_DIR / f"{name_or_path}.jinja"
    elif base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in TEMPLATES_DIR.glob("*.jinja")))
        raise TemplateError(f"chat template {name_or_path!r} not found (known: {known})")
    text = path.read_text(encoding="utf-8")
    if "{% generation %}" not in text and "{%- generation -%}" not in text:
        raise TemplateError(f"{path}: no {{% generation %}} block; assistant-only loss would train on nothing")
    return text


def assistant_mask(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """(input_ids, mask) where mask is 1 on tokens inside ``{% generation %}``."""
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
    return list(out["input_ids"]), list(out["assistant_masks"])


def render_masked(tokenizer: Any, input_ids: list[int], mask: list[int]) -> str:
    """Decoded example with trained spans in [[...]]: the one-look check of the masking."""
    parts, run, cur = [], [], None
    for tok, m in zip(input_ids, mask):
        if cur is not None and m != cur:
            text = tokenizer.decode(run)
            parts.append(f"[[{text}]]" if cur else text)
            run = []
        run.append(tok)
        cur = m
    if run:
        text = tokenizer.decode(run)
        parts.append(f"[[{text}]]" if cur else text)
    return "".join(parts)


def check_trainable_tokens(tokenizer: Any, examples: list[list[dict[str, str]]]) -> str:
    """Fail fast when the template masks every token; return one decoded, masked example."""
    shown = None
    empty = 0
    for messages in examples:
        ids, mask = assistant_mask(tokenizer, messages)
        if sum(mask) == 0:
            empty += 1
        elif shown is None:
            shown = render_masked(tokenizer, ids, mask)
    if shown is None:
        raise TemplateError(
            f"0 trainable tokens in {len(examples)} examples: the chat template marks no assistant "
            "tokens (check its {% generation %} block and that the data has assistant turns)"
        )
    if empty:
        log.warning("%d of %d checked examples have no assistant tokens", empty, len(examples))
    return shown
