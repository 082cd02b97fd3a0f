"""The run journal: one JSON line per finished (seed, skill) unit.

A line is written with one ``write`` and flushed, so a SIGKILL leaves at most one partial last
line, which the next run drops. Finished units are skipped on resume; unfinished ones are
redone, their LLM calls answered from the call cache. The ``fsync`` that makes lines survive a
power cut runs in a background thread, one at a time, covering every line written before it
began (group commit), so the event loop never waits on the disk; ``close`` waits for it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class JournalError(RuntimeError):
    pass


def unit_id(seed_id: str, skill: str) -> str:
    return f"{seed_id}/{skill}"


class Journal:
    def __init__(self, path: Path, recipe_hash: str, on_other_recipe: str = "error"):
        self.path = path
        self.recipe_hash = recipe_hash
        self.on_other_recipe = on_other_recipe  # "error", or "archive": move it aside, start anew
        self._fh = None
        self._sync_lock = threading.Lock()
        self._dirty = False  # lines written since the last fsync began
        self._syncer: threading.Thread | None = None
        self.fsyncs = 0

    def done_units(self) -> set[str]:
        """Units already finished; truncates a partial last line left by a crash."""
        if not self.path.exists():
            return set()
        done: set[str] = set()
        good_end = 0
        with open(self.path, "rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break
                try:
                    line = json.loads(raw)
                except json.JSONDecodeError:
                    break
                if line["recipe_hash"] != self.recipe_hash:
                    if self.on_other_recipe == "archive":
                        fh.close()
                        self.path.rename(self.path.with_name(f"records.{line['recipe_hash']}.jsonl"))
                        return set()
                    raise JournalError(
                        f"{self.path}: holds a run of another recipe (hash {line['recipe_hash']}, "
                        f"this one {self.recipe_hash}); use another --output or --overwrite"
                    )
                done.add(line["unit"])
                good_end += len(raw)
        if good_end != self.path.stat().st_size:
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
        return done

    def append(self, unit: str, records: list[dict[str, Any]], stages: dict[str, int],
               gates: dict[str, Any] | None = None) -> None:
        """``gates``: the unit's per-gate counts (``GateTally.to_json``), when gates ran."""
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
        entry = {"unit": unit, "recipe_hash": self.recipe_hash, "records": records, "stages": stages}
        if gates is not None:
            entry["gates"] = gates
        line = json.dumps(entry, ensure_ascii=False)
        self._fh.write(line + "\n")
        self._fh.flush()
        self._sync_soon()

    def _sync_soon(self) -> None:
        with self._sync_lock:
            self._dirty = True
            if self._syncer is None:
                self._syncer = threading.Thread(target=self._sync_loop, args=(self._fh.fileno(),),
                                                daemon=True, name="journal-fsync")
                self._syncer.start()

    def _sync_loop(self, fd: int) -> None:
        while True:
            with self._sync_lock:
                if not self._dirty:
                    self._syncer = None
                    return
                self._dirty = False
            os.fsync(fd)
            self.fsyncs += 1

    def _wait_synced(self) -> None:
        while True:
            with self._sync_lock:
                syncer = self._syncer
            if syncer is None:
                return
            syncer.join()

    def lines(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(byte offset, parsed line) for every complete line."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as fh:
            offset = 0
            for raw in fh:
                if raw.endswith(b"\n"):
                    yield offset, json.loads(raw)
                offset += len(raw)

    def read_at(self, offset: int) -> dict[str, Any]:
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            return json.loads(fh.readline())

    def close(self) -> None:
        if self._fh is not None:
            self._wait_synced()
            self._fh.close()
            self._fh = None
