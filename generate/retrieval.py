"""Retrieval over the run's own seeds: a BM25 index, and passage sets for retrieval-grounded tasks.

Granularity: one passage per seed. Seeds are already token-bounded chunks with content ids
(:attr:`Seed.id`), so a passage id *is* the seed id, and provenance (``Record.passage_ids``)
points straight back at the seeds the run journaled. Neighbouring chunks of one document
overlap by design (``chunking.overlap``); :func:`passages_for_task` therefore compares text as
well as ids when it keeps the answer passage out of the distractors.

The index is built once per run into the run folder (``RUN/retrieval/``) and loaded on resume:

    RUN/retrieval/meta.json        format, fingerprint, passage count (written last)
    RUN/retrieval/passages.jsonl   one {"id", "text", "source"} per passage, in index order
    RUN/retrieval/bm25/            bm25s's own save() of the sparse index

A build is written to a temporary sibling folder and renamed into place, so a run killed
mid-build leaves no ``RUN/retrieval/`` (the next start rebuilds) rather than a half index.

:class:`Retriever` is the interface the engine and the ``search`` tool use; a web-search
backend can implement the same two methods later.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import unicodedata
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import bm25s
import numpy as np
import Stemmer
from agentinstruct.generate.retrieval_spec import RetrievalSpec  # noqa: F401 - re-exported: the skill's section
from bm25s.stopwords import STOPWORDS_EN

from agentinstruct.records import Seed

INDEX_FOLDER = "retrieval"  # the index's folder inside the run folder
# Bump when tokenisation or the on-disk layout changes: an index built by another version is
# rebuilt, never loaded (the format takes part in the fingerprint check).
INDEX_FORMAT = 1
META_FILE = "meta.json"
PASSAGES_FILE = "passages.jsonl"
BM25_FOLDER = "bm25"
TMP_PREFIX = ".tmp-"  # RUN/.retrieval.tmp-<uuid>: a build in progress (or one killed mid-way)
# Two passages whose normalised texts share a run of this many words overlap (neighbouring
# chunks share ``chunking.overlap`` tokens, i.e. dozens of words; 8 is far above chance).
OVERLAP_WORDS = 8
# passages_for_task widens its distractor search by this factor per round until it has enough
POOL_GROWTH = 4

STOPWORDS = frozenset(STOPWORDS_EN)
# Snowball English (PyStemmer): "freezes" finds "freeze"; it leaves other scripts' words as they are
STEMMER = Stemmer.Stemmer("english")


class RetrievalError(ValueError):
    """Retrieval cannot do what was asked (no seeds to index, too few distractors, ...)."""


class NotEnoughPassages(RetrievalError):
    """Fewer eligible distractors exist than a task asks for; the task should be skipped."""


# --- text normalisation -------------------------------------------------------------------


# Scripts written without spaces between words (CJK ideographs, kana, Thai, Lao, Myanmar,
# Khmer): their ``\w+`` runs are whole phrases, so they are compared character by character.
UNSPACED = "\u2e80-\u9fff\uf900-\ufaff\U00020000-\U0003ffff\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff"
WORD = re.compile(rf"[{UNSPACED}]|[^\W{UNSPACED}]+")
_UNSPACED_CHAR = re.compile(rf"[{UNSPACED}]")


def _unspaced(ch: str) -> bool:
    return _UNSPACED_CHAR.fullmatch(ch) is not None


def normalise_words(text: str) -> list[str]:
    """Casefolded, NFKC-normalised ``\\w+`` words of any script; unspaced-script runs become
    one "word" per character. The unit of answer containment and overlap tests."""
    return WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def tokenize(text: str) -> list[str]:
    """BM25 terms: :func:`normalise_words` without English stopwords, English-stemmed (a no-op
    on other scripts); an unspaced-script run also gives its character bigrams (the usual CJK
    indexing), so 北京 matches inside 位于北京."""
    words = normalise_words(text)
    terms = STEMMER.stemWords([w for w in words if w not in STOPWORDS])
    terms += [a + b for a, b in zip(words, words[1:]) if len(a) == 1 == len(b) and _unspaced(a) and _unspaced(b)]
    return terms


def _joined(words: list[str]) -> str:
    return " " + " ".join(words) + " "


def contains(text: str, needle: str) -> bool:
    """Does ``text`` contain ``needle`` as a run of whole normalised words? ("Paris" is in
    "in PARIS," but not in "Parisian"). A needle without any word falls back to a casefolded
    substring test, so punctuation-only answers are still checked rather than ignored."""
    needle_words = normalise_words(needle)
    if not needle_words:
        stripped = needle.strip().casefold()
        return bool(stripped) and stripped in text.casefold()
    return _joined(needle_words) in _joined(normalise_words(text))


def overlaps(a: str, b: str, *, words: int = OVERLAP_WORDS) -> bool:
    """Do two texts share a run of ``words`` normalised words (or does one contain the other)?"""
    wa, wb = normalise_words(a), normalise_words(b)
    if not wa or not wb:
        return False
    if len(wa) < words or len(wb) < words:
        short, long_ = (wa, wb) if len(wa) <= len(wb) else (wb, wa)
        return _joined(short) in _joined(long_)
    shingles = {tuple(wa[i:i + words]) for i in range(len(wa) - words + 1)}
    return any(tuple(wb[i:i + words]) in shingles for i in range(len(wb) - words + 1))


# --- the interface ------------------------------------------------------------------------


@dataclass(frozen=True)
class Passage:
    """One retrievable passage; ``score`` is the retriever's relevance (0 when not searched)."""

    id: str
    text: str
    source: str
    score: float = 0.0


