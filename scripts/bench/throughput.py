#!/usr/bin/env python
"""Generation throughput against the physical ceiling C / mean latency.

A full ``generate`` run (reading comprehension, refinement on, every gate on) against the
loopback fault server (lognormal latency, its own process), and, in the same command, a bare
``AsyncOpenAI`` + semaphore client on the aiohttp transport (the SDK's default pool) as the
baseline. Rates are over the active window (5th to 95th percentile of reply times), so the
ramp-up and the drain of the last sequential steps count for neither client.

    python scripts/bench/throughput.py                      # C = 64, 256, 1024 (>= 32 x C requests each)
    python scripts/bench/throughput.py --levels 64 --latency 0.5
    python scripts/bench/throughput.py --smoke              # seconds: tiny sizes, for the test suite
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from common import ReplyClock, active_rate, load_average, lognormal_mean, loopback_server, write_corpus


def run_generate_once(base_url: str, concurrency: int, n_docs: int, work: Path, args: argparse.Namespace) -> dict:
    import datasets
    from agentinstruct.generate.config import GenerateRecipe
    from agentinstruct.generate.engine import GenerationRun

    datasets.disable_progress_bars()

    recipe = GenerateRecipe(
        teacher={"backend": "openai", "base_url": base_url, "model": "fake", "max_concurrency": concurrency,
                 "timeout_s": 120, "max_retries": 2, "backoff_base_s": 0.05},
        input=str(write_corpus(work / "docs", n_docs)),
        output=str(work / "run"),
        skills=[args.skill],
        seeds_in_flight=args.seeds_in_flight,
        gates={"decontamination": {"eval_recipes": []}},  # every gate on; no eval sets to load here
    )
    clock = ReplyClock()
    cpu0, t0 = time.process_time(), time.monotonic()
    with clock.installed():
        summary = GenerationRun(recipe, show_progress=False, overwrite=True).run()
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    rate, window, active_cpu = active_rate(clock.times, clock.cpu)
    calls = summary.llm["calls"]
    accepted = sum(summary.accepted(s) for s in summary.counts if not s.startswith("_"))
    return {"requests": calls, "rate": rate, "window": window, "wall": wall,
            "accepted_per_s": accepted / wall, "accepted": accepted, "cpu_ms": 1000 * cpu / max(calls, 1),
            "active_cpu_ms": active_cpu}


async def bare_client(base_url: str, concurrency: int, n_requests: int) -> tuple[list[float], list[float]]:
    """The baseline: what any client gets with the SDK's defaults, no engine at all."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=120,
                                http_client=openai.DefaultAioHttpClient(timeout=120))
    sem = asyncio.Semaphore(concurrency)
    times: list[float] = []
    cpu: list[float] = []

    async def one(i: int) -> None:
        async with sem:
            await client.chat.completions.create(
                model="fake", max_tokens=64,
                messages=[{"role": "system", "content": "You answer questions about a text."},
                          {"role": "user", "content": f"Question {i}: what happened in the report?"}])
            times.append(time.monotonic())
            cpu.append(time.process_time())

    await asyncio.gather(*(one(i) for i in range(n_requests)))
    await client.close()
    return times, cpu


def bench_level(concurrency: int, args: argparse.Namespace) -> None:
    mean = lognormal_mean(args.latency, args.sigma)
    ceiling = concurrency / mean
    target_requests = args.requests_per_slot * concurrency
    n_docs = max(1, -(-target_requests // args.requests_per_seed))
    server_args = ["--latency", str(args.latency), "--sigma", str(args.sigma)]
    work = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    try:
        with loopback_server(*server_args) as (url, gen_counters):
            ours = run_generate_once(url, concurrency, n_docs, work, args)
        with loopback_server(*server_args) as (url, bare_counters):
            times, cpu = asyncio.run(bare_client(url, concurrency, max(ours["requests"], 4 * concurrency)))
        bare_rate, _, bare_cpu = active_rate(times, cpu)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"C={concurrency}: ceiling {ceiling:.1f} req/s (mean latency {mean:.3f} s)")
    print(f"  generate: {ours['requests']} requests ({n_docs} seeds), {ours['rate']:.1f} req/s over "
          f"{ours['window']:.1f} s active = {ours['rate'] / ceiling:.2f} of ceiling; "
          f"{ours['accepted_per_s']:.2f} accepted pairs/s ({ours['accepted']} in {ours['wall']:.1f} s wall); "
          f"peak in flight {gen_counters.get('peak_in_flight', '?')}; client CPU {ours['active_cpu_ms']:.2f} ms/request "
          f"in the active window ({ours['cpu_ms']:.2f} over the whole run, imports and export included)")
    print(f"  bare AsyncOpenAI + semaphore (aiohttp, SDK pool): {len(times)} requests, {bare_rate:.1f} req/s = "
          f"{bare_rate / ceiling:.2f} of ceiling; peak in flight {bare_counters.get('peak_in_flight', '?')}; "
          f"client CPU {bare_cpu:.2f} ms/request in the active window")
    print(f"  ratio generate / bare: {ours['rate'] / bare_rate if bare_rate else float('nan'):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=int, nargs="+", default=[64, 256, 1024], help="concurrency levels C")
    ap.add_argument("--latency", type=float, default=2.0, help="median server latency, seconds")
    ap.add_argument("--sigma", type=float, default=0.5, help="lognormal sigma of the latency")
    ap.add_argument("--requests-per-slot", type=int, default=32, help="requests made = this x C (at least)")
    ap.add_argument("--requests-per-seed", type=int, default=55,
                    help="the recipe's requests per seed, to size the corpus (measured: ~58)")
    ap.add_argument("--seeds-in-flight", type=int, default=None,
                    help="a fixed seed bound (the old admission); default: admitted by requests")
    ap.add_argument("--skill", default="reading_comprehension", help="skill name or YAML file")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (the test suite)")
    args = ap.parse_args()
    if args.smoke:
        args.levels, args.latency, args.requests_per_slot = [4], 0.02, 8
    print(f"load average {load_average()}")
    for c in args.levels:
        bench_level(c, args)


if __name__ == "__main__":
    main()
