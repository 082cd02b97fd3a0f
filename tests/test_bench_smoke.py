"""Every benchmark in scripts/bench runs end to end at tiny sizes (``--smoke``), so they don't
rot. They print figures, they assert nothing about speed: benchmarks are run by hand. The
generation benchmarks use the fault-injecting loopback server (``agentinstruct.testing``, a
scripted OpenAI-compatible server on 127.0.0.1, no model)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench"


def run_bench(name: str, *args: str, timeout: float = 120) -> str:
    proc = subprocess.run([sys.executable, str(BENCH / name), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=BENCH)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def test_throughput_smoke():
    out = run_bench("throughput.py", "--smoke")
    assert "of ceiling" in out and "bare AsyncOpenAI" in out and "ms/request" in out
    assert "peak in flight 4" in out  # the generate run filled the teacher's slots (C = 4)


def test_adaptive_concurrency_smoke():
    out = run_bench("adaptive_concurrency.py", "--smoke")
    assert "baseline, max_concurrency=4" in out and "auto, cap x2 (cap 8)" in out


def test_tokens_per_pair_smoke(tmp_path):
    saved = tmp_path / "before.json"
    run_bench("tokens_per_pair.py", "--smoke", "--save", str(saved))
    out = run_bench("tokens_per_pair.py", "--smoke", "--compare", str(saved))
    assert "calls/pair" in out and "shared-prefix share" in out and "before -> after" in out


def test_local_backend_smoke_without_model():
    out = run_bench("local_backend.py", "--smoke", "--no-model")
    assert "JSON-schema validation" in out and "journal append" in out


@pytest.mark.slow
def test_local_backend_smoke_with_model():
    """The embedded model at 2 prompts x 4 tokens: 15-50 s on a loaded 2-core CPU, so slow."""
    out = run_bench("local_backend.py", "--smoke", timeout=300)
    assert "tokens/s" in out and "speed-up" in out


def test_near_dedup_runs():
    out = run_bench("near_dedup.py", "--n", "2000", "--baseline-n", "500")
    assert "records/s" in out
