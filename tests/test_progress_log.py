"""Progress where people look: generate writes periodic progress lines when its console is not a
terminal (a log file, CI, Slurm), and keeps rich's live display on a terminal. The teacher is the
scripted OpenAI-compatible test server (tests/fake_openai.py), slowed so the run spans several
intervals."""

import io
import re

import yaml
from agentinstruct.generate.progress import ProgressLog
from agentinstruct.generate.runner import load_generate_recipe, run_generate
from fake_openai import FakeOpenAIServer
from rich.console import Console

LINE = re.compile(r"progress generate: seeds (\d+) of ~(\d+), accepted (\d+), calls (\d+), "
                  r"[\d.]+ seeds/s, [\d.]+ calls/s, (ETA \S+|done)")


def run_with_console(tmp_path, repo, console: Console, name: str) -> str:
    with FakeOpenAIServer(delay=0.03) as server:
        data = {"teacher": {"backend": "openai", "base_url": server.base_url, "model": "fake-teacher",
                            "max_concurrency": 4, "backoff_base_s": 0.01},
                "input": str(repo / "examples" / "docs"), "output": str(tmp_path / name),
                "skills": ["text_modification"], "limit": 3, "progress_interval_s": 0.2,
                "gates": {"decontamination": {"enabled": False}}}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        run_generate(load_generate_recipe(path), console=console, show_progress=True)
    return console.file.getvalue()


def test_log_file_gets_periodic_progress_lines(tmp_path, repo):
    log = run_with_console(tmp_path, repo, Console(file=io.StringIO(), force_terminal=False, width=200), "log")
    lines = [m for m in (LINE.search(line) for line in log.splitlines()) if m]
    assert len(lines) >= 2, log
    assert all(int(m.group(2)) == 3 for m in lines)  # the total: the recipe's limit
    assert any(m.group(5).startswith("ETA") for m in lines[:-1])
    final = lines[-1]
    assert final.group(5) == "done" and int(final.group(1)) == 3 and int(final.group(4)) > 0
    assert int(final.group(3)) > 0  # pairs accepted
    counts = [int(m.group(4)) for m in lines]
    assert counts == sorted(counts)  # calls only grow


def test_terminal_keeps_the_live_display(tmp_path, repo):
    out = run_with_console(tmp_path, repo, Console(file=io.StringIO(), force_terminal=True, width=200), "tty")
    assert "progress generate:" not in out
    assert "seeds" in out and "accepted" in out  # rich's bars


def test_eta_from_the_documents_read_without_a_limit():
    log = ProgressLog("generate", 1.0, calls=lambda: 10, documents=lambda: (1, 4))
    log.counts["seeds"] = 5
    assert "ETA 0m30s" in log.line(10.0)  # a quarter of the documents in 10 s: 30 s to go
    assert "ETA unknown" in ProgressLog("generate", 1.0).line(5.0)


def test_evaluate_prints_one_line_per_finished_part(tmp_path, capsys):
    """A scripted chat model (no LLM): the held-out part runs, then is reused by a rerun."""
    import json

    from agentinstruct.evaluate.config import EvalRecipe
    from agentinstruct.evaluate.suite import run_eval

    from agentinstruct.llm import ChatModel, Completion, ModelSpec

    class Blue(ChatModel):
        name = "blue"

        async def chat(self, messages, **kw):
            return Completion("It is blue.", "stop")

    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"question": f"Question {i}?", "answers": ["blue"]}) + "\n"
                                 for i in range(3)))
    recipe = EvalRecipe.model_validate({"name": "s", "output_dir": str(tmp_path), "lm_eval": {"enabled": False},
                                        "heldout": {"questions": {"test": str(questions)}}})
    for _ in range(2):
        run_eval(recipe, ModelSpec(), run_name="r", chat_model=Blue())
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("progress evaluate:")]
    assert [x.split(" (")[0] for x in lines] == ["progress evaluate: part heldout done",
                                                 "progress evaluate: part heldout reused"]