class Retriever(Protocol):
    """What the engine and the ``search`` tool need; BM25 today, a web-search backend later."""

    def search(self, query: str, k: int, *, exclude: Collection[str] = ()) -> list[Passage]:
        """Up to ``k`` passages matching ``query``, best first, none whose id is in ``exclude``."""
        ...

    def get(self, passage_id: str) -> Passage:
        """The passage with this id; KeyError when there is none."""
        ...


# --- BM25 over the seeds ------------------------------------------------------------------


class BM25Retriever:
    """A bm25s index over the run's seeds (one passage per seed), held in memory with the texts."""

    def __init__(self, model: bm25s.BM25, passages: list[Passage]):
        self._model = model
        self._passages = passages
        self._index = {p.id: i for i, p in enumerate(passages)}

    def __len__(self) -> int:
        return len(self._passages)

    @classmethod
    def build(cls, seeds: Iterable[Seed]) -> BM25Retriever:
        """Index ``seeds`` in memory (a seed id seen twice is indexed once)."""
        passages: list[Passage] = []
        seen: set[str] = set()
        for seed in seeds:
            if seed.id not in seen:
                seen.add(seed.id)
                passages.append(Passage(id=seed.id, text=seed.text, source=seed.source))
        if not passages:
            raise RetrievalError("retrieval: no seeds to index")
        # create_empty_token: a passage with no terms (all stopwords) still gets an index row
        model = bm25s.BM25()
        model.index([tokenize(p.text) for p in passages], create_empty_token=True, show_progress=False)
        return cls(model, passages)

    def save(self, folder: Path, fingerprint: str) -> None:
        """Write the index into ``folder`` (which must not exist yet); meta.json comes last."""
        folder.mkdir(parents=True)
        self._model.save(str(folder / BM25_FOLDER), show_progress=False)
        with open(folder / PASSAGES_FILE, "w", encoding="utf-8") as f:
            for p in self._passages:
                f.write(json.dumps({"id": p.id, "text": p.text, "source": p.source}, ensure_ascii=False) + "\n")
        meta = {"format": INDEX_FORMAT, "fingerprint": fingerprint, "passages": len(self._passages)}
        (folder / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, fingerprint: str) -> BM25Retriever | None:
        """The index saved in ``folder``; None when it is missing, incomplete, of another
        format or built for another fingerprint (the caller rebuilds)."""
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            if meta.get("format") != INDEX_FORMAT or meta.get("fingerprint") != fingerprint:
                return None
            with open(folder / PASSAGES_FILE, encoding="utf-8") as f:
                passages = [Passage(id=d["id"], text=d["text"], source=d["source"]) for d in map(json.loads, f)]
            if len(passages) != meta.get("passages"):
                return None
            model = bm25s.BM25.load(str(folder / BM25_FOLDER), show_progress=False)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return cls(model, passages)

    @classmethod
    def open_or_build(cls, folder: Path, seeds: Callable[[], Iterable[Seed]], fingerprint: str,
                      *, log: Callable[[str], None] | None = None) -> BM25Retriever:
        """The run's index: loaded from ``folder`` when it was built for ``fingerprint``, else
        built from ``seeds()`` (called only then) and saved there through a temporary folder."""
        folder = Path(folder)
        loaded = cls.load(folder, fingerprint)
        if loaded is not None:
            return loaded
        folder.parent.mkdir(parents=True, exist_ok=True)
        for stale in folder.parent.glob(f".{folder.name}{TMP_PREFIX}*"):  # builds killed mid-way
            shutil.rmtree(stale, ignore_errors=True)
        retriever = cls.build(seeds())
        tmp = folder.parent / f".{folder.name}{TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            retriever.save(tmp, fingerprint)
            if folder.exists():  # an index for another fingerprint, or an incomplete one
                if log:
                    log(f"retrieval: rebuilding the index in {folder} (seeds or format changed)")
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return retriever

    def get(self, passage_id: str) -> Passage:
        return self._passages[self._index[passage_id]]

    def search(self, query: str, k: int, *, exclude: Collection[str] = ()) -> list[Passage]:
        """Up to ``k`` passages sharing a term with ``query``, best first; ties go to the
        earlier seed, so the result is fully determined by the index and the query."""
        vocab = self._model.vocab_dict
        ids = [vocab[t] for t in tokenize(query) if t in vocab]
        if k <= 0 or not ids:
            return []
        scores = np.asarray(self._model.get_scores_from_ids(ids), dtype=np.float64)
        for pid in exclude:
            i = self._index.get(pid)
            if i is not None:
                scores[i] = -np.inf
        hits = np.flatnonzero(scores > 0)
        order = hits[np.lexsort((hits, -scores[hits]))][:k]
        return [_scored(self._passages[i], float(scores[i])) for i in order]


