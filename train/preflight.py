"""Checks run before training loads data or weights: a bad row or a typo'd LoRA target is a
one-line error naming where it is, not a silent loss or a traceback after the model loaded."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agentinstruct.recipes import RecipeError

ROLES = ("system", "user", "assistant", "tool")
TOOL_CALL_ROLES = {"assistant"}  # turns that may carry tool_calls instead of content
VALIDATE_BATCH_ROWS = 1000  # rows read per batch while validating (bounded memory)


def message_problem(messages: Any) -> str | None:
    """Why one row's ``messages`` cannot be trained on, naming the field; None when fine."""
    if not isinstance(messages, list) or not messages:
        return "messages: expected a non-empty list of turns"
    for j, turn in enumerate(messages):
        if not isinstance(turn, dict):
            return f"messages[{j}]: expected a mapping with role and content"
        role = turn.get("role")
        if role not in ROLES:
            return f"messages[{j}].role: unknown role {role!r} (expected one of {', '.join(ROLES)})"
        content = turn.get("content")
        if isinstance(content, str):
            continue
        if role in TOOL_CALL_ROLES and turn.get("tool_calls"):
            continue
        if content is None:
            return f"messages[{j}].content: missing ({role} turn)"
        return f"messages[{j}].content: expected a string, got {type(content).__name__}"
    if not any(t.get("role") == "assistant" for t in messages):
        return "messages: no assistant turn (nothing to train on)"
    return None


def validate_messages(rows: Iterable[dict[str, Any]], where: str) -> None:
    """Raise :class:`RecipeError` at the first row whose messages are not trainable."""
    for i, row in enumerate(rows):
        problem = message_problem(row.get("messages"))
        if problem:
            raise RecipeError(f"{where}: row {i}: {problem}")


def validate_dataset_messages(ds: Any, where: str) -> None:
    """:func:`validate_messages` over a ``datasets.Dataset``, read in batches."""
    def rows():
        for batch in ds.select_columns(["messages"]).iter(batch_size=VALIDATE_BATCH_ROWS):
            for messages in batch["messages"]:
                yield {"messages": messages}

    validate_messages(rows(), where)


def unknown_lora_targets(module_names: Iterable[str], targets: list[str]) -> list[str]:
    """Targets that match no module, the way PEFT matches a list: the full name or its suffix
    after a dot (PEFT only fails when none matches, so one typo among valid names is silent)."""
    names = list(module_names)
    return [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]


def module_names_on_meta(model_path: str, trust_remote_code: bool = False) -> list[str]:
    """The module names of a causal LM built from its config on the meta device (no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return [name for name, _ in model.named_modules()]


def check_lora_targets(model_path: str, targets: list[str] | str | None, where: str,
                       trust_remote_code: bool = False) -> None:
    """Every requested ``lora_target_modules`` entry must exist in the model."""
    if not targets or isinstance(targets, str) or list(targets) == ["all-linear"]:
        return  # PEFT's "all-linear" or a regex string: PEFT resolves and checks those itself
    names = module_names_on_meta(model_path, trust_remote_code)
    unknown = unknown_lora_targets(names, list(targets))
    if unknown:
        leaves = sorted({n.rsplit(".", 1)[-1] for n in names if "." in n and not n.rsplit(".", 1)[-1].isdigit()})
        raise RecipeError(f"{where}: lora_target_modules: {unknown} not in the model "
                          f"(module names include: {', '.join(leaves[:12])})")
