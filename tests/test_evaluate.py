"""Evaluation: exact scoring with scripted models, robust judge parsing, deltas, and a real run
of every benchmark on the embedded model."""

import json
import re
import shutil

import pytest
from agentinstruct.evaluate.config import EvalRecipe
from agentinstruct.evaluate.hallucination import parse_verdict
from agentinstruct.evaluate.heldout import clopper_pearson, is_correct, load_questions
from agentinstruct.evaluate.prefetch import plan
from agentinstruct.evaluate.report import compare, load_runs, write_report
from agentinstruct.evaluate.suite import load_eval_recipe, run_eval
from lm_eval.api.model import LM

from agentinstruct.llm import ChatModel, Completion, LLMError, ModelSpec

GSM = {  # question start -> scripted output
    "A baker makes": "12 + 9 = 21, 21 - 15 = 6.\n#### 6",          # strict ok, flexible ok
    "Tom has 4 boxes": "28 - 10 = 18\n#### 18",                     # ok, ok
    "A train ticket": "16 + 15 = 31\n#### 31",                      # ok, ok
    "A garden has": "So the answer is 90.",                         # strict no, flexible ok
    "Maria reads": "#### 7",                                        # wrong, wrong
}
BBH = {"not ( True ) and ( True )": "False", "True and not not": "True", "not True or ( False and True )": "False",
       "False or not ( True ) or True": "True", "( not False ) and ( True or False )": "The answer is True",
       "not ( False or True )": "True"}  # 4 exact, 1 only flexible, 1 wrong
AGI = {"town council of Brell": "(B)", "chess club": "(C)", "sunflower field": "(B)", "walk to work": "(B)"}  # last wrong


class ScriptedLM(LM):
    """Fixed outputs keyed by a substring of the prompt: the only way to know exact scores."""

    def generate_until(self, requests):
        out = []
        for r in requests:
            ctx = r.args[0]
            out.append(next((v for k, v in {**GSM, **BBH}.items() if k in ctx), "I don't know"))
        return out

    def loglikelihood(self, requests):
        out = []
        for r in requests:
            ctx, cont = r.args
            pick = next(v for k, v in AGI.items() if k in ctx)
            out.append((0.0, True) if pick in cont else (-10.0, False))
        return out

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError


class ScriptedChat(ChatModel):
    def __init__(self, name, fn):
        super().__init__()
        self.name, self.fn = name, fn

    async def chat(self, messages, **kw):
        return Completion(self.fn(messages[-1]["content"]), "stop")


def scripted_recipe(tmp_path, **sections):
    data = {"name": "scripted", "output_dir": str(tmp_path),
            "lm_eval": {"enabled": False}, **sections}
    return EvalRecipe.model_validate(data)


def test_lm_eval_scoring_is_exact(tmp_path, repo):
    bench = repo / "examples" / "benchmarks"
    recipe = scripted_recipe(tmp_path, lm_eval={
        "apply_chat_template": False,
        "tasks": [{"name": "gsm8k", "local": str(bench / "gsm8k.jsonl"), "num_fewshot": 0},
                  {"name": "agieval_lsat_lr", "local": str(bench / "agieval_lsat_lr.jsonl")},
                  {"name": "bbh_zeroshot_boolean_expressions",
                   "local": str(bench / "bbh_boolean_expressions.jsonl")}]})
    run = run_eval(recipe, ModelSpec(), run_name="scripted", lm=ScriptedLM())
    s = json.loads((run / "results.json").read_text())["scores"]
    assert s["gsm8k exact_match (strict-match)"]["value"] == pytest.approx(3 / 8)
    assert s["gsm8k exact_match (flexible-extract)"]["value"] == pytest.approx(4 / 8)
    assert s["agieval_lsat_lr acc"]["value"] == pytest.approx(3 / 4)
    assert s["bbh_zeroshot_boolean_expressions exact_match (strict-match)"]["value"] == pytest.approx(4 / 6)
    assert s["bbh_zeroshot_boolean_expressions exact_match (flexible-extract)"]["value"] == pytest.approx(5 / 6)
    assert s["gsm8k exact_match (strict-match)"]["n"] == 8 and s["gsm8k exact_match (strict-match)"]["stderr"] > 0
    assert {v["benchmark"] for v in s.values()} == {"GSM8K", "AGIEval", "BBH"}
    strict, agi = s["gsm8k exact_match (strict-match)"], s["agieval_lsat_lr acc"]  # per-document, from the samples
    assert (strict["item_ids"], strict["items"]) == (list(range(8)), [1, 1, 1, 0, 0, 0, 0, 0])
    assert strict["ci95"] == pytest.approx(list(clopper_pearson(3, 8))) and strict["ci_method"].startswith("exact")
    assert (agi["n"], sum(agi["items"]), agi["ci95"]) == (4, 3, pytest.approx(list(clopper_pearson(3, 4))))
    logged = [json.loads(x) for x in (run / "samples" / "gsm8k.jsonl").read_text().splitlines()]
    assert {r["doc_id"] for r in logged} == set(range(8)) and {r["filter"] for r in logged} == \
        {"strict-match", "flexible-extract"}  # one row per document and filter
    assert "A baker makes" in json.dumps(logged)


