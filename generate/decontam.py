"""Decontamination: generated pairs that copy an evaluation item are moved to ``rejected``.

The index is built from the same data the evaluation stage loads (the tasks of the named eval
recipes through lm-eval's TaskManager, local or from the Hub cache; the AlpacaEval instruction
set; the held-out QA parts; any extra local eval files) and cached on disk, keyed by its sources'
content. Two kinds of entry:

- items of at least ``n`` words: every n-gram (normalised words) is indexed;
- shorter items (most held-out questions, many GSM8K/BBH/AlpacaEval prompts, answer choices):
  the whole normalised string, matched as a whole-word substring of a message. Strings under
  ``min_words`` / ``answer_min_words`` words or ``min_chars`` characters are too generic to
  mean a copy ("True", "(B)", "Paris") and are not indexed.

Every set gets a load status. A set that cannot be loaded (offline without the Hub cache, an
unknown task) is logged as a warning and reported ``checked: false``; the run goes on unless
``strict`` is set. The card lists every set with its status, item count and removals.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import pickle
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
from agentinstruct.generate.gates_config import DecontaminationGate

from agentinstruct.text import words  # the one normaliser: any script, accents kept

log = logging.getLogger(__name__)

_CHOICE_LABEL = re.compile(r"^\s*\(?[A-Za-z]\)\s*")  # "(B)A survey found ..." is also indexed without "(B)"
INDEX_VERSION = 3  # bump when the pickled index changes shape (old cache files are then unused)
# eval_files: values under these keys are answers (answer_min_words applies); others are prompts
ANSWER_KEYS = frozenset({"answer", "answers", "output", "outputs", "target", "targets", "choices",
                         "label", "gold", "reference", "references", "solution"})

Texts = list[tuple[str, bool]]  # (text, is_answer)


def ngrams(text: str, n: int) -> Iterator[tuple[str, ...]]:
    w = words(text)
    for i in range(len(w) - n + 1):
        yield tuple(w[i:i + n])


def _key(gram: tuple[str, ...] | list[str]) -> bytes:
    return hashlib.blake2b(" ".join(gram).encode(), digest_size=8).digest()


def _strings(value: Any, answer: bool = False) -> Iterator[tuple[str, bool]]:
    """Every string in a JSON-like value, flagged as an answer when under an answer key."""
    if isinstance(value, str):
        yield value, answer
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, answer or str(k).lower() in ANSWER_KEYS)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, answer)


def _file_rows(path: str) -> list[Any]:
    text = Path(path).read_text(encoding="utf-8")
    if path.endswith(".json"):
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    return [json.loads(x) for x in text.splitlines() if x.strip()]


@dataclass
class EvalSet:
    """One evaluation set as the index saw it (also what the card and manifest report)."""

    key: str                      # unique: what was loaded (task name + local file, file path, ...)
    benchmark: str                # label in reports (GSM8K, AGIEval, held-out, ...)
    source: str                   # where the items came from
    checked: bool = False
    items: int = 0
    note: str = ""                # why it was not checked, or what was left out
    failed: bool = False          # could not be loaded (as opposed to not indexed by design)


@dataclass
class _Planned:
    status: EvalSet
    load: Callable[[], tuple[int, Texts]] | None  # None: not indexed by design
    local_files: list[str] = field(default_factory=list)  # hashed into the cache key


# ---- loading, the way the evaluation loads each set -------------------------------------------

@functools.cache
def _task_manager() -> Any:
    """lm-eval's task registry, built once per process (it indexes every task YAML: seconds)."""
    from lm_eval.tasks import TaskManager

    return TaskManager()


