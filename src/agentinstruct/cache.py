"""On-disk cache of LLM calls: what makes a killed run resume without redoing (or changing)
finished work. SQLite in WAL mode: a committed row survives SIGKILL.

Inside an event loop, the rows stored during one turn of the loop are committed together at
its end (group commit: one transaction for the replies that arrived together, not one each),
so a SIGKILL loses at most the replies of the turn it interrupted."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentinstruct.llm.base import (
    ChatModel,
    Completion,
    LLMError,
    Messages,
    note_call_failure,
    note_call_started,
    request_key,
)


class CallCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

        self._pending: dict[str, str] = {}  # stored, not yet committed (this loop turn)
        self._flush_scheduled = False
        self._flush_loop: asyncio.AbstractEventLoop | None = None
        self.commits = 0

    def get(self, key: str) -> Completion | None:
        value = self._pending.get(key)
        if value is None:
            row = self._db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
            value = row[0] if row else None
        return Completion.from_dict(json.loads(value)) if value is not None else None

    def put(self, key: str, completion: Completion) -> None:
        self._pending[key] = json.dumps(completion.to_dict())
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop: commit now
            self.flush()
            return
        if self._flush_loop is not loop or not self._flush_scheduled:
            self._flush_scheduled, self._flush_loop = True, loop
            loop.call_soon(self.flush)  # after the callbacks of this turn: one transaction

    def flush(self) -> None:
        """Commit every stored row in one transaction."""
        self._flush_scheduled = False
        if not self._pending:
            return
        rows, self._pending = list(self._pending.items()), {}
        with self._db:  # BEGIN ... COMMIT
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO calls (key, value) VALUES (?, ?)", rows)
        self.commits += 1

    def __len__(self) -> int:
        self.flush()
        return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        self.flush()
        self._db.close()


class CachedChatModel(ChatModel):
    """Wraps a model; identical requests (model, messages, params, seed) are answered from disk.
    Only replies are stored; a failed call is noted in the caller's failure scope (see
    :func:`~agentinstruct.llm.base.track_call_failures`) and asked again next time."""

    def __init__(self, inner: ChatModel, cache: CallCache):
        super().__init__()
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.stats = inner.stats  # one set of counters per model
        self.demand = 0  # calls sent to the inner model and not answered yet
        self.listeners: list[Callable[[], None]] = []  # told whenever such a call ends

    def capacity(self) -> int | None:
        return self.inner.capacity()

    @property
    def supports_tools(self) -> bool:  # type: ignore[override]
        return self.inner.supports_tools

    async def chat(self, messages: Messages, *, max_tokens: int = 512, temperature: float = 0.0,
                   response_format: dict[str, Any] | None = None, seed: int | None = None,
                   tools: list[dict[str, Any]] | None = None, tool_choice: str | None = None) -> Completion:
        # tools join the key only when sent: the keys of requests without them stay as they were
        with_tools: dict[str, Any] = {"tools": tools} if tools is not None else {}
        if tool_choice is not None:
            with_tools["tool_choice"] = tool_choice
        key = hashlib.sha256(
            request_key(self.name, messages, max_tokens=max_tokens, temperature=temperature,
                        response_format=response_format, seed=seed, **with_tools).encode()
        ).hexdigest()
        note_call_started()
        hit = self.cache.get(key)
        if hit is not None:
            self.stats.cache_hits += 1
            hit.cached = True
            return hit
        self.demand += 1
        try:
            completion = await self.inner.chat(messages, max_tokens=max_tokens, temperature=temperature,
                                               response_format=response_format, seed=seed, **with_tools)
        except LLMError as exc:  # never cached: the next run asks again
            note_call_failure(exc)
            raise
        finally:
            self.demand -= 1
            for listener in self.listeners:
                listener()
        self.cache.put(key, completion)
        return completion

    async def aclose(self) -> None:
        await self.inner.aclose()