def _judge_prefers_good(prompt: str) -> str:
    a = prompt.split("Output (a):")[1].split("Output (b):")[0]
    b = prompt.split("Output (b):")[1]
    if "UNSURE" in a or "UNSURE" in b:
        return "hmm, hard to say"  # unparseable
    if "GOOD" in a or "BAD" in b:
        return "Output (a)"
    return "Output (b)"


def test_alpaca_eval_win_rate_is_exact_and_unparsed_counted(tmp_path, monkeypatch, repo):
    rows = json.loads((repo / "examples/benchmarks/alpaca_eval.json").read_text())
    marks = ["GOOD", "GOOD", "GOOD", "BAD", "BAD", "UNSURE"]
    by_instruction = {r["instruction"]: m for r, m in zip(rows, marks)}
    model = ScriptedChat("scripted-model", lambda p: f"{by_instruction[p]} answer to: {p}")
    judge = ScriptedChat("scripted-judge", _judge_prefers_good)
    recipe = scripted_recipe(tmp_path, alpaca_eval={
        "enabled": True, "instructions": str(repo / "examples/benchmarks/alpaca_eval.json")})
    monkeypatch.chdir(tmp_path)  # a relative output dir (alpaca_eval resolves relative configs elsewhere)
    run = run_eval(recipe, ModelSpec(), run_name="alpaca", output_dir="rel", chat_model=model, judge=judge)
    results = json.loads((run / "results.json").read_text())
    (name, score), = results["scores"].items()
    assert score["value"] == pytest.approx(3 / 5)  # 3 wins of the 5 parsed judgements
    assert score["n_unparsed"] == 1 and score["judge"] == "scripted-judge"
    assert any("could not be parsed" in n for n in results["notes"])
    assert name == "alpaca_eval win_rate"  # local set: plain win rate, and the results say why
    assert any("plain win rate" in n for n in results["notes"])


VERDICTS = [
    '{"unsupported_claims": ["x"], "hallucinated": true, "quality": 2}',
    '```json\n{"unsupported_claims": [], "hallucinated": false, "quality": 5}\n```',
    "Hallucinated: no\nQuality: 4",
    "I cannot decide.",
]


def test_judge_replies_parse_robustly():
    parsed = [parse_verdict(v) for v in VERDICTS]
    assert [p and p["hallucinated"] for p in parsed] == [True, False, False, None]
    assert [p and p["quality"] for p in parsed[:3]] == [2, 5, 4]