def _lm_eval_load(task: Any, manager: Callable[[], Any]) -> tuple[int, Texts, list[str]]:
    """Items of one recipe task (a group: all its members) through lm-eval, as ``run_lm_eval`` builds
    them (``task_spec`` for a local file; the registered task, Hub or Hub cache, otherwise).
    Returns (items, texts, dataset sources)."""
    from agentinstruct.evaluate.lm_harness import task_spec

    tm = manager()
    # num_fewshot does not change the evaluated documents; a bare name also works for groups
    spec = task_spec(task, tm) if task.local else task.name
    items, texts, sources = 0, [], []
    for t in tm.load([spec])["tasks"].values():  # the leaf tasks (a group's members)
        sources.append(str(t.config.dataset_path))
        for doc in t.eval_docs:
            items += 1
            texts.append((str(t.doc_to_text(doc)), False))
            choices = t.doc_to_choice(doc) if t.config.output_type == "multiple_choice" else None
            answers = [str(c) for c in choices or []]
            answers += [a for a in (_CHOICE_LABEL.sub("", c, count=1) for c in answers) if a not in answers]
            target = t.doc_to_target(doc)
            if isinstance(target, str):
                answers.append(target)
            texts += [(a, True) for a in answers]
            # the raw fields too: the rendered prompt adds template words ("Q:", "Answer:") that a
            # copied short question does not have
            known = {" ".join(words(a)) for a in answers}
            texts += [(s, is_answer or " ".join(words(s)) in known) for s, is_answer in _strings(doc)]
    return items, texts, sorted(set(sources))


