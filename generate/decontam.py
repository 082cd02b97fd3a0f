"""Decontamination: n-gram overlap between generated pairs and the evaluation benchmarks.

The index is built from the same data the evaluation stage loads (the tasks of the named eval
recipes through lm-eval, local or Hub; the AlpacaEval instruction set; the held-out QA set;
any extra local eval files) and cached on disk, keyed by its sources' content.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import platformdirs
from agentinstruct.generate.gates_config import DecontaminationGate

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(text: str, n: int) -> Iterator[tuple[str, ...]]:
    w = words(text)
    for i in range(len(w) - n + 1):
        yield tuple(w[i:i + n])


def _key(gram: tuple[str, ...]) -> bytes:
    return hashlib.blake2b(" ".join(gram).encode(), digest_size=8).digest()


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _file_rows(path: str) -> list[Any]:
    text = Path(path).read_text(encoding="utf-8")
    if path.endswith(".json"):
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def benchmark_texts(cfg: DecontaminationGate) -> Iterator[tuple[str, str]]:
    """(benchmark, text) for every prompt and answer of the evaluation sets."""
    from agentinstruct.evaluate.suite import load_eval_recipe

    for recipe_path in cfg.eval_recipes:
        recipe = load_eval_recipe(recipe_path)
        if recipe.lm_eval.enabled and recipe.lm_eval.tasks:
            yield from _lm_eval_texts(recipe.lm_eval.tasks)
        if recipe.alpaca_eval.enabled:
            from agentinstruct.evaluate.alpaca import load_instructions

            for row in load_instructions(recipe.alpaca_eval):
                yield "AlpacaEval", row["instruction"]
                yield "AlpacaEval", row["output"]
        if recipe.heldout:
            for row in _file_rows(recipe.heldout.questions):
                for s in _strings(row):
                    yield "held-out", s
    for path in cfg.eval_files:
        for row in _file_rows(path):
            for s in _strings(row):
                yield Path(path).stem, s


def _lm_eval_texts(tasks) -> Iterator[tuple[str, str]]:
    from agentinstruct.evaluate.lm_harness import benchmark_label, task_spec
    from lm_eval.tasks import TaskManager, get_task_dict

    tm = TaskManager()
    for task in tasks:
        label = task.benchmark or benchmark_label(task.name)

        def leaves(node):
            if isinstance(node, dict):
                for v in node.values():
                    yield from leaves(v)
            else:
                yield node

        for t in leaves(get_task_dict([task_spec(task, tm)], tm)):
            for doc in t.eval_docs:
                yield label, str(t.doc_to_text(doc))
                target = t.doc_to_target(doc)
                choices = t.doc_to_choice(doc) if t.config.output_type == "multiple_choice" else None
                if choices:
                    yield from ((label, str(c)) for c in choices)
                if isinstance(target, str):
                    yield label, target


def _sources_digest(cfg: DecontaminationGate) -> str:
    h = hashlib.sha256(f"n={cfg.n}".encode())
    for path in [*cfg.eval_recipes, *cfg.eval_files]:
        h.update(path.encode())
        h.update(Path(path).read_bytes())
        if path in cfg.eval_recipes:  # the local files a recipe points to
            for local in re.findall(r"(?:local|instructions|questions):\s*([^\s,}]+)", Path(path).read_text()):
                if Path(local).exists():
                    h.update(Path(local).read_bytes())
    return h.hexdigest()[:20]


class NgramIndex:
    def __init__(self, n: int, grams: dict[bytes, tuple[str, str]], benchmarks: list[str]):
        self.n, self.grams, self.benchmarks = n, grams, benchmarks

    @classmethod
    def build(cls, cfg: DecontaminationGate) -> NgramIndex:
        cache = Path(cfg.cache_dir or platformdirs.user_cache_dir("agentinstruct")) / "decontam"
        path = cache / f"index-{_sources_digest(cfg)}.pkl"
        if path.exists():
            with open(path, "rb") as fh:
                return pickle.load(fh)
        grams: dict[bytes, tuple[str, str]] = {}
        benchmarks: list[str] = []
        for bench, text in benchmark_texts(cfg):
            if bench not in benchmarks:
                benchmarks.append(bench)
            for g in ngrams(text, cfg.n):
                grams.setdefault(_key(g), (bench, " ".join(g)))
        index = cls(cfg.n, grams, benchmarks)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(index, fh)
        tmp.rename(path)
        return index

    def match(self, text: str) -> tuple[str, str] | None:
        for g in ngrams(text, self.n):
            hit = self.grams.get(_key(g))
            if hit:
                return hit
        return None


class Decontaminator:
    """Row gate: a pair sharing an n-gram with an evaluation set is moved to ``rejected``."""

    name = "decontamination"

    def __init__(self, index: NgramIndex):
        self.index = index
        self.checked = 0
        self.removed: Counter = Counter()

    def __call__(self, row: dict[str, Any]) -> tuple[str, str] | None:
        self.checked += 1
        hit = self.index.match("\n".join(m["content"] for m in row["messages"]))
        if hit:
            self.removed[hit[0]] += 1
            return self.name, f"contaminated: {hit[0]}: '{hit[1]}'"
        return None

    def report(self) -> dict[str, Any]:
        return {"checked": self.checked, "removed": sum(self.removed.values()),
                "reasons": {f"contaminated: {b}": n for b, n in self.removed.items()}}

    def card_section(self) -> dict[str, Any]:
        return {"n": self.index.n, "benchmarks": self.index.benchmarks, "removed": dict(self.removed)}
