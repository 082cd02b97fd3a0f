"""Finished parts of one evaluation run, kept so that a rerun in the same run dir skips them.

Each part (one lm-eval task, alpaca_eval, hallucination, held-out) is written to
``RUN_DIR/parts/<name>.json`` the moment it finishes, through a temporary name and a rename (a
kill leaves it whole or absent). Its key covers the part's configuration, the files that
configuration names (by content; folders by their file list) and the model's identity, local
weights and adapter included: a rerun with the same key reuses the scores and notes, a changed
recipe, data file or model (a retrained adapter too) runs the part again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Part:
    scores: dict[str, dict[str, Any]]
    notes: list[str]
    seconds: float


def fingerprint(value: Any) -> Any:
    """``value`` with every string that names an existing file or folder replaced by what is in
    it: a file by its content hash, a folder by its files' (path, size, mtime)."""
    if isinstance(value, dict):
        return {k: fingerprint(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [fingerprint(v) for v in value]
    if isinstance(value, str) and value not in ("", ".", "..") and ("/" in value or "." in value):
        path = Path(value)
        try:
            if path.is_file():
                return {"path": value, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
            if path.is_dir():
                return {"path": value, "files": sorted(
                    (str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                    for p in path.rglob("*") if p.is_file())}
        except OSError:
            return value
    return value


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


class PartLedger:
    def __init__(self, run_dir: Path, model: dict[str, Any]):
        self.dir = run_dir / "parts"
        self.model = fingerprint(model)
        self.reused: list[str] = []

    def _path(self, name: str) -> Path:
        return self.dir / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}.json"

    def key(self, name: str, config: Any) -> str:
        return _digest({"part": name, "config": fingerprint(config), "model": self.model})

    def get(self, name: str, config: Any) -> Part | None:
        """The stored part when its key matches, else None (a torn or foreign file included)."""
        try:
            stored = json.loads(self._path(name).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        if stored.get("key") != self.key(name, config):
            return None
        return Part(stored["scores"], stored["notes"], stored["seconds"])

    def run(self, name: str, config: Any, fn: Callable[[list[str]], dict[str, dict[str, Any]]]) -> Part:
        """The stored part, or ``fn(notes) -> scores`` run now and stored."""
        done = self.get(name, config)
        if done is not None:
            self.reused.append(name)
            return done
        notes: list[str] = []
        t0 = time.monotonic()
        scores = fn(notes)
        part = Part(scores, notes, round(time.monotonic() - t0, 2))
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self._path(name).with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"key": self.key(name, config), **asdict(part)}, indent=2, default=str),
                       encoding="utf-8")
        os.replace(tmp, self._path(name))
        return part