def _shown(path: str) -> str:
    """A path as the card shows it: relative to the working directory when under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _plan(cfg: DecontaminationGate) -> list[_Planned]:
    from agentinstruct.evaluate.lm_harness import benchmark_label
    from agentinstruct.evaluate.suite import load_eval_recipe

    planned: list[_Planned] = []
    seen: set[str] = set()

    def add(status: EvalSet, load: Callable[[], tuple[int, Texts]] | None, files: list[str]) -> None:
        if status.key not in seen:
            seen.add(status.key)
            planned.append(_Planned(status, load, files))

    for recipe_path in cfg.eval_recipes:
        recipe = load_eval_recipe(recipe_path)
        if recipe.lm_eval.enabled:
            for task in recipe.lm_eval.tasks:
                label = task.benchmark or benchmark_label(task.name)
                where = f"local {_shown(task.local)}" if task.local else "Hub / Hub cache"
                status = EvalSet(f"lm-eval {task.name}" + (f" ({task.local})" if task.local else ""),
                                 label, f"lm-eval task {task.name}, {where}")

                def load(task=task, status=status) -> tuple[int, Texts]:
                    items, texts, sources = _lm_eval_load(task, _task_manager)
                    if not task.local:
                        status.source = f"lm-eval task {task.name}, {', '.join(sources)} (Hub / Hub cache)"
                    return items, texts

                add(status, load, [task.local] if task.local else [])
        if recipe.alpaca_eval.enabled:
            section = recipe.alpaca_eval
            src = _shown(section.instructions) if section.instructions else "Hub tatsu-lab/alpaca_eval (Hub cache)"
            if section.max_instances:
                src += f", first {section.max_instances}"

            def load_alpaca(section=section) -> tuple[int, Texts]:
                from agentinstruct.evaluate.alpaca import load_instructions

                rows = load_instructions(section)
                return len(rows), [t for r in rows for t in ((r["instruction"], False), (r["output"], True))]

            add(EvalSet(f"alpaca_eval {src}", "AlpacaEval", src), load_alpaca,
                [section.instructions] if section.instructions else [])
        if recipe.heldout:
            for part, path in recipe.heldout.questions.items():
                def load_heldout(path=path, part=part) -> tuple[int, Texts]:
                    from agentinstruct.evaluate.heldout import load_questions

                    rows = load_questions(path, part)
                    return len(rows), [t for r in rows
                                       for t in [(r["question"], False), *((a, True) for a in r["answers"])]]

                add(EvalSet(f"heldout {path}", f"held-out ({part})", _shown(path)), load_heldout, [path])
        if recipe.hallucination.enabled:
            docs = recipe.hallucination.documents
            add(EvalSet(f"hallucination {docs}", "hallucination", _shown(docs),
                        note="documents to summarise, not question/answer items (often the generation "
                             "inputs themselves): not indexed"), None, [])
    for path in cfg.eval_files:
        def load_file(path=path) -> tuple[int, Texts]:
            rows = _file_rows(path)
            return len(rows), [t for r in rows for t in _strings(r)]

        add(EvalSet(f"file {path}", Path(path).stem, _shown(path)), load_file, [path])
    return planned


def _sources_digest(cfg: DecontaminationGate, planned: list[_Planned]) -> str:
    h = hashlib.sha256(json.dumps({"v": INDEX_VERSION, "n": cfg.n, "min_words": cfg.min_words,
                                   "answer_min_words": cfg.answer_min_words, "min_chars": cfg.min_chars}).encode())
    for path in cfg.eval_recipes:
        h.update(str(path).encode())
        h.update(Path(path).read_bytes())
    for p in planned:
        h.update(p.status.key.encode())
        for local in p.local_files:
            h.update(Path(local).read_bytes())
    return h.hexdigest()[:20]


# ---- the index ---------------------------------------------------------------------------------

class NgramIndex:
    """n-grams of long items (hashed, to keep large benchmarks small) and whole normalised
    strings of short ones, each mapped to the position of its set in ``sets`` (every set's load
    status). A message is scanned once for n-grams, then only at word pairs that start an
    indexed short string, for the lengths those strings have."""

    def __init__(self, cfg: DecontaminationGate, sets: list[EvalSet]):
        self.n = cfg.n
        self.min_words, self.answer_min_words, self.min_chars = cfg.min_words, cfg.answer_min_words, cfg.min_chars
        self.sets = sets
        self.grams: dict[bytes, tuple[int, str]] = {}
        self.phrases: dict[str, int] = {}  # short items are few and short: kept as text (fast lookups)
        self.heads: dict[str, set[int]] = {}  # first two words -> lengths of the phrases starting so

    @property
    def benchmarks(self) -> list[str]:
        """Labels of the sets that were checked (never one that was not)."""
        return list(dict.fromkeys(s.benchmark for s in self.sets if s.checked))

    def add(self, set_idx: int, text: str, is_answer: bool) -> None:
        w = words(text)
        if len(w) >= self.n:
            for i in range(len(w) - self.n + 1):
                g = w[i:i + self.n]
                self.grams.setdefault(_key(g), (set_idx, " ".join(g)))
            return
        phrase = " ".join(w)
        if len(w) < (self.answer_min_words if is_answer else self.min_words) or len(phrase) < self.min_chars:
            return
        self.phrases.setdefault(phrase, set_idx)
        self.heads.setdefault(" ".join(w[:2]), set()).add(len(w))

    @classmethod
    def build(cls, cfg: DecontaminationGate) -> NgramIndex:
        planned = _plan(cfg)
        cache = Path(cfg.cache_dir or platformdirs.user_cache_dir("agentinstruct")) / "decontam"
        path = cache / f"index-{_sources_digest(cfg, planned)}.pkl"
        if path.exists():
            with open(path, "rb") as fh:
                index = pickle.load(fh)
            if isinstance(index, cls) and all(s.checked or not s.failed for s in index.sets):
                return index
        index = cls(cfg, [p.status for p in planned])
        for i, p in enumerate(planned):
            if p.load is None:
                continue
            try:
                n_items, texts = p.load()
            except Exception as exc:  # offline, not cached, unknown task, unreadable set
                reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
                p.status.failed, p.status.note = True, f"could not be loaded: {reason}"
                msg = (f"decontamination: {p.status.benchmark} ({p.status.source}) NOT CHECKED - {reason}. "
                       "Generated pairs are not compared with this set; the card says so.")
                if cfg.strict:
                    raise ValueError(msg + " (gates.decontamination.strict is set)") from exc
                log.warning(msg)
                continue
            for text, is_answer in texts:
                index.add(i, text, is_answer)
            p.status.checked, p.status.items = True, n_items
        if all(not s.failed for s in index.sets):  # a partial index is rebuilt (retried) next run
            cache.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as fh:
                pickle.dump(index, fh)
            tmp.rename(path)
        return index

    def match(self, text: str) -> tuple[EvalSet, str] | None:
        w = words(text)
        for i in range(len(w) - self.n + 1):
            hit = self.grams.get(_key(w[i:i + self.n]))
            if hit:
                return self.sets[hit[0]], hit[1]
        for i in range(len(w)):
            lengths = self.heads.get(" ".join(w[i:i + 2]), ())
            if len(w) - i >= 2 and w[i] in self.heads:  # a one-word phrase (min_words: 1)
                lengths = {*lengths, 1}
            for length in lengths:
                if i + length <= len(w):
                    phrase = " ".join(w[i:i + length])
                    set_idx = self.phrases.get(phrase)
                    if set_idx is not None:
                        return self.sets[set_idx], phrase
        return None


class Decontaminator:
    """Row gate: a pair containing an evaluation item (an n-gram of a long one, the whole of a
    short one) in any message is moved to ``rejected``."""

    name = "decontamination"

    def __init__(self, index: NgramIndex):
        self.index = index
        self.checked = 0
        self.removed: Counter = Counter()  # by set key

    def __call__(self, row: dict[str, Any]) -> tuple[str, str] | None:
        self.checked += 1
        for m in row["messages"]:
            hit = self.index.match(m["content"] or "")
            if hit:
                self.removed[hit[0].key] += 1
                return self.name, f"contaminated: {hit[0].benchmark}: '{hit[1]}'"
        return None

    def report(self) -> dict[str, Any]:
        by_benchmark: Counter = Counter()
        for s in self.index.sets:
            by_benchmark[s.benchmark] += self.removed.get(s.key, 0)
        return {"checked": self.checked, "removed": sum(self.removed.values()),
                "reasons": {f"contaminated: {b}": n for b, n in by_benchmark.items() if n}}

    def card_section(self) -> dict[str, Any]:
        """The manifest's ``decontamination`` entry (the card renders it with :func:`card_lines`)."""
        removed: Counter = Counter()
        for s in self.index.sets:
            removed[s.benchmark] += self.removed.get(s.key, 0)
        ix = self.index
        return {"n": ix.n, "min_words": ix.min_words, "answer_min_words": ix.answer_min_words,
                "min_chars": ix.min_chars, "benchmarks": ix.benchmarks,
                "not_checked": [s.benchmark for s in ix.sets if not s.checked],
                "not_loaded": [s.benchmark for s in ix.sets if s.failed],
                "removed": {b: removed[b] for b in ix.benchmarks},
                "sets": [{**asdict(s), "removed": self.removed.get(s.key, 0)} for s in ix.sets]}


