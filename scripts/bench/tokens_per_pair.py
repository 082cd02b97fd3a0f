#!/usr/bin/env python
"""Tokens and calls per accepted pair, per skill, and the share of prompt tokens that is a
prefix shared with another call (what a server's prefix cache can reuse), on a fixed recipe
against the scripted loopback server (deterministic replies, every gate on).

Each skill runs alone on the shipped example documents. The shared prefix of a call is its
longest common prefix (system turn, then user turn, as the server sees them) with any other
call of the run; tokens are the server's estimate (4 characters a token), as it reports usage.

    python scripts/bench/tokens_per_pair.py                        # every shipped skill, 6 seeds each
    python scripts/bench/tokens_per_pair.py --save before.json     # keep the figures ...
    python scripts/bench/tokens_per_pair.py --compare before.json  # ... and print before/after
    python scripts/bench/tokens_per_pair.py --smoke
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from common import DOCS, load_average

from agentinstruct.testing import FaultConfig, FaultServer

SKILLS = ["reading_comprehension", "text_modification", "tool_use", "open_domain_qa"]


def prompt_text(body: dict) -> str:
    """The prompt as a prefix-caching server sees it: the turns in order."""
    return "".join(f"<{m.get('role')}>{m.get('content', '')}" for m in body.get("messages", []))


def stage_of(body: dict) -> str:
    fmt = body.get("response_format") or {}
    name = (fmt.get("json_schema") or {}).get("name")
    return name or ("json" if fmt else "text")


def shared_prefix_chars(prompts: list[str]) -> list[int]:
    """For each prompt, the longest prefix it shares with any other prompt (sorted neighbours
    hold the longest common prefix)."""
    order = sorted(range(len(prompts)), key=prompts.__getitem__)

    def lcp(a: str, b: str) -> int:
        n = min(len(a), len(b))
        i = 0
        while i < n and a[i] == b[i]:
            i += 1
        return i

    shared = [0] * len(prompts)
    for k in range(len(order) - 1):
        i, j = order[k], order[k + 1]
        n = lcp(prompts[i], prompts[j])
        shared[i], shared[j] = max(shared[i], n), max(shared[j], n)
    return shared


def run_skill(skill: str, limit: int, work: Path) -> dict:
    import datasets
    from agentinstruct.generate.config import GenerateRecipe
    from agentinstruct.generate.engine import GenerationRun

    datasets.disable_progress_bars()
    with FaultServer(FaultConfig(record_bodies=True)) as server:
        recipe = GenerateRecipe(
            teacher={"backend": "openai", "base_url": server.base_url, "model": "fake", "max_concurrency": 16},
            input=str(DOCS), output=str(work / skill), skills=[skill], limit=limit,
            gates={"decontamination": {"eval_recipes": []}})
        summary = GenerationRun(recipe, show_progress=False, overwrite=True).run()
        bodies = [b for b in server.requests if "messages" in b]
    accepted = sum(summary.accepted(s) for s in summary.counts if not s.startswith("_"))
    prompts = [prompt_text(b) for b in bodies]
    shared = shared_prefix_chars(prompts)
    by_stage: Counter = Counter()
    stage_tokens: Counter = Counter()
    stage_shared: Counter = Counter()
    for b, p, sh in zip(bodies, prompts, shared):
        by_stage[stage_of(b)] += 1
        stage_tokens[stage_of(b)] += len(p) // 4
        stage_shared[stage_of(b)] += sh // 4
    per = max(accepted, 1)
    return {"accepted": accepted, "calls": len(bodies), "calls_per_pair": len(bodies) / per,
            "prompt_tokens_per_pair": summary.llm["prompt_tokens"] / per,
            "completion_tokens_per_pair": summary.llm["completion_tokens"] / per,
            "shared_prefix_share": sum(shared) / max(sum(len(p) for p in prompts), 1),
            "calls_by_stage": dict(by_stage.most_common()),
            "prompt_tokens_by_stage": dict(stage_tokens.most_common()),
            "shared_prefix_share_by_stage": {k: round(stage_shared[k] / max(n, 1), 2)
                                             for k, n in stage_tokens.most_common()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skills", nargs="+", default=SKILLS)
    ap.add_argument("--limit", type=int, default=6, help="seeds per skill")
    ap.add_argument("--save", type=Path, help="write the figures to this JSON file")
    ap.add_argument("--compare", type=Path, help="a --save file from before: print before/after")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (the test suite)")
    args = ap.parse_args()
    if args.smoke:
        args.skills, args.limit = ["text_modification"], 1
    print(f"load average {load_average()}")
    before = json.loads(args.compare.read_text()) if args.compare else {}
    work = Path(tempfile.mkdtemp(prefix="bench-tokens-"))
    results = {}
    try:
        for skill in args.skills:
            results[skill] = r = run_skill(skill, args.limit, work)
            print(f"{skill}: {r['accepted']} accepted pairs from {r['calls']} calls = "
                  f"{r['calls_per_pair']:.2f} calls/pair; tokens/pair prompt {r['prompt_tokens_per_pair']:.0f}, "
                  f"completion {r['completion_tokens_per_pair']:.0f}; shared-prefix share of prompt tokens "
                  f"{r['shared_prefix_share']:.2f}")
            print(f"  calls by stage: {r['calls_by_stage']}")
            print(f"  prompt tokens by stage: {r['prompt_tokens_by_stage']}")
            print(f"  shared-prefix share by stage: {r['shared_prefix_share_by_stage']}")
            if skill in before:
                b = before[skill]
                print(f"  before -> after: accepted {b['accepted']} -> {r['accepted']}, calls/pair "
                      f"{b['calls_per_pair']:.2f} -> {r['calls_per_pair']:.2f}, prompt tokens/pair "
                      f"{b['prompt_tokens_per_pair']:.0f} -> {r['prompt_tokens_per_pair']:.0f} "
                      f"({r['prompt_tokens_per_pair'] / max(b['prompt_tokens_per_pair'], 1):.2f}x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.save:
        args.save.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
