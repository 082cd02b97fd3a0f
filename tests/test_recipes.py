from pathlib import Path

import pytest
from agentinstruct.generate.config import GenerateRecipe

from agentinstruct.recipes import RecipeError, load_recipe, recipe_hash


def write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_unknown_key_names_file_and_key(tmp_path):
    p = write(tmp_path, "skills: [tool_use]\nteacher:\n  modle: x\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(p, GenerateRecipe)
    assert str(p) in str(err.value) and "teacher.modle: unknown key" in str(err.value)


def test_wrong_type_names_key_and_expectation(tmp_path):
    p = write(tmp_path, "skills: [tool_use]\nseeds_in_flight: many\n")
    with pytest.raises(RecipeError, match=r"seeds_in_flight: .*integer"):
        load_recipe(p, GenerateRecipe)


def test_missing_required_key(tmp_path):
    p = write(tmp_path, "seed: 1\n")
    with pytest.raises(RecipeError, match="skills: required key is missing"):
        load_recipe(p, GenerateRecipe)


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(RecipeError, match="invalid YAML"):
        load_recipe(write(tmp_path, "a: [1, 2\n"), GenerateRecipe)
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml", GenerateRecipe)


def test_secrets_only_by_env_name(tmp_path):
    p = write(tmp_path, "skills: [tool_use]\nteacher:\n  backend: openai\n  api_key: sk-123\n")
    with pytest.raises(RecipeError, match="teacher.api_key: unknown key"):
        load_recipe(p, GenerateRecipe)


def test_shipped_generate_recipes_parse(repo):
    for path in sorted((repo / "recipes" / "generate").glob("*.yaml")):
        recipe = load_recipe(path, GenerateRecipe)
        assert recipe.skills
        assert len(recipe_hash(recipe)) == 16


# -- paths: relative to the recipe file (inputs) or the working directory (outputs) -----------------
def test_input_paths_resolve_against_the_recipe_folder_not_the_cwd(tmp_path, monkeypatch):
    from agentinstruct.evaluate.config import EvalRecipe

    (tmp_path / "data" / "docs").mkdir(parents=True)
    (tmp_path / "data" / "bench.jsonl").write_text("{}\n")
    (tmp_path / "data" / "my_skill.yaml").write_text("name: x\n")
    (tmp_path / "recipes").mkdir()
    gen = write(tmp_path / "recipes", "skills: [tool_use, ../data/my_skill.yaml]\ninput: ../data/docs\noutput: out\n"
                "gates: {decontamination: {eval_files: [../data/bench.jsonl]}, dedup: {against: ['../data/*.jsonl']}}\n")
    ev = tmp_path / "recipes" / "e.yaml"
    ev.write_text("lm_eval: {tasks: [{name: gsm8k, local: ../data/bench.jsonl}]}\n"
                  "alpaca_eval: {instructions: ../data/bench.jsonl}\nhallucination: {documents: hf:org/docs:test}\n"
                  "heldout: {questions: {dev: ../data/bench.jsonl, test: /dev/null}}\n")
    monkeypatch.chdir(tmp_path / "data" / "docs")  # a working directory where none of these exist
    g = load_recipe(gen, GenerateRecipe)
    data = tmp_path / "data"
    assert g.input == str(data / "docs") and g.skills == ["tool_use", str(data / "my_skill.yaml")]
    assert g.gates.decontamination.eval_files == [str(data / "bench.jsonl")]
    assert g.gates.dedup.against == [str(data / "*.jsonl")]
    assert g.output == "out"  # outputs stay relative to the working directory
    e = load_recipe(ev, EvalRecipe)
    assert e.lm_eval.tasks[0].local == e.alpaca_eval.instructions == str(data / "bench.jsonl")
    assert e.hallucination.documents == "hf:org/docs:test"  # a Hub dataset is not a path
    assert e.heldout.questions == {"dev": str(data / "bench.jsonl"), "test": "/dev/null"}  # absolute stays


@pytest.mark.parametrize(("text", "key"), [
    ("input: nowhere\n", "input"),
    ("input: 'nowhere/*.md'\n", "input"),  # a glob must match something
    ("skills: [tool_use, mine.yaml]\n", "skills.1"),
    ("gates: {decontamination: {eval_recipes: [../eval.yaml]}}\n", "gates.decontamination.eval_recipes.0"),
])
def test_missing_input_path_is_one_line_naming_recipe_and_key(tmp_path, text, key):
    p = write(tmp_path, text if text.startswith("skills") else "skills: [tool_use]\n" + text)
    with pytest.raises(RecipeError) as err:
        load_recipe(p, GenerateRecipe)
    msg = str(err.value)
    assert msg.startswith(f"{p}: {key}: path {tmp_path.parent if '..' in text else tmp_path}/") and "does not exist" in msg
    assert "\n" not in msg


def test_missing_eval_and_pipeline_paths_are_errors(tmp_path):
    from agentinstruct.evaluate.config import EvalRecipe

    from agentinstruct.pipeline import PipelineRecipe

    ev = write(tmp_path, "heldout: {questions: q.jsonl}\n")
    with pytest.raises(RecipeError, match=r"r.yaml: heldout.questions.test: path .*/q.jsonl does not exist"):
        load_recipe(ev, EvalRecipe)
    pipe = write(tmp_path, "name: p\noutput_dir: o\ngenerate: {recipe: g.yaml}\ntrain: {recipe: /dev/null}\n"
                 "evaluate: {recipe: /dev/null}\n")
    with pytest.raises(RecipeError, match=r"r.yaml: generate.recipe: path .*/g.yaml does not exist"):
        load_recipe(pipe, PipelineRecipe)


def test_models_built_in_code_keep_their_paths():
    """No recipe file, no folder to resolve against: the caller's paths are used as given."""
    assert GenerateRecipe(skills=["tool_use"], input="some/where").input == "some/where"


def test_defaults_point_at_shipped_data_from_any_cwd(tmp_path, monkeypatch, repo):
    from agentinstruct.evaluate.config import HallucinationSection

    from agentinstruct.resources import data_path

    monkeypatch.chdir(tmp_path)
    g = GenerateRecipe(skills=["tool_use"])
    assert g.input == str(data_path("examples", "docs")) and (repo / "examples" / "docs").samefile(g.input)
    [fixtures] = g.gates.decontamination.eval_recipes
    assert (repo / "recipes" / "eval" / "fixtures-cpu.yaml").samefile(fixtures)
    assert (repo / "examples" / "docs").samefile(HallucinationSection().documents)


def test_cli_input_override_is_relative_to_the_cwd(tmp_path, monkeypatch):
    from agentinstruct.generate.runner import load_generate_recipe

    (tmp_path / "docs").mkdir()
    (tmp_path / "recipes").mkdir()
    p = write(tmp_path / "recipes", "skills: [tool_use]\n")
    monkeypatch.chdir(tmp_path)
    assert load_generate_recipe(p, input="docs").input == str(tmp_path / "docs")
    assert load_generate_recipe(p, input="hf:org/name").input == "hf:org/name"
    p.write_text("skills: [tool_use]\ninput: docs\n")  # the same word in the recipe: next to the recipe
    with pytest.raises(RecipeError, match="input: path .*/recipes/docs does not exist"):
        load_generate_recipe(p)


def test_every_shipped_recipe_loads_from_a_foreign_cwd(tmp_path, monkeypatch, repo):
    """The shipped generate/eval/pipeline recipes resolve their inputs against themselves."""
    from agentinstruct.evaluate.suite import load_eval_recipe
    from agentinstruct.generate.runner import load_generate_recipe

    from agentinstruct.pipeline import load_pipeline_recipe

    monkeypatch.chdir(tmp_path)
    recipes = repo / "recipes"
    for path in sorted((recipes / "generate").glob("*.yaml")):
        g = load_generate_recipe(path)
        assert Path(g.input).is_dir() and all(Path(p).is_file() for p in g.gates.decontamination.eval_recipes)
    for path in sorted((recipes / "eval").glob("*.yaml")):
        e = load_eval_recipe(path)
        assert all(Path(t.local).is_file() for t in e.lm_eval.tasks if t.local)
    demo = load_pipeline_recipe(recipes / "pipeline" / "demo-cpu.yaml")
    assert Path(demo.generate.recipe) == recipes / "generate" / "demo-embedded.yaml"
    assert Path(demo.train.recipe) == recipes / "smollm2-135m" / "sft" / "config_lora.yaml"
    assert Path(demo.evaluate.recipe) == recipes / "eval" / "demo-cpu.yaml"
    for path in sorted((recipes / "pipeline").glob("*.yaml")):
        p = load_pipeline_recipe(path)
        assert all(Path(s.recipe).is_file() for s in (p.generate, p.train, p.evaluate))


def test_chat_template_file_is_relative_to_the_training_recipe(tmp_path, monkeypatch):
    from agentinstruct.train.chat_templates import TemplateError, load_template

    (tmp_path / "t.jinja").write_text("{% generation %}{{ m }}{% endgeneration %}")
    monkeypatch.chdir(tmp_path.parent)
    assert "{% generation %}" in load_template("t.jinja", tmp_path)
    assert "{% generation %}" in load_template("smollm2_chatml", tmp_path)  # a name: the shipped file
    with pytest.raises(TemplateError, match="not found"):
        load_template("t.jinja")  # without the recipe's folder: the working directory


def test_pipeline_passes_the_sft_recipes_template_file_on_absolute(tmp_path, monkeypatch, repo):
    """The derived training recipe lives under output_dir, so a template path next to the SFT
    recipe is made absolute; the launch itself is replaced (no training here)."""
    import subprocess

    import yaml

    from agentinstruct.pipeline import Pipeline, load_pipeline_recipe

    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "t.jinja").write_text("{% generation %}x{% endgeneration %}")
    sft = yaml.safe_load((repo / "recipes/smollm2-135m/sft/config_lora.yaml").read_text())
    (tmp_path / "cfg" / "sft.yaml").write_text(yaml.safe_dump({**sft, "chat_template": "t.jinja"}))
    pipe = write(tmp_path, f"name: p\noutput_dir: out\ngenerate: {{recipe: {repo}/recipes/generate/demo-embedded.yaml}}\n"
                 "train: {recipe: cfg/sft.yaml}\nevaluate: {recipe: /dev/null}\n")
    monkeypatch.chdir(tmp_path)
    launched = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: launched.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    Pipeline(load_pipeline_recipe(pipe), show_progress=False).train("upstream")
    derived = yaml.safe_load((tmp_path / "out" / "train_recipe.yaml").read_text())
    assert derived["chat_template"] == str(tmp_path / "cfg" / "t.jinja") and launched
