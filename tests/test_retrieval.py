"""Retrieval over a run's seeds (generate/retrieval.py): the BM25 index, its build-once/resume
behaviour in the run folder, and the passage sets (answer + distractors, no-answer) of a task.
Pure Python, no model and no server: each test runs in well under a second."""

from __future__ import annotations

import random
from pathlib import Path

import bm25s
import pytest
from agentinstruct.generate import retrieval as rt
from agentinstruct.generate.ingest import IngestReport, iter_seeds, regex_tokenize
from agentinstruct.generate.retrieval import (
    BM25Retriever,
    NotEnoughPassages,
    RetrievalSpec,
    contains,
    passages_for_spec,
    passages_for_task,
)
from pydantic import ValidationError

from agentinstruct.records import Seed, content_id
from agentinstruct.resources import data_path

TOPICS = [
    "The harbor festival opens with a parade of fishing boats decorated with lanterns.",
    "Sourdough starter needs flour and water every day to keep the yeast alive.",
    "A solar kiln dries timber slowly using heat trapped under a glass roof.",
    "Glaciers carve deep valleys as they slide downhill over thousands of years.",
    "The violin has four strings tuned in fifths and is played with a bow.",
    "Honeybees communicate the direction of flowers through a waggle dance.",
    "Copper wire conducts electricity well because electrons move freely in it.",
    "Chess openings such as the Sicilian defence shape the middle game.",
    "Tomato plants need staking once the vines grow heavy with fruit.",
    "The lighthouse keeper trimmed the lamp wick every evening at dusk.",
]


def seed(text: str, source: str = "doc.txt", chunk: int = 0) -> Seed:
    return Seed(id=content_id(text), text=text, source=source, chunk=chunk)


def topic_seeds() -> list[Seed]:
    return [seed(t, f"topic{i}.txt") for i, t in enumerate(TOPICS)]


class Counting:
    """A seeds() callable that counts how often the index asked for the seeds (i.e. built)."""

    def __init__(self, seeds: list[Seed]):
        self.seeds, self.calls = seeds, 0

    def __call__(self) -> list[Seed]:
        self.calls += 1
        return self.seeds


# --- search -------------------------------------------------------------------------------


def test_a_query_finds_the_right_passage_first():
    r = BM25Retriever.build(topic_seeds())
    assert len(r) == 10
    for i, query in [(2, "how does a kiln dry timber"), (5, "bees dance"), (9, "who trimmed the lamp wick")]:
        hits = r.search(query, 3)
        assert hits[0].id == content_id(TOPICS[i]) and hits[0].score > 0
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # excluded ids never come back; a query sharing no term finds nothing
    assert content_id(TOPICS[2]) not in [h.id for h in r.search("kiln timber", 5, exclude={content_id(TOPICS[2])})]
    assert r.search("zzzz qqqq", 3) == []
    assert r.get(content_id(TOPICS[4])).text == TOPICS[4]


def test_search_over_ingested_example_documents():
    report = IngestReport()
    seeds = list(iter_seeds(str(data_path("examples", "docs")), tokenize=regex_tokenize, max_tokens=120,
                            overlap=16, min_chars=40, code_extensions={".py"}, report=report))
    assert len(seeds) >= 10
    r = BM25Retriever.build(seeds)
    assert Path(r.search("solar kiln drying timber", 1)[0].source).name == "solar_kiln.txt"


def test_non_english_queries_work():
    """Cyrillic words are kept (not stripped as non-[a-z]); Chinese, written without spaces,
    is indexed by characters and bigrams so a word inside a longer run still matches."""
    ru = seed("Озеро Вейра лежит высоко в горах и замерзает зимой.", "ru.txt")
    zh = seed("这个湖泊位于北京以北的山区。", "zh.txt")
    apart = seed("北方的京剧和北部的京菜很有名。", "zh2.txt")  # 北 and 京, never side by side
    r = BM25Retriever.build([*topic_seeds(), ru, zh, apart])
    assert r.search("где лежит озеро Вейра", 1)[0].id == ru.id
    assert r.search("北京", 1)[0].id == zh.id
    assert contains(zh.text, "北京") and not contains(zh.text, "上海")
    assert contains(ru.text, "ВЕЙРА") and not contains(ru.text, "Вей")


def test_containment_is_by_whole_normalised_words():
    assert contains("It lies in PARIS, France.", "paris")
    assert not contains("A Parisian café.", "Paris")
    assert contains("built in 1987 by the guild", "1987 by")
    assert contains("costs $5 — or so", "$5") and not contains("costs 6", "$5")


