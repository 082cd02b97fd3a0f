#!/usr/bin/env python
"""Adaptive concurrency (``max_concurrency: auto``, AIMD) against a server that answers 429
above its concurrency cap, and a cap that changes mid-run.

Baseline, in the same command: a client whose ``max_concurrency`` is hand-set to exactly the
cap (the best a fixed limit can do, knowing the cap). The adaptive client starts from its
``initial_concurrency`` and knows nothing; after the warm-up (the issue's "first minute") it
should serve >= 0.9 of the baseline's throughput with < 5% of requests answered 429, then
follow the cap up (x2) and down (/4).

    python scripts/bench/adaptive_concurrency.py                 # cap 32, 0.5 s latency, 60 s warm-up
    python scripts/bench/adaptive_concurrency.py --cap 64 --warmup 30 --measure 60
    python scripts/bench/adaptive_concurrency.py --smoke         # seconds (the test suite)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from common import load_average

from agentinstruct.llm import ModelSpec, create_model
from agentinstruct.testing import FaultConfig, FaultServer

MSG = [{"role": "user", "content": "Say something about the harbour."}]


class Phase:
    def __init__(self, name: str, cap: int, seconds: float, measured_from: float):
        self.name, self.cap, self.seconds, self.measured_from = name, cap, seconds, measured_from
        self.replies = 0
        self.requests = 0
        self.rejected = 0
        self.limits: list[int] = []


async def drive(server: FaultServer, spec: ModelSpec, phases: list[Phase], workers: int) -> None:
    """Keep ``workers`` callers busy; per phase, count replies and 429s after its warm-up."""
    model = create_model(spec)
    stop = False
    replies = 0

    async def worker() -> None:
        nonlocal replies
        while not stop:
            await model.chat(MSG, max_tokens=16)
            replies += 1

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    for phase in phases:
        server.config.max_in_flight = phase.cap
        start = time.monotonic()
        base = None
        while (now := time.monotonic()) - start < phase.seconds:
            await asyncio.sleep(0.1)
            if model.slots is not None:
                phase.limits.append(model.slots.limit)
            if base is None and now - start >= phase.measured_from:
                base = (replies, server.counters.requests, server.counters.by_outcome["over_capacity"], now)
        if base is None:
            base = (replies, server.counters.requests, server.counters.by_outcome["over_capacity"], start)
        window = time.monotonic() - base[3]
        phase.replies = replies - base[0]
        phase.requests = server.counters.requests - base[1]
        phase.rejected = server.counters.by_outcome["over_capacity"] - base[2]
        phase.rate = phase.replies / window if window > 0 else 0.0  # type: ignore[attr-defined]
        phase.limits = phase.limits[len(phase.limits) // 2:]  # its settled half
    stop = True
    await asyncio.gather(*tasks)
    await model.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cap", type=int, default=32, help="the server's concurrency cap")
    ap.add_argument("--latency", type=float, default=0.5, help="median latency, seconds")
    ap.add_argument("--sigma", type=float, default=0.3)
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before measuring")
    ap.add_argument("--measure", type=float, default=30.0, help="seconds measured per phase")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (the test suite)")
    args = ap.parse_args()
    if args.smoke:
        args.cap, args.latency, args.warmup, args.measure = 4, 0.05, 1.0, 1.0
    cfg = FaultConfig(latency_median_s=args.latency, latency_sigma=args.sigma, max_in_flight=args.cap,
                      retry_after_s=0.05, record_bodies=False)
    base = dict(backend="openai", model="fake", timeout_s=60, max_retries=100, backoff_base_s=0.02,
                backoff_max_s=0.5)
    workers = 4 * args.cap * 2  # demand above every cap of the run
    print(f"load average {load_average()}")
    with FaultServer(cfg) as server:
        fixed = [Phase("fixed", args.cap, args.measure, 0.0)]
        asyncio.run(drive(server, ModelSpec(**base, base_url=server.base_url, max_concurrency=args.cap),
                          fixed, workers))
    with FaultServer(cfg) as server:
        auto = [Phase("steady", args.cap, args.warmup + args.measure, args.warmup),
                Phase("cap x2", 2 * args.cap, 2 * args.measure, args.measure),
                Phase("cap /4", max(1, args.cap // 4), 2 * args.measure, args.measure)]
        spec = ModelSpec(**base, base_url=server.base_url, max_concurrency="auto", initial_concurrency=2)
        asyncio.run(drive(server, spec, auto, workers))
    f = fixed[0]
    print(f"cap {args.cap}, latency median {args.latency} s (sigma {args.sigma}); {workers} callers")
    print(f"  baseline, max_concurrency={args.cap} (hand-set to the cap): {f.rate:.1f} replies/s, "
          f"429 share {f.rejected / max(f.requests, 1):.3f}")
    for p in auto:
        share = p.rejected / max(p.requests, 1)
        ratio = p.rate / f.rate * args.cap / p.cap if f.rate else float("nan")  # type: ignore[attr-defined]
        print(f"  auto, {p.name} (cap {p.cap}): {p.rate:.1f} replies/s = {ratio:.2f} of the cap's "  # type: ignore[attr-defined]
              f"throughput (baseline scaled to the cap), 429 share {share:.3f}, limit median "
              f"{statistics.median(p.limits) if p.limits else 0:.0f} (settled half of the phase)")
    s = auto[0]
    ok = f.rate and s.rate / f.rate >= 0.9 and s.rejected / max(s.requests, 1) < 0.05  # type: ignore[attr-defined]
    print(f"target (>= 0.9 of the cap's throughput, < 5% 429 after the warm-up): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
