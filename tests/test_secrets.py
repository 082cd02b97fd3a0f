"""No secret of the environment reaches a file, a log line or a card (issue 13).

The teacher is the scripted fake server (tests/fake_openai.py); its free-text answers carry
Python blocks that try to steal OPENAI_API_KEY and HF_TOKEN (the environment, the parent's
``/proc/<pid>/environ``, a scan of ``/proc``) and print them or raise with them, so they land
in ``reject_reason`` unless the sandbox stops them."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fake_openai import FakeOpenAIServer, default_responder

from agentinstruct.redact import REDACTED
from agentinstruct.sandbox import detect_isolation

THEFT = """Check it by running this:
```python
import os
found = [os.environ.get("OPENAI_API_KEY", ""), os.environ.get("HF_TOKEN", "")]
for pid in ["self", "1", str(os.getppid()), "{cli_pid}"] + [str(p) for p in range(2, 4096)]:
    try:
        found.append(open("/proc/" + pid + "/environ").read())
    except OSError:
        pass
print(found)
{tail}
```
"""


def thief(cli: dict[str, int]):
    """Free-text answers steal; every third one raises with the loot (its reason is saved)."""
    n = {"calls": 0}

    def respond(body: dict) -> str:
        if body.get("response_format"):
            return default_responder(body)
        n["calls"] += 1
        tail = "raise RuntimeError('loot: ' + ' '.join(found))" if n["calls"] % 3 == 0 else "print('done')"
        return THEFT.format(cli_pid=cli.get("pid", 1), tail=tail)

    return respond


def _tiny_heldout(tmp_path: Path, repo: Path) -> dict[str, str]:
    parts = {}
    for part in ("dev", "test"):
        lines = (repo / f"examples/heldout/{part}.jsonl").read_text().splitlines()[:2]
        (tmp_path / f"{part}.jsonl").write_text("\n".join(lines) + "\n")
        parts[part] = str(tmp_path / f"{part}.jsonl")
    return parts


def _files_with(root: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{path}: {n.decode()}" for n in needles if n in data]
    return hits


def _recipes(tmp_path: Path, repo: Path, base_url: str) -> tuple[Path, Path]:
    eval_recipe = tmp_path / "eval.yaml"
    eval_recipe.write_text(yaml.safe_dump({
        "name": "tiny", "lm_eval": {"enabled": False},
        "heldout": {"questions": _tiny_heldout(tmp_path, repo), "max_tokens": 8}}))
    gen = tmp_path / "gen.yaml"
    gen.write_text(yaml.safe_dump({
        "teacher": {"backend": "openai", "base_url": base_url, "model": "fake", "api_key_env": "OPENAI_API_KEY"},
        "input": str(repo / "examples/docs"), "skills": ["reading_comprehension"], "limit": 2,
        "output": str(tmp_path / "gen"),
        "gates": {"decontamination": {"eval_recipes": [str(eval_recipe)], "cache_dir": str(tmp_path / "cache")}}}))
    return gen, eval_recipe


class SecretEnv:
    """Runs CLI commands in processes whose environment holds the secrets from the start (so
    their /proc/<pid>/environ has them), as a user's shell would; keeps all they print."""

    def __init__(self, cli: dict[str, int]):
        self.key, self.token = "oaikey" + secrets.token_hex(16), "hubtok" + secrets.token_hex(16)
        self.env = {**os.environ, "OPENAI_API_KEY": self.key, "HF_TOKEN": self.token}
        self.cli, self.output = cli, ""

    def run(self, *args: str) -> None:
        cmd = [str(Path(sys.executable).parent / "agentinstruct"), "-v", *args]
        proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.cli["pid"] = proc.pid
        out, _ = proc.communicate(timeout=900)
        self.output += out
        assert proc.returncode == 0, out[-3000:]

    def assert_nowhere(self, root: Path, server: FakeOpenAIServer) -> None:
        assert server.headers[0].get("authorization") == f"Bearer {self.key}"  # the key was in use
        assert _files_with(root, [self.key.encode(), self.token.encode()]) == []
        assert self.key not in self.output and self.token not in self.output


def _assert_theft_was_rejected(records: Path) -> None:
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert any("sandbox: code fails: RuntimeError: loot" in json.dumps(r) for r in rows), \
        "the stealing code ran, found nothing and was rejected with its empty loot as the reason"


