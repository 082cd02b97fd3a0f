"""Scores a reader can trust: every report row shows n and a 95% interval, base-vs-tuned rows get
a verdict (paired bootstrap on per-item values, else interval overlap), scores that rest on too
few items are flagged, and a score decided by the embedded judge says it is a smoke test.

Runs are either written by hand (``_fake_run``, per-item values chosen so the verdict is known)
or produced by ``run_eval`` with scripted chat models (no model weights, no server)."""

import json

import pytest
from agentinstruct.evaluate.config import EvalRecipe
from agentinstruct.evaluate.report import compare, load_runs, write_report
from agentinstruct.evaluate.stats import (
    BETTER,
    NO_DIFFERENCE,
    WORSE,
    bootstrap_mean,
    clopper_pearson,
    paired_bootstrap,
    verdict,
)
from agentinstruct.evaluate.suite import run_eval

from agentinstruct.embedded import DEFAULT_EMBEDDED
from agentinstruct.llm import ChatModel, Completion, ModelSpec


def _fake_run(root, name, scores):
    d = root / name
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({"run_name": name, "model": name, "created": "now", "notes": [],
                                                "scores": scores}))
    return d


def _acc(items, benchmark="Fixture", **extra):
    """An accuracy score with per-item values on items 0..n-1, as the evaluators write it."""
    n = len(items)
    return {"value": sum(items) / n, "metric": "accuracy", "benchmark": benchmark, "n": n, "items": items,
            "item_ids": list(range(n)), "ci95": list(clopper_pearson(sum(items), n)),
            "ci_method": "exact binomial (Clopper-Pearson)", **extra}


BASE = {
    "clearly better": _acc([0] * 30 + [1] * 10),
    "clearly worse": _acc([1] * 30 + [0] * 10),
    "tied": _acc([1, 0] * 20),
    "rate down": _acc([1] * 30 + [0] * 10, metric="hallucination_rate", lower_is_better=True),
    "four items": _acc([1, 0, 1, 0], benchmark="Tiny"),
    "no items, overlap": {"value": 0.2, "metric": "acc", "benchmark": "Group", "n": 400, "ci95": [0.16, 0.24]},
    "stderr only": {"value": 0.5, "stderr": 0.02, "metric": "acc", "benchmark": "Group", "n": 600},
}
TUNED = {
    "clearly better": _acc([1] * 35 + [0] * 5),
    "clearly worse": _acc([0] * 35 + [1] * 5),
    "tied": _acc([0, 1] * 20),  # same score, every item flipped: the pairing shows no difference
    "rate down": _acc([0] * 35 + [1] * 5, metric="hallucination_rate", lower_is_better=True),
    "four items": _acc([0, 1, 0, 1], benchmark="Tiny"),
    "no items, overlap": {"value": 0.6, "metric": "acc", "benchmark": "Group", "n": 400, "ci95": [0.55, 0.65]},
    "stderr only": {"value": 0.51, "stderr": 0.02, "metric": "acc", "benchmark": "Group", "n": 600},
}


def test_intervals_are_exact_and_reproducible():
    assert clopper_pearson(0, 4) == (0.0, pytest.approx(0.6024, abs=1e-4))
    assert bootstrap_mean([0, 1, 0.5, 1, 0] * 8) == bootstrap_mean([0, 1, 0.5, 1, 0] * 8)  # fixed seed
    lo, hi = bootstrap_mean([0, 1, 0.5, 1, 0] * 8)
    assert lo < 0.5 < hi and hi - lo < 0.4
    diff, lo, hi = paired_bootstrap([0] * 20, [1] * 8 + [0] * 12)
    assert diff == pytest.approx(0.4) and 0 < lo < 0.4 < hi
    with pytest.raises(ValueError, match="same non-empty items"):
        paired_bootstrap([1, 0], [1])


def test_verdicts_paired_overlap_and_lower_is_better():
    def v(name):
        return verdict(BASE[name], TUNED[name], bool(BASE[name].get("lower_is_better")))

    assert (v("clearly better").label, v("clearly better").method) == (BETTER, "paired bootstrap of the per-item "
                                                                      "difference")
    assert v("clearly worse").label == WORSE and v("tied").label == NO_DIFFERENCE
    assert v("rate down").label == BETTER  # a lower hallucination rate is better
    assert (v("no items, overlap").label, v("no items, overlap").method) == (BETTER, "overlap of the two 95% intervals")
    assert v("stderr only").label == NO_DIFFERENCE
    other_items = {**TUNED["clearly better"], "item_ids": [i + 100 for i in range(40)]}  # not the same items
    assert verdict(BASE["clearly better"], other_items).method.startswith("overlap")


