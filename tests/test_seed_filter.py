"""The seed filter (generate/seed_filter.py): planted bad seeds are removed by the expected rule
before any LLM call, counted with examples in the summary, manifest and card; every shipped
example document passes. Engine runs use the scripted fake server (tests/fake_openai.py)."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from agentinstruct.generate.config import GenerateRecipe
from agentinstruct.generate.ingest import IngestReport, iter_seeds, regex_tokenize
from agentinstruct.generate.runner import load_generate_recipe, run_generate
from agentinstruct.generate.seed_filter import SeedFilter, SeedFilterRun
from fake_openai import FakeOpenAIServer
from pydantic import ValidationError
from rich.console import Console

from agentinstruct.records import Seed

REPO = Path(__file__).parent.parent
DOCS = REPO / "examples" / "docs"
MULTILINGUAL = REPO / "examples" / "docs_multilingual"

COOKIE_BANNER = (
    "We use cookies to give you the best experience on our website.\n"
    'By clicking "Accept all cookies" you agree to our cookie policy and our privacy policy.\n'
    "Accept all cookies | Reject | Manage preferences\n"
    "© 2024 Harbour Media Group. All rights reserved.\n")
NUMBER_TABLE = "Year Q1 Q2 Q3 Q4\n" + "".join(
    f"{2010 + i} {100 + 7 * i} {95 + 3 * i} {140 - 2 * i} {120 + i}\n" for i in range(12))
REPEATED_LINE = "Click here to see the amazing new offers in the harbour shop today!\n" * 20


def near_copy() -> str:
    """lake_veyra.txt with one number changed: a near-copy, not an exact one."""
    text = (DOCS / "lake_veyra.txt").read_text()
    assert "12,000" in text
    return text.replace("12,000", "12,500")


PLANTED = {"cookie_banner.txt": (COOKIE_BANNER, "boilerplate"),
           "numbers.txt": (NUMBER_TABLE, "numeric_table"),
           "repeated.txt": (REPEATED_LINE, "repetition"),
           "lake_veyra_copy.txt": (None, "near_duplicate")}


def seeds_of(spec, seed_filter, **kw):
    recipe = GenerateRecipe(skills=["reading_comprehension"])
    return list(iter_seeds(str(spec), tokenize=regex_tokenize, max_tokens=kw.get("max_tokens", 384),
                           overlap=32, min_chars=40, code_extensions=set(recipe.code_extensions),
                           report=IngestReport(), seed_filter=seed_filter))


def seed(text, sid="x", language="en"):
    return Seed(id=sid, text=text, source=f"{sid}.txt", language=language)


def test_each_planted_bad_seed_is_removed_by_its_rule():
    run = SeedFilterRun(SeedFilter())
    original = (DOCS / "lake_veyra.txt").read_text()
    assert run(seed(original, "lake")) is None
    assert run(seed(COOKIE_BANNER))[0] == "boilerplate"
    assert run(seed(NUMBER_TABLE))[0] == "numeric_table"
    assert run(seed(REPEATED_LINE))[0] == "repetition"
    rule, reason = run(seed(near_copy()))
    assert rule == "near_duplicate" and "near-duplicate of an earlier seed" in reason
    report = run.report()
    assert report["checked"] == 5 and report["removed"] == 4
    assert report["by_rule"] == {"boilerplate": 1, "numeric_table": 1, "repetition": 1, "near_duplicate": 1}
    assert report["examples"]["boilerplate"][0].startswith("We use cookies")
    assert all(len(e) <= 80 for shown in report["examples"].values() for e in shown)


def test_gopher_and_fineweb_rules_and_their_thresholds():
    run = SeedFilterRun(SeedFilter())
    assert run(seed("tiny words here and there only"))[0] == "gopher_quality"  # < 10 words
    ellipses = "".join(f"And then the boat {w} went out to the lake and ...\n" for w in "abcdefghij")
    assert run(seed(ellipses))[0] == "gopher_quality"
    no_stop = "Glass eels swim fast. Boats stay ashore. Fishermen mend nets. Birds nest near reeds daily."
    assert "stop words" in run(seed(no_stop))[1]
    unpunctuated = "\n".join(f"item number {w} in the list of the harbour shop goods" for w in "abcdefghij")
    assert run(seed(unpunctuated))[0] == "fineweb_quality"
    # every rule is a recipe field: switched off or loosened, the same seeds pass
    loose = SeedFilterRun(SeedFilter(boilerplate=False, min_stop_words=0, fineweb_quality=False))
    assert loose(seed(COOKIE_BANNER)) is None or loose(seed(COOKIE_BANNER))[0] != "boilerplate"
    assert loose(seed(no_stop)) is None and loose(seed(unpunctuated)) is None
    assert SeedFilterRun(SeedFilter(enabled=False))(seed(NUMBER_TABLE)) is None


def test_language_rule_and_unknown_code():
    run = SeedFilterRun(SeedFilter(languages=["en"]))
    russian = seeds_of(MULTILINGUAL, None)
    assert russian and all(s.language == "ru" for s in russian)
    assert run(russian[0])[0] == "language"
    with pytest.raises(ValidationError, match="seed_filter.languages: unknown language code 'xx'"):
        SeedFilter(languages=["xx"])


@pytest.mark.parametrize("max_tokens", [384, 96])
def test_every_shipped_example_document_passes(max_tokens):
    for folder in (DOCS, MULTILINGUAL):
        run = SeedFilterRun(SeedFilter())
        kept = seeds_of(folder, run, max_tokens=max_tokens)
        assert run.report()["removed"] == 0, run.report()
        assert {Path(s.source).name for s in kept} == {p.name for p in folder.iterdir()}


def test_planted_seeds_removed_before_any_llm_call_and_reported(tmp_path):
    """Fake server: the planted documents never reach the teacher; summary, manifest and card
    count each rule with an example."""
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(DOCS / "lake_veyra.txt", docs / "lake_veyra.txt")
    for name, (text, _) in PLANTED.items():
        (docs / name).write_text(text if text is not None else near_copy())
    out = tmp_path / "run"
    with FakeOpenAIServer() as server:
        path = tmp_path / "r.yaml"
        path.write_text(yaml.safe_dump({
            "teacher": {"backend": "openai", "base_url": server.base_url, "model": "fake"},
            "input": str(docs), "output": str(out), "skills": ["text_modification"],
            "sampling": {"agents_per_seed": 1, "tasks_per_text": 1, "refinement_rounds": 0},
            "gates": {"decontamination": {"enabled": False}}}))
        console = Console(record=True, width=200)
        summary = run_generate(load_generate_recipe(path), show_progress=False, console=console)
        sent = json.dumps(server.requests, ensure_ascii=False)
    assert "We use cookies" not in sent and "Q1 Q2" not in sent and "amazing new offers" not in sent
    assert "12,500" not in sent and "12,000" in sent  # the original is used, its near-copy is not
    assert summary.ingest.seeds == 1
    manifest = json.loads((out / "manifest.json").read_text())
    section = manifest["seed_filter"]
    assert section["checked"] == 5 and section["removed"] == 4
    assert section["by_rule"] == {rule: 1 for _, rule in PLANTED.values()}
    assert section["examples"]["numeric_table"][0].startswith("Year Q1 Q2")
    card = (out / "dataset" / "README.md").read_text()
    assert "## Seed filter" in card and "5 seeds checked before generation, 4 removed." in card
    for _, rule in PLANTED.values():
        assert f"| {rule} | 1 | `" in card
    assert "We use cookies" in card
    console.print(summary.table())
    shown = console.export_text()
    assert "seed filter: removed" in shown and "boilerplate" in shown and "near_duplicate" in shown