@pytest.mark.skipif(detect_isolation() == "none", reason="no namespace isolation: the gate refuses to run")
def test_no_secret_in_any_file_or_log_after_generate_evaluate_report(tmp_path, repo):
    """generate (a teacher whose code tries to steal), evaluate (the fake server as the model)
    and report, each as `agentinstruct -v ...`; then every file and every printed line is
    searched for the two secrets."""
    cli: dict[str, int] = {}
    sec = SecretEnv(cli)
    with FakeOpenAIServer(thief(cli)) as server:
        gen, eval_recipe = _recipes(tmp_path, repo, server.base_url)
        sec.run("generate", "-r", str(gen), "--no-progress")
        for name in ("base", "tuned"):
            sec.run("evaluate", "--config", str(eval_recipe), "--model", f"openai:{server.base_url}:fake",
                    "--api-key-env", "OPENAI_API_KEY", "--name", name, "--output-dir", str(tmp_path / "eval"))
        sec.run("report", str(tmp_path / "eval" / "base"), str(tmp_path / "eval" / "tuned"),
                "--output", str(tmp_path / "report"))
    assert "tool gate sandbox: isolation" in sec.output
    _assert_theft_was_rejected(tmp_path / "gen" / "records.jsonl")
    assert (tmp_path / "gen" / "dataset" / "README.md").exists() and (tmp_path / "report" / "report.md").exists()
    sec.assert_nowhere(tmp_path, server)


@pytest.mark.slow  # reason: trains and evaluates the embedded model (3 loads): 4-6 min on 2 busy cores
@pytest.mark.skipif(detect_isolation() == "none", reason="no namespace isolation: the gate refuses to run")
def test_no_secret_in_any_file_log_or_card_after_the_closed_loop(tmp_path, repo):
    """`agentinstruct -v pipeline`: generate -> train (1 step) -> evaluate base and tuned -> report."""
    cli: dict[str, int] = {}
    sec = SecretEnv(cli)
    with FakeOpenAIServer(thief(cli)) as server:
        gen, eval_recipe = _recipes(tmp_path, repo, server.base_url)
        pipe = tmp_path / "pipe.yaml"
        pipe.write_text(yaml.safe_dump({
            "name": "secrets", "output_dir": str(tmp_path / "run"), "generate": {"recipe": str(gen)},
            "train": {"recipe": str(repo / "recipes/smollm2-135m/sft/config_lora.yaml"),
                      "args": ["--max_steps", "1", "--max_length", "256", "--per_device_train_batch_size", "2",
                               "--save_steps", "1"]},
            "evaluate": {"recipe": str(eval_recipe)}}))
        sec.run("pipeline", "--config", str(pipe), "--no-progress")
    run = tmp_path / "run"
    _assert_theft_was_rejected(run / "generate" / "records.jsonl")
    assert (run / "train" / "trainer_state.json").exists() and (run / "report").is_dir()
    sec.assert_nowhere(tmp_path, server)


def test_rows_are_redacted_before_the_journal(tmp_path, monkeypatch, repo):
    """Defence in depth: even a gate that leaks a secret into reject_reason (as the old sandbox
    did) cannot get it into the journal, a split or the card. Uses the scripted fake server."""
    from agentinstruct.generate.config import GenerateRecipe
    from agentinstruct.generate.engine import GenerationRun

    key = "oaikey" + secrets.token_hex(16)
    monkeypatch.setenv("OPENAI_API_KEY", key)

    class LeakyGate:
        name = "leaky"

        async def check(self, record, seed):
            return f"found {os.environ['OPENAI_API_KEY']}" if len(record.messages[-1].content) % 2 else None

    with FakeOpenAIServer() as server:
        recipe = GenerateRecipe.model_validate({
            "teacher": {"backend": "openai", "base_url": server.base_url, "model": "fake",
                        "api_key_env": "OPENAI_API_KEY"},
            "input": str(repo / "examples/docs"), "output": str(tmp_path / "out"),
            "skills": ["open_domain_qa"], "limit": 3})
        GenerationRun(recipe, show_progress=False, record_gates=[LeakyGate()], row_gates=[]).run()
    journal = (tmp_path / "out" / "records.jsonl").read_text()
    assert f"found {REDACTED}" in journal
    assert _files_with(tmp_path, [key.encode()]) == []
