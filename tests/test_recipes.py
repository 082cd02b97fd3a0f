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
