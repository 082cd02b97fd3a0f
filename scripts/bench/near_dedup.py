#!/usr/bin/env python
"""Near-duplicate removal throughput: our Deduplicator (rensa MinHash LSH) over N synthetic
short instructions, against a datasketch baseline on a subset, in the same command.

    python scripts/bench/near_dedup.py            # 1,000,000 records (target: <= 120 s on 2 cores)
    python scripts/bench/near_dedup.py --n 100000
"""

from __future__ import annotations

import argparse
import random
import time

from agentinstruct.generate.dedup import Deduplicator, normalise, shingles
from agentinstruct.generate.gates_config import DedupGate


def synthetic(n: int, dup_rate: float, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(20000)]
    out: list[str] = []
    for _ in range(n):
        if out and rng.random() < dup_rate:  # a near-copy of an earlier record: one word changed
            words = rng.choice(out).split()
            words[rng.randrange(len(words))] = rng.choice(vocab)
            out.append(" ".join(words))
        else:
            out.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(10, 20))))
    return out


def bench_ours(records: list[str], cfg: DedupGate) -> tuple[float, int]:
    gate = Deduplicator(cfg)
    t0 = time.perf_counter()
    removed = sum(1 for r in records if gate({"instruction": r, "messages": []}))
    return time.perf_counter() - t0, removed


def bench_datasketch(records: list[str], cfg: DedupGate) -> tuple[float, int]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
    t0 = time.perf_counter()
    removed = 0
    for i, r in enumerate(records):
        m = MinHash(num_perm=cfg.num_perm, seed=42)
        m.update_batch([s.encode() for s in shingles(normalise(r), cfg.shingle)])
        if lsh.query(m):
            removed += 1
        else:
            lsh.insert(str(i), m)
    return time.perf_counter() - t0, removed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--baseline-n", type=int, default=20_000, help="records for the datasketch baseline")
    ap.add_argument("--dup-rate", type=float, default=0.1)
    args = ap.parse_args()
    cfg = DedupGate()
    records = synthetic(args.n, args.dup_rate)
    ours_s, ours_removed = bench_ours(records, cfg)
    sub = records[: args.baseline_n]
    base_s, base_removed = bench_datasketch(sub, cfg)
    ours_sub_s, ours_sub_removed = bench_ours(sub, cfg)
    print(f"agentinstruct Deduplicator (rensa): {args.n:,} records in {ours_s:.1f} s = "
          f"{args.n / ours_s:,.0f} records/s, removed {ours_removed:,}")
    print(f"datasketch baseline: {len(sub):,} records in {base_s:.1f} s = {len(sub) / base_s:,.0f} records/s, "
          f"removed {base_removed:,} (ours on the same subset: {ours_sub_removed:,})")
    print(f"ratio (ours / datasketch records/s): {(len(sub) / ours_sub_s) / (len(sub) / base_s):.1f}x")
    print(f"target <= 120 s for 1,000,000 records: {'met' if args.n / ours_s >= 1_000_000 / 120 else 'NOT met'}")


if __name__ == "__main__":
    main()
