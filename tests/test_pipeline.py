"""The closed loop, reduced: all four stages run, hand their artefacts on, and resume."""

import io
import json
from pathlib import Path

import pytest
import yaml
from agentinstruct.evaluate.heldout import clopper_pearson, is_correct, paired_bootstrap
from fake_openai import FakeOpenAIServer
from rich.console import Console

from agentinstruct.pipeline import Pipeline, load_pipeline_recipe


def test_heldout_scoring_and_intervals():
    assert is_correct("They counted 12000 eels.", ["12,000"]) and is_correct("About 6°C.", ["6 degrees"])
    assert not is_correct("It has 120 eels.", ["12,000"]) and not is_correct("oakland", ["oak"])
    lo, hi = clopper_pearson(0, 22)
    assert lo == 0.0 and 0.15 < hi < 0.16
    lo, hi = clopper_pearson(11, 22)
    assert 0.28 < lo < 0.29 and 0.71 < hi < 0.72
    diff, lo, hi = paired_bootstrap([0] * 20, [1] * 8 + [0] * 12)
    assert diff == 0.4 and lo > 0
    diff, lo, hi = paired_bootstrap([1, 0] * 10, [0, 1] * 10)
    assert diff == 0 and lo < 0 < hi


def test_reduced_pipeline_runs_hands_on_and_resumes(tmp_path):
    repo = Path(__file__).parent.parent
    with FakeOpenAIServer() as server:
        eval_recipe = tmp_path / "eval.yaml"
        eval_recipe.write_text(yaml.safe_dump({
            "name": "tiny", "lm_eval": {"enabled": False},
            "heldout": {"questions": {p: str(repo / f"examples/heldout/{p}.jsonl") for p in ("dev", "test")},
                        "max_tokens": 12}}))
        gen = tmp_path / "gen.yaml"
        gen.write_text(yaml.safe_dump({
            "teacher": {"backend": "openai", "base_url": server.base_url, "model": "fake"},
            "input": str(repo / "examples/docs"), "skills": ["open_domain_qa", "reading_comprehension"],
            "limit": 2, "gates": {"decontamination": {"eval_recipes": [str(eval_recipe)],
                                                      "cache_dir": str(tmp_path / "cache")}}}))
        pipe = tmp_path / "pipe.yaml"
        pipe.write_text(yaml.safe_dump({
            "name": "reduced", "output_dir": str(tmp_path / "run"),
            "generate": {"recipe": str(gen)},
            "train": {"recipe": str(repo / "recipes/smollm2-135m/sft/config_lora.yaml"),
                      "args": ["--max_steps", "2", "--max_length", "256", "--per_device_train_batch_size", "2",
                               "--save_steps", "2"]},
            "evaluate": {"recipe": str(eval_recipe)}}))
        first = Pipeline(load_pipeline_recipe(pipe), Console(stderr=True), show_progress=False).run()
        out = tmp_path / "run"
        assert (out / "generate" / "dataset" / "dataset_dict.json").exists()
        train_cfg = yaml.safe_load((out / "train_recipe.yaml").read_text())
        assert train_cfg["dataset_mixture"]["sources"][0]["path"] == str(out / "generate" / "dataset")
        assert json.loads((out / "train" / "trainer_state.json").read_text())["global_step"] == 2
        tuned = json.loads((out / "eval" / "tuned" / "results.json").read_text())
        assert tuned["model_spec"]["adapter"] == str(out / "train")
        assert tuned["scores"]["held-out accuracy (dev)"]["n"] == 22
        assert tuned["scores"]["held-out accuracy (test)"]["n"] == 36 and first["lift"]["part"] == "test"
        report = first["report_md"].read_text()
        for section in ("Generated dataset", "Training curve", "Held-out document questions", "Wall time per stage"):
            assert section in report
        assert "95% CI" in report and (out / "report" / "training_curve.png").exists()
        assert report.splitlines()[2].startswith("**Held-out accuracy, test part")  # the headline: test
        assert "dev part (the tuning set" in report
        assert set(first["timings"]) == {"generate", "train", "evaluate base", "evaluate tuned", "report"}
        stages = ("generate", "train", "evaluate base", "evaluate tuned")
        markers = {s: (out / "markers" / f"{s}.json").read_text() for s in stages}
        artefacts = [out / "generate" / "dataset" / "dataset_dict.json", out / "train" / "trainer_state.json",
                     out / "eval" / "tuned" / "results.json"]
        stamps = [p.stat().st_mtime_ns for p in artefacts]
        requests = len(server.requests)
        assert requests > 0

        log = io.StringIO()
        second = Pipeline(load_pipeline_recipe(pipe), Console(file=log, width=200), show_progress=False).run()
        # resume: every stage finds its marker up to date and is skipped; nothing is redone,
        # so the teacher gets no request and no artefact is rewritten
        assert len(server.requests) == requests
    printed = log.getvalue()
    for s in stages:
        assert f"{s}: up to date, skipped" in printed, printed
        assert (out / "markers" / f"{s}.json").read_text() == markers[s]
    assert [p.stat().st_mtime_ns for p in artefacts] == stamps
    assert second["lift"]["diff"] == first["lift"]["diff"]


@pytest.mark.slow  # reason: the whole demo, about 10 minutes on 2 cores
def test_full_demo_within_budget(tmp_path):
    recipe = load_pipeline_recipe(Path(__file__).parent.parent / "recipes/pipeline/demo-cpu.yaml")
    recipe = recipe.model_copy(update={"output_dir": str(tmp_path / "demo")})
    result = Pipeline(recipe, Console(stderr=True), show_progress=False).run()
    assert result["total_s"] <= 15 * 60, result["timings"]
    assert result["lift"] is not None and "95% CI" in result["lift"]["sentence"]
