"""Document-grounded held-out QA: closed-book questions on facts of the seed documents, written
by hand for this purpose (``examples/heldout/questions.jsonl``). A reply is correct when it
contains one of the accepted answers (normalised). Accuracy comes with an exact
(Clopper-Pearson) 95% interval; base vs tuned differences get a paired bootstrap interval."""

from __future__ import annotations

import asyncio
import json
import random
import re
from pathlib import Path
from typing import Any

from agentinstruct.evaluate.config import HeldoutSection
from scipy.stats import beta

from agentinstruct.llm import ChatModel, LLMError, conversation


def normalise(text: str) -> str:
    text = text.lower().replace("°", " degrees ")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 12,000 -> 12000
    return " ".join(re.findall(r"[a-z0-9]+", text))


def is_correct(reply: str, answers: list[str]) -> bool:
    r = f" {normalise(reply)} "
    return any(f" {normalise(a)} " in r for a in answers)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def paired_bootstrap(base: list[int], tuned: list[int], iters: int = 10000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:
    """Mean difference (tuned - base) and its percentile bootstrap interval over questions."""
    diffs = [t - b for b, t in zip(base, tuned)]
    n = len(diffs)
    rng = random.Random(seed)
    stats = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(iters))
    a = (1 - level) / 2
    return sum(diffs) / n, stats[int(a * iters)], stats[min(iters - 1, int((1 - a) * iters))]


def load_questions(path: str) -> list[dict[str, Any]]:
    rows = [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]
    for i, r in enumerate(rows):
        if not r.get("question") or not r.get("answers"):
            raise ValueError(f"{path}: row {i}: needs 'question' and 'answers'")
    return rows


def run_heldout(cfg: HeldoutSection, model: ChatModel, out_dir: Path, notes: list[str]) -> dict[str, dict[str, Any]]:
    rows = load_questions(cfg.questions)
    convos = [conversation(cfg.system, r["question"]) for r in rows]
    outs = asyncio.run(model.chat_batch(convos, max_tokens=cfg.max_tokens, temperature=0.0))
    replies = [o.text if not isinstance(o, LLMError) else "" for o in outs]
    correct = [int(is_correct(rep, r["answers"])) for rep, r in zip(replies, rows)]
    k, n = sum(correct), len(correct)
    lo, hi = clopper_pearson(k, n)
    samples = out_dir / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    with open(samples / "heldout.jsonl", "w", encoding="utf-8") as fh:
        for r, rep, c in zip(rows, replies, correct):
            fh.write(json.dumps({**r, "reply": rep, "correct": c}, ensure_ascii=False) + "\n")
    return {"held-out accuracy": {"value": k / n, "stderr": None, "ci95": [lo, hi], "metric": "accuracy",
                                  "n": n, "correct": correct, "benchmark": "Held-out (documents)"}}
