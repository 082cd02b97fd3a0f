"""On-disk cache of LLM calls: what makes a killed run resume without redoing (or changing)
finished work. SQLite in WAL mode: a committed row survives SIGKILL."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from agentinstruct.llm.base import ChatModel, Completion, Messages, request_key


class CallCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def get(self, key: str) -> Completion | None:
        row = self._db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
        return Completion.from_dict(json.loads(row[0])) if row else None

    def put(self, key: str, completion: Completion) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO calls (key, value) VALUES (?, ?)",
            (key, json.dumps(completion.to_dict())),
        )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class CachedChatModel(ChatModel):
    """Wraps a model; identical requests (model, messages, params, seed) are answered from disk."""

    def __init__(self, inner: ChatModel, cache: CallCache):
        super().__init__()
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.stats = inner.stats  # one set of counters per model

    async def chat(self, messages: Messages, *, max_tokens: int = 512, temperature: float = 0.0,
                   response_format: dict[str, Any] | None = None, seed: int | None = None) -> Completion:
        key = hashlib.sha256(
            request_key(self.name, messages, max_tokens=max_tokens, temperature=temperature,
                        response_format=response_format, seed=seed).encode()
        ).hexdigest()
        hit = self.cache.get(key)
        if hit is not None:
            self.stats.cache_hits += 1
            hit.cached = True
            return hit
        completion = await self.inner.chat(messages, max_tokens=max_tokens, temperature=temperature,
                                           response_format=response_format, seed=seed)
        self.cache.put(key, completion)
        return completion

    async def aclose(self) -> None:
        await self.inner.aclose()