def test_hallucination_rate_is_exact(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(4):
        (docs / f"d{i}.txt").write_text(f"Document {i}. " + "The harbour town holds a lantern festival. " * 4)
    replies = {f"Document {i}.": v for i, v in enumerate(VERDICTS)}
    judge = ScriptedChat("j", lambda p: next(v for k, v in replies.items() if k in p))
    model = ScriptedChat("m", lambda p: "A summary.")
    recipe = scripted_recipe(tmp_path, hallucination={"enabled": True, "documents": str(docs)})
    run = run_eval(recipe, ModelSpec(), run_name="h", chat_model=model, judge=judge)
    s = json.loads((run / "results.json").read_text())["scores"]
    assert s["hallucination rate (judge)"]["value"] == pytest.approx(1 / 3)
    assert s["hallucination rate (judge)"]["n"] == 3 and s["hallucination rate (judge)"]["n_unparsed"] == 1
    assert s["summary quality (judge, 1-5)"]["value"] == pytest.approx(11 / 3)


class FailingChat(ScriptedChat):
    """A scripted model whose calls fail (LLMError) when ``fn`` returns None."""

    async def chat(self, messages, **kw):
        reply = self.fn(messages[-1]["content"])
        if reply is None:
            raise LLMError("scripted failure")
        return Completion(reply, "stop")


def _heldout_files(tmp_path):
    dev, test = tmp_path / "dev.jsonl", tmp_path / "test.jsonl"
    dev.write_text("".join(json.dumps({"question": f"Dev question {i}?", "answers": ["blue"], "split": "dev"}) + "\n"
                           for i in range(4)))
    test.write_text("".join(json.dumps({"question": f"Test question {i}?", "answers": ["7", "seven"],
                                        "split": "test"}) + "\n" for i in range(5)))
    return dev, test


def _heldout_reply(p: str) -> str | None:
    """Dev: 3 right, 1 wrong. Test: 0 and 1 right, 2 wrong, 3 and 4 fail."""
    if p.startswith("Dev"):
        return "It is blue." if not p.endswith("3?") else "It is red."
    i = int(p.split()[2].rstrip("?"))
    return {0: "Seven.", 1: "It is 7.", 2: "It is 8."}.get(i)


def test_heldout_parts_scored_apart_and_failed_calls_counted(tmp_path):
    """Dev and test parts get their own score, n and CI; failed calls (scripted model) are counted
    as wrong, marked in the samples, noted, and shown in report.md and report.html."""
    dev, test = _heldout_files(tmp_path)
    recipe = scripted_recipe(tmp_path, heldout={"questions": {"dev": str(dev), "test": str(test)}})
    runs = [run_eval(recipe, ModelSpec(), run_name=name, chat_model=FailingChat("m", fn))
            for name, fn in (("base", lambda p: "no idea"), ("tuned", _heldout_reply))]
    results = json.loads((runs[1] / "results.json").read_text())
    t, d = results["scores"]["held-out accuracy (test)"], results["scores"]["held-out accuracy (dev)"]
    assert (t["value"], t["n"], t["failed"], t["role"], t["correct"]) == (pytest.approx(2 / 5), 5, 2, "test",
                                                                           [1, 1, 0, 0, 0])
    assert t["ci95"] == pytest.approx(list(clopper_pearson(2, 5)))
    assert (d["value"], d["n"], d["failed"], d["role"]) == (pytest.approx(3 / 4), 4, 0, "dev")
    assert "tuning set" in d["benchmark"] and "tuning" not in t["benchmark"]
    assert any("held-out (test): 2 of 5 calls failed and count as wrong" in n for n in results["notes"])
    samples = [json.loads(x) for x in (runs[1] / "samples" / "heldout.jsonl").read_text().splitlines()]
    assert [r["failed"] for r in samples if r["part"] == "test"] == [False, False, False, True, True]
    assert all("error" in r for r in samples if r["failed"])
    md, html = write_report(runs, tmp_path / "report")
    text = md.read_text()
    assert "| 40.0 (2 failed) ⚠ n=5: interval 5.3–85.3, says nothing |" in text  # 5 items: flagged
    assert "A failed model call counts as wrong" in text
    assert "40.0 (2 failed)" in html.read_text() and "A failed model call counts as wrong" in html.read_text()

    from agentinstruct.pipeline import heldout_lift, heldout_section

    lift = heldout_lift(runs[0], runs[1])
    assert lift["part"] == "test" and lift["diff"] == pytest.approx(0.4) and lift["dev"][0]["part"] == "dev"
    assert "2 failed calls counted wrong" in lift["sentence"]
    section = heldout_section(runs[0], runs[1])
    assert "test part" in section.title and "the tuning set" in section.markdown


def test_heldout_loader_names_file_and_line(tmp_path):
    path = tmp_path / "q.jsonl"
    good = json.dumps({"question": "Q?", "answers": ["a"]})
    for body, line, why in ((f"{good}\n\n{{oops\n", 3, "not JSON"),
                            (f"{good}\n" + json.dumps({"question": "Q?", "answers": []}) + "\n", 2, "'answers'"),
                            (json.dumps({"question": "Q?", "answers": ["a"], "split": "dev"}) + "\n", 1, "split 'dev'")):
        path.write_text(body)
        with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}:{line}: .*{why}"):
            load_questions(str(path), "test")
    with pytest.raises(ValueError, match="heldout.report 'test' is not one of"):
        scripted_recipe(tmp_path, heldout={"questions": {"dev": str(path)}})


def test_shipped_heldout_parts_are_disjoint_and_answerable(repo):
    """The shipped parts: at least 30 test questions, none shared with dev, each answer stated in
    its source document."""
    recipe = load_eval_recipe(repo / "recipes/eval/demo-cpu.yaml")
    parts = {p: load_questions(path, p) for p, path in recipe.heldout.questions.items()}
    assert recipe.heldout.report == "test" and len(parts["test"]) >= 30 and len(parts["dev"]) == 22
    assert not {r["question"] for r in parts["test"]} & {r["question"] for r in parts["dev"]}
    for r in parts["test"]:
        doc = (repo / "examples/docs" / r["source"]).read_text(encoding="utf-8")
        assert is_correct(doc, r["answers"]), r["question"]