# --- build once per run, resume loads ------------------------------------------------------


def test_open_or_build_builds_once_and_resume_loads_the_same_index(tmp_path):
    folder = tmp_path / "run" / rt.INDEX_FOLDER
    seeds = Counting(topic_seeds())
    first = BM25Retriever.open_or_build(folder, seeds, "fp-1")
    mtime = (folder / rt.META_FILE).stat().st_mtime_ns
    again = BM25Retriever.open_or_build(folder, seeds, "fp-1")
    assert seeds.calls == 1
    assert (folder / rt.META_FILE).stat().st_mtime_ns == mtime
    assert again is not first
    for q in ["kiln timber", "bees dance flowers", "the"]:
        assert first.search(q, 5) == again.search(q, 5)


def test_a_changed_fingerprint_rebuilds(tmp_path):
    folder = tmp_path / rt.INDEX_FOLDER
    seeds = Counting(topic_seeds())
    BM25Retriever.open_or_build(folder, seeds, "fp-1")
    extra = seed("Penguins huddle together to survive the antarctic winter.", "penguins.txt")
    seeds.seeds = [*seeds.seeds, extra]
    r = BM25Retriever.open_or_build(folder, seeds, "fp-2")
    assert seeds.calls == 2
    assert r.search("penguins antarctic", 1)[0].id == extra.id
    # and the rebuilt index is what a later resume with fp-2 loads
    assert BM25Retriever.open_or_build(folder, seeds, "fp-2").search("penguins", 1)[0].id == extra.id
    assert seeds.calls == 2


def test_a_build_killed_midway_is_never_loaded(tmp_path, monkeypatch):
    folder = tmp_path / rt.INDEX_FOLDER
    seeds = Counting(topic_seeds())

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt  # the process dies while bm25s writes its files

    monkeypatch.setattr(bm25s.BM25, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        BM25Retriever.open_or_build(folder, seeds, "fp")
    assert not folder.exists()  # the half-written index went to a temporary folder only
    monkeypatch.undo()
    r = BM25Retriever.open_or_build(folder, seeds, "fp")
    assert seeds.calls == 2 and r.search("violin strings", 1)[0].id == content_id(TOPICS[4])


def test_a_leftover_temporary_folder_or_incomplete_index_is_rebuilt(tmp_path):
    """A SIGKILL leaves the temporary folder behind (no cleanup runs): the next start must not
    load it, rebuilds, and removes it. An index folder without meta.json is rebuilt too."""
    folder = tmp_path / rt.INDEX_FOLDER
    seeds = Counting(topic_seeds())
    BM25Retriever.build(seeds.seeds).save(tmp_path / f".{folder.name}{rt.TMP_PREFIX}dead", "fp")
    BM25Retriever.open_or_build(folder, seeds, "fp")
    assert seeds.calls == 1  # the complete-looking leftover was not taken as the index
    assert not list(tmp_path.glob(f".{folder.name}{rt.TMP_PREFIX}*"))
    (folder / rt.META_FILE).unlink()
    BM25Retriever.open_or_build(folder, seeds, "fp")
    assert seeds.calls == 2 and (folder / rt.META_FILE).is_file()
    lines = (folder / rt.PASSAGES_FILE).read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / rt.PASSAGES_FILE).write_text("".join(lines[:-3]), encoding="utf-8")  # passages cut short
    r = BM25Retriever.open_or_build(folder, seeds, "fp")
    assert seeds.calls == 3 and len(r) == len(TOPICS)


# --- passages for a task -------------------------------------------------------------------

OVERLAP = "its shore is lined with tall reeds where herons wade at dawn looking for fish"
ANSWER = seed(f"The mountain lake is named Veyra by the old maps, and {OVERLAP}.", "lake.txt", 0)
NEIGHBOUR = seed(f"{OVERLAP}. The mountain lake freezes in winter and the lake thaws in May.", "lake.txt", 1)
MENTIONS = seed("Travellers say VEYRA'S water freezes early and thaws late: the coldest mountain lake.", "guide.txt")
LAKES = [seed(f"Lake number {i} is a mountain lake with cold water and a stony lake bed.", f"l{i}.txt")
         for i in range(4)]


def lake_retriever() -> BM25Retriever:
    return BM25Retriever.build([ANSWER, NEIGHBOUR, MENTIONS, *LAKES, *topic_seeds()])