def _scored(p: Passage, score: float) -> Passage:
    return Passage(id=p.id, text=p.text, source=p.source, score=score)


# --- passages for one task ----------------------------------------------------------------


@dataclass
class PassageSet:
    """The passages shown with one task, in display order; ``answer_id`` None: no passage holds
    the answer (the no-answer case)."""

    passages: list[Passage]
    answer_id: str | None

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.passages]


def _eligible(p: Passage, answer: Passage, must_not_contain: str | None, overlap_words: int) -> bool:
    if p.id == answer.id or overlaps(p.text, answer.text, words=overlap_words):
        return False
    return must_not_contain is None or not contains(p.text, must_not_contain)


def passages_for_task(retriever: Retriever, answer: Passage, query: str, *, k: int, distractors: int,
                      no_answer: bool, must_not_contain: str | None, rng: random.Random,
                      overlap_words: int = OVERLAP_WORDS) -> PassageSet:
    """``k`` passages for a task grounded in ``answer``, shuffled by ``rng``.

    - the answer passage itself, unless ``no_answer`` (then all ``k`` are distractors);
    - ``distractors`` distractors (``k`` when ``no_answer``): the best-ranked passages for
      ``query`` (then for the answer passage's own text) that are not the answer passage, do
      not overlap it (neighbouring chunks share text: ids *and* text are compared) and do not
      contain ``must_not_contain`` (:func:`contains`); ``None`` means the answer is not known
      yet and only the id/overlap tests apply, so an answer-in-passage validator must check later;
    - the remaining ``k - 1 - distractors`` slots: the next best passages for ``query``, which may
      support the answer.

    Raises :class:`NotEnoughPassages` when the retriever cannot supply enough distractors.
    """
    if k < 1:
        raise RetrievalError(f"retrieval: k must be at least 1, got {k}")
    want = k if no_answer else distractors
    if not no_answer and not 0 <= distractors <= k - 1:
        raise RetrievalError(f"retrieval: distractors must be between 0 and k-1={k - 1}, got {distractors}")
    chosen: list[Passage] = []
    seen = {answer.id}

    def take(candidates: list[Passage], n: int, test: Callable[[Passage], bool]) -> None:
        for p in candidates:
            if len(chosen) >= n:
                return
            if p.id not in seen and test(p):
                seen.add(p.id)
                chosen.append(p)

    for q in (query, answer.text):  # the query first; topical neighbours of the passage next
        pool, exhausted = max(want * POOL_GROWTH, k), False
        while len(chosen) < want and not exhausted:
            found = retriever.search(q, pool, exclude=seen)
            take(found, want, lambda p: _eligible(p, answer, must_not_contain, overlap_words))
            exhausted, pool = len(found) < pool, pool * POOL_GROWTH
    if len(chosen) < want:
        raise NotEnoughPassages(f"retrieval: only {len(chosen)} of {want} distractors found that do not "
                                "hold the answer (too few seeds?)")
    if not no_answer:
        for q in (query, answer.text):
            take(retriever.search(q, k, exclude=seen), k - 1, lambda p: True)
        if len(chosen) < k - 1:
            raise NotEnoughPassages(f"retrieval: only {len(chosen) + 1} of {k} passages found for the task")
        chosen.append(answer)
    rng.shuffle(chosen)
    return PassageSet(passages=chosen, answer_id=None if no_answer else answer.id)


# --- what a skill configures --------------------------------------------------------------


def passages_for_spec(retriever: Retriever, spec: RetrievalSpec, answer: Passage, query: str, *,
                      must_not_contain: str | None, rng: random.Random) -> PassageSet:
    """:func:`passages_for_task` as a skill's :class:`RetrievalSpec` asks; ``rng`` also draws
    whether this task is a no-answer one (``no_answer_rate``)."""
    no_answer = spec.no_answer_rate > 0 and rng.random() < spec.no_answer_rate
    return passages_for_task(retriever, answer, query, k=spec.k, distractors=spec.distractors,
                             no_answer=no_answer, must_not_contain=must_not_contain, rng=rng)