def card_lines(section: dict[str, Any]) -> list[str]:
    """The dataset card's decontamination section: one row per evaluation set, checked or not."""
    lines = ["", "## Decontamination", "",
             f"Generated pairs were compared with the evaluation sets below: {section['n']}-gram overlap for "
             f"items of {section['n']}+ words; shorter items as whole normalised strings (questions of "
             f"{section.get('min_words', '?')}+ words, answers of {section.get('answer_min_words', '?')}+ words, "
             f"{section.get('min_chars', '?')}+ characters). A set that is not checked was not compared.", "",
             "| benchmark | checked | items | removed | source | note |", "|---|---|---|---|---|---|"]

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    for s in section.get("sets", []):
        checked = "yes" if s["checked"] else "**not checked**" if s.get("failed") else "not checked (not indexed)"
        lines.append(f"| {cell(s['benchmark'])} | {checked} | {s['items'] if s['checked'] else '-'} | "
                     f"{s['removed'] if s['checked'] else '-'} | {cell(s['source'])} | {cell(s['note'])} |")
    failed = section.get("not_loaded") or []
    if failed:
        lines += ["", f"**Not checked (could not be loaded):** {', '.join(dict.fromkeys(failed))}: no claim of "
                      "decontamination is made for these sets."]
    return lines