def test_one_answer_and_distractors_that_do_not_hold_the_answer():
    r = lake_retriever()
    query = "When does the mountain lake freeze and thaw?"
    top = {p.id for p in r.search(query, 2)}
    assert top == {NEIGHBOUR.id, MENTIONS.id}  # the best hits: one overlaps the answer passage, one names it
    ps = passages_for_task(r, r.get(ANSWER.id), query, k=3, distractors=2,
                           no_answer=False, must_not_contain="Veyra", rng=random.Random(0))
    assert len(ps.passages) == 3 and ps.answer_id == ANSWER.id
    assert [p.id for p in ps.passages].count(ANSWER.id) == 1
    others = [p for p in ps.passages if p.id != ANSWER.id]
    assert len(others) == 2
    for p in others:
        assert not contains(p.text, "Veyra")
        assert p.id not in {NEIGHBOUR.id, MENTIONS.id}  # overlapping chunk; the answer in other case


def test_the_no_answer_case_holds_no_passage_with_the_answer():
    r = lake_retriever()
    ps = passages_for_task(r, r.get(ANSWER.id), "When does the mountain lake freeze and thaw?", k=3, distractors=2,
                           no_answer=True, must_not_contain="Veyra", rng=random.Random(0))
    assert ps.answer_id is None and len(ps.passages) == 3
    assert ANSWER.id not in ps.ids and NEIGHBOUR.id not in ps.ids
    assert not any(contains(p.text, "Veyra") for p in ps.passages)


def test_extra_slots_are_filled_with_the_next_best_passages():
    r = lake_retriever()
    ps = passages_for_task(r, r.get(ANSWER.id), "mountain lake Veyra", k=4, distractors=1,
                           no_answer=False, must_not_contain="Veyra", rng=random.Random(0))
    assert len(ps.passages) == 4 and ANSWER.id in ps.ids
    assert sum(not contains(p.text, "Veyra") for p in ps.passages) >= 1
    assert MENTIONS.id in ps.ids  # the best non-answer hit takes a free (non-distractor) slot


def test_order_is_deterministic_for_a_seeded_rng():
    r = lake_retriever()

    def ids(s: int) -> list[str]:
        return passages_for_task(r, r.get(ANSWER.id), "mountain lake", k=3, distractors=2, no_answer=False,
                                 must_not_contain="Veyra", rng=random.Random(s)).ids

    assert ids(7) == ids(7)
    assert len({tuple(ids(s)) for s in range(12)}) > 1  # the rng does shuffle the positions
    assert len({frozenset(ids(s)) for s in range(12)}) == 1  # ...but not which passages


def test_too_few_distractors_is_an_error_not_a_short_set():
    r = BM25Retriever.build([ANSWER, MENTIONS])
    with pytest.raises(NotEnoughPassages):
        passages_for_task(r, r.get(ANSWER.id), "mountain lake", k=3, distractors=2, no_answer=False,
                          must_not_contain="Veyra", rng=random.Random(0))
    with pytest.raises(NotEnoughPassages):  # the only other passage names the answer
        passages_for_task(r, r.get(ANSWER.id), "mountain lake", k=1, distractors=0, no_answer=True,
                          must_not_contain="Veyra", rng=random.Random(0))


# --- the skill's retrieval: section ---------------------------------------------------------


def test_retrieval_spec_validates_and_draws_no_answer_tasks():
    assert RetrievalSpec().model_dump() == {"k": 3, "distractors": 2, "no_answer_rate": 0.0, "query": "task"}
    for bad in [{"k": 2, "distractors": 2}, {"k": 0}, {"no_answer_rate": 1.5}, {"query": "web"}, {"top": 3}]:
        with pytest.raises(ValidationError):
            RetrievalSpec(**bad)
    r = lake_retriever()
    answer = r.get(ANSWER.id)
    always = passages_for_spec(r, RetrievalSpec(no_answer_rate=1.0), answer, "mountain lake",
                               must_not_contain="Veyra", rng=random.Random(0))
    never = passages_for_spec(r, RetrievalSpec(), answer, "mountain lake", must_not_contain="Veyra",
                              rng=random.Random(0))
    assert always.answer_id is None and never.answer_id == ANSWER.id
    drawn = [passages_for_spec(r, RetrievalSpec(no_answer_rate=0.5), answer, "mountain lake",
                               must_not_contain="Veyra", rng=random.Random(s)).answer_id for s in range(20)]
    assert None in drawn and ANSWER.id in drawn
