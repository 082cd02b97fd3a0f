"""Shared pieces of the generation benchmarks: a loopback server in a subprocess (so its CPU is
not the client's), a synthetic corpus, a recipe, and reply timestamps for the active window."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[2] / "examples" / "docs"
SUBJECTS = ["The harbour council", "A survey team", "The bakery guild", "The river authority",
            "A kiln workshop", "The timber mill", "The valley school", "A glass studio"]
ACTIONS = ["rebuilt the north pier", "counted the moth species", "raised the bread price",
           "opened a night market", "replaced the oak beams", "measured the storm surge",
           "trained forty apprentices", "moved the eel traps upstream"]


def lognormal_mean(median_s: float, sigma: float) -> float:
    """Mean of the server's lognormal latency: the ceiling is C / this."""
    return median_s * math.exp(sigma * sigma / 2)


def write_corpus(folder: Path, n_docs: int) -> Path:
    """``n_docs`` short distinct documents (one seed each), facts the reading-comprehension
    rules can ask about (names, years, numbers)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_docs):
        lines = [f"# Report {i} of the Veyra district"]
        for j in range(5):
            s, a = SUBJECTS[(i + j) % len(SUBJECTS)], ACTIONS[(i * 3 + j) % len(ACTIONS)]
            lines.append(f"In {1900 + (i * 7 + j) % 120}, {s} {a} at a cost of {(i + 1) * (j + 3)} "
                         f"crowns, after {j + 2} years of planning by engineer Mara{i % 97}.")
        (folder / f"report_{i:06d}.txt").write_text(" ".join(lines[:1]) + "\n\n" + " ".join(lines[1:]) + "\n")
    return folder


@contextmanager
def loopback_server(*args: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``python -m agentinstruct.testing ARGS`` in a subprocess; yields (base_url, counters),
    counters filled in with the server's own JSON (peak in flight, outcomes) once it stops."""
    proc = subprocess.Popen([sys.executable, "-m", "agentinstruct.testing", *args],
                            stdout=subprocess.PIPE, text=True)
    counters: dict[str, Any] = {}
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        if not base_url.startswith("http"):
            raise RuntimeError(f"loopback server did not start: {base_url!r}")
        yield base_url, counters
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
            last = [line for line in out.splitlines() if line.startswith("{")]
            if last:
                counters.update(json.loads(last[-1]))
        except subprocess.TimeoutExpired:
            proc.kill()


class ReplyClock:
    """Timestamps of every reply the openai backend turns into a completion (bench-only hook,
    one ``list.append`` a reply): gives the active window, the steady part of a run."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.cpu: list[float] = []  # process CPU seconds at each reply

    @contextmanager
    def installed(self) -> Iterator[ReplyClock]:
        from agentinstruct.llm import openai_backend

        original = openai_backend.OpenAIChatModel._to_completion
        times, cpu = self.times, self.cpu

        def timed(model: Any, response: Any) -> Any:
            times.append(time.monotonic())
            cpu.append(time.process_time())
            return original(model, response)

        openai_backend.OpenAIChatModel._to_completion = timed  # type: ignore[method-assign]
        try:
            yield self
        finally:
            openai_backend.OpenAIChatModel._to_completion = original  # type: ignore[method-assign]


def active_rate(times: list[float], cpu: list[float] | None = None,
                trim: float = 0.05) -> tuple[float, float, float]:
    """(replies/s, window s, client CPU ms a reply) between the ``trim`` and ``1 - trim``
    quantiles of reply times: the ramp-up, the drain of the last sequential steps and the
    fixed costs (imports, export) are left out, for both clients alike."""
    if len(times) < 4:
        return 0.0, 0.0, 0.0
    order = sorted(range(len(times)), key=times.__getitem__)
    lo, hi = order[int(len(order) * trim)], order[int(len(order) * (1 - trim)) - 1]
    n = int(len(order) * (1 - trim)) - 1 - int(len(order) * trim)
    window = times[hi] - times[lo]
    cpu_ms = 1000 * (cpu[hi] - cpu[lo]) / n if cpu and n > 0 else 0.0
    return (n / window if window > 0 else 0.0), window, cpu_ms


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())