def test_report_rows_show_n_interval_verdict_and_flag(tmp_path):
    base, tuned = _fake_run(tmp_path, "base", BASE), _fake_run(tmp_path, "tuned", TUNED)
    rows = {r["name"]: r for r in compare(load_runs([base, tuned]))}
    assert all(r["ns"] and None not in r["ns"] and None not in r["intervals"] for r in rows.values())
    labels = {name: r["verdicts"][0].label for name, r in rows.items()}
    assert labels == {"clearly better": BETTER, "clearly worse": WORSE, "tied": NO_DIFFERENCE, "rate down": BETTER,
                      "four items": "interval too wide to tell", "no items, overlap": BETTER,
                      "stderr only": NO_DIFFERENCE}
    assert rows["four items"]["flags"] == ["n=4: interval 6.8–93.2, says nothing"] * 2
    md, html = write_report([base, tuned], tmp_path / "report")
    text, page = md.read_text(), html.read_text()
    measured = text.split("## Published reference")[0]
    table = [line for line in measured.splitlines() if line.startswith("| ") and "score" not in line]
    assert len(table) == len(BASE)
    for line in table:  # every row: each run's n and interval, and a verdict
        assert line.count(" n=") == 2, line
        assert line.count("[") == 2 or "says nothing" in line, line
    assert "| 25.0 [12.7–41.2] n=40 | 87.5 [73.2–95.8] n=40 |" in text
    assert "better (paired)" in text and "worse (paired)" in text and "better (intervals)" in text
    assert "no difference the interval can show (paired)" in text
    assert "50.0 ⚠ n=4: interval 6.8–93.2, says nothing" in text and "| 50.0 | 50.0 |" not in text
    assert "interval too wide to tell" in text
    assert "51.0 [47.1–54.9] n=600" in text and "normal (stderr)" in text  # stderr-only: normal, labelled
    assert "paired bootstrap of the per-item difference" in text and "In this report: 4 paired, 2 intervals." in text
    for needle in ("n=4: interval 6.8–93.2, says nothing", "better (paired)", "class='flag'",
                   "In this report: 4 paired, 2 intervals."):
        assert needle in page, needle
    assert "judge: embedded" not in text  # no judged score here


class ScriptedChat(ChatModel):
    def __init__(self, name, fn):
        super().__init__()
        self.name, self.fn = name, fn

    async def chat(self, messages, **kw):
        return Completion(self.fn(messages[-1]["content"]), "stop")


def _questions(path, n, split):
    path.write_text("".join(json.dumps({"question": f"{split} question {i}?", "answers": [f"answer{i}"],
                                        "split": split}) + "\n" for i in range(n)))
    return path


def _answers(right):
    """A scripted model that answers the questions numbered in ``right`` and no others."""
    return lambda p: f"It is answer{p.split()[2].rstrip('?')}." if int(p.split()[2].rstrip("?")) in right else "?"


def test_scripted_runs_carry_intervals_and_embedded_judge_is_flagged(tmp_path):
    """Held-out QA and hallucination through run_eval with scripted models; the hallucination judge
    is a scripted model carrying the embedded model's name, which is what a run with the embedded
    judge records. Per-item values, n and intervals come out of the evaluation itself."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(4):
        (docs / f"d{i}.txt").write_text(f"Document {i}. " + "The harbour town holds a lantern festival. " * 4)
    recipe = EvalRecipe.model_validate({
        "name": "scripted", "output_dir": str(tmp_path), "lm_eval": {"enabled": False},
        "hallucination": {"enabled": True, "documents": str(docs)},
        "heldout": {"questions": {"dev": str(_questions(tmp_path / "dev.jsonl", 4, "dev")),
                                  "test": str(_questions(tmp_path / "test.jsonl", 40, "test"))}}})
    judge = ScriptedChat(DEFAULT_EMBEDDED, lambda p: '{"unsupported_claims": [], "hallucinated": false, "quality": 4}')
    runs = [run_eval(recipe, ModelSpec(), run_name=name, judge=judge,
                     chat_model=ScriptedChat("m", lambda p, right=right: "A summary." if "Summarise" in p
                                             else _answers(right)(p)))
            for name, right in (("base", set(range(8))), ("tuned", set(range(30))))]
    scores = json.loads((runs[1] / "results.json").read_text())["scores"]
    test = scores["held-out accuracy (test)"]
    assert (test["n"], test["ci95"]) == (40, pytest.approx(list(clopper_pearson(30, 40))))
    assert test["item_ids"][0] == "test question 0?" and sum(test["items"]) == 30
    rate = scores["hallucination rate (judge)"]
    assert (rate["n"], rate["items"], rate["judge"]) == (4, [0, 0, 0, 0], DEFAULT_EMBEDDED)
    assert rate["ci95"] == pytest.approx(list(clopper_pearson(0, 4)))
    quality = scores["summary quality (judge, 1-5)"]
    assert quality["ci95"] == [4.0, 4.0] and "bootstrap" in quality["ci_method"]

    md, html = write_report(runs, tmp_path / "report")
    text, page = md.read_text(), html.read_text()
    assert "| 20.0 [9.1–35.6] n=40 | 75.0 [58.8–87.3] n=40 |" in text and "better (paired)" in text
    assert "n=4: interval 0.0–60.2, says nothing" in text  # dev part and hallucination: 4 items each
    tag = "judge: embedded SmolLM2-135M-Instruct — smoke test, not a measurement"
    measured = text.split("## Published reference")[0].splitlines()
    judged = [line for line in measured if line.startswith("| Summarisation hallucination")]
    assert len(judged) == 2 and all(tag in line for line in judged)
    assert not any(tag in line for line in measured if line.startswith("| Held-out"))
    assert text.count("acting as the judge") == 1 and tag in page and page.count("acting as the judge") == 1
