"""Exact and near-duplicate removal over instructions (MinHash LSH with rensa), across the
whole run in final order and against optional existing datasets."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from agentinstruct.generate.gates_config import DedupGate
from rensa import RMinHash, RMinHashLSH

from agentinstruct.text import normalise


def shingles(norm: str, k: int) -> list[str]:
    words = norm.split()
    if len(words) <= k:
        return [norm]
    return [" ".join(words[i:i + k]) for i in range(len(words) - k + 1)]


def instruction_of(row: dict[str, Any]) -> str:
    if row.get("instruction"):
        return row["instruction"]
    users = [m["content"] for m in row["messages"] if m["role"] == "user"]
    return users[-1] if users else ""


def iter_existing(path: str) -> Iterator[str]:
    """Instructions of an existing dataset (save_to_disk folder or JSONL)."""
    p = Path(path)
    if p.suffix in (".jsonl", ".json"):
        for line in p.read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield instruction_of(json.loads(line))
        return
    import datasets

    loaded = datasets.load_from_disk(str(p))
    for split in loaded.values() if isinstance(loaded, datasets.DatasetDict) else [loaded]:
        for row in split:
            yield instruction_of(row)


class Deduplicator:
    """Row gate: the first occurrence of an instruction is kept, later copies are removed."""

    name = "dedup"

    def __init__(self, cfg: DedupGate, existing: Iterable[str] = ()):
        self.cfg = cfg
        self.exact: set[bytes] = set()
        self.lsh = RMinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm, num_bands=cfg.num_bands)
        self.count = 0
        self.digests = np.empty((1024, cfg.num_perm), dtype=np.uint32)  # grows by doubling
        self.checked = 0
        self.reasons: Counter = Counter()
        for text in existing:
            self._seen(normalise(text))
        for path in cfg.against:
            for text in iter_existing(path):
                self._seen(normalise(text))

    def _minhash(self, norm: str) -> RMinHash:
        m = RMinHash(num_perm=self.cfg.num_perm, seed=42)
        m.update(shingles(norm, self.cfg.shingle))
        return m

    def _seen(self, norm: str) -> str | None:
        """Reason if ``norm`` duplicates something seen; else remember it and return None."""
        digest = hashlib.blake2b(norm.encode(), digest_size=16).digest()
        if self.cfg.exact and digest in self.exact:
            return "exact duplicate of an earlier instruction"
        m = self._minhash(norm) if self.cfg.near else None
        if m is not None:
            d = np.asarray(m.digest(), dtype=np.uint32)
            candidates = self.lsh.query(m)
            if candidates:  # LSH gives candidates; keep only a real estimated Jaccard >= threshold
                similarity = float((self.digests[candidates] == d).mean(axis=1).max())
                if similarity >= self.cfg.threshold:
                    return f"near-duplicate of an earlier instruction (Jaccard {similarity:.2f})"
        self.exact.add(digest)
        if m is not None:
            if self.count == len(self.digests):
                self.digests = np.concatenate([self.digests, np.empty_like(self.digests)])
            self.digests[self.count] = d
            self.lsh.insert(self.count, m)
            self.count += 1
        return None

    def seen(self, text: str) -> str | None:
        """Reason if ``text`` duplicates an earlier text, else remember it (the seed filter's use)."""
        return self._seen(normalise(text))

    def __call__(self, row: dict[str, Any]) -> tuple[str, str] | None:
        self.checked += 1
        reason = self._seen(normalise(instruction_of(row)))
        if reason:
            self.reasons[reason.split(" (")[0]] += 1
            return self.name, reason
        return None

    def report(self) -> dict[str, Any]:
        return {"checked": self.checked, "removed": sum(self.reasons.values()), "reasons": dict(self.reasons)}
