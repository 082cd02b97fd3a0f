"""Cost before spending: ``agentinstruct estimate`` (its sample runs on the package's scripted
server, agentinstruct.testing.FaultServer) and the recipe's budget. Real runs go through the
scripted OpenAI-compatible test server (tests/fake_openai.py), which answers the same content,
so a sample that covers every seed must project exactly the calls and tokens a run makes."""

import json
from pathlib import Path

import datasets
import pytest
import yaml
from agentinstruct.generate import estimate as est
from agentinstruct.generate.runner import load_generate_recipe, run_generate
from fake_openai import FakeOpenAIServer
from typer.testing import CliRunner

from agentinstruct.cli import app
from agentinstruct.llm.limits import estimate_tokens
from agentinstruct.recipes import RecipeError

PRICE = {"input": 3.0, "output": 15.0}


def write_recipe(tmp_path: Path, repo: Path, base_url: str, out: Path, **extra) -> Path:
    data = {"teacher": {"backend": "openai", "base_url": base_url, "model": "fake-teacher",
                        "max_concurrency": 8, "backoff_base_s": 0.01},
            "input": str(repo / "examples" / "docs"), "output": str(out),
            "skills": ["text_modification", "tool_use"],
            "gates": {"decontamination": {"enabled": False}},
            "price_per_million": {"fake-teacher": PRICE}, **extra}
    path = tmp_path / f"recipe-{out.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_full_sample_projects_exactly_what_the_run_spends(tmp_path, repo):
    run_dir = tmp_path / "run"
    path = write_recipe(tmp_path, repo, "http://127.0.0.1:9/v1", run_dir)  # never called: scripted
    res = CliRunner().invoke(app, ["estimate", "--recipe", str(path), "--sample", "50", "--output", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert "upper bound" in res.output and "no price" not in res.output
    projection = json.loads((run_dir / "estimate.json").read_text())
    assert projection["mode"] == "scripted" and projection["sample_seeds"] == projection["seeds"]

    with FakeOpenAIServer() as server:
        summary = run_generate(load_generate_recipe(write_recipe(tmp_path, repo, server.base_url, run_dir)),
                               show_progress=False)
        sent = list(server.requests)
    total = projection["total"]
    assert projection["seeds"] == summary.ingest.seeds == 7
    assert total["calls"] == len(sent) == summary.llm["calls"]
    prompt = sum(estimate_tokens(str(m.get("content") or "")) for r in sent for m in r["messages"])
    completion_cap = sum(r["max_tokens"] for r in sent)
    assert (total["prompt_tokens"], total["completion_tokens"]) == (prompt, completion_cap)
    assert total["cost"] == pytest.approx((prompt * PRICE["input"] + completion_cap * PRICE["output"]) / 1e6)
    assert set(projection["skills"]) == {"text_modification", "tool_use"}
    assert projection["skills"]["tool_use"]["units"] == 2  # the two code seeds
    # wall time: calls x assumed latency / concurrency
    assert total["wall_s"] == pytest.approx(total["calls"] * 2.0 / 8, abs=0.1)

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["estimate"]["projected"]["calls"] == manifest["estimate"]["actual"]["calls"] == len(sent)
    card = (run_dir / "dataset" / "README.md").read_text()
    assert "| projected (scripted) |" in card and "| actual (this run) |" in card


def test_small_sample_scales_to_the_whole_input(tmp_path, repo):
    recipe = load_generate_recipe(write_recipe(tmp_path, repo, "http://127.0.0.1:9/v1", tmp_path / "x"))
    result = est.estimate(recipe, sample=1, latency_s=1.0, skills=["text_modification"])
    tm = result.skills["text_modification"]
    assert (tm["sample_units"], tm["units"], result.seeds) == (1, 5, 7)
    with FakeOpenAIServer() as server:  # the one sampled seed alone, run for real
        seeds = est.sample_seeds(recipe, est.count_seeds(recipe)[0], 1)
        docs = tmp_path / "one"
        est.write_sample([s for s in seeds if s.kind == "text"], docs, recipe.code_extensions)
        one = write_recipe(tmp_path, repo, server.base_url, tmp_path / "one-run", input=str(docs),
                           skills=["text_modification"])
        run_generate(load_generate_recipe(one), show_progress=False)
        per_seed = len(server.requests)
    assert tm["calls"] == 5 * per_seed
    assert result.total["wall_s"] == pytest.approx(5 * per_seed * 1.0 / 8, abs=0.1)
    assert "assumed (--latency)" in result.latency_basis


def test_budget_stops_cleanly_keeps_what_was_made_and_says_so(tmp_path, repo):
    out = tmp_path / "run"
    with FakeOpenAIServer() as server:
        path = write_recipe(tmp_path, repo, server.base_url, out, seeds_in_flight=1,
                            skills=["text_modification"], budget={"max_tokens": 400})
        res = CliRunner().invoke(app, ["generate", "--recipe", str(path), "--no-progress"])
        stopped_calls = len(server.requests)
        assert res.exit_code == 0, res.output
        assert "stopped at budget" in res.output
        manifest = json.loads((out / "manifest.json").read_text())
        b = manifest["budget"]
        assert b["stopped"].startswith("stopped at budget") and b["units_not_started"] > 0
        assert b["tokens"] >= 400 and b["cost"] > 0
        made = datasets.load_from_disk(str(out / "dataset"))
        seeds_made = {r["seed_id"] for split in made.values() for r in split.to_list()}
        assert 0 < len(seeds_made) < 5
        assert "stopped at budget" in (out / "dataset" / "README.md").read_text()

        # without the budget the rerun finishes the rest; the finished seeds are not paid again
        path = write_recipe(tmp_path, repo, server.base_url, out, skills=["text_modification"])
        summary = run_generate(load_generate_recipe(path), show_progress=False)
    assert summary.stopped is None and summary.resumed_units == len(seeds_made)
    assert len(server.requests) > stopped_calls
    assert json.loads((out / "manifest.json").read_text())["budget"]["stopped"] is None


def test_max_cost_needs_a_price_for_the_teacher(tmp_path, repo):
    path = write_recipe(tmp_path, repo, "http://127.0.0.1:9/v1", tmp_path / "r", budget={"max_cost": 1.0},
                        price_per_million={})
    with pytest.raises(RecipeError, match="budget.max_cost: price_per_million has no entry for .*fake-teacher"):
        load_generate_recipe(path)


def test_live_runs_the_sample_on_the_teacher_and_measures_latency(tmp_path, repo):
    """--live: the sample goes to the recipe's own teacher (here the slowed scripted test server),
    one call at a time, so seconds per call are measured, not assumed."""
    with FakeOpenAIServer(delay=0.05) as server:
        recipe = load_generate_recipe(write_recipe(tmp_path, repo, server.base_url, tmp_path / "x",
                                                   skills=["text_modification"]))
        result = est.estimate(recipe, sample=1, live=True)
        sent = len(server.requests)
    tm = result.skills["text_modification"]
    assert result.mode == "live" and sent > 0 and tm["calls"] == 5 * sent
    assert result.latency_basis.startswith("measured") and result.latency_s >= 0.05
    assert result.completion_basis == "measured" and not any("scripted" in n for n in result.notes)
