"""Document-grounded held-out QA: closed-book questions on facts of the seed documents, written
by hand for this purpose (``examples/heldout/{dev,test}.jsonl``), in named parts: the ``report``
part (``test``) is the held-out result; the others (``dev``) are the sets settings were tuned on,
shown labelled as such. A reply is correct when it contains one of the accepted answers
(normalised). Accuracy comes with an exact (Clopper-Pearson) 95% interval; base vs tuned
differences get a paired bootstrap interval."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from agentinstruct.evaluate.config import HeldoutSection
from agentinstruct.evaluate.stats import clopper_pearson, paired_bootstrap, per_item  # noqa: F401 - re-exported

from agentinstruct.llm import ChatModel, LLMError, conversation
from agentinstruct.text import normalise as normalise_text


def normalise(text: str) -> str:
    """The shared normaliser (any script, accents kept) after the held-out answers' own rules."""
    text = text.replace("°", " degrees ")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 12,000 -> 12000
    return normalise_text(text)


def is_correct(reply: str, answers: list[str]) -> bool:
    r = f" {normalise(reply)} "
    return any(f" {normalise(a)} " in r for a in answers)


def load_questions(path: str, part: str | None = None) -> list[dict[str, Any]]:
    """The rows of one part; a bad line raises ``ValueError("PATH:LINE: why")``. A row's ``split``,
    when given, must name ``part`` (so a dev file cannot be reported as the test part)."""
    rows = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
        answers = row.get("answers") if isinstance(row, dict) else None
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not row["question"].strip() \
                or not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a for a in answers):
            raise ValueError(f"{path}:{lineno}: needs 'question' (text) and 'answers' (a non-empty list of strings)")
        if part is not None and row.get("split", part) != part:
            raise ValueError(f"{path}:{lineno}: split {row['split']!r}, but the file is held-out part {part!r}")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no questions")
    return rows


def score_name(part: str) -> str:
    return f"held-out accuracy ({part})"


def run_heldout(cfg: HeldoutSection, model: ChatModel, out_dir: Path, notes: list[str]) -> dict[str, dict[str, Any]]:
    """One accuracy per part. A failed call counts as a wrong answer (accuracy is over every
    question asked) and is counted in ``failed``, marked in the samples and noted."""
    parts = {part: load_questions(path, part) for part, path in cfg.questions.items()}  # all checked first
    scores: dict[str, dict[str, Any]] = {}
    samples = out_dir / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    convos = [conversation(cfg.system, r["question"]) for rows in parts.values() for r in rows]
    every = asyncio.run(model.chat_batch(convos, max_tokens=cfg.max_tokens, temperature=0.0))  # one batch
    start = 0
    with open(samples / "heldout.jsonl", "w", encoding="utf-8") as fh:
        for part, rows in parts.items():
            outs, start = every[start:start + len(rows)], start + len(rows)
            errors = [str(o) if isinstance(o, LLMError) else None for o in outs]
            replies = [o.text if not isinstance(o, LLMError) else "" for o in outs]
            correct = [int(e is None and is_correct(rep, r["answers"])) for rep, e, r in zip(replies, errors, rows)]
            k, n, failed = sum(correct), len(correct), sum(e is not None for e in errors)
            role = "test" if part == cfg.report else "dev"
            for r, rep, c, e in zip(rows, replies, correct, errors):
                fh.write(json.dumps({**r, "part": part, "reply": rep, "correct": c, "failed": e is not None,
                                     **({"error": e} if e else {})}, ensure_ascii=False) + "\n")
            if failed:
                first = next(e for e in errors if e)
                notes.append(f"held-out ({part}): {failed} of {n} calls failed and count as wrong answers "
                             f"(first error: {first[:160]})")
            scores[score_name(part)] = {
                "value": k / n, "stderr": None, "metric": "accuracy", "failed": failed,
                **per_item(correct, [r["question"] for r in rows], "proportion"),  # n, ci95, items
                "correct": correct, "part": part, "role": role, "source": cfg.questions[part],
                "benchmark": "Held-out (documents)" if role == "test" else "Held-out (documents, tuning set)"}
    return scores