def test_alpaca_eval_failed_outputs_and_judge_calls_counted(tmp_path, monkeypatch, repo):
    """Scripted model and judge: a failed output counts as a loss (not judged), a failed judge
    call is left out; both are counted in results and notes."""
    rows = json.loads((repo / "examples/benchmarks/alpaca_eval.json").read_text())
    marks = ["GOOD", "GOOD", "GOOD", "BAD", "BAD", None]
    by_instruction = {r["instruction"]: m for r, m in zip(rows, marks)}
    model = FailingChat("scripted-model", lambda p: by_instruction[p] and f"{by_instruction[p]} answer to: {p}")
    first = rows[0]["instruction"]
    judge = FailingChat("scripted-judge", lambda p: None if first in p else _judge_prefers_good(p))
    recipe = scripted_recipe(tmp_path, alpaca_eval={
        "enabled": True, "instructions": str(repo / "examples/benchmarks/alpaca_eval.json")})
    monkeypatch.chdir(tmp_path)
    run = run_eval(recipe, ModelSpec(), run_name="alpaca", chat_model=model, judge=judge)
    results = json.loads((run / "results.json").read_text())
    score = results["scores"]["alpaca_eval win_rate"]
    assert score["value"] == pytest.approx(2 / 5)  # 2 wins, 2 losses, 1 failed output as a loss
    assert (score["n"], score["attempted"], score["failed"], score["judge_failed"], score["n_unparsed"]) == \
        (5, 6, 1, 1, 0)  # n: the items the win rate is over (the failed judge call is left out)
    assert (score["item_ids"], score["items"]) == ([1, 2, 3, 4, 5], [1.0, 1.0, 0.0, 0.0, 0.0])
    assert "bootstrap" in score["ci_method"] and score["ci95"][0] < 0.4 < score["ci95"][1]
    assert any("1 of 6 model outputs failed and count as losses" in n for n in results["notes"])
    assert any("1 of 5 judge calls failed" in n for n in results["notes"])
    md, _ = write_report([run], tmp_path / "report")
    assert "40.0 (1 failed, 1 judge failed)" in md.read_text()


