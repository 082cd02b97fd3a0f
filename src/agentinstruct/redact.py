"""Redact secrets from text that may end up in a dataset row, a log line or a card.

Two kinds of secret are replaced with ``[REDACTED]``: the values of environment variables that
look like credentials (by name, or named explicitly, e.g. a recipe's ``api_key_env``) and
strings shaped like well-known tokens (OpenAI ``sk-…``, Hugging Face ``hf_…``, GitHub
``ghp_…``, AWS ``AKIA…``). The pattern is compiled once per distinct set of secret values, so
calling this on every row costs one regex search per string when nothing matches.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"
# a name part (split at _ - .) ending like this marks a secret: OPENAI_API_KEY, HF_TOKEN,
# DB_PASSWORD, CLIENTSECRET, SSH_AUTH_SOCK; not GIT_AUTHOR_NAME or KEYBOARD_LAYOUT
SECRET_PART = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|AUTH|PAT)$", re.IGNORECASE)
ALWAYS_SECRET = frozenset({"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY"})
MIN_SECRET_LEN = 8  # shorter values ("1", "true") would redact ordinary words
TOKEN_SHAPES = (
    r"\bsk-[A-Za-z0-9_-]{16,}",
    r"\bhf_[A-Za-z0-9]{20,}",
    r"\bgh[pousr]_[A-Za-z0-9]{20,}",
    r"\bgithub_pat_[A-Za-z0-9_]{20,}",
    r"\bAKIA[0-9A-Z]{16}\b",
)
_extra_names: set[str] = set()


def add_secret_names(*names: str | None) -> None:
    """Treat these environment variables as secrets too (e.g. a model's ``api_key_env``)."""
    _extra_names.update(n for n in names if n)


def is_secret_name(name: str) -> bool:
    return name in ALWAYS_SECRET or name in _extra_names or any(
        SECRET_PART.search(part) for part in re.split(r"[_.-]", name))


def secret_values(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The values (longest first) of the environment's secret-looking variables."""
    env = os.environ if env is None else env
    values = {v for k, v in env.items() if v and len(v) >= MIN_SECRET_LEN and is_secret_name(k)}
    return tuple(sorted(values, key=lambda v: (-len(v), v)))


@functools.lru_cache(maxsize=8)
def _pattern(values: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join([*(re.escape(v) for v in values), *TOKEN_SHAPES]))


def redact_secrets(text: str, env: Mapping[str, str] | None = None) -> str:
    """``text`` with every secret of ``env`` (default: this process's) and token shape replaced."""
    if not text:
        return text
    return _pattern(secret_values(env)).sub(REDACTED, text)


def redact_value(value: Any, env: Mapping[str, str] | None = None) -> Any:
    """Redact every string inside a JSON-like value (dicts, lists, strings); others unchanged."""
    pattern = _pattern(secret_values(env))

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return pattern.sub(REDACTED, v) if pattern.search(v) else v
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value)


def redact_counts(counts: Mapping[str, int], env: Mapping[str, str] | None = None) -> dict[str, int]:
    """Redact the keys of a counter (e.g. the journal's per-reason stage counts), summing keys
    that become equal."""
    pattern = _pattern(secret_values(env))
    out: dict[str, int] = {}
    for key, n in counts.items():
        key = pattern.sub(REDACTED, key) if pattern.search(key) else key
        out[key] = out.get(key, 0) + n
    return out
