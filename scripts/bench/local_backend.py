#!/usr/bin/env python
"""The transformers backend on the embedded model: completion tokens/s one request at a time
(batch 1) against the engine's batching (many requests in flight, ``batch_size`` rows per
``generate()``), and what the changes of the throughput work save per call in the demo's
generation stage (JSON-schema validation, call-cache writes, journal fsync), each measured
before/after in the same command and set against the model's own time per call.

    python scripts/bench/local_backend.py                  # 16 prompts x 48 tokens, batch 8
    python scripts/bench/local_backend.py --prompts 32 --tokens 64 --batch 16
    python scripts/bench/local_backend.py --smoke          # 2 prompts x 4 tokens (the test suite)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from common import load_average

PROMPTS = ["Name one use of a kiln.", "What does a harbour master do?", "Describe an oak tree.",
           "Why do bakers proof dough?", "What is a survey?", "How do eels migrate?",
           "What is a lantern for?", "What makes glass clear?"]


async def generate_all(model, prompts: list[str], tokens: int, concurrent: bool) -> tuple[float, int]:
    t0 = time.perf_counter()
    calls = [model.chat([{"role": "user", "content": p}], max_tokens=tokens) for p in prompts]
    if concurrent:
        done = await asyncio.gather(*calls)
    else:
        done = [await c for c in calls]
    return time.perf_counter() - t0, sum(c.usage.completion_tokens for c in done)


def bench_model(args: argparse.Namespace) -> float:
    """Prints batch 1 vs batched tokens/s; returns the batched seconds per call."""
    from agentinstruct.llm import ModelSpec, create_model

    prompts = [PROMPTS[i % len(PROMPTS)] + f" ({i})" for i in range(args.prompts)]
    one = create_model(ModelSpec(batch_size=1, batch_wait_ms=0))
    asyncio.run(generate_all(one, prompts[:1], 2, concurrent=False))  # warm-up: load, first kernels
    s1, n1 = asyncio.run(generate_all(one, prompts, args.tokens, concurrent=False))
    one.spec = one.spec.model_copy(update={"batch_size": args.batch, "batch_wait_ms": 20.0})  # same weights
    sb, nb = asyncio.run(generate_all(one, prompts, args.tokens, concurrent=True))
    print(f"embedded model, {len(prompts)} prompts x {args.tokens} tokens max, temperature 0:")
    print(f"  batch 1 (one request at a time): {n1} tokens in {s1:.1f} s = {n1 / s1:.1f} tokens/s")
    print(f"  engine batching (all in flight, batch_size {args.batch}): {nb} tokens in {sb:.1f} s = "
          f"{nb / sb:.1f} tokens/s; speed-up {(nb / sb) / (n1 / s1):.2f}x")
    return sb / len(prompts)


def per_call_savings(reps: int) -> dict[str, tuple[float, float]]:
    """(before ms, after ms) per call of each piece this work changed."""
    import jsonschema
    from agentinstruct.generate.journal import Journal

    from agentinstruct.cache import CallCache
    from agentinstruct.llm.base import Completion, Usage
    from agentinstruct.llm.structured import boolean_schema, validation_error
    from agentinstruct.testing import value_for_schema

    schemas = [boolean_schema("answerable"),
               {"type": "object", "properties": {"task": {"type": "string", "minLength": 1}},
                "required": ["task"], "additionalProperties": False}]
    values = [value_for_schema(s, "x") for s in schemas]
    out: dict[str, tuple[float, float]] = {}

    def timed(fn) -> float:
        t0 = time.perf_counter()
        for i in range(reps):
            fn(i)
        return 1000 * (time.perf_counter() - t0) / reps

    out["JSON-schema validation"] = (
        timed(lambda i: jsonschema.validate(values[i % 2], schemas[i % 2])),
        timed(lambda i: validation_error(values[i % 2], schemas[i % 2])))
    work = Path(tempfile.mkdtemp(prefix="bench-local-"))
    completion = Completion(text="x" * 600, finish_reason="stop", usage=Usage(200, 150), model="m")
    cache, grouped = CallCache(work / "a.sqlite"), CallCache(work / "b.sqlite")  # apart: WAL checkpoints

    def put_now(i: int) -> None:  # before: one transaction a reply
        cache.put(f"a{i}", completion)
        cache.flush()

    async def put_grouped() -> float:  # after: the replies of a loop turn in one transaction
        t0 = time.perf_counter()
        for i in range(0, reps, 4):  # four replies in a turn (many more at high concurrency)
            for k in range(4):
                grouped.put(f"b{i + k}", completion)
            grouped.flush()  # what the end of the turn runs
        return 1000 * (time.perf_counter() - t0) / reps

    out["call-cache write"] = (timed(put_now), asyncio.run(put_grouped()))
    cache.close()
    grouped.close()
    rows = [{"key": "k", "split": "s", "row": {"messages": [{"role": "user", "content": "y" * 1500}]}}]
    journal = Journal(work / "r.jsonl", "h")

    with open(work / "before.jsonl", "a", encoding="utf-8") as fh:
        def append_fsync(i: int) -> None:  # before: write, flush and fsync on the event loop
            fh.write(json.dumps({"unit": f"u{i}", "records": rows, "stages": {"accepted": 1}}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

        before = timed(append_fsync)
    after = timed(lambda i: journal.append(f"v{i}", rows, {"accepted": 1}))
    journal.close()
    out["journal append (per unit)"] = (before, after)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=400, help="repetitions of each per-call micro-benchmark")
    ap.add_argument("--no-model", action="store_true",
                    help="only the per-call micro-benchmarks (no model load: seconds)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (the test suite)")
    args = ap.parse_args()
    if args.smoke:
        args.prompts, args.tokens, args.batch, args.reps = 2, 4, 2, 20
    print(f"load average {load_average()}")
    per_call_s = None if args.no_model else bench_model(args)
    savings = per_call_savings(args.reps)
    print("event-loop time, before -> after (same command):")
    for name, (b, a) in savings.items():
        print(f"  {name}: {b:.3f} ms -> {a:.3f} ms")
    # a call validates at most one JSON reply and writes one cache row; a unit (many calls)
    # appends one journal line: counted here as if every call ended a unit, an upper bound
    saved = sum(b - a for b, a in savings.values())
    if per_call_s is None:
        print(f"these changes save at most {saved:.2f} ms of event-loop time a call (model not run)")
        return
    print(f"demo generation stage: the model takes {1000 * per_call_s:.0f} ms a call (batched); "
          f"these changes save at most {saved:.2f} ms a call = a {1 + saved / (1000 * per_call_s):.3f}x "
          "speed-up at most (the stage is bound by the model's generate(), not the client)")
    print(json.dumps({"model_ms_per_call": round(1000 * per_call_s, 1),
                      "saved_ms_per_call": round(saved, 3)}))


if __name__ == "__main__":
    main()