def test_hallucination_failed_summaries_and_verdicts_counted(tmp_path):
    """Scripted model and judge: a failed summary is not judged, a failed judge call is left out;
    both are counted in results, samples and notes."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(4):
        (docs / f"d{i}.txt").write_text(f"Document {i}. " + "The harbour town holds a lantern festival. " * 4)
    verdicts = {"Document 2.": VERDICTS[0], "Document 3.": VERDICTS[1]}
    judge = FailingChat("j", lambda p: next((v for k, v in verdicts.items() if k in p), None))
    model = FailingChat("m", lambda p: None if "Document 0." in p else "A summary.")
    recipe = scripted_recipe(tmp_path, hallucination={"enabled": True, "documents": str(docs)})
    run = run_eval(recipe, ModelSpec(), run_name="h", chat_model=model, judge=judge)
    results = json.loads((run / "results.json").read_text())
    s = results["scores"]["hallucination rate (judge)"]
    assert s["value"] == pytest.approx(1 / 2) and s["n"] == 2
    assert (s["failed"], s["judge_failed"], s["n_unparsed"], s["attempted"]) == (1, 1, 0, 4)
    assert any("1 of 4 summaries failed" in n for n in results["notes"])
    assert any("1 of 3 judge calls failed" in n for n in results["notes"])
    rows = [json.loads(x) for x in (run / "samples" / "hallucination.jsonl").read_text().splitlines()]
    assert sorted(r.get("failed", "") for r in rows) == ["", "", "judge", "summary"]
    md, _ = write_report([run], tmp_path / "report")
    assert "50.0 (1 failed, 1 judge failed)" in md.read_text()


def _fake_run(root, name, scores):
    d = root / name
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({"run_name": name, "model": name, "created": "now", "notes": [],
                                                "scores": scores}))
    return d


def test_comparison_deltas(tmp_path):
    base = _fake_run(tmp_path, "base", {
        "gsm8k exact_match (strict-match)": {"value": 0.40, "benchmark": "GSM8K", "metric": "exact_match"},
        "hallucination rate (judge)": {"value": 0.50, "benchmark": "Summarisation hallucination",
                                       "metric": "hallucination_rate", "lower_is_better": True},
        "summary quality (judge, 1-5)": {"value": 3.0, "benchmark": "Summarisation hallucination", "metric": "quality"}})
    tuned = _fake_run(tmp_path, "tuned", {
        "gsm8k exact_match (strict-match)": {"value": 0.50, "benchmark": "GSM8K", "metric": "exact_match"},
        "hallucination rate (judge)": {"value": 0.35, "benchmark": "Summarisation hallucination",
                                       "metric": "hallucination_rate", "lower_is_better": True},
        "summary quality (judge, 1-5)": {"value": 3.6, "benchmark": "Summarisation hallucination", "metric": "quality"}})
    rows = {r["name"]: r for r in compare(load_runs([base, tuned]))}
    d, p = rows["gsm8k exact_match (strict-match)"]["deltas"][0]
    assert d == pytest.approx(10.0) and p == pytest.approx(25.0)
    d, p = rows["hallucination rate (judge)"]["deltas"][0]
    assert d == pytest.approx(-15.0) and p == pytest.approx(-30.0)
    d, p = rows["summary quality (judge, 1-5)"]["deltas"][0]
    assert d == pytest.approx(0.6) and p == pytest.approx(20.0)
    md, html = write_report([base, tuned], tmp_path / "report")
    text = md.read_text()
    assert "+10.0 pts (+25%)" in text and "-15.0 pts (-30%)" in text and "quoted" in text
    assert "data:image/png;base64," in html.read_text()


def test_prefetch_plan(repo):
    assert plan(load_eval_recipe(repo / "recipes/eval/fixtures-cpu.yaml"), [ModelSpec()]) == []
    items = plan(load_eval_recipe(repo / "recipes/eval/orca3-suite.yaml"),
                 [ModelSpec.from_string("mistralai/Mistral-7B-Instruct-v0.1")])
    names = {(k, n) for k, n, _ in items}
    assert ("model", "mistralai/Mistral-7B-Instruct-v0.1") in names
    assert {("lm_eval task", t) for t in ("agieval_en", "gsm8k", "bbh_cot_zeroshot", "mmlu")} <= names
    assert ("dataset file", "tatsu-lab/alpaca_eval/alpaca_eval.json") in names
    assert ("model", "vectara/hallucination_evaluation_model") in names


def test_chat_endpoint_cannot_do_loglikelihood_tasks(tmp_path, fake_server, repo):
    recipe = EvalRecipe.model_validate({"output_dir": str(tmp_path), "lm_eval": {"tasks": [
        {"name": "agieval_lsat_lr", "local": str(repo / "examples/benchmarks/agieval_lsat_lr.jsonl")}]}})
    spec = ModelSpec(backend="openai", base_url=fake_server.base_url, model="fake")
    run = run_eval(recipe, spec, run_name="chat")
    results = json.loads((run / "results.json").read_text())
    assert results["scores"] == {}
    assert any("agieval_lsat_lr: skipped - needs log-likelihoods" in n for n in results["notes"])


def test_every_shipped_eval_recipe_parses(repo):
    for path in (repo / "recipes" / "eval").glob("*.yaml"):
        assert load_eval_recipe(path).name


def test_embedded_model_every_benchmark_and_report(tmp_path, repo):
    """The real embedded model on every fixture benchmark (small limits)."""
    recipe = load_eval_recipe(repo / "recipes/eval/fixtures-cpu.yaml")
    recipe.lm_eval.limit = 2
    recipe.lm_eval.gen_kwargs = {"max_gen_toks": 48}
    recipe.alpaca_eval.max_instances = 2
    recipe.alpaca_eval.max_tokens = 48
    recipe.hallucination.max_documents = 2
    recipe.hallucination.summary_max_tokens = 48
    run = run_eval(recipe, ModelSpec(), run_name="embedded", output_dir=tmp_path)
    results = json.loads((run / "results.json").read_text())
    benchmarks = {s["benchmark"] for s in results["scores"].values()}
    assert benchmarks == {"GSM8K", "AGIEval", "BBH", "AlpacaEval", "Summarisation hallucination"}
    assert all(0 <= s["value"] <= 5 for s in results["scores"].values())
    assert {"gsm8k exact_match (strict-match)", "gsm8k exact_match (flexible-extract)"} <= set(results["scores"])
    assert results["versions"]["torch"] and results["chat_template_hash"] and results["judge_models"]["alpaca_eval"]
    other = tmp_path / "copy"
    shutil.copytree(run, other)
    data = json.loads((other / "results.json").read_text())
    data["run_name"] = "copy"
    (other / "results.json").write_text(json.dumps(data))
    md, html = write_report([run, other], tmp_path / "report")
    text = md.read_text()
    for name in results["scores"]:
        assert re.escape(name) and name in text
    assert "`embedded`" in text and "`copy`" in text and (tmp_path / "report" / "scores.png").exists()
    assert "AlpacaEval" in html.read_text()
